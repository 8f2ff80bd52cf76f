/* Fréchet distance between Gaussian fits; see fid.h. */
#include "chargan/fid.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "chargan/util.h"

/* ---- moments ------------------------------------------------------------------------- */

/* The sums are taken around a shift (the first vector added), which keeps the covariance
 * accurate when the mean is large compared with the spread: sum (x-k)(x-k)^T does not
 * cancel the way sum x x^T - n mu mu^T would. The shift lives after sum in one allocation. */
static double *shift_of(const cg_moments *m) { return m->sum + m->d; }

void cg_moments_init(cg_moments *m, int d)
{
    m->d = d;
    m->n = 0;
    m->sum = cg_alloc(sizeof(double) * 2 * (size_t)d);
    m->sxx = cg_alloc(sizeof(double) * (size_t)d * d);
}

void cg_moments_reset(cg_moments *m)
{
    m->n = 0;
    memset(m->sum, 0, sizeof(double) * 2 * (size_t)m->d);
    memset(m->sxx, 0, sizeof(double) * (size_t)m->d * m->d);
}

void cg_moments_add(cg_moments *m, const float *x, long n)
{
    const int d = m->d;
    double *k = shift_of(m);
    double xc[1024]; /* d <= 1024 (feature widths here are 128) */
    if (d > 1024)
        cg_die("cg_moments_add: %d features (at most 1024 supported)", d);
    for (long s = 0; s < n; s++) {
        const float *row = x + (size_t)s * d;
        if (m->n == 0)
            for (int i = 0; i < d; i++)
                k[i] = row[i];
        for (int i = 0; i < d; i++) {
            xc[i] = (double)row[i] - k[i];
            m->sum[i] += xc[i];
        }
        for (int i = 0; i < d; i++) {
            const double xi = xc[i];
            if (xi == 0.0)
                continue; /* ReLU features: many exact zeros */
            double *r = m->sxx + (size_t)i * d;
            for (int j = 0; j <= i; j++)
                r[j] += xi * xc[j];
        }
        m->n++;
    }
}

void cg_moments_free(cg_moments *m)
{
    cg_free(m->sum);
    cg_free(m->sxx);
    memset(m, 0, sizeof *m);
}

void cg_gauss_init(cg_gauss *g, int d)
{
    g->d = d;
    g->n = 0;
    g->mean = cg_alloc(sizeof(double) * (size_t)d);
    g->cov = cg_alloc(sizeof(double) * (size_t)d * d);
}

void cg_gauss_free(cg_gauss *g)
{
    cg_free(g->mean);
    cg_free(g->cov);
    memset(g, 0, sizeof *g);
}

int cg_gauss_from_moments(const cg_moments *m, cg_gauss *g)
{
    const int d = m->d;
    if (m->n < 2 || g->d != d)
        return -1;
    const double n = (double)m->n;
    const double *k = shift_of(m);
    for (int i = 0; i < d; i++)
        g->mean[i] = k[i] + m->sum[i] / n;
    /* cov = (sum xc xc^T - n mc mc^T) / (n - 1) with mc = mean of the shifted vectors. */
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) {
            const double c =
                (m->sxx[(size_t)i * d + j] - m->sum[i] * m->sum[j] / n) / (n - 1.0);
            g->cov[(size_t)i * d + j] = g->cov[(size_t)j * d + i] = c;
        }
    g->n = m->n;
    return 0;
}

int cg_gauss_fit(const float *x, long n, int d, cg_gauss *g)
{
    cg_moments m;
    cg_moments_init(&m, d);
    cg_moments_add(&m, x, n);
    cg_gauss_init(g, d);
    int rc = cg_gauss_from_moments(&m, g);
    cg_moments_free(&m);
    return rc;
}

/* ---- symmetric eigen-decomposition (cyclic Jacobi) ----------------------------------- */

/* Sum of the squares of the elements above the diagonal (each pair once). */
static double off_diagonal_mass(int d, const double *a)
{
    double off = 0.0;
    for (int p = 0; p < d; p++)
        for (int q = p + 1; q < d; q++)
            off += a[(size_t)p * d + q] * a[(size_t)p * d + q];
    return off;
}

/* One Jacobi rotation in the (p, q) plane that zeroes a[p][q] (= apq), keeping a symmetric
 * and applying the same rotation to the columns of v (if any). */
static void jacobi_rotate(int d, double *a, double *v, int p, int q, double apq)
{
    const double app = a[(size_t)p * d + p], aqq = a[(size_t)q * d + q];
    const double theta = (aqq - app) / (2.0 * apq);
    const double t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
    const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
    for (int k = 0; k < d; k++) {
        if (k == p || k == q)
            continue;
        const double akp = a[(size_t)k * d + p], akq = a[(size_t)k * d + q];
        const double np = c * akp - s * akq, nq = s * akp + c * akq;
        a[(size_t)k * d + p] = a[(size_t)p * d + k] = np;
        a[(size_t)k * d + q] = a[(size_t)q * d + k] = nq;
    }
    a[(size_t)p * d + p] = app - t * apq;
    a[(size_t)q * d + q] = aqq + t * apq;
    a[(size_t)p * d + q] = a[(size_t)q * d + p] = 0.0;
    if (v)
        for (int k = 0; k < d; k++) {
            const double vkp = v[(size_t)k * d + p], vkq = v[(size_t)k * d + q];
            v[(size_t)k * d + p] = c * vkp - s * vkq;
            v[(size_t)k * d + q] = s * vkp + c * vkq;
        }
}

/* One cyclic sweep over all pairs above the diagonal, skipping elements at or below thresh. */
static void jacobi_sweep(int d, double *a, double *v, double thresh)
{
    for (int p = 0; p < d; p++)
        for (int q = p + 1; q < d; q++) {
            const double apq = a[(size_t)p * d + q];
            if (apq == 0.0 || fabs(apq) <= thresh)
                continue;
            jacobi_rotate(d, a, v, p, q, apq);
        }
}

/* The eigenvalues w in ascending order (insertion sort: d is small), columns of v along. */
static void sort_eigen(int d, double *w, double *v)
{
    for (int i = 1; i < d; i++)
        for (int j = i; j > 0 && w[j - 1] > w[j]; j--) {
            const double tw = w[j];
            w[j] = w[j - 1];
            w[j - 1] = tw;
            if (v)
                for (int k = 0; k < d; k++) {
                    double *r = v + (size_t)k * d;
                    const double tv = r[j];
                    r[j] = r[j - 1];
                    r[j - 1] = tv;
                }
        }
}

int cg_sym_eig(int d, double *a, double *w, double *v)
{
    if (v) {
        memset(v, 0, sizeof(double) * (size_t)d * d);
        for (int i = 0; i < d; i++)
            v[(size_t)i * d + i] = 1.0;
    }
    double fro = 0.0;
    for (size_t i = 0; i < (size_t)d * d; i++)
        fro += a[i] * a[i];
    int sweeps = 0, converged = 0;
    for (; sweeps < 100; sweeps++) {
        const double off = off_diagonal_mass(d, a);
        /* Off-diagonal mass below (1e-15 ||A||_F)^2: the remaining error in every eigenvalue
         * is at the level of double rounding. */
        if (off <= 1e-30 * fro || off == 0.0) {
            converged = 1;
            break;
        }
        /* In the first sweeps, skip tiny elements (threshold Jacobi); later rotate all. */
        jacobi_sweep(d, a, v, sweeps < 3 ? 0.2 * sqrt(off) / ((double)d * d) : 0.0);
    }
    for (int i = 0; i < d; i++)
        w[i] = a[(size_t)i * d + i];
    sort_eigen(d, w, v);
    return converged ? sweeps : -1;
}

/* ---- Fréchet distance ---------------------------------------------------------------- */

int cg_fid_setup(cg_fid_ref *f, const cg_gauss *ref)
{
    const int d = ref->d;
    const size_t dd = (size_t)d * d;
    memset(f, 0, sizeof *f);
    f->d = d;
    f->mean = cg_alloc(sizeof(double) * (size_t)d);
    f->sqrt_c = cg_alloc(sizeof(double) * dd);
    f->work_a = cg_alloc(sizeof(double) * dd);
    f->work_b = cg_alloc(sizeof(double) * dd);
    f->work_w = cg_alloc(sizeof(double) * (size_t)d);
    memcpy(f->mean, ref->mean, sizeof(double) * (size_t)d);
    f->tr_c = 0.0;
    for (int i = 0; i < d; i++)
        f->tr_c += ref->cov[(size_t)i * d + i];
    /* S = V diag(sqrt(max(w, 0))) V^T */
    double *a = f->work_a, *v = f->work_b, *w = f->work_w;
    memcpy(a, ref->cov, sizeof(double) * dd);
    if (cg_sym_eig(d, a, w, v) < 0)
        return -1;
    for (int j = 0; j < d; j++) {
        const double sw = w[j] > 0.0 ? sqrt(sqrt(w[j])) : 0.0; /* split between V and V^T */
        for (int i = 0; i < d; i++)
            a[(size_t)i * d + j] = v[(size_t)i * d + j] * sw;
    }
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0, a, d, a, d, 0.0,
                f->sqrt_c, d);
    return 0;
}

void cg_fid_free(cg_fid_ref *f)
{
    cg_free(f->mean);
    cg_free(f->sqrt_c);
    cg_free(f->work_a);
    cg_free(f->work_b);
    cg_free(f->work_w);
    memset(f, 0, sizeof *f);
}

double cg_fid_to(cg_fid_ref *f, const cg_gauss *g)
{
    const int d = f->d;
    double dm = 0.0, tr = 0.0;
    for (int i = 0; i < d; i++) {
        const double x = g->mean[i] - f->mean[i];
        dm += x * x;
        tr += g->cov[(size_t)i * d + i];
    }
    /* M = S C S, symmetrized against rounding, then its eigenvalues. */
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, g->cov, d, f->sqrt_c,
                d, 0.0, f->work_a, d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, f->sqrt_c, d,
                f->work_a, d, 0.0, f->work_b, d);
    double *m = f->work_b;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) {
            const double s = 0.5 * (m[(size_t)i * d + j] + m[(size_t)j * d + i]);
            m[(size_t)i * d + j] = m[(size_t)j * d + i] = s;
        }
    cg_sym_eig(d, m, f->work_w, NULL);
    double tr_sqrt = 0.0;
    for (int i = 0; i < d; i++)
        if (f->work_w[i] > 0.0)
            tr_sqrt += sqrt(f->work_w[i]);
    const double fd = dm + tr + f->tr_c - 2.0 * tr_sqrt;
    return fd > 0.0 ? fd : 0.0; /* rounding can leave -1e-12 for identical fits */
}

double cg_frechet_distance(const cg_gauss *a, const cg_gauss *b)
{
    cg_fid_ref f;
    if (cg_fid_setup(&f, a)) {
        cg_fid_free(&f);
        return NAN;
    }
    const double r = cg_fid_to(&f, b);
    cg_fid_free(&f);
    return r;
}
