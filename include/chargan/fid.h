/* Fréchet distance between Gaussian fits of two feature sets (the "FID" of Heusel et al. 2017
 * when the features come from a classifier's penultimate layer):
 *
 *     d^2 = |mu1 - mu2|^2 + tr(C1) + tr(C2) - 2 tr( (C1 C2)^(1/2) )
 *
 * Everything is double. Means and covariances come from running sums (cg_moments), the
 * covariance unbiased (divided by n - 1, as numpy.cov and the usual FID code). The trace of the
 * matrix square root uses symmetric eigen-decompositions only:
 *     S = C1^(1/2) = V diag(sqrt(max(l, 0))) V^T           (eigen-decomposition of C1)
 *     tr((C1 C2)^(1/2)) = sum_i sqrt(max(m_i, 0)),  m_i the eigenvalues of S C2 S
 * (S C2 S is symmetric positive semi-definite and similar to C1 C2, so it has the same
 * eigenvalues). Eigenvalues come from a cyclic Jacobi routine (cg_sym_eig), accurate for the
 * d = 128 features used here; eigenvalues that rounding makes slightly negative count as 0.
 *
 * A reference distribution used many times (real held-out features) is prepared once with
 * cg_fid_setup, which keeps its square root, so each later distance costs one Jacobi run and
 * allocates nothing. */
#ifndef CHARGAN_FID_H
#define CHARGAN_FID_H
#include <stddef.h>

/* Running sums of a feature set: n, sum x, sum x x^T (lower triangle until finalized). */
typedef struct {
    int d;
    long n;
    double *sum; /* d */
    double *sxx; /* d*d */
} cg_moments;

/* A Gaussian fit: mean and (unbiased) covariance, d*d row-major, symmetric. */
typedef struct {
    int d;
    long n; /* samples it was fitted on */
    double *mean;
    double *cov;
} cg_gauss;

void cg_moments_init(cg_moments *m, int d); /* allocates; starts empty */
void cg_moments_reset(cg_moments *m);
/* Adds n feature vectors x[n][d]. No allocation. */
void cg_moments_add(cg_moments *m, const float *x, long n);
void cg_moments_free(cg_moments *m);

void cg_gauss_init(cg_gauss *g, int d); /* allocates mean and cov, zeroed */
void cg_gauss_free(cg_gauss *g);
/* Mean and unbiased covariance of what m holds (g->d == m->d). Returns -1 when m->n < 2. */
int cg_gauss_from_moments(const cg_moments *m, cg_gauss *g);
/* Convenience: fits g (allocated here) to x[n][d]. Returns -1 when n < 2. */
int cg_gauss_fit(const float *x, long n, int d, cg_gauss *g);

/* Eigenvalues w[d] (ascending) and, when v is not NULL, eigenvectors as the COLUMNS of v
 * (d*d row-major, A = V diag(w) V^T) of the symmetric matrix a (d*d row-major; destroyed).
 * Cyclic Jacobi with the threshold strategy; returns the number of sweeps, or -1 if it did
 * not converge within 100 sweeps (never seen for symmetric input). */
int cg_sym_eig(int d, double *a, double *w, double *v);

/* Reference distribution prepared for repeated distances. */
typedef struct {
    int d;
    double *mean;    /* d */
    double *sqrt_c;  /* d*d: C_ref^(1/2) */
    double tr_c;     /* tr(C_ref) */
    double *work_a, *work_b, *work_w; /* d*d, d*d, d scratch */
} cg_fid_ref;

/* Copies what it needs from ref (which may be freed afterwards). Returns -1 if the
 * eigen-decomposition fails. */
int cg_fid_setup(cg_fid_ref *f, const cg_gauss *ref);
void cg_fid_free(cg_fid_ref *f);
/* Fréchet distance between g and the reference (g->d == f->d). No allocation. */
double cg_fid_to(cg_fid_ref *f, const cg_gauss *g);

/* One-off distance between two fits (allocates its scratch). */
double cg_frechet_distance(const cg_gauss *a, const cg_gauss *b);

#endif
