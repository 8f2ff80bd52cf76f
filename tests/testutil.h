/* Small shared helpers for the C unit tests: CHECK macros that count failures instead of
 * aborting (so one run reports every problem), deterministic random fills, and a central
 * finite-difference gradient checker.
 *
 * Usage:
 *     CHECK(x == 3);
 *     CHECKF(fabs(a - b) < 1e-6, "a %g b %g", a, b);
 *     CHECK_NEAR(a, b, tol);               // |a - b| <= tol, both printed on failure
 *     ...
 *     return tu_finish("test_name");       // prints a summary, returns the exit code
 *
 * Everything here is static: each test program is one translation unit. */
#ifndef CHARGAN_TESTUTIL_H
#define CHARGAN_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/gan.h"
#include "chargan/rng.h"

#if defined(__GNUC__)
#define TU_UNUSED __attribute__((unused))
#else
#define TU_UNUSED
#endif

static int tu_failures TU_UNUSED = 0;
static long tu_checks TU_UNUSED = 0;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        tu_checks++;                                                                         \
        if (!(cond)) {                                                                       \
            tu_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);         \
        }                                                                                    \
    } while (0)

#define CHECKF(cond, ...)                                                                    \
    do {                                                                                     \
        tu_checks++;                                                                         \
        if (!(cond)) {                                                                       \
            tu_failures++;                                                                   \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fputc('\n', stderr);                                                             \
        }                                                                                    \
    } while (0)

/* |a - b| <= tol (NaN fails). */
#define CHECK_NEAR(a, b, tol)                                                                \
    do {                                                                                     \
        const double tu_a_ = (double)(a), tu_b_ = (double)(b), tu_t_ = (double)(tol);        \
        CHECKF(fabs(tu_a_ - tu_b_) <= tu_t_, "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g", #a,  \
               tu_a_, #b, tu_b_, fabs(tu_a_ - tu_b_), tu_t_);                                \
    } while (0)

/* Prints the summary and returns the process exit code. */
static TU_UNUSED int tu_finish(const char *name)
{
    if (tu_failures) {
        fprintf(stderr, "%s: FAILED (%d of %ld checks)\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: OK (%ld checks)\n", name, tu_checks);
    return 0;
}

/* ---- deterministic random data ------------------------------------------------------- */

#define TU_SEED 0x5EEDu

/* x[i] uniform in [lo, hi) from (TU_SEED, stream, i). */
static TU_UNUSED void tu_fill_uniform(float *x, size_t n, float lo, float hi, uint64_t stream)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * cg_rng_uniform(TU_SEED, stream, i);
}

/* Like tu_fill_uniform in [-hi, hi], but |x[i]| >= gap (to stay away from kinks at 0). */
static TU_UNUSED void tu_fill_away_from_zero(float *x, size_t n, float gap, float hi,
                                             uint64_t stream)
{
    for (size_t i = 0; i < n; i++) {
        float u = cg_rng_uniform(TU_SEED, stream, i);           /* [0, 1) */
        float mag = gap + (hi - gap) * cg_rng_uniform(TU_SEED, stream ^ 0xABCDu, i);
        x[i] = u < 0.5f ? -mag : mag;
    }
}

static TU_UNUSED float *tu_falloc(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof(float));
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static TU_UNUSED float *tu_fdup(const float *x, size_t n)
{
    float *p = tu_falloc(n);
    memcpy(p, x, sizeof(float) * n);
    return p;
}

/* max_i |a_i - b_i| / (1 + |b_i|); NaN in either gives +inf. */
static TU_UNUSED double tu_max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
        if (!(d <= worst))
            worst = isnan(d) ? INFINITY : d;
    }
    return worst;
}

/* The worst over net's tensors of max|a - b| / max|b| (max|a - b| where b is all zero): a and
 * b are two arrays in net's parameter layout. */
static TU_UNUSED double tu_tensor_rel_diff(const cg_net *net, const float *a, const float *b)
{
    double worst = 0.0;
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        double d = 0.0, m = 0.0;
        for (size_t i = 0; i < T->count; i++) {
            d = fmax(d, fabs((double)a[T->offset + i] - b[T->offset + i]));
            m = fmax(m, fabs((double)b[T->offset + i]));
        }
        worst = fmax(worst, m > 0.0 ? d / m : d);
    }
    return worst;
}

/* Fills a GAN's parameters and Adam moments with reproducible values of stream and sets the
 * Adam counters (G: stream % 1000 + 17, D: + 23), as a checkpoint round trip needs. */
static TU_UNUSED void tu_fill_gan_state(cg_gan *gan, uint64_t stream)
{
    cg_net *nets[2] = {&gan->g, &gan->d};
    for (int k = 0; k < 2; k++) {
        const size_t n = nets[k]->n_params;
        tu_fill_uniform(nets[k]->param, n, -0.3f, 0.3f, stream + 10 * k);
        tu_fill_uniform(nets[k]->adam_m, n, -0.01f, 0.01f, stream + 10 * k + 1);
        tu_fill_uniform(nets[k]->adam_v, n, 0.0f, 1e-4f, stream + 10 * k + 2);
    }
    gan->adam_g.t = (long)(stream % 1000) + 17;
    gan->adam_d.t = (long)(stream % 1000) + 23;
}

/* sum_i y_i r_i in double: the scalar loss the layer tests differentiate. */
static TU_UNUSED double tu_dot(const float *y, const float *r, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)y[i] * (double)r[i];
    return s;
}

/* max_i |a_i - ref_i| / (1 + max_j |ref_j|): a float result against a double reference; NaN
 * gives +inf. A finite result also raises *worst (when worst is not NULL). */
static TU_UNUSED double tu_err_vs_ref(const float *a, const double *ref, size_t n, double *worst)
{
    double scale = 0.0, e = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (isnan(d))
            return INFINITY;
        e = fmax(e, d);
    }
    e /= 1.0 + scale;
    if (worst && e > *worst)
        *worst = e;
    return e;
}

static TU_UNUSED int tu_all_finite(const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return 0;
    return 1;
}

/* ---- central finite differences ------------------------------------------------------ */

/* The scalar loss as a function of whatever parameters the context points at. */
typedef double (*tu_loss_fn)(void *ctx);

typedef struct {
    float h;          /* perturbation */
    double tol;       /* an entry passes when |a - num| <= tol * max(floor, |a|) */
    double floor;     /* absolute scale below which errors are measured against floor */
    size_t max_fail;  /* entries allowed to fail (e.g. kinks) before the check fails */
    int quiet;        /* 1: print only on failure */
} tu_fd_opts;

typedef struct {
    size_t checked, failed;
    double median, p90, worst; /* normalized errors |a - num| / max(floor, |a|) */
    size_t worst_index;
    double worst_analytic, worst_numeric;
    double a_dot_n, a_dot_a, n_dot_n; /* over the checked entries: cosine and scale of the
                                         numeric vs the analytic gradient as a whole */
} tu_fd_report;

/* Cosine of the angle between the checked analytic and numeric gradients, and the least-squares
 * scale s of numeric ~ s * analytic (1 when they agree). */
static TU_UNUSED double tu_fd_cosine(const tu_fd_report *r)
{
    return r->a_dot_n / sqrt(r->a_dot_a * r->n_dot_n);
}
static TU_UNUSED double tu_fd_scale(const tu_fd_report *r) { return r->a_dot_n / r->a_dot_a; }

/* Worst normalized FD error seen by any tu_fd_check in this program (for a final summary). */
static double tu_fd_global_worst TU_UNUSED = 0.0;
static size_t tu_fd_global_checked TU_UNUSED = 0;

static int tu_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Compares the analytic gradient grad[i] of f with respect to p[i] with the central difference
 * (f(p + h e_i) - f(p - h e_i)) / (actual step), for the elements idx[0..nidx) of p, or all n
 * elements when idx is NULL. The actual step is the float difference (p_i + h) - (p_i - h), so
 * rounding of the perturbed parameter does not bias the quotient. p is restored bit-exactly.
 * Prints one summary line (and each failing entry, up to 8), counts a CHECK failure when more
 * than opts->max_fail entries fail, and returns the statistics. */
static TU_UNUSED tu_fd_report tu_fd_check(const char *what, float *p, const float *grad, size_t n,
                                          const size_t *idx, size_t nidx, tu_loss_fn f,
                                          void *ctx, const tu_fd_opts *o)
{
    tu_fd_report r;
    memset(&r, 0, sizeof r);
    const size_t m = idx ? nidx : n;
    double *err = malloc(sizeof(double) * (m ? m : 1));
    int printed = 0;
    for (size_t k = 0; k < m; k++) {
        const size_t i = idx ? idx[k] : k;
        const float p0 = p[i];
        const float pp = p0 + o->h, pm = p0 - o->h;
        p[i] = pp;
        const double fp = f(ctx);
        p[i] = pm;
        const double fm = f(ctx);
        p[i] = p0;
        const double num = (fp - fm) / ((double)pp - (double)pm);
        const double a = grad[i];
        r.a_dot_n += a * num, r.a_dot_a += a * a, r.n_dot_n += num * num;
        double e = fabs(a - num) / fmax(o->floor, fabs(a));
        if (isnan(e))
            e = INFINITY;
        err[k] = e;
        if (e > r.worst || k == 0) {
            r.worst = e;
            r.worst_index = i;
            r.worst_analytic = a;
            r.worst_numeric = num;
        }
        if (e > o->tol) {
            r.failed++;
            if (printed++ < 8)
                fprintf(stderr, "  %s[%zu]: analytic %.8g numeric %.8g (normalized error %.3g)\n",
                        what, i, a, num, e);
        }
    }
    r.checked = m;
    if (m) {
        qsort(err, m, sizeof *err, tu_cmp_double);
        r.median = err[m / 2];
        r.p90 = err[(size_t)(0.9 * (double)(m - 1))];
    }
    free(err);
    tu_fd_global_checked += m;
    if (r.worst > tu_fd_global_worst)
        tu_fd_global_worst = r.worst;
    const int bad = r.failed > o->max_fail;
    if (!o->quiet || bad || r.failed)
        printf("  fd %-40s n=%-5zu median %.2e p90 %.2e worst %.2e (at %zu: %.6g vs %.6g)%s\n",
               what, r.checked, r.median, r.p90, r.worst, r.worst_index, r.worst_analytic,
               r.worst_numeric, r.failed ? " <-- entries over tolerance" : "");
    tu_checks++;
    if (bad) {
        tu_failures++;
        fprintf(stderr, "%s: %zu of %zu finite-difference entries over tolerance %.3g "
                        "(allowed %zu)\n", what, r.failed, r.checked, o->tol, o->max_fail);
    }
    return r;
}

/* ---- whole-model finite differences (test_model_grad.c, test_norm_cond_grad.c) ---------- */

/* Fisher-Yates prefix: k distinct random picks out of cand[0..m). */
static TU_UNUSED void tu_pick(size_t *cand, size_t m, size_t k, uint64_t stream, size_t *out)
{
    for (size_t i = 0; i < k && i < m; i++) {
        size_t j = i + (size_t)(cg_rng_u64(TU_SEED, stream, i) % (m - i));
        size_t t = cand[i];
        cand[i] = cand[j], cand[j] = t;
        out[i] = cand[i];
    }
}

/* Entries (absolute indices, into out) to check in the tensor at grad[offset .. offset + n):
 * all of a small tensor (n <= n_random + n_nonzero), else n_random uniformly random ones and
 * n_nonzero random ones among the other entries with a non-zero analytic gradient (dead ReLUs
 * and dropped units make many exact zeros). Returns the count. */
static TU_UNUSED size_t tu_choose_entries(size_t offset, size_t n, const float *grad,
                                          size_t n_random, size_t n_nonzero, uint64_t stream,
                                          size_t *out)
{
    if (n <= n_random + n_nonzero) {
        for (size_t i = 0; i < n; i++)
            out[i] = offset + i;
        return n;
    }
    size_t *cand = malloc(sizeof(size_t) * n);
    for (size_t i = 0; i < n; i++)
        cand[i] = i;
    tu_pick(cand, n, n_random, stream, out);
    size_t k = n_random, m = 0;
    /* non-zero entries not already chosen */
    for (size_t i = 0; i < n; i++) {
        int taken = 0;
        for (size_t j = 0; j < n_random; j++)
            taken |= out[j] == i;
        if (!taken && grad[offset + i] != 0.0f)
            cand[m++] = i;
    }
    const size_t extra = m < n_nonzero ? m : n_nonzero;
    tu_pick(cand, m, extra, stream + 1, out + k);
    k += extra;
    for (size_t i = 0; i < k; i++)
        out[i] += offset;
    free(cand);
    return k;
}

/* The FD step is chosen per tensor from the measured rounding noise sigma of a loss
 * evaluation: h = TU_FD_NOISE_RATIO * sigma / RMS(checked analytic entries), clamped to
 * [TU_FD_H_MIN, TU_FD_H_MAX], so that the noise of the difference quotient (~ sigma / h) is
 * 1/TU_FD_NOISE_RATIO of the tensor's typical gradient, and no larger step than that is taken
 * (kinks grow with h). */
#define TU_FD_NOISE_RATIO 200.0
#define TU_FD_H_MIN 1e-5
#define TU_FD_H_MAX 3e-3

typedef struct {
    double tol;       /* per entry, normalized by max(|a|, floor_frac * tensor RMS, 1e-7) */
    double floor_frac;
    double cos_min;   /* per tensor: cosine(analytic, numeric) over the checked entries */
    double scale_tol; /* per tensor: |least-squares scale numeric/analytic - 1| */
} tu_fd_setting;

/* The GAN tests' whole-model criteria (see test_model_grad.c for how they were chosen):
 * entry tolerance 0.10 (D) / 0.25 (G) of max(|a|, 0.3 RMS), per tensor cosine >= 0.999 / 0.998
 * and least-squares scale within 2%; entries per tensor: all of small tensors, else
 * TU_FD_ENTRIES_RANDOM uniformly random + TU_FD_ENTRIES_NONZERO random non-zero ones. */
static const tu_fd_setting TU_FD_GAN_D TU_UNUSED = {0.10, 0.3, 0.999, 0.02};
static const tu_fd_setting TU_FD_GAN_G TU_UNUSED = {0.25, 0.3, 0.998, 0.02};
#define TU_FD_ENTRIES_RANDOM 28  /* per tensor, uniformly random */
#define TU_FD_ENTRIES_NONZERO 12 /* per tensor, random among the non-zero analytic entries */

/* Totals of a network's tensors. */
typedef struct {
    size_t entries, failed;
    double worst, worst_cos, worst_scale;
    int tensors;
} tu_fd_net_report;

static TU_UNUSED tu_fd_net_report tu_fd_net_report_new(void)
{
    tu_fd_net_report R = {0, 0, 0.0, 1.0, 0.0, 0};
    return R;
}

/* Entries over tolerance a network may have: 2% of its checked entries (kinks). */
static TU_UNUSED size_t tu_fd_net_allowed(const tu_fd_net_report *R) { return R->entries / 50; }

/* FD of the entries idx[0..k) of one tensor ("label.name") of a network's flat parameters
 * param[0..n_params) against analytic, with the step from sigma and the criteria fs: prints the
 * tu_fd_check line and the cosine and scale, checks cosine, scale and that some checked entry
 * is non-zero, and adds to R. Entry failures are judged per network (tu_fd_net_allowed), not
 * per tensor. */
static TU_UNUSED void tu_fd_tensor(const char *label, const char *name, float *param,
                                   const float *analytic, size_t n_params, const size_t *idx,
                                   size_t k, double sigma, const tu_fd_setting *fs, tu_loss_fn f,
                                   void *ctx, tu_fd_net_report *R)
{
    double ss = 0.0;
    size_t nonzero = 0;
    for (size_t i = 0; i < k; i++) {
        ss += (double)analytic[idx[i]] * analytic[idx[i]];
        nonzero += analytic[idx[i]] != 0.0f;
    }
    const double rms = sqrt(ss / (double)k);
    /* failures are judged per network, not per tensor: max_fail = k */
    const float h = (float)fmin(TU_FD_H_MAX, fmax(TU_FD_H_MIN, TU_FD_NOISE_RATIO * sigma / rms));
    tu_fd_opts o = {h, fs->tol, fmax(1e-7, fs->floor_frac * rms), k, 0};
    char what[112];
    snprintf(what, sizeof what, "%s.%s (rms %.2e, %zu/%zu nonzero, h %.1e)", label, name, rms,
             nonzero, k, (double)h);
    tu_fd_report r = tu_fd_check(what, param, analytic, n_params, idx, k, f, ctx, &o);
    const double cosv = tu_fd_cosine(&r), scale = tu_fd_scale(&r);
    printf("  %*s cosine %.6f, scale %.4f\n", 4, "", cosv, scale);
    CHECKF(nonzero > 0, "%s: every checked entry has a zero gradient", what);
    CHECKF(cosv >= fs->cos_min, "%s: cosine(analytic, numeric) %.5f < %.5f", what, cosv,
           fs->cos_min);
    /* The scale is a tensor-wide criterion: with fewer than 4 entries it is just the ratio of
     * single entries, which the per-entry tolerance judges (a lone output bias whose gradient
     * is a near-cancelling sum over every pixel has a large curvature, and its FD ratio moves
     * by several percent with the step the noise dictates). */
    if (k >= 4)
        CHECKF(fabs(scale - 1.0) <= fs->scale_tol, "%s: numeric = %.4f x analytic", what, scale);
    R->tensors++;
    R->entries += r.checked;
    R->failed += r.failed;
    R->worst = fmax(R->worst, r.worst);
    R->worst_cos = fmin(R->worst_cos, cosv);
    R->worst_scale = fmax(R->worst_scale, fabs(scale - 1.0));
}

#endif
