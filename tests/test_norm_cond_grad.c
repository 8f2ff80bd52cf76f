/* Gradient checks of the batch-normalization and conditional layers (nn.h) and of the
 * presets that use them, "dcgan" (batch norm in G), conditional "small" (labels at G's input,
 * projection output in D) and conditional "cdcgan" (also conditional batch norm in G).
 *
 * Layers, L = sum(y * r) in double, central finite differences through tu_fd_check:
 *
 *  - cg_bn_forward / cg_bn_backward, training mode, sync NULL, C = 3, both layouts: CBHW
 *    (B 3 and 4, 5x7: cs = B*H*W, es = 1) and flat [B][F] (B 5 and 3: cs = 1, es = F), channels with
 *    different means, scales, gammas (one negative) and betas. Forward, xhat, invstd and the
 *    momentum update of the running averages (momentum 0.1 and 0.25: running_mean = (1-m) old +
 *    m mean, running_var = (1-m) old + m unbiased variance) against double loops; dx against
 *    an independently derived Jacobian (dxhat_j/dx_k = is (d_jk - 1/n - xhat_j xhat_k / n)) in
 *    double; FD of every input element, gamma and beta; dgamma/dbeta accumulate on top of
 *    what was there, NULL skips them. r has a non-zero mean and a component along x, so both
 *    mean terms of the backward pass (mean(dxhat), xhat * mean(dxhat * xhat)) are O(1) and the
 *    FD tolerance (2e-3 of max(1, |a|), as test_layers) cannot pass without them.
 *  - Mutation self-test: a copy of cg_bn_backward in this file (first checked to agree with the
 *    library's) with one fault at a time -- mean(dxhat) term dropped, xhat * mean(dxhat * xhat)
 *    term dropped, invstd of the wrong channel, the local count instead of the synchronized one
 *    -- must FAIL the same checks (FD with the same step and tolerance, or the sync check).
 *  - Synchronized statistics: a batch of 2m samples split into halves A and B (and an uneven
 *    1 + rest split). A recording mock sync (stores the 2C+1 doubles it is given, adds nothing)
 *    captures each half's sums; a mock whose sum() adds the other half's recorded sums
 *    element-wise (what MPI_Allreduce does) then makes each half's forward equal the full batch
 *    run with sync NULL on its rows (y, xhat, invstd, running averages; 1e-5), and likewise the
 *    backward (dx of its rows; dgamma_A + dgamma_B = dgamma of the full batch, as the caller's
 *    gradient reduction adds them). sync {NULL, NULL} is the same as sync NULL (bit-exact).
 *  - Inference mode: the running averages are used (y = gamma (x - rm) / sqrt(rv + eps) + beta,
 *    invstd from rv), they are not updated, and sync is not called.
 *  - cg_project_forward / backward: y = h.(w + embed[label]) + b against double loops, with and
 *    without bias; dh overwritten, dw/db/dembed accumulate, only rows of labels present change
 *    (bit-exact), a repeated label adds both samples; FD of every element of h, w, b, embed.
 *  - cg_labels_forward / backward: exact copy and one-hot, exact backward, plus FD.
 *  - cg_cond_affine_forward / backward (conditional batch norm's per-class affine), CBHW
 *    (C 3, B 5, 3x4) and flat (F 5, B 6), 4 classes with one absent: forward against a naive
 *    class-major loop in double, in place and the identity at zero parameters bit-exact; dx
 *    and the dgamma / dbeta increments against double loops, the absent class's rows
 *    untouched, NULL skipping them; two calls on sample groups with the offsets of
 *    cg_net_backward give the batch's dx bit for bit and its sums; FD of every element of x,
 *    gamma and beta (a linear map: FD_LINEAR). Sensitivity, measured once on mutants of
 *    src/nn.c: dx not scaled by (1 + gamma) fails dx here (error 0.29) and the whole cdcgan
 *    G (dense0.kernel cosine 0.992, scale 1.19); dgamma += sum(g) instead of sum(g x) fails
 *    dgamma here (0.65) and cbn0.gamma in the whole model (entries off by 0.5-0.8).
 *
 * Whole models, like test_model_grad.c (its criteria and its per-tensor step from the measured
 * loss noise): "dcgan", and "small" and "cdcgan" with n_classes 5 (conditional batch norm's
 * tensors random in [-0.3, 0.3], their rows of absent classes checked like the embedding's),
 * global = local batch 4 (batch norm needs more than one sample), labels {4, 0, 2, 4} (classes 1 and 3 absent, class 4 twice), biases
 * and BN betas small random, gammas random in [0.6, 1.4] (so that a wrong channel index shows).
 * L_D w.r.t. every trainable D tensor, L_G w.r.t. every trainable G tensor (bn gamma/beta
 * included), a sample of entries per tensor. The loss is evaluated by forward passes only
 * (noise, labels, dropout keys and the BCE calls exactly as cg_gan_grads makes them; checked
 * to give its stats.loss_d / loss_g bit-exactly), with G's output fixed for L_D, which is what
 * keeps this test fast. BN running averages (trainable 0) are skipped: their gradient must be
 * exactly 0, the losses must not change when they are overwritten, and after the FD every
 * other parameter must be bit-identical. Embedding rows of absent classes, and the rows of G's
 * first kernel that the absent classes' one-hot inputs feed, must have exactly zero gradient
 * (two entries of every class row, present or absent, are in the FD sample too).
 * Entries per tensor: all of small tensors (<= 40), else 28 random + 12 random non-zero ones.
 * Criteria as test_model_grad.c: entry tolerance 0.10 (D) / 0.25 (G) of max(|a|, 0.3 RMS), at
 * most 2% of a network's entries over it (ReLU/LeakyReLU kinks: the few entries over were
 * checked by scanning h, e.g. a dead unit of D's dense0.bias whose numeric value is exactly 0
 * for h <= 3e-6 and half a slope at 1e-5), per tensor cosine >= 0.999 / 0.998 and least-squares
 * scale within 2%. Sensitivity, measured once by linking this test against a mutated copy of
 * src/nn.c (outside src/): dropping BN's mean(dxhat) term gives dcgan G.dense0.kernel cosine
 * 0.76 and scale 0.61 (60 entries over); dropping the xhat * mean(dxhat * xhat) term cosine
 * 0.63 (40 over); dgamma += sum(g) instead of sum(g * xhat) bn1.gamma cosine 0.95, scale 0.75;
 * dembed into the row of the next class: embed worst error 5.2; dh without the embedding term:
 * D's tensors cosine 0.65..0.84. Every one also fails the layer checks above.
 *
 * One thread throughout (tiny problems; threads only add synchronization). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/gan.h"
#include "chargan/model.h"
#include "chargan/nn.h"
#include "chargan/rng.h"
#include "chargan/util.h"
#include "testutil.h"

#define FD_TOL 2e-3    /* layer FDs: |a - num| <= FD_TOL * max(1, |a|), as test_layers */
#define EXACT_TOL 1e-5 /* against double loops: relative to 1 + max |ref| */
#define SYNC_TOL 1e-5  /* half batch with synchronized statistics vs full batch */
#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

static const tu_fd_opts FD_LINEAR = {1e-2f, FD_TOL, 1.0, 0, 1};
/* BN is smooth, so the step trades truncation (~h^2 f''' / 6, large at small n, where one input
 * moves its channel's statistics a lot) against rounding noise (the float loss carries ~1e-6:
 * sums over ~400 outputs, the rounded mean and invstd; quotient noise ~1e-6 / 2h). Worst
 * normalized error of dx measured at h = 1e-3, 2e-3, 3e-3, 1e-2, 3e-2: CBHW n = 105: 3.2e-3,
 * 1.6e-3, 8e-4, 3e-4, 1.9e-4 (noise-bound); flat n = 3: 1.5e-4, 5.8e-5, 3.8e-4, 4.0e-3, 3.5e-2
 * (truncation-bound). Hence h = 2e-2 for n >= 50 and 2e-3 below. */
static tu_fd_opts bn_fd_opts(size_t n)
{
    tu_fd_opts o = {n >= 50 ? 2e-2f : 2e-3f, FD_TOL, 1.0, 0, 0};
    return o;
}

static double worst_bn_fd, worst_proj_fd, worst_labels_fd, worst_cond_fd, worst_exact,
    worst_sync;

static void note(double *worst, double v)
{
    if (v > *worst)
        *worst = v;
}

/* tu_err_vs_ref, noted in worst_exact. */
static double err_vs_ref(const float *a, const double *ref, size_t n)
{
    return tu_err_vs_ref(a, ref, n, &worst_exact);
}

/* The numeric gradient exactly as tu_fd_check computes it, kept, and the number of entries of
 * an analytic gradient that tu_fd_check's criterion would reject against it. Used for the
 * mutants, which are expected to fail (tu_fd_check would report them as test failures). */
static void fd_numeric(float *p, size_t n, float h, tu_loss_fn f, void *ctx, double *num)
{
    for (size_t i = 0; i < n; i++) {
        const float p0 = p[i], pp = p0 + h, pm = p0 - h;
        p[i] = pp;
        const double fp = f(ctx);
        p[i] = pm;
        const double fm = f(ctx);
        p[i] = p0;
        num[i] = (fp - fm) / ((double)pp - (double)pm);
    }
}

static size_t fd_rejected(const float *a, const double *num, size_t n, const tu_fd_opts *o)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - num[i]) / fmax(o->floor, fabs(a[i]));
        bad += !(e <= o->tol);
    }
    return bad;
}

/* ======================================================================================== */
/* Batch normalization */

/* A batch-norm layout: CBHW [C][B][H][W], or flat [B][C] (H = W = 1). */
typedef struct {
    int flat;
    int C, H, W;
} bn_layout;

static size_t bn_total(const bn_layout *L, int B) { return (size_t)L->C * B * L->H * L->W; }

static void bn_view_of(const bn_layout *L, int B, size_t *n, size_t *cs, size_t *es)
{
    if (L->flat) {
        *n = (size_t)B, *cs = 1, *es = (size_t)L->C;
    } else {
        *n = (size_t)B * L->H * L->W, *cs = *n, *es = 1;
    }
}

/* Index of pixel p of sample b in channel c. */
static size_t bn_index(const bn_layout *L, int B, int c, int b, int p)
{
    return L->flat ? (size_t)b * L->C + c : ((size_t)c * B + b) * L->H * L->W + p;
}

/* Samples [b0, b0 + nb) of a batch of B, as a batch of their own. */
static void bn_take(const bn_layout *L, int B, const float *full, int b0, int nb, float *out)
{
    const int hw = L->H * L->W;
    for (int c = 0; c < L->C; c++)
        for (int b = 0; b < nb; b++)
            for (int p = 0; p < hw; p++)
                out[bn_index(L, nb, c, b, p)] = full[bn_index(L, B, c, b0 + b, p)];
}

/* Channel c's elements: mu_c + s_c * u, u uniform in [-1, 1). */
static const float BN_MU[3] = {0.4f, -1.1f, 2.0f}, BN_S[3] = {0.7f, 1.3f, 0.4f};
static const float BN_GAMMA[3] = {1.3f, -0.7f, 0.6f}, BN_BETA[3] = {0.2f, -0.4f, 0.9f};

static void bn_fill(const bn_layout *L, int B, float *x, float *r, uint64_t stream)
{
    const int hw = L->H * L->W;
    for (int c = 0; c < L->C; c++)
        for (int b = 0; b < B; b++)
            for (int p = 0; p < hw; p++) {
                const size_t i = bn_index(L, B, c, b, p);
                const float u = 2.0f * cg_rng_uniform(TU_SEED, stream, i) - 1.0f;
                x[i] = BN_MU[c % 3] + BN_S[c % 3] * u;
                if (r) /* mean 0.5 and a part along x: both mean terms of dx matter */
                    r[i] = 2.0f * cg_rng_uniform(TU_SEED, stream + 1, i) - 1.0f + 0.5f + 0.8f * u;
            }
}

typedef struct {
    bn_layout L;
    int B;
    size_t n, cs, es, total;
    float *x, *y, *xhat, *invstd, *gamma, *beta, *rm, *rv, *r;
    double *scratch;
    const cg_sync *sync;
    float momentum;
} bn_ctx;

static void bn_run(bn_ctx *c, int training)
{
    memcpy(c->y, c->x, sizeof(float) * c->total);
    cg_bn_forward(c->L.C, c->n, c->cs, c->es, c->y, c->xhat, c->invstd, c->gamma, c->beta, c->rm,
                  c->rv, c->momentum, BN_EPS, training, c->sync, c->scratch);
}

static double bn_loss(void *p)
{
    bn_ctx *c = p;
    bn_run(c, 1); /* moves the running averages, which training outputs do not depend on */
    return tu_dot(c->y, c->r, c->total);
}

static bn_ctx bn_ctx_new(const bn_layout *L, int B, uint64_t stream)
{
    bn_ctx c;
    memset(&c, 0, sizeof c);
    c.L = *L;
    c.B = B;
    bn_view_of(L, B, &c.n, &c.cs, &c.es);
    c.total = bn_total(L, B);
    c.x = tu_falloc(c.total), c.y = tu_falloc(c.total), c.xhat = tu_falloc(c.total);
    c.r = tu_falloc(c.total);
    c.invstd = tu_falloc(L->C), c.gamma = tu_falloc(L->C), c.beta = tu_falloc(L->C);
    c.rm = tu_falloc(L->C), c.rv = tu_falloc(L->C);
    c.scratch = calloc(2 * (size_t)L->C + 1, sizeof(double));
    bn_fill(L, B, c.x, c.r, stream);
    for (int k = 0; k < L->C; k++) {
        c.gamma[k] = BN_GAMMA[k % 3], c.beta[k] = BN_BETA[k % 3];
        c.rm[k] = 0.1f * (float)k - 0.2f, c.rv[k] = 0.5f + 0.3f * (float)k;
    }
    c.momentum = BN_MOMENTUM;
    return c;
}

static void bn_ctx_free(bn_ctx *c)
{
    free(c->x), free(c->y), free(c->xhat), free(c->r), free(c->invstd), free(c->gamma);
    free(c->beta), free(c->rm), free(c->rv), free(c->scratch);
}

/* Mock of the rank reduction. Recording: stores the buffer it is given and adds nothing (a
 * rank alone). Adding: adds a buffer recorded before, element-wise (the other ranks' part of an
 * MPI_Allreduce sum). */
#define MOCK_MAX 17
typedef struct {
    int add;
    double buf[MOCK_MAX];
    int n, calls, bad_n;
} mock_sync;

static void mock_sum(void *user, double *buf, int n)
{
    mock_sync *m = user;
    m->calls++;
    if (n < 1 || n > MOCK_MAX) {
        m->bad_n = 1;
        return;
    }
    if (!m->add) {
        m->n = n;
        memcpy(m->buf, buf, sizeof(double) * (size_t)n);
    } else {
        if (n != m->n)
            m->bad_n = 1;
        for (int i = 0; i < n && i < m->n; i++)
            buf[i] += m->buf[i];
    }
}

static mock_sync mock_adder(const mock_sync *recorded)
{
    mock_sync m = *recorded;
    m.add = 1, m.calls = 0;
    return m;
}

/* Faults for the mutation self-test. */
enum { MUT_NONE, MUT_NO_MEAN_DXH, MUT_NO_XHAT_TERM, MUT_WRONG_CHANNEL, MUT_LOCAL_COUNT, N_MUT };
static const char *MUT_NAME[N_MUT] = {"none", "mean(dxhat) term dropped",
                                      "xhat*mean(dxhat*xhat) term dropped",
                                      "invstd of the wrong channel", "local count"};

/* A copy of cg_bn_backward (src/nn.c) with an optional fault. MUT_NONE must agree with the
 * library (checked), so that the faults are faults of the real code. */
static void bn_backward_copy(int mut, int C, size_t n, size_t cs, size_t es, float *g,
                             const float *xhat, const float *invstd, const float *gamma,
                             float *dgamma, float *dbeta, const cg_sync *sync, double *scratch)
{
    double *sa = scratch, *sb = scratch + C, *count = scratch + 2 * C;
    for (int c = 0; c < C; c++) {
        const float *gc = g + (size_t)c * cs, *xc = xhat + (size_t)c * cs;
        double a = 0.0, b = 0.0;
        for (size_t j = 0; j < n; j++) {
            a += gc[j * es];
            b += (double)gc[j * es] * xc[j * es];
        }
        if (dbeta)
            dbeta[c] += (float)a;
        if (dgamma)
            dgamma[c] += (float)b;
        sa[c] = a, sb[c] = b;
    }
    *count = (double)n;
    if (sync && sync->sum)
        sync->sum(sync->user, scratch, 2 * C + 1);
    for (int c = 0; c < C; c++) {
        const double N = mut == MUT_LOCAL_COUNT ? (double)n : *count;
        float ma = (float)(sa[c] / N), mb = (float)(sb[c] / N);
        if (mut == MUT_NO_MEAN_DXH)
            ma = 0.0f;
        if (mut == MUT_NO_XHAT_TERM)
            mb = 0.0f;
        const float gm = gamma[c], is = invstd[mut == MUT_WRONG_CHANNEL ? (c + 1) % C : c];
        float *gc = g + (size_t)c * cs;
        const float *xc = xhat + (size_t)c * cs;
        for (size_t j = 0; j < n; j++)
            gc[j * es] = gm * is * (gc[j * es] - ma - xc[j * es] * mb);
    }
}

/* Double reference: forward (two-pass biased variance), running-average update, and the input
 * gradient from the explicit Jacobian dxhat_j/dx_k = is (d_jk - 1/n - xhat_j xhat_k / n). */
static void bn_reference(const bn_ctx *c, const float *rm0, const float *rv0, double *y,
                         double *xhat, double *invstd, double *rm, double *rv, double *dx,
                         double *dgamma, double *dbeta)
{
    const size_t n = c->n;
    double *xh = malloc(sizeof(double) * n), *rr = malloc(sizeof(double) * n);
    for (int ch = 0; ch < c->L.C; ch++) {
        const float *xc = c->x + (size_t)ch * c->cs, *rc = c->r + (size_t)ch * c->cs;
        double mean = 0.0, var = 0.0;
        for (size_t j = 0; j < n; j++)
            mean += xc[j * c->es];
        mean /= (double)n;
        for (size_t j = 0; j < n; j++)
            var += ((double)xc[j * c->es] - mean) * ((double)xc[j * c->es] - mean);
        const double var_unbiased = var / (double)(n - 1);
        var /= (double)n;
        const double is = 1.0 / sqrt(var + (double)BN_EPS);
        const double m = c->momentum;
        invstd[ch] = is;
        rm[ch] = (1.0 - m) * rm0[ch] + m * mean;
        rv[ch] = (1.0 - m) * rv0[ch] + m * var_unbiased;
        dgamma[ch] = dbeta[ch] = 0.0;
        for (size_t j = 0; j < n; j++) {
            const size_t at = (size_t)ch * c->cs + j * c->es;
            xh[j] = ((double)xc[j * c->es] - mean) * is;
            rr[j] = rc[j * c->es];
            xhat[at] = xh[j];
            y[at] = c->gamma[ch] * xh[j] + c->beta[ch];
            dgamma[ch] += rr[j] * xh[j];
            dbeta[ch] += rr[j];
        }
        for (size_t k = 0; k < n; k++) {
            double s = 0.0;
            for (size_t j = 0; j < n; j++)
                s += rr[j] * is * ((j == k) - 1.0 / (double)n - xh[j] * xh[k] / (double)n);
            dx[(size_t)ch * c->cs + k * c->es] = c->gamma[ch] * s;
        }
    }
    free(xh), free(rr);
}

static void test_bn_case(const bn_layout *L, int B, float momentum, uint64_t stream)
{
    bn_ctx c = bn_ctx_new(L, B, stream);
    c.momentum = momentum;
    const int C = L->C;
    char tag[96];
    snprintf(tag, sizeof tag, "bn %s C%d B%d %dx%d m%.2f", L->flat ? "flat" : "CBHW", C, B, L->H,
             L->W, (double)momentum);
    const size_t T = c.total;
    double *y_ref = malloc(sizeof(double) * T), *xh_ref = malloc(sizeof(double) * T);
    double *dx_ref = malloc(sizeof(double) * T), *is_ref = malloc(sizeof(double) * C);
    double *rm_ref = malloc(sizeof(double) * C), *rv_ref = malloc(sizeof(double) * C);
    double *dg_ref = malloc(sizeof(double) * C), *db_ref = malloc(sizeof(double) * C);
    float *rm0 = tu_fdup(c.rm, C), *rv0 = tu_fdup(c.rv, C);
    bn_reference(&c, rm0, rv0, y_ref, xh_ref, is_ref, rm_ref, rv_ref, dx_ref, dg_ref, db_ref);

    /* forward, training, sync NULL */
    bn_run(&c, 1);
    double e;
    CHECKF((e = err_vs_ref(c.y, y_ref, T)) <= EXACT_TOL, "%s: y vs double %.3g", tag, e);
    CHECKF((e = err_vs_ref(c.xhat, xh_ref, T)) <= EXACT_TOL, "%s: xhat vs double %.3g", tag, e);
    CHECKF((e = err_vs_ref(c.invstd, is_ref, C)) <= EXACT_TOL, "%s: invstd vs double %.3g", tag,
           e);
    /* running averages: (1 - m) old + m batch, unbiased variance; tight (one float rounding) */
    for (int k = 0; k < C; k++) {
        CHECKF(fabs(c.rm[k] - rm_ref[k]) <= 1e-6 * (1.0 + fabs(rm_ref[k])),
               "%s: running_mean[%d] %.9g, expected %.9g", tag, k, c.rm[k], rm_ref[k]);
        CHECKF(fabs(c.rv[k] - rv_ref[k]) <= 1e-6 * (1.0 + fabs(rv_ref[k])),
               "%s: running_var[%d] %.9g, expected %.9g (unbiased)", tag, k, c.rv[k], rv_ref[k]);
    }
    /* sync {NULL, NULL} (the net's default) is a single process: bit-identical */
    {
        float *y1 = tu_fdup(c.y, T);
        memcpy(c.rm, rm0, sizeof(float) * C), memcpy(c.rv, rv0, sizeof(float) * C);
        const cg_sync none = {.sum = NULL, .user = NULL};
        c.sync = &none;
        bn_run(&c, 1);
        c.sync = NULL;
        CHECKF(memcmp(y1, c.y, sizeof(float) * T) == 0, "%s: sync {NULL} != sync NULL", tag);
        free(y1);
    }

    /* backward: dx against the Jacobian; dgamma/dbeta accumulate on D0 */
    float *dx = tu_fdup(c.r, T), *dg = tu_falloc(C), *db = tu_falloc(C);
    tu_fill_uniform(dg, C, -1.0f, 1.0f, stream + 7);
    tu_fill_uniform(db, C, -1.0f, 1.0f, stream + 8);
    float *dg0 = tu_fdup(dg, C), *db0 = tu_fdup(db, C);
    cg_bn_backward(C, c.n, c.cs, c.es, dx, c.xhat, c.invstd, c.gamma, dg, db, NULL, c.scratch);
    CHECKF(tu_all_finite(dx, T), "%s: dx not finite", tag);
    CHECKF((e = err_vs_ref(dx, dx_ref, T)) <= EXACT_TOL, "%s: dx vs Jacobian %.3g", tag, e);
    float *dgi = tu_falloc(C), *dbi = tu_falloc(C); /* the increments */
    for (int k = 0; k < C; k++)
        dgi[k] = dg[k] - dg0[k], dbi[k] = db[k] - db0[k];
    CHECKF((e = err_vs_ref(dgi, dg_ref, C)) <= EXACT_TOL, "%s: dgamma increment %.3g", tag, e);
    CHECKF((e = err_vs_ref(dbi, db_ref, C)) <= EXACT_TOL, "%s: dbeta increment %.3g", tag, e);
    /* NULL dgamma/dbeta: skipped, dx the same */
    float *dx2 = tu_fdup(c.r, T);
    cg_bn_backward(C, c.n, c.cs, c.es, dx2, c.xhat, c.invstd, c.gamma, NULL, NULL, NULL,
                   c.scratch);
    CHECKF(memcmp(dx2, dx, sizeof(float) * T) == 0, "%s: dx without dgamma/dbeta differs", tag);
    /* a second call adds the same again */
    memcpy(dx2, c.r, sizeof(float) * T);
    cg_bn_backward(C, c.n, c.cs, c.es, dx2, c.xhat, c.invstd, c.gamma, dg, db, NULL, c.scratch);
    for (int k = 0; k < C; k++) {
        CHECK_NEAR(dg[k], dg0[k] + 2.0 * dg_ref[k], 1e-5 * (1.0 + fabs(dg_ref[k])));
        CHECK_NEAR(db[k], db0[k] + 2.0 * db_ref[k], 1e-5 * (1.0 + fabs(db_ref[k])));
    }

    /* finite differences: every input element, gamma, beta */
    char what[160];
    const tu_fd_opts FD_BN = bn_fd_opts(c.n);
    snprintf(what, sizeof what, "%s dx", tag);
    note(&worst_bn_fd, tu_fd_check(what, c.x, dx, T, NULL, 0, bn_loss, &c, &FD_BN).worst);
    snprintf(what, sizeof what, "%s dgamma", tag);
    note(&worst_bn_fd, tu_fd_check(what, c.gamma, dgi, C, NULL, 0, bn_loss, &c, &FD_BN).worst);
    snprintf(what, sizeof what, "%s dbeta", tag);
    note(&worst_bn_fd, tu_fd_check(what, c.beta, dbi, C, NULL, 0, bn_loss, &c, &FD_BN).worst);

    /* mutation self-test: the copy agrees with the library, each fault is caught by the FD */
    {
        bn_run(&c, 1); /* xhat, invstd of the unperturbed input */
        double *num = malloc(sizeof(double) * T);
        fd_numeric(c.x, T, FD_BN.h, bn_loss, &c, num);
        bn_run(&c, 1);
        float *dm = tu_falloc(T);
        for (int m = MUT_NONE; m <= MUT_WRONG_CHANNEL; m++) {
            memcpy(dm, c.r, sizeof(float) * T);
            bn_backward_copy(m, C, c.n, c.cs, c.es, dm, c.xhat, c.invstd, c.gamma, NULL, NULL,
                             NULL, c.scratch);
            const size_t rejected = fd_rejected(dm, num, T, &FD_BN);
            if (m == MUT_NONE) {
                CHECKF(tu_max_rel_diff(dm, dx, T) <= 1e-6,
                       "%s: the copy of cg_bn_backward disagrees with the library (%.3g): "
                       "update bn_backward_copy", tag, tu_max_rel_diff(dm, dx, T));
                CHECKF(rejected == 0, "%s: unmutated copy rejected at %zu entries", tag,
                       rejected);
            } else {
                printf("  mutant '%s': %zu of %zu dx entries rejected by the FD check\n",
                       MUT_NAME[m], rejected, T);
                CHECKF(rejected > T / 4, "%s: mutant '%s' passes the FD check (%zu rejected)",
                       tag, MUT_NAME[m], rejected);
            }
        }
        free(num), free(dm);
    }

    /* inference: running averages used, not updated, no sync call */
    {
        float *rm = tu_fdup(c.rm, C), *rv = tu_fdup(c.rv, C);
        mock_sync counter;
        memset(&counter, 0, sizeof counter);
        const cg_sync sc = {.sum = mock_sum, .user = &counter};
        c.sync = &sc;
        bn_run(&c, 0);
        c.sync = NULL;
        CHECKF(counter.calls == 0, "%s: inference called sync %d times", tag, counter.calls);
        CHECKF(memcmp(rm, c.rm, sizeof(float) * C) == 0 && memcmp(rv, c.rv, sizeof(float) * C) == 0,
               "%s: inference moved the running averages", tag);
        double *yi = malloc(sizeof(double) * T);
        int bad = 0;
        for (int ch = 0; ch < C; ch++) {
            const double is = 1.0 / sqrt((double)rv[ch] + (double)BN_EPS);
            bad += fabs(c.invstd[ch] - is) > 1e-6 * is;
            for (size_t j = 0; j < c.n; j++) {
                const size_t at = (size_t)ch * c.cs + j * c.es;
                const double xh = ((double)c.x[at] - rm[ch]) * is;
                yi[at] = c.gamma[ch] * xh + c.beta[ch];
                bad += fabs(c.xhat[at] - xh) > 1e-5 * (1.0 + fabs(xh));
            }
        }
        CHECKF(bad == 0, "%s: inference xhat/invstd: %d entries wrong", tag, bad);
        CHECKF((e = err_vs_ref(c.y, yi, T)) <= EXACT_TOL, "%s: inference y %.3g", tag, e);
        free(yi), free(rm), free(rv);
    }

    free(y_ref), free(xh_ref), free(dx_ref), free(is_ref), free(rm_ref), free(rv_ref);
    free(dg_ref), free(db_ref), free(rm0), free(rv0), free(dx), free(dg), free(db), free(dg0);
    free(db0), free(dgi), free(dbi), free(dx2);
    bn_ctx_free(&c);
}

/* Synchronized statistics: halves [0, split) and [split, Bt) of a batch, each run as one rank
 * whose sync adds the other's recorded sums, against the whole batch run with sync NULL. */
static void test_bn_sync(const bn_layout *L, int Bt, int split, uint64_t stream)
{
    const int C = L->C;
    const int nb[2] = {split, Bt - split}, b0[2] = {0, split};
    char tag[96];
    snprintf(tag, sizeof tag, "bn sync %s C%d B%d %dx%d split %d+%d", L->flat ? "flat" : "CBHW",
             C, Bt, L->H, L->W, nb[0], nb[1]);
    bn_ctx full = bn_ctx_new(L, Bt, stream);
    bn_ctx h[2];
    for (int k = 0; k < 2; k++) {
        h[k] = bn_ctx_new(L, nb[k], stream);
        bn_take(L, Bt, full.x, b0[k], nb[k], h[k].x);
        bn_take(L, Bt, full.r, b0[k], nb[k], h[k].r);
    }
    float *rm0 = tu_fdup(full.rm, C), *rv0 = tu_fdup(full.rv, C);
    /* the whole batch, one process */
    bn_run(&full, 1);
    float *dx_full = tu_fdup(full.r, full.total), *dg_full = tu_falloc(C), *db_full = tu_falloc(C);
    cg_bn_backward(C, full.n, full.cs, full.es, dx_full, full.xhat, full.invstd, full.gamma,
                   dg_full, db_full, NULL, full.scratch);

    /* 1. each half alone, recording its sums */
    mock_sync rec[2];
    for (int k = 0; k < 2; k++) {
        memset(&rec[k], 0, sizeof rec[k]);
        const cg_sync s = {.sum = mock_sum, .user = &rec[k]};
        h[k].sync = &s;
        bn_run(&h[k], 1);
        h[k].sync = NULL;
        memcpy(h[k].rm, rm0, sizeof(float) * C), memcpy(h[k].rv, rv0, sizeof(float) * C);
        CHECKF(rec[k].calls == 1 && !rec[k].bad_n && rec[k].n == 2 * C + 1,
               "%s: forward sync called %d times with n = %d (expected once, 2C+1 = %d)", tag,
               rec[k].calls, rec[k].n, 2 * C + 1);
    }
    /* 2. each half with the other's sums added: the global batch's statistics */
    double e;
    for (int k = 0; k < 2; k++) {
        mock_sync add = mock_adder(&rec[1 - k]);
        const cg_sync s = {.sum = mock_sum, .user = &add};
        h[k].sync = &s;
        bn_run(&h[k], 1);
        h[k].sync = NULL;
        CHECK(add.calls == 1 && !add.bad_n);
        float *want = tu_falloc(h[k].total);
        bn_take(L, Bt, full.y, b0[k], nb[k], want);
        CHECKF((e = tu_max_rel_diff(h[k].y, want, h[k].total)) <= SYNC_TOL,
               "%s: half %d y differs from the full batch's rows by %.3g", tag, k, e);
        note(&worst_sync, e);
        bn_take(L, Bt, full.xhat, b0[k], nb[k], want);
        CHECKF((e = tu_max_rel_diff(h[k].xhat, want, h[k].total)) <= SYNC_TOL,
               "%s: half %d xhat differs by %.3g", tag, k, e);
        note(&worst_sync, e);
        CHECKF((e = tu_max_rel_diff(h[k].invstd, full.invstd, C)) <= SYNC_TOL,
               "%s: half %d invstd differs by %.3g", tag, k, e);
        note(&worst_sync, e);
        CHECKF((e = fmax(tu_max_rel_diff(h[k].rm, full.rm, C),
                         tu_max_rel_diff(h[k].rv, full.rv, C))) <= SYNC_TOL,
               "%s: half %d running averages differ by %.3g", tag, k, e);
        note(&worst_sync, e);
        free(want);
    }
    /* 3. backward: record each half's sums, then add the other's */
    mock_sync brec[2];
    for (int k = 0; k < 2; k++) {
        memset(&brec[k], 0, sizeof brec[k]);
        const cg_sync s = {.sum = mock_sum, .user = &brec[k]};
        float *g = tu_fdup(h[k].r, h[k].total);
        cg_bn_backward(C, h[k].n, h[k].cs, h[k].es, g, h[k].xhat, h[k].invstd, h[k].gamma, NULL,
                       NULL, &s, h[k].scratch);
        CHECKF(brec[k].calls == 1 && !brec[k].bad_n && brec[k].n == 2 * C + 1,
               "%s: backward sync called %d times with n = %d", tag, brec[k].calls, brec[k].n);
        free(g);
    }
    float *dg_sum = tu_falloc(C), *db_sum = tu_falloc(C);
    for (int k = 0; k < 2; k++) {
        float *want = tu_falloc(h[k].total);
        bn_take(L, Bt, dx_full, b0[k], nb[k], want);
        /* -1: the library; MUT_LOCAL_COUNT: the copy dividing by the local count */
        static const int variants[2] = {-1, MUT_LOCAL_COUNT};
        for (int v = 0; v < 2; v++) {
            const int m = variants[v];
            mock_sync add = mock_adder(&brec[1 - k]);
            const cg_sync s = {.sum = mock_sum, .user = &add};
            float *g = tu_fdup(h[k].r, h[k].total);
            if (m < 0)
                cg_bn_backward(C, h[k].n, h[k].cs, h[k].es, g, h[k].xhat, h[k].invstd,
                               h[k].gamma, dg_sum, db_sum, &s, h[k].scratch);
            else
                bn_backward_copy(m, C, h[k].n, h[k].cs, h[k].es, g, h[k].xhat, h[k].invstd,
                                 h[k].gamma, NULL, NULL, &s, h[k].scratch);
            e = tu_max_rel_diff(g, want, h[k].total);
            if (m < 0) {
                CHECK(add.calls == 1 && !add.bad_n);
                CHECKF(e <= SYNC_TOL, "%s: half %d dx differs from the full batch's rows by "
                       "%.3g", tag, k, e);
                note(&worst_sync, e);
            } else {
                printf("  mutant '%s': half %d dx off by %.3g\n", MUT_NAME[m], k, e);
                CHECKF(e > 100 * SYNC_TOL, "%s: mutant '%s' passes the sync check (%.3g)", tag,
                       MUT_NAME[m], e);
            }
            free(g);
        }
        free(want);
    }
    /* each rank accumulates its local part; the gradient reduction adds them */
    CHECKF((e = fmax(tu_max_rel_diff(dg_sum, dg_full, C), tu_max_rel_diff(db_sum, db_full, C))) <=
               SYNC_TOL, "%s: dgamma/dbeta of the halves do not add up to the full batch's (%.3g)",
           tag, e);
    note(&worst_sync, e);
    printf("  %s: halves match the full batch (forward, running averages, backward)\n", tag);
    free(rm0), free(rv0), free(dx_full), free(dg_full), free(db_full), free(dg_sum), free(db_sum);
    bn_ctx_free(&full), bn_ctx_free(&h[0]), bn_ctx_free(&h[1]);
}

static void test_bn(void)
{
    const bn_layout cbhw = {0, 3, 5, 7}, flat = {1, 3, 1, 1};
    test_bn_case(&cbhw, 3, BN_MOMENTUM, 100);
    test_bn_case(&flat, 5, BN_MOMENTUM, 200);
    test_bn_case(&flat, 3, 0.25f, 300);
    test_bn_case(&cbhw, 4, 0.25f, 400);
    test_bn_sync(&cbhw, 4, 2, 500);
    test_bn_sync(&flat, 6, 3, 600);
    test_bn_sync(&cbhw, 3, 1, 700); /* uneven: the counts are summed too */
    test_bn_sync(&flat, 5, 2, 800);
}

/* ======================================================================================== */
/* Projection output */

typedef struct {
    int B, F, K;
    float *h, *w, *b, *e, *y, *r;
    const int32_t *labels;
} proj_ctx;

static double proj_loss(void *p)
{
    proj_ctx *c = p;
    cg_project_forward(c->B, c->F, c->h, c->w, c->b, c->e, c->labels, c->y);
    return tu_dot(c->y, c->r, (size_t)c->B);
}

static void test_project(void)
{
    enum { B = 5, F = 7, K = 4 };
    static const int32_t labels[B] = {2, 0, 2, 3, 0}; /* class 1 absent, 0 and 2 twice */
    proj_ctx c = {B, F, K, tu_falloc(B * F), tu_falloc(F), tu_falloc(1), tu_falloc(K * F),
                  tu_falloc(B), tu_falloc(B), labels};
    tu_fill_uniform(c.h, B * F, -1.0f, 1.0f, 9000);
    tu_fill_uniform(c.w, F, -1.0f, 1.0f, 9001);
    tu_fill_uniform(c.b, 1, -1.0f, 1.0f, 9002);
    tu_fill_uniform(c.e, K * F, -1.0f, 1.0f, 9003);
    tu_fill_uniform(c.r, B, -1.0f, 1.0f, 9004);
    double y_ref[B], dh_ref[B * F], dw_ref[F] = {0}, db_ref[1] = {0}, de_ref[K * F] = {0};
    for (int i = 0; i < B; i++) {
        double s = c.b[0];
        for (int f = 0; f < F; f++) {
            const double we = (double)c.w[f] + c.e[labels[i] * F + f];
            s += (double)c.h[i * F + f] * we;
            dh_ref[i * F + f] = c.r[i] * we;
            dw_ref[f] += (double)c.r[i] * c.h[i * F + f];
            de_ref[labels[i] * F + f] += (double)c.r[i] * c.h[i * F + f];
        }
        y_ref[i] = s;
        db_ref[0] += c.r[i];
    }
    double e;
    proj_loss(&c);
    CHECKF((e = err_vs_ref(c.y, y_ref, B)) <= EXACT_TOL, "project forward vs double %.3g", e);
    float ynb[B];
    cg_project_forward(B, F, c.h, c.w, NULL, c.e, labels, ynb);
    int bad = 0;
    for (int i = 0; i < B; i++)
        bad += fabs(ynb[i] - (y_ref[i] - c.b[0])) > 1e-5;
    CHECKF(bad == 0, "project forward without bias: %d wrong", bad);

    /* backward: dh overwritten, dw/db/dembed accumulate on D0 */
    float *dh = tu_falloc(B * F), *dw = tu_falloc(F), *db = tu_falloc(1), *de = tu_falloc(K * F);
    for (int i = 0; i < B * F; i++)
        dh[i] = NAN;
    tu_fill_uniform(dw, F, -1.0f, 1.0f, 9010);
    tu_fill_uniform(db, 1, -1.0f, 1.0f, 9011);
    tu_fill_uniform(de, K * F, -1.0f, 1.0f, 9012);
    float *dw0 = tu_fdup(dw, F), *db0 = tu_fdup(db, 1), *de0 = tu_fdup(de, K * F);
    float *r0 = tu_fdup(c.r, B);
    cg_project_backward(B, F, c.h, c.w, c.e, labels, c.r, dw, db, de, dh);
    CHECK(memcmp(r0, c.r, sizeof(float) * B) == 0);
    CHECKF(tu_all_finite(dh, B * F), "project: dh not overwritten");
    CHECKF((e = err_vs_ref(dh, dh_ref, B * F)) <= EXACT_TOL, "project dh vs double %.3g", e);
    float dwi[F], dbi[1], dei[K * F];
    for (int f = 0; f < F; f++)
        dwi[f] = dw[f] - dw0[f];
    dbi[0] = db[0] - db0[0];
    for (int i = 0; i < K * F; i++)
        dei[i] = de[i] - de0[i];
    CHECKF((e = err_vs_ref(dwi, dw_ref, F)) <= EXACT_TOL, "project dw increment %.3g", e);
    CHECKF((e = err_vs_ref(dbi, db_ref, 1)) <= EXACT_TOL, "project db increment %.3g", e);
    CHECKF((e = err_vs_ref(dei, de_ref, K * F)) <= EXACT_TOL, "project dembed increment %.3g", e);
    /* only rows of labels present change; the absent class's row is untouched bit for bit */
    CHECKF(memcmp(de + 1 * F, de0 + 1 * F, sizeof(float) * F) == 0,
           "project: the embedding row of absent class 1 changed");
    for (int k = 0; k < K; k++) {
        int changed = 0;
        for (int f = 0; f < F; f++)
            changed += de[k * F + f] != de0[k * F + f];
        CHECKF(k == 1 || changed == F, "project: row %d of dembed: %d of %d entries changed", k,
               changed, F);
    }
    /* NULL gradients skipped; dh alone the same */
    float dh2[B * F];
    cg_project_backward(B, F, c.h, c.w, c.e, labels, c.r, NULL, NULL, NULL, dh2);
    CHECK(memcmp(dh2, dh, sizeof dh2) == 0);
    float *dw1 = tu_fdup(dw, F), *db1 = tu_fdup(db, 1), *de1 = tu_fdup(de, K * F);
    cg_project_backward(B, F, c.h, c.w, c.e, labels, c.r, NULL, NULL, de1, NULL);
    cg_project_backward(B, F, c.h, c.w, c.e, labels, c.r, dw1, db1, NULL, NULL);
    bad = 0;
    for (int f = 0; f < F; f++)
        bad += fabs(dw1[f] - (dw[f] + dwi[f])) > 1e-5;
    bad += fabs(db1[0] - (db[0] + dbi[0])) > 1e-5;
    for (int i = 0; i < K * F; i++)
        bad += fabs(de1[i] - (de[i] + dei[i])) > 1e-5;
    CHECKF(bad == 0, "project: partial backward calls do not accumulate the same (%d)", bad);

    note(&worst_proj_fd, tu_fd_check("project dh", c.h, dh, B * F, NULL, 0, proj_loss, &c,
                                     &FD_LINEAR).worst);
    note(&worst_proj_fd,
         tu_fd_check("project dw", c.w, dwi, F, NULL, 0, proj_loss, &c, &FD_LINEAR).worst);
    note(&worst_proj_fd,
         tu_fd_check("project db", c.b, dbi, 1, NULL, 0, proj_loss, &c, &FD_LINEAR).worst);
    note(&worst_proj_fd, tu_fd_check("project dembed", c.e, dei, K * F, NULL, 0, proj_loss, &c,
                                     &FD_LINEAR).worst);
    free(c.h), free(c.w), free(c.b), free(c.e), free(c.y), free(c.r), free(dh), free(dw);
    free(db), free(de), free(dw0), free(db0), free(de0), free(r0), free(dw1), free(db1), free(de1);
}

/* ======================================================================================== */
/* One-hot labels */

typedef struct {
    int B, F, K;
    float *x, *y, *r;
    const int32_t *labels;
} labels_ctx;

static double labels_loss(void *p)
{
    labels_ctx *c = p;
    cg_labels_forward(c->B, c->F, c->K, c->x, c->labels, c->y);
    return tu_dot(c->y, c->r, (size_t)c->B * (c->F + c->K));
}

static void test_labels(void)
{
    enum { B = 4, F = 5, K = 3 };
    static const int32_t labels[B] = {2, 0, 1, 2};
    labels_ctx c = {B, F, K, tu_falloc(B * F), tu_falloc(B * (F + K)), tu_falloc(B * (F + K)),
                    labels};
    tu_fill_uniform(c.x, B * F, -1.0f, 1.0f, 9100);
    tu_fill_uniform(c.r, B * (F + K), -1.0f, 1.0f, 9101);
    for (int i = 0; i < B * (F + K); i++)
        c.y[i] = NAN;
    labels_loss(&c);
    int bad = 0;
    for (int i = 0; i < B; i++) {
        bad += memcmp(c.y + i * (F + K), c.x + i * F, sizeof(float) * F) != 0;
        for (int k = 0; k < K; k++)
            bad += c.y[i * (F + K) + F + k] != (k == labels[i] ? 1.0f : 0.0f);
    }
    CHECKF(bad == 0, "labels forward: %d wrong rows/entries", bad);
    float *dx = tu_falloc(B * F), *r0 = tu_fdup(c.r, B * (F + K));
    for (int i = 0; i < B * F; i++)
        dx[i] = NAN;
    cg_labels_backward(B, F, K, c.r, dx);
    CHECK(memcmp(r0, c.r, sizeof(float) * B * (F + K)) == 0);
    bad = 0;
    for (int i = 0; i < B; i++)
        bad += memcmp(dx + i * F, c.r + i * (F + K), sizeof(float) * F) != 0;
    CHECKF(bad == 0, "labels backward: %d rows are not the first F columns of dy", bad);
    note(&worst_labels_fd, tu_fd_check("labels dx", c.x, dx, B * F, NULL, 0, labels_loss, &c,
                                       &FD_LINEAR).worst);
    free(c.x), free(c.y), free(c.r), free(dx), free(r0);
}

/* ======================================================================================== */
/* Class-conditional affine (conditional batch norm) */

typedef struct {
    bn_layout L;
    int B, K;
    size_t n, cs, es, total;
    float *x, *y, *gamma, *beta, *r;
    const int32_t *labels;
} cond_ctx;

static double cond_loss(void *p)
{
    cond_ctx *c = p;
    cg_cond_affine_forward(c->L.C, c->B, c->L.H * c->L.W, c->cs, c->es, c->labels, c->x, c->gamma,
                           c->beta, c->y);
    return tu_dot(c->y, c->r, c->total);
}

/* Forward against a naive loop over (class, channel, sample, pixel) in double, in place and
 * the identity at zero parameters (bit-exact); backward: dx, and the dgamma / dbeta
 * increments on top of random values against double loops, rows of the absent class
 * untouched bit for bit, NULL skipping them; two calls on sample groups (the pointers and
 * labels offset as cg_net_backward does) give the whole batch's dx bit for bit and its
 * increments; FD of every element of x, gamma and beta. */
static void test_cond_affine_case(const bn_layout *L, int B, const int32_t *labels, int absent,
                                  uint64_t stream)
{
    enum { K = 4 };
    const int C = L->C, HW = L->H * L->W;
    char tag[96];
    snprintf(tag, sizeof tag, "cond affine %s C%d B%d %dx%d", L->flat ? "flat" : "CBHW", C, B,
             L->H, L->W);
    cond_ctx c;
    memset(&c, 0, sizeof c);
    c.L = *L, c.B = B, c.K = K, c.labels = labels;
    bn_view_of(L, B, &c.n, &c.cs, &c.es);
    c.total = bn_total(L, B);
    const size_t T = c.total, P = (size_t)K * C;
    c.x = tu_falloc(T), c.y = tu_falloc(T), c.r = tu_falloc(T);
    c.gamma = tu_falloc(P), c.beta = tu_falloc(P);
    bn_fill(L, B, c.x, c.r, stream);
    tu_fill_uniform(c.gamma, P, -0.6f, 0.6f, stream + 2);
    tu_fill_uniform(c.beta, P, -0.6f, 0.6f, stream + 3);

    /* the naive loop: class-major, so no index shared with the library's loop order */
    double *y_ref = malloc(sizeof(double) * T), *dx_ref = malloc(sizeof(double) * T);
    double *dg_ref = calloc(P, sizeof(double)), *db_ref = calloc(P, sizeof(double));
    for (size_t i = 0; i < T; i++)
        y_ref[i] = dx_ref[i] = NAN;
    for (int k = 0; k < K; k++)
        for (int ch = 0; ch < C; ch++)
            for (int b = 0; b < B; b++) {
                if (labels[b] != k)
                    continue;
                const double s = 1.0 + c.gamma[k * C + ch], t = c.beta[k * C + ch];
                for (int q = 0; q < HW; q++) {
                    const size_t i = bn_index(L, B, ch, b, q);
                    y_ref[i] = c.x[i] * s + t;
                    dx_ref[i] = c.r[i] * s;
                    dg_ref[k * C + ch] += (double)c.r[i] * c.x[i];
                    db_ref[k * C + ch] += c.r[i];
                }
            }
    double e;
    cond_loss(&c);
    CHECKF((e = err_vs_ref(c.y, y_ref, T)) <= EXACT_TOL, "%s: y vs naive loop %.3g", tag, e);
    {
        float *yy = tu_fdup(c.x, T);
        cg_cond_affine_forward(C, B, HW, c.cs, c.es, labels, yy, c.gamma, c.beta, yy);
        CHECKF(memcmp(yy, c.y, sizeof(float) * T) == 0, "%s: in place differs", tag);
        float *z = tu_falloc(P);
        cg_cond_affine_forward(C, B, HW, c.cs, c.es, labels, c.x, z, z, yy);
        CHECKF(memcmp(yy, c.x, sizeof(float) * T) == 0, "%s: zero parameters are not the "
               "identity", tag);
        free(yy), free(z);
    }

    /* backward, x given as a batch norm's output with unit scale and zero shift: dx written,
     * dgamma/dbeta accumulate on D0 */
    float *one = tu_falloc((size_t)C), *zero = tu_falloc((size_t)C);
    for (int ch = 0; ch < C; ch++)
        one[ch] = 1.0f;
    const cg_bn_output xin = {c.x, one, zero};
    float *dx = tu_fdup(c.r, T), *dg = tu_falloc(P), *db = tu_falloc(P);
    tu_fill_uniform(dg, P, -1.0f, 1.0f, stream + 7);
    tu_fill_uniform(db, P, -1.0f, 1.0f, stream + 8);
    float *dg0 = tu_fdup(dg, P), *db0 = tu_fdup(db, P);
    cg_cond_affine_backward(C, B, HW, c.cs, c.es, labels, &xin, c.gamma, dx, dg, db);
    CHECKF((e = err_vs_ref(dx, dx_ref, T)) <= EXACT_TOL, "%s: dx vs naive loop %.3g", tag, e);
    float *dgi = tu_falloc(P), *dbi = tu_falloc(P);
    for (size_t i = 0; i < P; i++)
        dgi[i] = dg[i] - dg0[i], dbi[i] = db[i] - db0[i];
    CHECKF((e = err_vs_ref(dgi, dg_ref, P)) <= EXACT_TOL, "%s: dgamma increment %.3g", tag, e);
    CHECKF((e = err_vs_ref(dbi, db_ref, P)) <= EXACT_TOL, "%s: dbeta increment %.3g", tag, e);
    CHECKF(memcmp(dg + absent * C, dg0 + absent * C, sizeof(float) * C) == 0 &&
               memcmp(db + absent * C, db0 + absent * C, sizeof(float) * C) == 0,
           "%s: the rows of absent class %d changed", tag, absent);
    float *dx2 = tu_fdup(c.r, T);
    cg_cond_affine_backward(C, B, HW, c.cs, c.es, labels, &xin, c.gamma, dx2, NULL, NULL);
    CHECKF(memcmp(dx2, dx, sizeof(float) * T) == 0, "%s: dx without dgamma/dbeta differs", tag);

    /* in two groups of samples, offset as cg_net_backward does: element (c, b0 + b, p) at
     * (b0 * HW * es) + c * cs + (b * HW + p) * es */
    {
        const int split = B / 2;
        float *dxg = tu_fdup(c.r, T), *dgg = tu_falloc(P), *dbg = tu_falloc(P);
        for (int part = 0; part < 2; part++) {
            const int b0 = part ? split : 0, nb = part ? B - split : split;
            const size_t at = (size_t)b0 * HW * c.es;
            const cg_bn_output xg = {c.x + at, one, zero};
            cg_cond_affine_backward(C, nb, HW, c.cs, c.es, labels + b0, &xg, c.gamma, dxg + at,
                                    dgg, dbg);
        }
        CHECKF(memcmp(dxg, dx, sizeof(float) * T) == 0, "%s: dx in groups differs", tag);
        CHECKF((e = fmax(err_vs_ref(dgg, dg_ref, P), err_vs_ref(dbg, db_ref, P))) <= EXACT_TOL,
               "%s: dgamma/dbeta of the groups do not add up to the batch's (%.3g)", tag, e);
        free(dxg), free(dgg), free(dbg);
    }

    /* x recomputed from xhat with a real scale and shift gives what the same x stored does,
     * bit for bit */
    {
        float *sc = tu_falloc((size_t)C), *sh = tu_falloc((size_t)C), *xs = tu_falloc(T);
        tu_fill_uniform(sc, (size_t)C, 0.5f, 1.5f, stream + 9);
        tu_fill_uniform(sh, (size_t)C, -0.5f, 0.5f, stream + 10);
        for (int ch = 0; ch < C; ch++)
            for (int b = 0; b < B; b++)
                for (int q = 0; q < HW; q++) {
                    const size_t i = bn_index(L, B, ch, b, q);
                    xs[i] = sc[ch] * c.x[i] + sh[ch];
                }
        const cg_bn_output stored = {xs, one, zero}, recomputed = {c.x, sc, sh};
        float *dxs = tu_fdup(c.r, T), *dgs = tu_falloc(P), *dbs = tu_falloc(P);
        float *dxr = tu_fdup(c.r, T), *dgr = tu_falloc(P), *dbr = tu_falloc(P);
        cg_cond_affine_backward(C, B, HW, c.cs, c.es, labels, &stored, c.gamma, dxs, dgs, dbs);
        cg_cond_affine_backward(C, B, HW, c.cs, c.es, labels, &recomputed, c.gamma, dxr, dgr,
                                dbr);
        CHECKF(memcmp(dxs, dxr, sizeof(float) * T) == 0 &&
                   memcmp(dgs, dgr, sizeof(float) * P) == 0 &&
                   memcmp(dbs, dbr, sizeof(float) * P) == 0,
               "%s: x recomputed from xhat, scale and shift differs from x stored", tag);
        free(sc), free(sh), free(xs), free(dxs), free(dgs), free(dbs), free(dxr), free(dgr);
        free(dbr);
    }

    char what[128];
    snprintf(what, sizeof what, "%s dx", tag);
    note(&worst_cond_fd, tu_fd_check(what, c.x, dx, T, NULL, 0, cond_loss, &c, &FD_LINEAR).worst);
    snprintf(what, sizeof what, "%s dgamma", tag);
    note(&worst_cond_fd,
         tu_fd_check(what, c.gamma, dgi, P, NULL, 0, cond_loss, &c, &FD_LINEAR).worst);
    snprintf(what, sizeof what, "%s dbeta", tag);
    note(&worst_cond_fd,
         tu_fd_check(what, c.beta, dbi, P, NULL, 0, cond_loss, &c, &FD_LINEAR).worst);
    free(c.x), free(c.y), free(c.r), free(c.gamma), free(c.beta), free(y_ref), free(dx_ref);
    free(dg_ref), free(db_ref), free(dx), free(dg), free(db), free(dg0), free(db0), free(dgi);
    free(dbi), free(dx2), free(one), free(zero);
}

static void test_cond_affine(void)
{
    static const int32_t labels[6] = {2, 0, 3, 2, 0, 3}; /* class 1 absent */
    const bn_layout cbhw = {0, 3, 3, 4}, flat = {1, 5, 1, 1};
    test_cond_affine_case(&cbhw, 5, labels, 1, 1000);
    test_cond_affine_case(&flat, 6, labels, 1, 1100);
}

/* ======================================================================================== */
/* Whole models */

#define MB 4     /* global = local batch */
#define STEP 5
#define PIX 784

/* As test_model_grad.c, with testutil.h's step rule and criteria: h = TU_FD_NOISE_RATIO *
 * sigma / RMS(checked analytic entries) in [TU_FD_H_MIN, TU_FD_H_MAX]; per entry |a - num| <=
 * tol * max(|a|, floor_frac * RMS); at most 2% of a network's entries over; per tensor cosine
 * and least-squares scale (TU_FD_GAN_D, TU_FD_GAN_G); entries per tensor TU_FD_ENTRIES_*. */

typedef struct {
    cg_gan *gan;
    const float *real;
    int which;         /* 0: L_D, 1: L_G */
    float *z, *fake;   /* the step's noise; G(z) at the unperturbed G */
    cg_tape tg;
    long evals;
} model_ctx;

/* The step's loss by its forward passes only (cg_gan_forward: same noise, labels, dropout
 * keys), with the BCE calls in cg_gan_grads' order. */
static double model_loss(void *p)
{
    model_ctx *c = p;
    cg_gan *gan = c->gan;
    const float Bg = (float)gan->cfg.global_batch;
    c->evals++;
    cg_gan_forward(gan, c->real, STEP, 0);
    const float *lr = gan->logits, *lf = gan->logits + MB;
    if (c->which == 0) {
        const float sd = 1.0f / (2.0f * Bg);
        double l = cg_bce_logits(MB, lr, gan->target, sd, NULL);
        l += cg_bce_logits(MB, lf, gan->target + MB, sd, NULL);
        return l;
    }
    return cg_bce_logits(MB, lf, gan->target, 1.0f / Bg, NULL);
}

static int is_running_stat(const cg_tensor *T) { return !T->trainable; }

/* Rows of a tensor that belong to classes (rows first_row + k, k < K, of length rowlen): the
 * rows of absent classes must have exactly zero gradient, those of present classes some
 * non-zero entry. Adds two entries of every class row to idx (the largest |gradient| of the
 * row and one at a random column). Returns the new count. */
static size_t class_rows(const char *what, const cg_tensor *T, const float *grad, int first_row,
                         size_t rowlen, int K, const int *present, uint64_t stream, size_t *idx,
                         size_t k)
{
    for (int c = 0; c < K; c++) {
        const size_t start = T->offset + (size_t)(first_row + c) * rowlen;
        size_t nonzero = 0, best = start;
        for (size_t j = 0; j < rowlen; j++) {
            nonzero += grad[start + j] != 0.0f;
            if (fabsf(grad[start + j]) > fabsf(grad[best]))
                best = start + j;
        }
        if (present[c])
            CHECKF(nonzero > 0, "%s: row of present class %d has a zero gradient", what, c);
        else
            CHECKF(nonzero == 0, "%s: row of absent class %d has %zu non-zero gradient entries",
                   what, c, nonzero);
        idx[k++] = best;
        idx[k++] = start + (size_t)(cg_rng_u64(TU_SEED, stream, (uint64_t)c) % rowlen);
    }
    return k;
}

/* Rounding noise of one loss evaluation: L at p0 + 1e-7 k, k = -4..4, minus the straight line
 * fitted through them (the true change is linear at this scale). */
static double loss_noise(model_ctx *c, float *p)
{
    const float p0 = *p;
    double x[9], l[9], sx = 0, sl = 0;
    for (int k = -4; k <= 4; k++) {
        *p = p0 + 1e-7f * (float)k;
        x[k + 4] = (double)*p - (double)p0;
        l[k + 4] = model_loss(c);
        sx += x[k + 4], sl += l[k + 4];
    }
    *p = p0;
    const double mx = sx / 9, ml = sl / 9;
    double sxx = 0, sxl = 0, ss = 0;
    for (int i = 0; i < 9; i++)
        sxx += (x[i] - mx) * (x[i] - mx), sxl += (x[i] - mx) * (l[i] - ml);
    const double slope = sxl / sxx;
    for (int i = 0; i < 9; i++) {
        const double res = l[i] - ml - slope * (x[i] - mx);
        ss += res * res;
    }
    return sqrt(ss / 7.0);
}

static tu_fd_net_report fd_net(const char *label, model_ctx *ctx, cg_net *net,
                                const float *analytic, const tu_fd_setting *fs, double sigma,
                                const int *present, int K, int noise_dim, uint64_t stream)
{
    tu_fd_net_report R = tu_fd_net_report_new();
    size_t *idx =
        malloc(sizeof(size_t) * (TU_FD_ENTRIES_RANDOM + TU_FD_ENTRIES_NONZERO + 4 * 256));
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        if (is_running_stat(T)) {
            size_t nz = 0;
            for (size_t i = 0; i < T->count; i++)
                nz += analytic[T->offset + i] != 0.0f;
            printf("  (%s.%s: running average, not trainable: gradient %s)\n", label, T->name,
                   nz ? "NON-ZERO" : "exactly 0");
            CHECKF(nz == 0, "%s.%s: %zu non-zero gradient entries of a running average", label,
                   T->name, nz);
            continue;
        }
        size_t k = tu_choose_entries(T->offset, T->count, analytic, TU_FD_ENTRIES_RANDOM,
                                     TU_FD_ENTRIES_NONZERO, stream + 10 * (uint64_t)t, idx);
        char what[112];
        snprintf(what, sizeof what, "%s.%s", label, T->name);
        const size_t len = strlen(T->name);
        if (K > 0 && ((len > 6 && !strcmp(T->name + len - 6, ".embed")) ||
                      !strncmp(T->name, "cbn", 3)))
            k = class_rows(what, T, analytic, 0, (size_t)T->dims[1], K, present,
                           stream + 10 * (uint64_t)t + 5, idx, k);
        /* G's first kernel after the labels layer: rows noise_dim + class */
        if (K > 0 && net->layers[0].spec.op == CG_OP_LABELS && net->layers[1].w_tensor == t)
            k = class_rows(what, T, analytic, noise_dim, (size_t)T->dims[1], K, present,
                           stream + 10 * (uint64_t)t + 5, idx, k);
        tu_fd_tensor(label, T->name, net->param, analytic, net->n_params, idx, k, sigma, fs,
                     model_loss, ctx, &R);
    }
    const size_t allowed = tu_fd_net_allowed(&R);
    printf("%s: %zu entries in %d trainable tensors: %zu over tolerance (allowed %zu), worst "
           "normalized error %.3g; worst cosine %.5f, worst |scale - 1| %.4f\n", label,
           R.entries, R.tensors, R.failed, allowed, R.worst, R.worst_cos, R.worst_scale);
    CHECKF(R.failed <= allowed, "%s: %zu of %zu FD entries over tolerance", label, R.failed,
           R.entries);
    free(idx);
    return R;
}

static double model_worst[4][2]; /* [model][D, G] */

static void test_model(int which_model, const char *name, int n_classes, const int32_t *labels)
{
    const double t0 = cg_now();
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", name);
    cfg.global_batch = cfg.local_batch = MB;
    cfg.n_classes = n_classes;
    cg_gan gan;
    cg_error e;
    if (cg_gan_init(&gan, &cfg, &e)) {
        CHECKF(0, "cg_gan_init(%s): %s", name, e.msg);
        return;
    }
    cg_gan_init_weights(&gan);
    char label_g[32], label_d[32];
    snprintf(label_g, sizeof label_g, "%s%s G", name, n_classes ? "-cond" : "");
    snprintf(label_d, sizeof label_d, "%s%s D", name, n_classes ? "-cond" : "");
    /* biases and betas small random, gammas around 1: no parameter at a special point */
    cg_net *nets[2] = {&gan.g, &gan.d};
    int n_bn = 0, n_cbn = 0;
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < nets[k]->n_tensors; t++) {
            const cg_tensor *T = &nets[k]->tensors[t];
            const size_t len = strlen(T->name);
            float *p = nets[k]->param + T->offset;
            const uint64_t st = 8000 + 100 * (uint64_t)k + (uint64_t)t;
            if (!strncmp(T->name, "cbn", 3)) /* around 0, where they start */
                tu_fill_uniform(p, T->count, -0.3f, 0.3f, st), n_cbn++;
            else if (len > 5 && !strcmp(T->name + len - 5, ".bias"))
                tu_fill_uniform(p, T->count, -0.05f, 0.05f, st);
            else if (len > 5 && !strcmp(T->name + len - 5, ".beta"))
                tu_fill_uniform(p, T->count, -0.2f, 0.2f, st);
            else if (len > 6 && !strcmp(T->name + len - 6, ".gamma"))
                tu_fill_uniform(p, T->count, 0.6f, 1.4f, st), n_bn++;
        }
    const int want_bn = strstr(name, "dcgan") ? 2 : !strcmp(name, "deep") ? 5 : 0;
    CHECKF(n_bn == want_bn, "%s: %d batch-norm layers, expected %d", name, n_bn, want_bn);
    const int want_cbn = gan.preset.cond_bn && n_classes ? 2 * want_bn : 0;
    CHECKF(n_cbn == want_cbn, "%s: %d conditional batch-norm tensors, expected %d", name, n_cbn,
           want_cbn);
    const int K = n_classes, nz = gan.preset.noise_dim;
    int present[256] = {0};
    for (int i = 0; i < MB; i++) {
        gan.labels[i] = labels ? labels[i] : 0;
        if (K > 0)
            present[gan.labels[i]] = 1;
    }
    float *real = tu_falloc((size_t)MB * PIX);
    tu_fill_uniform(real, (size_t)MB * PIX, gan.data_lo, 1.0f, 77);

    cg_gan_stats st;
    cg_gan_grads(&gan, real, STEP, 0, NULL, &st);
    float *gd = tu_fdup(gan.d.grad, gan.d.n_params), *gg = tu_fdup(gan.g.grad, gan.g.n_params);
    float *pd = tu_fdup(gan.d.param, gan.d.n_params), *pg = tu_fdup(gan.g.param, gan.g.n_params);

    /* the forward-only loss is cg_gan_grads' loss, bit for bit */
    model_ctx c;
    memset(&c, 0, sizeof c);
    c.gan = &gan, c.real = real;
    c.z = tu_falloc((size_t)MB * nz);
    cg_rng_normal_fill(c.z, (long)MB * nz, cfg.seed, cg_stream(CG_RNG_NOISE, STEP), 0);
    cg_tape_alloc(&gan.g, &c.tg);
    {
        cg_fwd_opts o = {1, cfg.seed, STEP, 0, gan.labels, NULL};
        c.fake = tu_fdup(cg_net_forward(&gan.g, &c.tg, c.z, MB, &o), (size_t)MB * PIX);
        CHECKF(memcmp(c.fake, gan.tape_g.act[gan.g.n_layers - 1], sizeof(float) * MB * PIX) == 0,
               "%s: G(z) recomputed differs from the step's fakes", name);
    }
    c.which = 0;
    const double ld = model_loss(&c);
    c.which = 1;
    const double lg = model_loss(&c);
    printf("%s: L_D %.9f (forward-only %.9f), L_G %.9f (forward-only %.9f)\n", label_d,
           st.loss_d, ld, st.loss_g, lg);
    CHECKF(ld == st.loss_d && lg == st.loss_g, "%s: forward-only losses differ from the step's",
           name);

    /* BN running averages: trainable 0, no gradient, and the training losses ignore them */
    int n_running = 0;
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < nets[k]->n_tensors; t++) {
            const cg_tensor *T = &nets[k]->tensors[t];
            if (!is_running_stat(T))
                continue;
            n_running++;
            float *p = nets[k]->param + T->offset;
            const size_t len = strlen(T->name);
            const int is_var = len > 4 && !strcmp(T->name + len - 4, "_var");
            tu_fill_uniform(p, T->count, is_var ? 0.3f : -1.0f, is_var ? 3.0f : 1.0f,
                            8500 + (uint64_t)t);
        }
    if (strstr(name, "dcgan"))
        CHECKF(n_running == 4, "%s: %d running-average tensors, expected 4", name, n_running);
    c.which = 0;
    const double ld2 = model_loss(&c);
    c.which = 1;
    const double lg2 = model_loss(&c);
    CHECKF(ld2 == ld && lg2 == lg, "%s: the training losses depend on the running averages "
           "(%.17g %.17g vs %.17g %.17g)", name, ld2, lg2, ld, lg);

    /* noise of each loss, from a weight of the network's first kernel */
    double sigma[2];
    for (int k = 0; k < 2; k++) {
        cg_net *net = k ? &gan.g : &gan.d;
        c.which = k;
        int t = 0;
        while (net->tensors[t].fan_in == 0)
            t++;
        sigma[k] = fmax(1e-10, loss_noise(&c, net->param + net->tensors[t].offset +
                                                   net->tensors[t].count / 3));
        printf("%s: loss rounding noise sigma %.2e (from %s)\n", k ? label_g : label_d, sigma[k],
               net->tensors[t].name);
    }

    c.which = 0;
    tu_fd_net_report rd =
        fd_net(label_d, &c, &gan.d, gd, &TU_FD_GAN_D, sigma[0], present, K, nz, 9000);
    c.which = 1;
    tu_fd_net_report rg =
        fd_net(label_g, &c, &gan.g, gg, &TU_FD_GAN_G, sigma[1], present, K, nz, 9500);
    model_worst[which_model][0] = rd.worst, model_worst[which_model][1] = rg.worst;

    /* parameters bit-identical after the FD, except the running averages (restored here) */
    for (int k = 0; k < 2; k++) {
        const float *before = k ? pd : pg;
        int changed = 0;
        for (int t = 0; t < nets[k]->n_tensors; t++) {
            const cg_tensor *T = &nets[k]->tensors[t];
            float *p = nets[k]->param + T->offset;
            if (is_running_stat(T))
                memcpy(p, before + T->offset, sizeof(float) * T->count);
            else
                changed += memcmp(p, before + T->offset, sizeof(float) * T->count) != 0;
        }
        CHECKF(changed == 0, "%s: %d tensors of %s changed during the FD", name, changed,
               k ? "D" : "G");
        CHECK(memcmp(nets[k]->param, before, sizeof(float) * nets[k]->n_params) == 0);
    }
    /* and the step gives the same gradients again */
    cg_gan_grads(&gan, real, STEP, 0, NULL, &st);
    CHECKF(memcmp(gd, gan.d.grad, sizeof(float) * gan.d.n_params) == 0 &&
               memcmp(gg, gan.g.grad, sizeof(float) * gan.g.n_params) == 0,
           "%s: gradients differ after the FD", name);
    printf("%s: %ld loss evaluations, %.1f s\n", name, c.evals, cg_now() - t0);

    cg_tape_free(&c.tg);
    free(c.z), free(c.fake), free(gd), free(gg), free(pd), free(pg);
    free(real);
    cg_gan_free(&gan);
}

int main(void)
{
    cg_blas_set_threads(1);
    omp_set_num_threads(1);
    double t0 = cg_now();
    test_bn();
    test_project();
    test_labels();
    test_cond_affine();
    printf("layers: %.1f s\n", cg_now() - t0);
    static const int32_t cond_labels[MB] = {4, 0, 2, 4}; /* 1 and 3 absent, 4 twice */
    test_model(0, "dcgan", 0, NULL);
    test_model(1, "small", 5, cond_labels);
    test_model(2, "cdcgan", 5, cond_labels);
    test_model(3, "deep", 5, cond_labels);
    printf("worst normalized FD error: bn %.2e, project %.2e, labels %.2e, cond affine %.2e "
           "(tolerance %.0e); vs double loops %.2e (tolerance %.0e); sync halves vs full batch "
           "%.2e (tolerance %.0e)\n", worst_bn_fd, worst_proj_fd, worst_labels_fd, worst_cond_fd,
           FD_TOL, worst_exact, EXACT_TOL, worst_sync, SYNC_TOL);
    printf("worst normalized FD error, whole models (tolerance D %.2f, G %.2f): dcgan D %.3g, "
           "G %.3g; small-cond D %.3g, G %.3g; cdcgan-cond D %.3g, G %.3g; deep-cond D %.3g, "
           "G %.3g\n", TU_FD_GAN_D.tol, TU_FD_GAN_G.tol, model_worst[0][0], model_worst[0][1],
           model_worst[1][0], model_worst[1][1], model_worst[2][0], model_worst[2][1],
           model_worst[3][0], model_worst[3][1]);
    printf("total %.1f s\n", cg_now() - t0);
    return tu_finish("test_norm_cond_grad");
}
