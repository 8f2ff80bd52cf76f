/* The variational autoencoders (chargan/vae.h): their parts, their whole gradients and their
 * exact, rank-count independent sums.
 *
 *  - The latent layer: finite differences of z = mean + exp(log_var / 2) eps (through a random
 *    linear read-out) plus the KL term w.r.t. every mean and log-variance, and KL values by
 *    hand.
 *  - The reconstruction loss, BCE with logits summed over pixels, with soft targets (pixels
 *    in [0, 1]): finite differences w.r.t. every logit and values by hand.
 *  - The whole step's loss and gradient against numbers computed by hand for the book's VAE
 *    with a sparse set of known weights (one image, two non-zero pixels).
 *  - Finite differences of the whole step's loss w.r.t. sampled entries of every tensor of
 *    both networks, for vae, cvae, conditional vae and conditional cvae (testutil.h's
 *    criteria for GAN discriminators; the step's noise is a function of (seed, step, sample),
 *    so every evaluation of a step is the same function).
 *  - Exact sums: the int64 sums of 4 groups held by one rank equal, bit for bit, the sums of
 *    2 and of 4 "ranks" each holding a part (its own images, labels and global indices); the
 *    exact gradient equals the float one to rounding.
 *  - encode / generate / the noise / apply against the training pass and the optimizers, and
 *    the tables: layer shapes, LeCun-normal and Glorot statistics. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chargan/vae.h"
#include "testutil.h"

#define PIX 784

static int make_vae(cg_vae *v, const char *model, int n_classes, int global, int local)
{
    cg_vae_config cfg;
    cg_vae_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    cfg.global_batch = global;
    cfg.local_batch = local;
    cfg.n_classes = n_classes;
    cg_error e;
    if (cg_vae_init(v, &cfg, &e)) {
        fprintf(stderr, "cg_vae_init(%s): %s\n", model, e.msg);
        return -1;
    }
    cg_vae_init_weights(v);
    return 0;
}

/* ---- the latent layer ------------------------------------------------------------------ */

typedef struct {
    int n, c;
    float scale;
    float *h, *eps, *r, *z;
} latent_ctx;

/* sum r . z + scale * KL */
static double latent_loss(void *p)
{
    latent_ctx *c = p;
    cg_vae_sample(c->n, c->c, c->h, c->eps, c->z);
    return tu_dot(c->z, c->r, (size_t)c->n * c->c) + cg_vae_kl(c->n, c->c, c->h, c->scale, NULL);
}

static void test_latent(void)
{
    enum { N = 3, C = 4 };
    latent_ctx c = {N, C, 0.5f, tu_falloc(2 * N * C), tu_falloc(N * C), tu_falloc(N * C),
                    tu_falloc(N * C)};
    for (int i = 0; i < N; i++) {
        tu_fill_uniform(c.h + i * 2 * C, C, -1.0f, 1.0f, 100 + i);        /* means */
        tu_fill_uniform(c.h + i * 2 * C + C, C, -1.5f, 1.0f, 110 + i);    /* log-variances */
    }
    cg_rng_normal_fill(c.eps, N * C, TU_SEED, 120, 0);
    tu_fill_uniform(c.r, N * C, -1.0f, 1.0f, 130);
    float *dh = tu_falloc(2 * N * C);
    cg_vae_kl(N, C, c.h, c.scale, dh);
    cg_vae_sample_backward(N, C, c.h, c.eps, c.r, dh);
    const tu_fd_opts o = {1e-3f, 2e-3, 0.1, 0, 0};
    tu_fd_check("latent: sample + kl w.r.t. [mean | log_var]", c.h, dh, 2 * N * C, NULL, 0,
                latent_loss, &c, &o);
    /* z itself: mean + exp(log_var / 2) eps */
    cg_vae_sample(N, C, c.h, c.eps, c.z);
    double ez = 0.0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < C; j++)
            ez = fmax(ez, fabs(c.z[i * C + j] - (c.h[i * 2 * C + j] +
                                                  exp(0.5 * c.h[i * 2 * C + C + j]) *
                                                      c.eps[i * C + j])));
    CHECKF(ez <= 1e-6, "sample: error %.3g", ez);
    /* KL by hand, one sample of four codings:
     *   (mean 0, log_var 0): -1/2 (1 + 0 - 1 - 0) = 0
     *   (1, 0):              -1/2 (1 + 0 - 1 - 1) = 0.5
     *   (0, ln 2):           -1/2 (1 + 0.69314718 - 2 - 0) = 0.15342641
     *   (0.5, -1):           -1/2 (1 - 1 - 0.36787944 - 0.25) = 0.30893972
     * sum 0.96236613, times scale 2: 1.92473226; gradient (scale 2): dmean = 2 mean =
     * (0, 2, 0, 1), dlog_var = e^log_var - 1 = (0, 0, 1, -0.63212056). */
    const float h1[8] = {0.0f, 1.0f, 0.0f, 0.5f, 0.0f, 0.0f, 0.69314718f, -1.0f};
    float d1[8];
    const double kl = cg_vae_kl(1, 4, h1, 2.0f, d1);
    const double want[8] = {0, 2, 0, 1, 0, 0, 1, -0.63212056};
    CHECK_NEAR(kl, 1.92473226, 1e-6);
    for (int k = 0; k < 8; k++)
        CHECK_NEAR(d1[k], want[k], 1e-6);
    free(dh), free(c.h), free(c.eps), free(c.r), free(c.z);
}

/* ---- the reconstruction loss ----------------------------------------------------------- */

typedef struct {
    int n;
    float *l, *t;
} bce_ctx;

static double bce_loss(void *p)
{
    bce_ctx *c = p;
    return cg_bce_logits(c->n, c->l, c->t, 0.25f, NULL);
}

static void test_bce_sum(void)
{
    enum { N = 2 * 12 };
    bce_ctx c = {N, tu_falloc(N), tu_falloc(N)};
    tu_fill_uniform(c.l, N, -4.0f, 4.0f, 200);
    tu_fill_uniform(c.t, N, 0.0f, 1.0f, 201);
    c.t[0] = 0.0f, c.t[1] = 1.0f, c.t[2] = 0.5f; /* a pixel's extremes and middle */
    float *d = tu_falloc(N);
    cg_bce_logits(N, c.l, c.t, 0.25f, d);
    const tu_fd_opts o = {1e-3f, 2e-3, 0.01, 0, 0};
    tu_fd_check("bce sum w.r.t. logits (soft targets)", c.l, d, N, NULL, 0, bce_loss, &c, &o);
    /* by hand, scale 0.25: (l 2, t 1): log(1 + e^-2) = 0.12692801;
     * (l -1, t 0.5): 0 + 0.5 + log(1 + e^-1) = 0.81326169; (l 0, t 0): ln 2 = 0.69314718;
     * sum 1.63333688, times 0.25: 0.40833422; gradients 0.25 (sigmoid(l) - t):
     * (-0.02980073, -0.05776464, 0.125) */
    const float l3[3] = {2.0f, -1.0f, 0.0f}, t3[3] = {1.0f, 0.5f, 0.0f};
    float d3[3];
    CHECK_NEAR(cg_bce_logits(3, l3, t3, 0.25f, d3), 0.40833422, 1e-7);
    CHECK_NEAR(d3[0], -0.02980073, 1e-7);
    CHECK_NEAR(d3[1], -0.05776464, 1e-7);
    CHECK_NEAR(d3[2], 0.125, 1e-7);
    free(c.l), free(c.t), free(d);
}

/* ---- the whole step by hand -------------------------------------------------------------- */

static float *param_at(cg_net *net, const char *tensor, int i)
{
    const int t = cg_net_find_tensor(net, tensor);
    CHECKF(t >= 0, "%s: no tensor %s", net->name, tensor);
    return net->param + net->tensors[t < 0 ? 0 : t].offset + i;
}

static float grad_at(cg_net *net, const char *tensor, int i)
{
    const int t = cg_net_find_tensor(net, tensor);
    return t < 0 ? NAN : net->grad[net->tensors[t].offset + i];
}

/* The book's VAE, one image, every weight 0 except:
 *   encoder dense0.kernel[0][0] = 1 (pixel 0 -> unit 0), dense1.kernel[0][0] = 1,
 *   head kernel dense2.kernel[0][0] = 0.5 (-> mean 0), [0][10] = -1 (-> log_var 0),
 *   head bias dense2.bias[1] = 0.3 (mean 1), [11] = 0.2 (log_var 1);
 *   decoder output bias dense2.bias[0] = 2, [1] = -1 (the other kernels and biases 0, so the
 *   logits are that bias whatever the coding, and the noise does not enter the loss).
 * Image: pixel 0 = 1, pixel 1 = 0.5, the other 782 pixels 0. SELU: s = 1.05070099,
 * s a = 1.75809934.
 *   h0 = selu(1) = 1.05070099;  h1 = selu(h0) = s * h0 = 1.10397256
 *   mean0 = 0.5 h1 = 0.55198628;  log_var0 = -h1 = -1.10397256 (e^ = 0.33155135)
 *   kl0 = -1/2 (1 - 1.10397256 - 0.33155135 - 0.30468885) = 0.37010639
 *   kl1 = -1/2 (1 + 0.2 - e^0.2 - 0.09) = -1/2 (1.2 - 1.22140276 - 0.09) = 0.05570138
 *   kl = 0.42580777
 *   recon: pixel 0 (l 2, t 1) 0.12692801; pixel 1 (l -1, t 0.5) 0.81326169;
 *          782 pixels (l 0, t 0) 782 ln 2 = 542.04109520;  recon = 542.98128490
 *   loss = 543.40709266
 * Gradients (batch 1):
 *   decoder dense2.bias: sigmoid(2) - 1 = -0.11920292, sigmoid(-1) - 0.5 = -0.23105858,
 *     sigmoid(0) - 0 = 0.5 elsewhere; its kernel: 0 (its inputs selu(0) = 0)
 *   encoder, through kl only (the decoder's first kernel is 0, so dL/dz = 0):
 *     head bias: dmean0 = mean0 = 0.55198628, dlog_var0 = (e^log_var0 - 1) / 2 = -0.33422432,
 *       dmean1 = 0.3, dlog_var1 = (e^0.2 - 1) / 2 = 0.11070138
 *     head kernel [0][0] = h1 dmean0 = 0.60937771, [0][10] = h1 dlog_var0 = -0.36897448
 *     dense1: dh1 = 0.5 dmean0 - dlog_var0 = 0.61021746, times selu'(h0) = s: 0.64115609
 *       (its bias [0]); kernel [0][0] = that h0 = 0.67366334
 *     dense0: dh0 = 0.64115609 * 1, times selu'(1) = s: 0.67366334 (bias [0], and kernel
 *       [0][0] with pixel 0 = 1); kernel [1][0] = 0.5 of that = 0.33683167 */
static void test_by_hand(void)
{
    cg_vae v;
    if (make_vae(&v, "vae", 0, 1, 1)) {
        CHECK(0);
        return;
    }
    memset(v.enc.param, 0, sizeof(float) * v.enc.n_params);
    memset(v.dec.param, 0, sizeof(float) * v.dec.n_params);
    *param_at(&v.enc, "dense0.kernel", 0) = 1.0f;
    *param_at(&v.enc, "dense1.kernel", 0) = 1.0f;
    *param_at(&v.enc, "dense2.kernel", 0) = 0.5f;
    *param_at(&v.enc, "dense2.kernel", 10) = -1.0f;
    *param_at(&v.enc, "dense2.bias", 1) = 0.3f;
    *param_at(&v.enc, "dense2.bias", 11) = 0.2f;
    *param_at(&v.dec, "dense2.bias", 0) = 2.0f;
    *param_at(&v.dec, "dense2.bias", 1) = -1.0f;
    float *x = tu_falloc(PIX);
    x[0] = 1.0f, x[1] = 0.5f;
    cg_vae_stats st;
    cg_vae_grads(&v, x, 7, 0, NULL, &st);
    printf("by hand: loss %.8f recon %.8f kl %.8f\n", st.loss, st.recon, st.kl);
    CHECK_NEAR(st.kl, 0.42580777, 1e-6);
    CHECK_NEAR(st.recon, 542.98128490, 1e-4);
    CHECK_NEAR(st.loss, 543.40709266, 1e-4);
    const struct {
        cg_net *net;
        const char *tensor;
        int i;
        double want;
    } g[] = {{&v.dec, "dense2.bias", 0, -0.11920292}, {&v.dec, "dense2.bias", 1, -0.23105858},
             {&v.dec, "dense2.bias", 2, 0.5},         {&v.dec, "dense2.bias", 783, 0.5},
             {&v.dec, "dense2.kernel", 0, 0.0},       {&v.enc, "dense2.bias", 0, 0.55198628},
             {&v.enc, "dense2.bias", 10, -0.33422432}, {&v.enc, "dense2.bias", 1, 0.3},
             {&v.enc, "dense2.bias", 11, 0.11070138}, {&v.enc, "dense2.bias", 2, 0.0},
             {&v.enc, "dense2.kernel", 0, 0.60937771}, {&v.enc, "dense2.kernel", 10, -0.36897448},
             {&v.enc, "dense1.bias", 0, 0.64115609},  {&v.enc, "dense1.kernel", 0, 0.67366334},
             {&v.enc, "dense0.bias", 0, 0.67366334},  {&v.enc, "dense0.kernel", 0, 0.67366334},
             {&v.enc, "dense0.kernel", 150, 0.33683167}};
    for (size_t k = 0; k < sizeof g / sizeof g[0]; k++) {
        const float a = grad_at(g[k].net, g[k].tensor, g[k].i);
        CHECKF(fabs(a - g[k].want) <= 1e-6 * (1.0 + fabs(g[k].want)), "%s %s[%d]: %.8f, by "
               "hand %.8f", g[k].net->name, g[k].tensor, g[k].i, a, g[k].want);
    }
    /* The same image as one of a global batch of 2: every value halves. */
    cg_vae h;
    if (make_vae(&h, "vae", 0, 2, 1) == 0) {
        memcpy(h.enc.param, v.enc.param, sizeof(float) * v.enc.n_params);
        memcpy(h.dec.param, v.dec.param, sizeof(float) * v.dec.n_params);
        cg_vae_stats sh;
        cg_vae_grads(&h, x, 7, 0, NULL, &sh);
        CHECK_NEAR(sh.loss, st.loss / 2, 1e-4);
        CHECK_NEAR(grad_at(&h.enc, "dense0.kernel", 0), 0.67366334 / 2, 1e-6);
        cg_vae_free(&h);
    }
    free(x);
    cg_vae_free(&v);
}

/* ---- finite differences of whole models ---------------------------------------------------- */

#define FD_B 2

typedef struct {
    cg_vae *v;
    const float *x;
    long step, evals;
} loss_ctx;

static double step_loss(void *p)
{
    loss_ctx *c = p;
    cg_vae_stats st;
    cg_vae_grads(c->v, c->x, c->step, 0, NULL, &st);
    c->evals++;
    return st.loss;
}

/* Rounding noise of one loss evaluation: the residual of L(p + k 1e-7) - L(p) - a k 1e-7 over
 * k = 1..8 for one parameter with analytic gradient a (the true second-order change is far
 * below rounding at these steps). */
static double loss_noise(loss_ctx *c, float *p, double a)
{
    const float p0 = *p;
    const double l0 = step_loss(c);
    double ss = 0.0;
    for (int k = 1; k <= 8; k++) {
        *p = p0 + 1e-7f * (float)k;
        const double step = (double)*p - (double)p0;
        const double d = step_loss(c) - l0 - a * step;
        ss += d * d;
    }
    *p = p0;
    return sqrt(ss / 8.0);
}

static void fd_net(const char *tag, loss_ctx *c, cg_net *net, const float *analytic,
                   double sigma)
{
    tu_fd_net_report R = tu_fd_net_report_new();
    size_t idx[TU_FD_ENTRIES_RANDOM + TU_FD_ENTRIES_NONZERO];
    char label[64];
    snprintf(label, sizeof label, "%s %s", tag, net->name);
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        const size_t k = tu_choose_entries(T->offset, T->count, analytic, TU_FD_ENTRIES_RANDOM,
                                           TU_FD_ENTRIES_NONZERO, 7000 + 10 * (uint64_t)t, idx);
        tu_fd_tensor(label, T->name, net->param, analytic, net->n_params, idx, k, sigma,
                     &TU_FD_GAN_D, step_loss, c, &R);
    }
    const size_t allowed = tu_fd_net_allowed(&R);
    printf("%s: %zu entries in %d tensors, %zu over tolerance (allowed %zu), worst cosine "
           "%.6f, worst |scale - 1| %.4f\n", label, R.entries, R.tensors, R.failed, allowed,
           R.worst_cos, R.worst_scale);
    CHECKF(R.tensors == net->n_tensors, "%s: %d of %d tensors checked", label, R.tensors,
           net->n_tensors);
    CHECKF(R.failed <= allowed, "%s: %zu of %zu entries over tolerance", label, R.failed,
           R.entries);
}

static void test_fd_model(const char *model, int n_classes, long step)
{
    char tag[32];
    snprintf(tag, sizeof tag, "%s%s", model, n_classes ? " conditional" : "");
    cg_vae v;
    if (make_vae(&v, model, n_classes, FD_B, FD_B)) {
        CHECK(0);
        return;
    }
    /* biases away from the special point 0 */
    cg_net *nets[2] = {&v.enc, &v.dec};
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < nets[k]->n_tensors; t++) {
            const cg_tensor *T = &nets[k]->tensors[t];
            if (T->fan_in == 0)
                tu_fill_uniform(nets[k]->param + T->offset, T->count, -0.05f, 0.05f,
                                300 + 50 * (uint64_t)k + (uint64_t)t);
        }
    float *x = tu_falloc((size_t)FD_B * PIX);
    tu_fill_uniform(x, (size_t)FD_B * PIX, 0.0f, 1.0f, 310);
    for (int i = 0; i < FD_B; i++)
        v.labels[i] = n_classes ? (3 + 5 * i) % n_classes : 0;
    loss_ctx c = {&v, x, step, 0};
    cg_vae_stats st;
    cg_vae_grads(&v, x, step, 0, NULL, &st);
    float *ge = tu_fdup(v.enc.grad, v.enc.n_params), *gd = tu_fdup(v.dec.grad, v.dec.n_params);
    /* The noise, from the encoder's first kernel (tensor 0): a change there moves every later
     * value, the 784 logits of each sample included, whose float rounding the loss sums. */
    const cg_tensor *T0 = &v.enc.tensors[0];
    size_t imax = T0->offset;
    for (size_t i = T0->offset; i < T0->offset + T0->count; i++)
        if (fabsf(ge[i]) > fabsf(ge[imax]))
            imax = i;
    const double sigma = fmax(1e-9, loss_noise(&c, v.enc.param + imax, ge[imax]));
    printf("%s: loss %.6f (recon %.6f, kl %.6f), rounding noise sigma %.2e\n", tag, st.loss,
           st.recon, st.kl, sigma);
    fd_net(tag, &c, &v.dec, gd, sigma);
    fd_net(tag, &c, &v.enc, ge, sigma);
    printf("%s: %ld loss evaluations\n", tag, c.evals);
    free(ge), free(gd), free(x);
    cg_vae_free(&v);
}

/* ---- exact sums over any split of the batch ---------------------------------------------- */

enum { SPLIT_B = 8, SPLIT_G = 4, SPLIT_STEP = 3 };

static void split_data(float *x, int32_t *labels, int n_classes)
{
    tu_fill_uniform(x, (size_t)SPLIT_B * PIX, 0.0f, 1.0f, 400);
    for (int i = 0; i < SPLIT_B; i++) /* three classes, each in several groups */
        labels[i] = n_classes ? (i % 3) * 7 % n_classes : 0;
}

/* The batch as P ranks compute it: rank r holds groups r G/P .. (r+1) G/P - 1, its own images,
 * labels and global indices; sum[k] (k = 0 encoder, 1 decoder) receives the SUM over ranks of
 * their int64 sums, stats the sum of their statistics. Returns 0 or -1. */
static int split_run(const char *model, int n_classes, int P, const float *x,
                     const int32_t *labels, int64_t *sum[2], cg_vae_stats *stats)
{
    const int nb = SPLIT_B / P;
    memset(stats, 0, sizeof *stats);
    for (int r = 0; r < P; r++) {
        cg_vae v;
        cg_error e;
        if (make_vae(&v, model, n_classes, SPLIT_B, nb))
            return -1;
        if (cg_vae_set_groups(&v, SPLIT_G, r * SPLIT_G / P, SPLIT_G / P, &e)) {
            fprintf(stderr, "cg_vae_set_groups: %s\n", e.msg);
            cg_vae_free(&v);
            return -1;
        }
        memcpy(v.labels, labels + r * nb, sizeof(int32_t) * nb);
        cg_vae_stats st;
        cg_vae_grads(&v, x + (size_t)r * nb * PIX, SPLIT_STEP, r * nb, NULL, &st);
        stats->loss += st.loss, stats->recon += st.recon, stats->kl += st.kl;
        const cg_net *nets[2] = {&v.enc, &v.dec};
        for (int k = 0; k < 2; k++)
            for (size_t i = 0; i <= nets[k]->n_params; i++)
                sum[k][i] += nets[k]->gsum[i];
        cg_vae_free(&v);
    }
    return 0;
}

/* The float-mode gradient of the whole batch against the exact one of 1 rank. */
static void check_exact_vs_float(const char *tag, const char *model, int n_classes,
                                 const float *x, const int32_t *labels, int64_t *whole[2])
{
    cg_vae f, ex;
    if (make_vae(&f, model, n_classes, SPLIT_B, SPLIT_B) ||
        make_vae(&ex, model, n_classes, SPLIT_B, SPLIT_B)) {
        CHECK(0);
        return;
    }
    cg_error e;
    CHECK(cg_vae_set_groups(&ex, SPLIT_G, 0, SPLIT_G, &e) == 0);
    memcpy(f.labels, labels, sizeof(int32_t) * SPLIT_B);
    memcpy(ex.labels, labels, sizeof(int32_t) * SPLIT_B);
    cg_vae_grads(&f, x, SPLIT_STEP, 0, NULL, NULL);
    cg_vae_grads(&ex, x, SPLIT_STEP, 0, NULL, NULL);
    CHECK(!memcmp(ex.enc.gsum, whole[0], 8 * (ex.enc.n_params + 1)) &&
          !memcmp(ex.dec.gsum, whole[1], 8 * (ex.dec.n_params + 1)));
    CHECKF(cg_vae_finish_grads(&ex) == 0, "%s: unusable exact gradients", tag);
    const double de = tu_tensor_rel_diff(&ex.enc, ex.enc.grad, f.enc.grad);
    const double dd = tu_tensor_rel_diff(&ex.dec, ex.dec.grad, f.dec.grad);
    printf("%s: exact vs float gradients, per-tensor max rel diff encoder %.2g decoder %.2g\n",
           tag, de, dd);
    CHECKF(de <= 1e-5 && dd <= 1e-5, "%s: exact and float gradients differ (%.3g, %.3g)", tag,
           de, dd);
    cg_vae_free(&f);
    cg_vae_free(&ex);
}

static void test_split(const char *model, int n_classes)
{
    char tag[32];
    snprintf(tag, sizeof tag, "%s%s", model, n_classes ? " conditional" : "");
    float *x = tu_falloc((size_t)SPLIT_B * PIX);
    int32_t labels[SPLIT_B];
    split_data(x, labels, n_classes);
    cg_vae probe;
    if (make_vae(&probe, model, n_classes, SPLIT_B, SPLIT_B)) {
        CHECK(0);
        return;
    }
    const size_t np[2] = {probe.enc.n_params, probe.dec.n_params};
    cg_vae_free(&probe);
    int64_t *whole[2] = {calloc(np[0] + 1, 8), calloc(np[1] + 1, 8)};
    cg_vae_stats s1, sp;
    CHECK(split_run(model, n_classes, 1, x, labels, whole, &s1) == 0);
    for (int P = 2; P <= 4; P *= 2) {
        int64_t *sum[2] = {calloc(np[0] + 1, 8), calloc(np[1] + 1, 8)};
        CHECK(split_run(model, n_classes, P, x, labels, sum, &sp) == 0);
        const int eq = !memcmp(sum[0], whole[0], 8 * (np[0] + 1)) &&
                       !memcmp(sum[1], whole[1], 8 * (np[1] + 1));
        CHECKF(eq, "%s: %d ranks' int64 sums differ from 1 rank's", tag, P);
        CHECK_NEAR(sp.loss, s1.loss, 1e-9 * fabs(s1.loss));
        CHECK_NEAR(sp.kl, s1.kl, 1e-9 * fabs(s1.kl) + 1e-12);
        if (eq)
            printf("%s: 1 rank and %d ranks give bit-identical int64 gradient sums\n", tag, P);
        free(sum[0]), free(sum[1]);
    }
    check_exact_vs_float(tag, model, n_classes, x, labels, whole);
    free(whole[0]), free(whole[1]), free(x);
}

/* ---- encode, generate, the noise and the updates ------------------------------------------ */

static void check_passes(cg_vae *v, const float *x, long step, long first)
{
    const int B = v->cfg.local_batch, c = v->cfg.coding_dim;
    cg_vae_grads(v, x, step, first, NULL, NULL);
    const float *h = v->tape_enc.act[v->enc.n_layers - 1];
    const float *l = v->tape_dec.act[v->dec.n_layers - 1];
    float *hc = tu_fdup(h, (size_t)B * 2 * c), *lc = tu_fdup(l, (size_t)B * PIX);
    float *z = tu_fdup(v->z, (size_t)B * c);
    int32_t labels[8];
    memcpy(labels, v->labels, sizeof labels);
    int eps_ok = 1, enc_ok = 1, gen_ok = 1;
    for (int i = 0; i < B * c; i++)
        eps_ok &= v->eps[i] == cg_rng_normal(v->cfg.seed, cg_stream(CG_RNG_CODING, step),
                                             (uint64_t)first * c + (uint64_t)i);
    float *mean = tu_falloc((size_t)B * c), *lv = tu_falloc((size_t)B * c);
    float *img = tu_falloc((size_t)B * PIX);
    cg_vae_encode(v, x, labels, B, mean, lv);
    for (int i = 0; i < B; i++)
        for (int j = 0; j < c; j++)
            enc_ok &= mean[i * c + j] == hc[i * 2 * c + j] && lv[i * c + j] == hc[i * 2 * c + c + j];
    cg_vae_generate(v, z, labels, B, img);
    for (int i = 0; i < B * PIX; i++)
        gen_ok &= img[i] == cg_sigmoidf(lc[i]);
    CHECKF(eps_ok, "%s: eps is not normal(seed, stream(CODING, step), global index)",
           v->preset.name);
    CHECKF(enc_ok, "%s: cg_vae_encode differs from the training pass's mean / log_var",
           v->preset.name);
    CHECKF(gen_ok, "%s: cg_vae_generate differs from the sigmoid of the training logits",
           v->preset.name);
    free(hc), free(lc), free(z), free(mean), free(lv), free(img);
}

/* cg_vae_apply against the optimizer's own step on copies, bit for bit. */
static void check_apply(cg_vae *v)
{
    cg_net *nets[2] = {&v->enc, &v->dec};
    float *p[2], *s1[2], *s2[2];
    for (int k = 0; k < 2; k++) {
        tu_fill_uniform(nets[k]->grad, nets[k]->n_params, -0.1f, 0.1f, 500 + k);
        p[k] = tu_fdup(nets[k]->param, nets[k]->n_params);
        s1[k] = tu_fdup(nets[k]->adam_m, nets[k]->n_params);
        s2[k] = tu_fdup(nets[k]->adam_v, nets[k]->n_params);
    }
    const int rms = v->cfg.optimizer == CG_OPT_RMSPROP;
    cg_rmsprop r = {v->cfg.lr, v->cfg.rho, v->cfg.eps, 0};
    cg_adam a = {v->cfg.lr, v->cfg.beta1, v->cfg.beta2, v->cfg.eps, 0};
    cg_vae_apply(v);
    int same = 1;
    for (int k = 0; k < 2; k++) {
        const size_t n = nets[k]->n_params;
        if (rms)
            cg_rmsprop_step(&r, p[k], nets[k]->grad, s2[k], n);
        else
            cg_adam_step(&a, p[k], nets[k]->grad, s1[k], s2[k], n), a.t = 0;
        same &= !memcmp(p[k], nets[k]->param, sizeof(float) * n) &&
                !memcmp(s2[k], nets[k]->adam_v, sizeof(float) * n);
        free(p[k]), free(s1[k]), free(s2[k]);
    }
    CHECKF(same, "%s: cg_vae_apply (%s) differs from the optimizer's step", v->preset.name,
           rms ? "RMSprop" : "Adam");
    CHECK(rms ? v->rms_enc.t == 1 && v->rms_dec.t == 1 : v->adam_enc.t == 1);
}

static void test_passes(void)
{
    float *x = tu_falloc(8 * PIX);
    tu_fill_uniform(x, 8 * PIX, 0.0f, 1.0f, 600);
    const char *models[2] = {"vae", "cvae"};
    for (int m = 0; m < 2; m++)
        for (int opt = 0; opt < 2; opt++) {
            cg_vae v;
            if (make_vae(&v, models[m], 5, 16, 8)) {
                CHECK(0);
                continue;
            }
            v.cfg.optimizer = opt ? CG_OPT_ADAM : CG_OPT_RMSPROP;
            for (int i = 0; i < 8; i++)
                v.labels[i] = (i * 3) % 5;
            check_passes(&v, x, 11, 8);
            check_apply(&v);
            cg_vae_free(&v);
        }
    free(x);
}

/* ---- the tables and the initialization ---------------------------------------------------- */

/* Mean and standard deviation of a tensor's values; *maxabs the largest |value|. */
static void tensor_stats(const cg_net *net, const char *name, double *mean, double *sd,
                         double *maxabs)
{
    const int t = cg_net_find_tensor(net, name);
    CHECK(t >= 0);
    const cg_tensor *T = &net->tensors[t < 0 ? 0 : t];
    double s = 0.0, ss = 0.0, mx = 0.0;
    for (size_t i = 0; i < T->count; i++) {
        const double w = net->param[T->offset + i];
        s += w, ss += w * w, mx = fmax(mx, fabs(w));
    }
    *mean = s / T->count;
    *sd = sqrt(ss / T->count - *mean * *mean);
    *maxabs = mx;
}

static void test_tables(void)
{
    cg_vae v;
    if (make_vae(&v, "vae", 0, 4, 4) == 0) {
        /* LeCun normal on the SELU layers: sd sqrt(1 / fan_in), truncated at 2 / 0.8796 of it */
        const struct {
            cg_net *net;
            const char *name;
            int fan_in;
        } lecun[] = {{&v.enc, "dense0.kernel", 784}, {&v.enc, "dense1.kernel", 150},
                     {&v.dec, "dense0.kernel", 10}, {&v.dec, "dense1.kernel", 100}};
        for (int k = 0; k < 4; k++) {
            double mean, sd, mx;
            tensor_stats(lecun[k].net, lecun[k].name, &mean, &sd, &mx);
            const double want = sqrt(1.0 / lecun[k].fan_in);
            printf("%s %s: LeCun normal, sd %.5f (want %.5f), max %.5f, mean %.5f\n",
                   lecun[k].net->name, lecun[k].name, sd, want, mx, mean);
            CHECKF(fabs(sd / want - 1.0) < 0.05 && mx <= 2.0 * want / 0.87962566 * (1 + 1e-6) &&
                       fabs(mean) < 0.1 * want,
                   "%s %s: sd %.5f max %.5f mean %.5f", lecun[k].net->name, lecun[k].name, sd,
                   mx, mean);
        }
        /* Glorot uniform on the heads: limit sqrt(6 / (100 + 20)), sd limit / sqrt(3) */
        double mean, sd, mx;
        tensor_stats(&v.enc, "dense2.kernel", &mean, &sd, &mx);
        const double lim = sqrt(6.0 / 120.0);
        CHECKF(mx <= lim && fabs(sd / (lim / sqrt(3.0)) - 1.0) < 0.05,
               "encoder heads: Glorot limit %.4f, max %.4f sd %.4f", lim, mx, sd);
        CHECK(v.enc.n_params == 784 * 150 + 150 + 150 * 100 + 100 + 100 * 20 + 20);
        CHECK(v.dec.n_params == 10 * 100 + 100 + 100 * 150 + 150 + 150 * 784 + 784);
        cg_vae_free(&v);
    }
    /* conditional cvae: the class joins after the flatten and at the decoder's input */
    if (make_vae(&v, "cvae", 47, 4, 4) == 0) {
        CHECK(v.enc.n_layers == 6 && v.enc.layers[3].spec.op == CG_OP_LABELS &&
              v.enc.layers[4].in_c == 128 * 7 * 7 + 47 && v.enc.layers[5].out_c == 20);
        CHECK(v.dec.layers[0].spec.op == CG_OP_LABELS && v.dec.layers[1].in_c == 10 + 47 &&
              v.dec.layers[v.dec.n_layers - 1].out_h == 28 &&
              v.dec.layers[v.dec.n_layers - 1].spec.act == CG_ACT_NONE);
        cg_vae_free(&v);
    }
    cg_vae_config cfg;
    cg_vae_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "seed");
    cg_error e;
    CHECK(cg_vae_init(&v, &cfg, &e) == -1 && strstr(e.msg, "vae, cvae"));
    cg_vae_free(&v);
}

int main(int argc, char **argv)
{
    if (argc == 3) { /* the finite differences of one model at another step */
        test_fd_model(argv[1], 0, atol(argv[2]));
        test_fd_model(argv[1], 47, atol(argv[2]));
        return tu_finish("test_vae");
    }
    test_latent();
    test_bce_sum();
    test_by_hand();
    test_tables();
    test_passes();
    test_split("vae", 0);
    test_split("vae", 47);
    test_split("cvae", 0);
    test_split("cvae", 47);
    test_fd_model("vae", 0, 5);
    test_fd_model("vae", 47, 5);
    /* cvae's decoder has 6272 ReLU units per sample, about 10 of them within 1e-4 of their
     * kink at any step; at step 5 two of the checked biases' units sit 2e-5 below it (inside
     * the step h), at 6 none (test_vae cvae STEP shows another step). */
    test_fd_model("cvae", 0, 6);
    test_fd_model("cvae", 47, 6);
    return tu_finish("test_vae");
}
