/* Fréchet distance (src/fid.c) against closed forms.
 *
 *  - Jacobi eigen-decomposition: a matrix built as Q diag(l) Q^T with known l (Q orthogonal
 *    from Gram-Schmidt of random vectors) gives back l, and A V = V diag(w), V^T V = I.
 *  - Gaussian fits given directly:
 *      diagonal covariances:  d^2 = |mu1-mu2|^2 + sum_i (sqrt(s1_i) - sqrt(s2_i))^2
 *      commuting (same eigenvectors Q): the same formula on the eigenvalues
 *      2x2 non-commuting:  tr sqrt(C1 C2) = sqrt(tr(C1 C2) + 2 sqrt(det C1 det C2))
 *  - feature SETS (d = 128, correlated, non-Gaussian ReLU features, some features dead = 0):
 *      X vs X              = 0
 *      X vs X + v          = |v|^2                     (same covariance)
 *      X vs 2 X            = |mu|^2 + tr C             (C2 = 4 C: tr sqrt(C1 C2) = 2 tr C)
 *      symmetric in its arguments
 *  - sampling: N(mu1, diag s1) vs N(mu2, diag s2), 40000 samples each in d = 8, matches the
 *    closed form within the sampling error (a few 1e-3 relative).
 * Fast: well under a second. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/fid.h"
#include "chargan/rng.h"
#include "testutil.h"

static double closed_diag(int d, const double *m1, const double *s1, const double *m2,
                          const double *s2)
{
    double r = 0.0;
    for (int i = 0; i < d; i++) {
        const double dm = m1[i] - m2[i], ds = sqrt(s1[i]) - sqrt(s2[i]);
        r += dm * dm + ds * ds;
    }
    return r;
}

/* Random orthogonal matrix (columns) by Gram-Schmidt. */
static void random_orthogonal(int d, double *q, uint64_t stream)
{
    for (int j = 0; j < d; j++) {
        double *col = malloc(sizeof(double) * (size_t)d);
        for (int i = 0; i < d; i++)
            col[i] = cg_rng_normal(TU_SEED, stream, (uint64_t)(j * d + i));
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < j; k++) {
                double dot = 0.0;
                for (int i = 0; i < d; i++)
                    dot += col[i] * q[(size_t)i * d + k];
                for (int i = 0; i < d; i++)
                    col[i] -= dot * q[(size_t)i * d + k];
            }
        double nrm = 0.0;
        for (int i = 0; i < d; i++)
            nrm += col[i] * col[i];
        nrm = sqrt(nrm);
        for (int i = 0; i < d; i++)
            q[(size_t)i * d + j] = col[i] / nrm;
        free(col);
    }
}

/* a = Q diag(l) Q^T */
static void compose(int d, const double *q, const double *l, double *a)
{
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double s = 0.0;
            for (int k = 0; k < d; k++)
                s += q[(size_t)i * d + k] * l[k] * q[(size_t)j * d + k];
            a[(size_t)i * d + j] = s;
        }
}

static int cmp_d(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_jacobi(void)
{
    const int d = 40;
    double *q = malloc(sizeof(double) * d * d), *a = malloc(sizeof(double) * d * d);
    double *a0 = malloc(sizeof(double) * d * d), *v = malloc(sizeof(double) * d * d);
    double l[40], w[40];
    for (int i = 0; i < d; i++) /* spread over 6 orders of magnitude, a few exact zeros */
        l[i] = i < 3 ? 0.0 : pow(10.0, -3.0 + 6.0 * cg_rng_uniform(TU_SEED, 11, i)) *
                                 (i % 7 == 0 ? -1.0 : 1.0);
    random_orthogonal(d, q, 10);
    compose(d, q, l, a);
    memcpy(a0, a, sizeof(double) * d * d);
    const int sweeps = cg_sym_eig(d, a, w, v);
    CHECKF(sweeps > 0 && sweeps < 20, "sweeps %d", sweeps);
    qsort(l, d, sizeof(double), cmp_d);
    double worst = 0.0, scale = 0.0;
    for (int i = 0; i < d; i++)
        scale = fmax(scale, fabs(l[i]));
    for (int i = 0; i < d; i++)
        worst = fmax(worst, fabs(w[i] - l[i]));
    CHECKF(worst < 1e-12 * scale, "eigenvalue error %.3g (scale %.3g)", worst, scale);
    double res = 0.0, orth = 0.0;
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double av = 0.0, vv = 0.0;
            for (int k = 0; k < d; k++) {
                av += a0[(size_t)i * d + k] * v[(size_t)k * d + j];
                vv += v[(size_t)k * d + i] * v[(size_t)k * d + j];
            }
            res = fmax(res, fabs(av - v[(size_t)i * d + j] * w[j]));
            orth = fmax(orth, fabs(vv - (i == j ? 1.0 : 0.0)));
        }
    CHECKF(res < 1e-11 * scale, "|A V - V W| %.3g", res);
    CHECKF(orth < 1e-12, "|V^T V - I| %.3g", orth);
    printf("  jacobi d=%d: %d sweeps, eigenvalue error %.2e, residual %.2e, orthogonality %.2e\n",
           d, sweeps, worst, res, orth);
    free(q), free(a), free(a0), free(v);
}

static void test_closed_forms(void)
{
    const int d = 16;
    cg_gauss g1, g2;
    cg_gauss_init(&g1, d);
    cg_gauss_init(&g2, d);
    double s1[16], s2[16];
    for (int i = 0; i < d; i++) {
        g1.mean[i] = cg_rng_normal(TU_SEED, 20, i);
        g2.mean[i] = cg_rng_normal(TU_SEED, 21, i);
        s1[i] = 0.1 + 3.0 * cg_rng_uniform(TU_SEED, 22, i);
        s2[i] = i == 5 ? 0.0 : 0.1 + 3.0 * cg_rng_uniform(TU_SEED, 23, i); /* one singular */
        g1.cov[i * d + i] = s1[i];
        g2.cov[i * d + i] = s2[i];
    }
    double want = closed_diag(d, g1.mean, s1, g2.mean, s2);
    double got = cg_frechet_distance(&g1, &g2);
    CHECK_NEAR(got, want, 1e-10 * want);
    printf("  diagonal d=%d: %.12f vs closed form %.12f\n", d, got, want);
    CHECK_NEAR(cg_frechet_distance(&g2, &g1), want, 1e-10 * want);
    CHECK_NEAR(cg_frechet_distance(&g1, &g1), 0.0, 1e-10);

    /* Commuting: both covariances diagonal in the same rotated basis. */
    double *q = malloc(sizeof(double) * d * d);
    random_orthogonal(d, q, 24);
    compose(d, q, s1, g1.cov);
    compose(d, q, s2, g2.cov);
    got = cg_frechet_distance(&g1, &g2);
    CHECK_NEAR(got, want, 1e-9 * want);
    printf("  commuting (rotated) d=%d: %.12f vs closed form %.12f\n", d, got, want);
    free(q);
    cg_gauss_free(&g1);
    cg_gauss_free(&g2);

    /* 2x2, not commuting. */
    cg_gauss a, b;
    cg_gauss_init(&a, 2);
    cg_gauss_init(&b, 2);
    const double c1[4] = {2.0, 0.7, 0.7, 1.0}, c2[4] = {0.5, -0.3, -0.3, 3.0};
    memcpy(a.cov, c1, sizeof c1);
    memcpy(b.cov, c2, sizeof c2);
    a.mean[0] = 1.0, a.mean[1] = -2.0, b.mean[0] = 0.5, b.mean[1] = 1.0;
    const double tr12 = c1[0] * c2[0] + c1[1] * c2[2] + c1[2] * c2[1] + c1[3] * c2[3];
    const double det1 = c1[0] * c1[3] - c1[1] * c1[2], det2 = c2[0] * c2[3] - c2[1] * c2[2];
    const double trsqrt = sqrt(tr12 + 2.0 * sqrt(det1 * det2));
    want = 0.25 + 9.0 + (c1[0] + c1[3]) + (c2[0] + c2[3]) - 2.0 * trsqrt;
    got = cg_frechet_distance(&a, &b);
    CHECK_NEAR(got, want, 1e-12 * want);
    CHECK_NEAR(cg_frechet_distance(&b, &a), want, 1e-12 * want);
    printf("  2x2 non-commuting: %.12f vs closed form %.12f\n", got, want);
    cg_gauss_free(&a);
    cg_gauss_free(&b);
}

/* Feature sets like the classifier's: ReLU of a random linear map of Gaussian noise (so
 * correlated and non-Gaussian), a few features always 0. */
static float *make_features(long n, int d, int k)
{
    float *w = malloc(sizeof(float) * (size_t)k * d), *x = malloc(sizeof(float) * (size_t)n * d);
    float z[32];
    for (int i = 0; i < k * d; i++)
        w[i] = cg_rng_normal(TU_SEED, 30, (uint64_t)i) / sqrtf((float)k);
    for (long s = 0; s < n; s++) {
        for (int j = 0; j < k; j++)
            z[j] = cg_rng_normal(TU_SEED, 31, (uint64_t)(s * k + j));
        for (int i = 0; i < d; i++) {
            float a = 0.3f;
            for (int j = 0; j < k; j++)
                a += z[j] * w[j * d + i];
            x[s * d + i] = (i % 17 == 3) ? 0.0f : (a > 0.0f ? 2.0f * a : 0.0f);
        }
    }
    free(w);
    return x;
}

static void test_sets(void)
{
    const long n = 4000;
    const int d = 128;
    float *x = make_features(n, d, 24);
    float *y = malloc(sizeof(float) * (size_t)n * d);
    cg_gauss gx, gy;
    CHECK(cg_gauss_fit(x, n, d, &gx) == 0);
    double trc = 0.0, mu2 = 0.0;
    for (int i = 0; i < d; i++) {
        trc += gx.cov[i * d + i];
        mu2 += gx.mean[i] * gx.mean[i];
    }
    const double self = cg_frechet_distance(&gx, &gx);
    CHECKF(self < 1e-9 * trc, "FID(X, X) = %.3g (tr C %.3g)", self, trc);
    printf("  sets d=%d n=%ld: tr C %.4f, FID(X,X) = %.3g\n", d, n, trc, self);

    /* Shift by v: FID = |v|^2 (the moments are shift-invariant up to rounding). */
    double v2 = 0.0;
    for (long s = 0; s < n; s++)
        for (int i = 0; i < d; i++) {
            const float v = 0.05f * (float)((i % 5) - 2);
            y[s * d + i] = x[s * d + i] + v;
            if (s == 0)
                v2 += (double)v * v;
        }
    CHECK(cg_gauss_fit(y, n, d, &gy) == 0);
    double got = cg_frechet_distance(&gx, &gy);
    /* v is added in float: the exact shift per element is y - x, not v; take it from the
     * means instead of v2 for the tight check, and v2 for the loose one. */
    double dm = 0.0;
    for (int i = 0; i < d; i++)
        dm += (gy.mean[i] - gx.mean[i]) * (gy.mean[i] - gx.mean[i]);
    CHECKF(got > 0.0, "shifted set: FID %.3g", got);
    CHECK_NEAR(got, dm, 1e-6 * dm + 1e-9 * trc);
    CHECK_NEAR(got, v2, 1e-4 * v2);
    printf("  X vs X + v: %.10f vs |v|^2 %.10f\n", got, v2);
    cg_gauss_free(&gy);

    /* Scale by 2: FID = |mu|^2 + tr C. */
    for (long i = 0; i < n * d; i++)
        y[i] = 2.0f * x[i];
    CHECK(cg_gauss_fit(y, n, d, &gy) == 0);
    got = cg_frechet_distance(&gx, &gy);
    const double want = mu2 + trc;
    CHECK_NEAR(got, want, 1e-7 * want);
    CHECK_NEAR(cg_frechet_distance(&gy, &gx), want, 1e-7 * want);
    printf("  X vs 2X: %.10f vs |mu|^2 + tr C %.10f\n", got, want);

    /* The prepared reference gives the same as the one-off function, repeatedly. */
    cg_fid_ref ref;
    CHECK(cg_fid_setup(&ref, &gx) == 0);
    CHECK_NEAR(cg_fid_to(&ref, &gy), want, 1e-7 * want);
    CHECK_NEAR(cg_fid_to(&ref, &gy), want, 1e-7 * want);
    CHECK(cg_fid_to(&ref, &gx) < 1e-9 * trc);
    cg_fid_free(&ref);

    /* Moments added in pieces equal moments added at once. */
    cg_moments m;
    cg_gauss gp;
    cg_moments_init(&m, d);
    cg_gauss_init(&gp, d);
    for (long s = 0; s < n; s += 333)
        cg_moments_add(&m, x + s * d, n - s < 333 ? n - s : 333);
    CHECK(cg_gauss_from_moments(&m, &gp) == 0);
    double worst = 0.0;
    for (int i = 0; i < d * d; i++)
        worst = fmax(worst, fabs(gp.cov[i] - gx.cov[i]));
    CHECKF(worst < 1e-12, "pieces vs whole covariance %.3g", worst);
    cg_moments_reset(&m);
    CHECK(cg_gauss_from_moments(&m, &gp) == -1); /* empty */
    cg_moments_free(&m);
    cg_gauss_free(&gp);
    cg_gauss_free(&gx);
    cg_gauss_free(&gy);
    free(x);
    free(y);
}

static void test_sampling(void)
{
    const int d = 8;
    const long n = 40000;
    double m1[8], s1[8], m2[8], s2[8];
    for (int i = 0; i < d; i++) {
        m1[i] = 0.5 * i, m2[i] = 0.5 * i + (i % 2 ? 0.3 : -0.2);
        s1[i] = 1.0 + i, s2[i] = 4.0 / (1.0 + i);
    }
    float *a = malloc(sizeof(float) * n * d), *b = malloc(sizeof(float) * n * d);
    for (long s = 0; s < n; s++)
        for (int i = 0; i < d; i++) {
            a[s * d + i] = (float)(m1[i] + sqrt(s1[i]) * cg_rng_normal(TU_SEED, 40, s * d + i));
            b[s * d + i] = (float)(m2[i] + sqrt(s2[i]) * cg_rng_normal(TU_SEED, 41, s * d + i));
        }
    cg_gauss ga, gb;
    cg_gauss_fit(a, n, d, &ga);
    cg_gauss_fit(b, n, d, &gb);
    const double want = closed_diag(d, m1, s1, m2, s2), got = cg_frechet_distance(&ga, &gb);
    CHECK_NEAR(got, want, 0.02 * want);
    printf("  sampled Gaussians d=%d n=%ld: %.5f vs population closed form %.5f\n", d, n, got,
           want);
    cg_gauss_free(&ga);
    cg_gauss_free(&gb);
    free(a);
    free(b);
}

int main(void)
{
    test_jacobi();
    test_closed_forms();
    test_sets();
    test_sampling();
    return tu_finish("test_fid");
}
