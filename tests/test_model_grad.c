/* The whole gradient of the real GAN step, checked against finite differences of its losses,
 * plus the parameter counts and FLOP counts of the presets.
 *
 * Setup: model "small", global_batch = local_batch = 2, default noise dimension, Glorot
 * weights from seed 1 with the biases then set to small random values (so that no bias
 * sits at the special point 0), real images uniform in [0, 1], step 5.
 *
 * cg_gan_grads(step) returns dL_D/dD and dL_G/dG of that step's losses (local == global, so
 * stats.loss_d and stats.loss_g are the losses). The noise and the dropout masks are pure
 * functions of (seed, step, sample), so calling cg_gan_grads again at perturbed parameters
 * evaluates the same loss function: for a D parameter we difference L_D (fake is data to it),
 * for a G parameter L_G (G reaches L_G through D(G(z))).
 *
 * Entries checked: in each tensor of D and of G, all entries of small tensors (<= 40), else
 * 28 uniformly random entries plus 12 random entries among those with a non-zero analytic
 * gradient (dead ReLUs and dropped units make many exact zeros, which would make a weak test
 * on their own).
 *
 * Perturbation (float). The parameters are O(0.05); the losses are O(0.7) and computed from
 * float activations, so one loss evaluation carries a rounding noise sigma ~ 1e-9..3e-9
 * (measured below by moving a weight by 1e-7 steps, far below any real change), and the
 * difference quotient a noise ~ sigma / h. The model is piecewise smooth: every ReLU /
 * LeakyReLU unit whose pre-activation crosses 0 within +-h bends the loss, and a bias or a
 * first-layer weight moves thousands of units at once (their kinks are ~1e-4 apart for D's
 * conv biases, where the fakes of an untrained G are almost constant images), so h must be as
 * small as the noise allows. Measured on this setup with one h per network (entries off by
 * more than 5% of max(|a|, 0.1 RMS), out of 273): D 1e-3: 33, 3e-4: 20, 1e-4: 12; G 1e-2: 92,
 * 3e-3: 59, 1e-3: 96 (noise-bound). Hence a step per tensor,
 * h = 200 sigma / RMS(tensor's checked analytic entries) in [1e-5, 3e-3]: noise 0.5% of the
 * tensor's typical gradient, and no larger step than that. Central differences at these h
 * converge to the analytic values as h shrinks, until the noise takes over (scanned over h
 * for the worst entries when this test was written).
 *
 * Criteria. Per entry: |analytic - numeric| <= tol * max(|analytic|, 0.3 RMS of its tensor)
 * (tiny entries are judged against the tensor's typical size), tol 0.10 for D and 0.25 for G
 * (G's gradients, 1e-5..1e-3, pass through both networks' kinks; the roughness of L_G at the
 * 1e-3 scale is a few % of the gross contributions); at most 2% of a network's entries may
 * fail, each one is printed. Per tensor, where kinks average out: cosine(analytic, numeric)
 * >= 0.999 (D) / 0.998 (G) and the least-squares scale numeric/analytic within 2% of 1 (a
 * wrong index or sign drops the cosine, a missing factor moves the scale: a 5% error of the
 * fake-half D gradient or a 10% error of G's gradient fails).
 *
 * Also: the losses recomputed from gan.h's contract (noise and dropout keys, mean BCE over 2B
 * and B in double), the d_grads_ready hook (D's gradient final when it fires), repeatability,
 * one thread vs the default threads, the parameter counts of "seed" and "small" (total and per
 * layer, from the model tables) and the FLOPs of one step at batch 64 (47.72 / 3.26 GFLOP). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/dist.h"
#include "chargan/gan.h"
#include "chargan/model.h"
#include "chargan/rng.h"
#include "testutil.h"

/* In gan.h now; redeclared (compatibly) in case it moves again. */
double cg_gan_step_flops(const cg_gan *gan, int B);

#define B 2
#define STEP 5
#define PIX 784

/* FD settings: the per-tensor step from the loss noise (TU_FD_NOISE_RATIO, TU_FD_H_MIN,
 * TU_FD_H_MAX), the criteria (TU_FD_GAN_D, TU_FD_GAN_G) and the entries per tensor
 * (TU_FD_ENTRIES_*) are testutil.h's, shared with test_norm_cond_grad.c. */
static double loss_sigma = 1e-9; /* measured in main */

typedef struct {
    cg_gan *gan;
    const float *real;
    int which; /* 0: L_D, 1: L_G */
    long evals;
} loss_ctx;

static double step_loss(void *p)
{
    loss_ctx *c = p;
    cg_gan_stats st;
    cg_gan_grads(c->gan, c->real, STEP, 0, NULL, &st);
    c->evals++;
    return c->which ? st.loss_g : st.loss_d;
}

/* ---- D-grads-ready hook: D's gradient must be final when it fires ---------------------- */

typedef struct {
    float *dgrad;
    int calls;
} hook_state;

static void on_d_ready(void *user, cg_gan *gan)
{
    hook_state *h = user;
    memcpy(h->dgrad, gan->d.grad, sizeof(float) * gan->d.n_params);
    h->calls++;
}

/* ---- the loss definitions, recomputed independently from gan.h's contract ---------------- */

static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static void check_losses(cg_gan *gan, const float *real, const cg_gan_stats *st)
{
    const int nz = gan->preset.noise_dim;
    float *z = tu_falloc((size_t)B * nz);
    /* noise of global sample i: normal(seed, stream(NOISE, step), i*noise_dim + j) */
    for (int i = 0; i < B * nz; i++)
        z[i] = cg_rng_normal(gan->cfg.seed, cg_stream(CG_RNG_NOISE, STEP), (uint64_t)i);
    cg_tape tg, tr, tf;
    cg_tape_alloc(&gan->g, &tg);
    cg_tape_alloc(&gan->d, &tr);
    cg_tape_alloc(&gan->d, &tf);
    cg_fwd_opts o = {.training = 1, .seed = gan->cfg.seed, .step = STEP, .first_sample = 0};
    const float *fake = cg_net_forward(&gan->g, &tg, z, B, &o);
    const float *lr = cg_net_forward(&gan->d, &tr, real, B, &o);
    o.first_sample = B; /* fakes follow the reals in D's concatenated batch */
    const float *lf = cg_net_forward(&gan->d, &tf, fake, B, &o);
    /* BCE: L_D = mean over 2B of -log s(l_real) and -log(1 - s(l_fake));
     * L_G = mean over B of -log s(l_fake); -log s(l) = softplus(-l), -log(1-s(l)) = softplus(l).
     * Hinge: L_D = mean over B of max(0, 1 - l_real) + mean over B of max(0, 1 + l_fake);
     * L_G = -mean over B of l_fake. */
    const int hinge = gan->cfg.loss == CG_LOSS_HINGE;
    double ld = 0.0, lg = 0.0, dr = 0.0, df = 0.0;
    for (int i = 0; i < B; i++) {
        if (hinge) {
            ld += fmax(0.0, 1.0 - (double)lr[i]) + fmax(0.0, 1.0 + (double)lf[i]);
            lg -= (double)lf[i];
        } else {
            ld += softplus(-(double)lr[i]) + softplus((double)lf[i]);
            lg += softplus(-(double)lf[i]);
        }
        dr += 1.0 / (1.0 + exp(-(double)lr[i]));
        df += 1.0 / (1.0 + exp(-(double)lf[i]));
    }
    ld /= hinge ? B : 2.0 * B, lg /= B, dr /= B, df /= B;
    printf("%s losses: L_D %.9f (recomputed %.9f), L_G %.9f (recomputed %.9f), D(real) %.6f, "
           "D(fake) %.6f\n", hinge ? "hinge" : "BCE", st->loss_d, ld, st->loss_g, lg,
           st->d_real, st->d_fake);
    CHECK_NEAR(st->loss_d, ld, 1e-6 * fabs(ld));
    CHECK_NEAR(st->loss_g, lg, 1e-6 * fabs(lg));
    CHECK_NEAR(st->d_real, dr, 1e-6);
    CHECK_NEAR(st->d_fake, df, 1e-6);
    /* the step's fakes use those noise vectors: the G tape holds what we computed */
    CHECK(memcmp(gan->tape_g.act[gan->g.n_layers - 1], fake, sizeof(float) * B * PIX) == 0);
    cg_tape_free(&tg), cg_tape_free(&tr), cg_tape_free(&tf);
    free(z);
}

/* ---- FD over a network ------------------------------------------------------------------ */

static int is_param_tensor(const char *name)
{
    size_t n = strlen(name);
    return (n > 7 && !strcmp(name + n - 7, ".kernel")) || (n > 5 && !strcmp(name + n - 5, ".bias"));
}

static void fd_network(const char *label, cg_gan *gan, cg_net *net, const float *real, int which,
                       const float *analytic, const tu_fd_setting *fs, const char *skip)
{
    loss_ctx ctx = {gan, real, which, 0};
    tu_fd_net_report R = tu_fd_net_report_new();
    size_t *idx = malloc(sizeof(size_t) * (TU_FD_ENTRIES_RANDOM + TU_FD_ENTRIES_NONZERO));
    printf("%s: finite differences of %s, h = %g sigma / RMS in [%g, %g], entry tolerance %g "
           "of max(|a|, %g RMS)\n", label, which ? "L_G" : "L_D", TU_FD_NOISE_RATIO, TU_FD_H_MIN,
           TU_FD_H_MAX, fs->tol, fs->floor_frac);
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        if (!is_param_tensor(T->name)) {
            printf("  (skipping %s.%s: not a kernel or bias)\n", label, T->name);
            continue;
        }
        if (skip && !strcmp(T->name, skip)) {
            printf("  (skipping %s.%s: checked separately)\n", label, T->name);
            continue;
        }
        const size_t k = tu_choose_entries(T->offset, T->count, analytic, TU_FD_ENTRIES_RANDOM,
                                           TU_FD_ENTRIES_NONZERO,
                                           9000 + 10 * (uint64_t)t + (uint64_t)which, idx);
        tu_fd_tensor(label, T->name, net->param, analytic, net->n_params, idx, k, loss_sigma, fs,
                     step_loss, &ctx, &R);
    }
    CHECKF(R.tensors == net->n_tensors || R.tensors >= 8 - (skip != NULL),
           "%s: only %d parameter tensors", label, R.tensors);
    const size_t allowed = tu_fd_net_allowed(&R);
    printf("%s: %zu entries in %d tensors: %zu over tolerance (allowed %zu), worst normalized "
           "error %.3g; per tensor worst cosine %.5f, worst |scale - 1| %.4f; %ld loss "
           "evaluations\n", label, R.entries, R.tensors, R.failed, allowed, R.worst, R.worst_cos,
           R.worst_scale, ctx.evals);
    CHECKF(R.failed <= allowed, "%s: %zu of %zu FD entries over tolerance", label, R.failed,
           R.entries);
    free(idx);
}

/* ---- parameter and FLOP counts ---------------------------------------------------------- */

/* Per-sample multiply-add FLOPs of one layer from its shapes alone. */
static double layer_flops(const cg_layer *L)
{
    switch (L->spec.op) {
    case CG_OP_DENSE: return 2.0 * L->in_c * L->out_c;
    case CG_OP_CONV: /* every output pixel meets cin*cout*k*k weights */
        return 2.0 * L->in_c * L->out_c * L->spec.k * L->spec.k * L->out_h * L->out_w;
    case CG_OP_CONVT: /* every input pixel meets cin*cout*k*k weights */
        return 2.0 * L->in_c * L->out_c * L->spec.k * L->spec.k * L->in_h * L->in_w;
    default: return 0.0;
    }
}

static size_t layer_params(const cg_net *net, const char *layer)
{
    size_t n = 0, len = strlen(layer);
    for (int t = 0; t < net->n_tensors; t++)
        if (!strncmp(net->tensors[t].name, layer, len) && net->tensors[t].name[len] == '.')
            n += net->tensors[t].count;
    return n;
}

static void check_counts(const char *model, size_t np_g, size_t np_d, double gflop_step,
                         const size_t *layers_g, const size_t *layers_d)
{
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    cfg.global_batch = cfg.local_batch = 1; /* counts per sample do not depend on the batch */
    cg_gan gan;
    cg_error e;
    CHECKF(cg_gan_init(&gan, &cfg, &e) == 0, "cg_gan_init(%s): %s", model, e.msg);
    CHECKF(gan.g.n_params == np_g, "%s G params %zu, expected %zu", model, gan.g.n_params, np_g);
    CHECKF(gan.d.n_params == np_d, "%s D params %zu, expected %zu", model, gan.d.n_params, np_d);
    /* tensors tile the flat buffer */
    const cg_net *nets[2] = {&gan.g, &gan.d};
    for (int k = 0; k < 2; k++) {
        size_t off = 0;
        for (int t = 0; t < nets[k]->n_tensors; t++) {
            CHECK(nets[k]->tensors[t].offset == off);
            off += nets[k]->tensors[t].count;
        }
        CHECK(off == nets[k]->n_params);
    }
    /* per-layer counts of the model tables */
    static const char *gl[] = {"dense0", "convt0", "convt1", "convt2"};
    static const char *dl[] = {"conv0", "conv1", "dense0", "dense1"};
    for (int i = 0; i < 4; i++) {
        CHECKF(layer_params(&gan.g, gl[i]) == layers_g[i], "%s G %s: %zu params, expected %zu",
               model, gl[i], layer_params(&gan.g, gl[i]), layers_g[i]);
        CHECKF(layer_params(&gan.d, dl[i]) == layers_d[i], "%s D %s: %zu params, expected %zu",
               model, dl[i], layer_params(&gan.d, dl[i]), layers_d[i]);
    }

    /* FLOPs of one step at batch 64, counted as: G forward (B), D forward (2B),
     * D backward for L_D on 2B (weights and inputs, no input gradient of D's first layer),
     * D input-gradient pass for L_G (B), G backward (no gradient into the noise). Computed
     * here from the layer shapes, then compared with the library's accounting. */
    double gf = 0.0, df = 0.0;
    for (int i = 0; i < gan.g.n_layers; i++)
        gf += layer_flops(&gan.g.layers[i]);
    for (int i = 0; i < gan.d.n_layers; i++)
        df += layer_flops(&gan.d.layers[i]);
    const double g_first = layer_flops(&gan.g.layers[0]), d_first = layer_flops(&gan.d.layers[0]);
    const int Bf = 64;
    const double mine = Bf * gf + 2.0 * Bf * df + 2.0 * Bf * (2.0 * df - d_first) + Bf * df +
                        Bf * (2.0 * gf - g_first);
    const double lib = cg_gan_step_flops(&gan, Bf);
    printf("%s: G %zu params, D %zu params; step at batch 64: %.4f GFLOP (library %.4f, "
           "table %.2f)\n", model, gan.g.n_params, gan.d.n_params, mine * 1e-9, lib * 1e-9,
           gflop_step);
    CHECK_NEAR(cg_net_fwd_flops(&gan.g), gf, 0.5);
    CHECK_NEAR(cg_net_fwd_flops(&gan.d), df, 0.5);
    CHECK_NEAR(lib, mine, 1.0);
    CHECK_NEAR(mine * 1e-9, gflop_step, 0.005); /* the table's number, to its 2 decimals */
    cg_gan_free(&gan);
}

/* ---------------------------------------------------------------------------------------- */

int main(void)
{
    static const size_t seed_g[] = {1894144, 590080, 295040, 1153};
    static const size_t seed_d[] = {2560, 295040, 401472, 65};
    static const size_t small_g[] = {150 * 3136 + 3136, 64 * 64 * 9 + 64, 64 * 32 * 9 + 32,
                                     32 * 9 + 1};
    static const size_t small_d[] = {64 * 9 + 64, 64 * 32 * 9 + 32, 1568 * 64 + 64, 65};
    check_counts("seed", 2780417, 699137, 47.72, seed_g, seed_d);
    check_counts("small", 529217, 119585, 3.26, small_g, small_d);

    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "small");
    cfg.global_batch = cfg.local_batch = B;
    cg_gan gan;
    cg_error e;
    if (cg_gan_init(&gan, &cfg, &e)) {
        fprintf(stderr, "cg_gan_init: %s\n", e.msg);
        return 1;
    }
    cg_gan_init_weights(&gan);
    /* biases away from the special point 0 */
    cg_net *nets[2] = {&gan.g, &gan.d};
    for (int k = 0; k < 2; k++)
        for (int t = 0; t < nets[k]->n_tensors; t++) {
            const cg_tensor *T = &nets[k]->tensors[t];
            const size_t len = strlen(T->name);
            if (len > 5 && !strcmp(T->name + len - 5, ".bias"))
                tu_fill_uniform(nets[k]->param + T->offset, T->count, -0.05f, 0.05f,
                                8000 + 100 * (uint64_t)k + (uint64_t)t);
        }
    float *real = tu_falloc((size_t)B * PIX);
    tu_fill_uniform(real, (size_t)B * PIX, 0.0f, 1.0f, 77);

    /* analytic gradients, with the hook's copy of D's gradient */
    hook_state hs = {tu_falloc(gan.d.n_params), 0};
    cg_gan_hooks hooks = {on_d_ready, &hs};
    cg_gan_stats st;
    cg_gan_grads(&gan, real, STEP, 0, &hooks, &st);
    CHECK(hs.calls == 1);
    CHECKF(memcmp(hs.dgrad, gan.d.grad, sizeof(float) * gan.d.n_params) == 0,
           "D's gradient changed after d_grads_ready (the G pass must not touch it)");
    float *gd = tu_fdup(gan.d.grad, gan.d.n_params), *gg = tu_fdup(gan.g.grad, gan.g.n_params);
    check_losses(&gan, real, &st);

    /* The FD below runs ~1100 steps of batch 2 on one thread (more threads only add
     * synchronization at this size, which is very slow on a loaded machine); the gradient
     * with the default threads must be the same up to float rounding. */
    cg_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    cg_ctx_set_threads(&ctx, 1);
    cg_gan_grads(&gan, real, STEP, 0, NULL, &st);
    {
        const double ed = tu_max_rel_diff(gan.d.grad, gd, gan.d.n_params);
        const double eg = tu_max_rel_diff(gan.g.grad, gg, gan.g.n_params);
        printf("1 thread vs default threads: gradients differ by %.2e (D), %.2e (G)\n", ed, eg);
        CHECK(ed <= 1e-6 && eg <= 1e-6);
        memcpy(gd, gan.d.grad, sizeof(float) * gan.d.n_params);
        memcpy(gg, gan.g.grad, sizeof(float) * gan.g.n_params);
    }

    /* repeatability: the same step again gives bit-identical losses and gradients (so the
     * gradients are recomputed, not accumulated across calls, and FD sees one function) */
    cg_gan_stats st2;
    cg_gan_grads(&gan, real, STEP, 0, NULL, &st2);
    CHECK(st2.loss_d == st.loss_d && st2.loss_g == st.loss_g);
    CHECK(memcmp(gd, gan.d.grad, sizeof(float) * gan.d.n_params) == 0);
    CHECK(memcmp(gg, gan.g.grad, sizeof(float) * gan.g.n_params) == 0);
    /* another step is another function (new noise and masks) */
    cg_gan_grads(&gan, real, STEP + 1, 0, NULL, &st2);
    CHECK(st2.loss_g != st.loss_g);

    /* Rounding noise of one loss evaluation: move a G kernel entry (|dL/dw| ~ 1e-5) by
     * k * 1e-7, k = 1..8, where the true change (~1e-12) is far below float rounding; the
     * spread of L is the noise sigma that limits the FD step from below. */
    {
        const int t = cg_net_find_tensor(&gan.g, "dense0.kernel");
        CHECK(t >= 0);
        if (t >= 0) {
            float *p = gan.g.param + gan.g.tensors[t].offset + 4321;
            const float p0 = *p;
            for (int which = 0; which < 2; which++) {
                loss_ctx c = {&gan, real, which, 0};
                const double l0 = step_loss(&c);
                double ss = 0.0;
                for (int k = 1; k <= 8; k++) {
                    *p = p0 + 1e-7f * (float)k;
                    const double d = step_loss(&c) - l0;
                    ss += d * d;
                }
                *p = p0;
                const double sigma = sqrt(ss / 8.0);
                printf("loss rounding noise: %s sigma %.2e\n", which ? "L_G" : "L_D", sigma);
                loss_sigma = fmax(loss_sigma, sigma);
            }
        }
    }

    fd_network("D", &gan, &gan.d, real, 0, gd, &TU_FD_GAN_D, NULL);
    fd_network("G", &gan, &gan.g, real, 1, gg, &TU_FD_GAN_G, NULL);

    /* The hinge loss: the same network, other loss terms (L_D sums the real and fake means,
     * L_G is linear in D(fake)). */
    gan.cfg.loss = CG_LOSS_HINGE;
    cg_gan_grads(&gan, real, STEP, 0, NULL, &st);
    check_losses(&gan, real, &st);
    {
        /* not the BCE gradient: the loss terms reach the gradients */
        const double ed = tu_max_rel_diff(gan.d.grad, gd, gan.d.n_params);
        CHECKF(ed > 1e-2, "hinge and BCE give the same D gradient (max rel diff %.2e)", ed);
    }
    /* With every margin active (|logits| << 1 here), D's output bias gets -1/B per real and
     * +1/B per fake: exactly 0, and so is its finite difference; FD skips it. */
    {
        const int t = cg_net_find_tensor(&gan.d, "dense1.bias");
        CHECK(t >= 0);
        if (t >= 0)
            CHECKF(gan.d.grad[gan.d.tensors[t].offset] == 0.0f,
                   "hinge: D output bias gradient %g, expected 0",
                   gan.d.grad[gan.d.tensors[t].offset]);
    }
    memcpy(gd, gan.d.grad, sizeof(float) * gan.d.n_params);
    memcpy(gg, gan.g.grad, sizeof(float) * gan.g.n_params);
    fd_network("D (hinge)", &gan, &gan.d, real, 0, gd, &TU_FD_GAN_D, "dense1.bias");
    fd_network("G (hinge)", &gan, &gan.g, real, 1, gg, &TU_FD_GAN_G, NULL);

    free(gd), free(gg), free(real), free(hs.dgrad);
    cg_gan_free(&gan);
    return tu_finish("test_model_grad");
}
