/* Exact, rank-count independent gradient sums (cg_net_set_groups, cg_sgemm).
 *
 *  - cg_sgemm against double loops for every transpose combination, both split directions,
 *    beta 0 and 1, and bit-identical results on 1, 2 and 3 OpenMP threads (OpenBLAS's own
 *    threading is not: that is why the layers use cg_sgemm).
 *  - Exact mode computes the same gradients as float mode: per tensor
 *    max|a - b| / max|b| <= 1e-5 for small, dcgan, and conditional small, dcgan and cdcgan
 *    (conditional batch norm in G, set away from its start at 0) (the fixed point has 2^-32
 *    resolution; float summation order differs at ~1e-7). The labels take three classes,
 *    each in several groups, so that class rows (D's embedding, G's conditional batch norm)
 *    sum over groups.
 *  - Splitting the batch over "ranks": the fixed-point sums of two half batches (first_group 0
 *    and 2 of 4, their own samples and global indices) add up to the whole batch's sums
 *    EXACTLY (int64 equality). The two halves run on two threads whose batch-norm statistics
 *    are summed through a barrier, as MPI_Allreduce would (tests/test_train_mpi.sh does it with
 *    real ranks). Measured once on mutants of src/model.c: folding the conditional batch
 *    norm's gradient once per pass instead of per group fails this check for cdcgan (and
 *    1 vs 2 ranks in test_train_mpi.sh), and a group offset without the flat layout's stride
 *    fails exact vs float (1.7).
 *  - cdcgan starts as dcgan: at initialization (conditional batch norm at 0, every other tensor
 *    initialized from the same stream) its fakes, losses and the gradients of every dcgan
 *    tensor are bit-identical to conditional dcgan's, and its own tensors get a gradient.
 *  - A step's sums are the same whatever the buffer held before the step.
 *  - cg_net_backward_scaled (one pass through D for the D and G losses on the fakes) against
 *    plain backward passes from the scaled and the unit seeds.
 *  - Unusable gradients are counted: a NaN parameter makes cg_gan_finish_grads report them,
 *    and so do gradients beyond the fixed-point range (a dense layer driven past 2^19).
 *  - cg_sum_groups: the default choice and the refusals. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "chargan/dist.h"
#include "chargan/gan.h"
#include "chargan/train.h"
#include "testutil.h"

#define PIX 784

static void set_threads(int t)
{
    cg_ctx c;
    memset(&c, 0, sizeof c);
    cg_ctx_set_threads(&c, t);
}

static void test_sgemm(void)
{
    /* M, N, K: small (one block), split along N, split along M, odd sizes */
    static const int shapes[][3] = {{3, 5, 7}, {64, 1568, 9}, {700, 96, 40}, {37, 1031, 129}};
    double worst = 0.0;
    for (int s = 0; s < 4; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int beta = 0; beta < 2; beta++) {
                    const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    const int lda = ta ? M : K, ldb = tb ? K : N;
                    float *A = tu_falloc((size_t)M * K), *B = tu_falloc((size_t)K * N);
                    float *C0 = tu_falloc((size_t)M * N);
                    tu_fill_uniform(A, (size_t)M * K, -1, 1, 10 + s);
                    tu_fill_uniform(B, (size_t)K * N, -1, 1, 20 + s);
                    tu_fill_uniform(C0, (size_t)M * N, -1, 1, 30 + s);
                    float *C[3];
                    for (int t = 0; t < 3; t++) {
                        C[t] = tu_fdup(C0, (size_t)M * N);
                        set_threads(t + 1);
                        cg_sgemm(ta, tb, M, N, K, 0.5f, A, lda, B, ldb, (float)beta, C[t], N);
                    }
                    set_threads(1);
                    double err = 0.0, scale = 0.0;
                    for (int i = 0; i < M; i++)
                        for (int j = 0; j < N; j++) {
                            double acc = 0.0;
                            for (int k = 0; k < K; k++)
                                acc += (double)(ta ? A[(size_t)k * lda + i]
                                                   : A[(size_t)i * lda + k]) *
                                       (tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                            double want = 0.5 * acc + beta * (double)C0[(size_t)i * N + j];
                            err = fmax(err, fabs(C[0][(size_t)i * N + j] - want));
                            scale = fmax(scale, fabs(want));
                        }
                    err /= scale;
                    worst = fmax(worst, err);
                    CHECKF(err <= 1e-5, "sgemm M%d N%d K%d ta%d tb%d beta%d: error %.3g", M, N,
                           K, ta, tb, beta, err);
                    CHECKF(!memcmp(C[0], C[1], sizeof(float) * M * N) &&
                               !memcmp(C[0], C[2], sizeof(float) * M * N),
                           "sgemm M%d N%d K%d ta%d tb%d: results differ between 1, 2 and 3 "
                           "threads", M, N, K, ta, tb);
                    for (int t = 0; t < 3; t++)
                        free(C[t]);
                    free(A), free(B), free(C0);
                }
    printf("cg_sgemm: worst relative error %.2g vs double loops; 1/2/3 threads identical\n",
           worst);
}

static int make_gan(cg_gan *gan, const char *model, int conditional, int global, int local)
{
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    cfg.global_batch = global;
    cfg.local_batch = local;
    cfg.n_classes = conditional ? 47 : 0;
    cg_error e;
    if (cg_gan_init(gan, &cfg, &e)) {
        fprintf(stderr, "cg_gan_init: %s\n", e.msg);
        return -1;
    }
    cg_gan_init_weights(gan);
    return 0;
}

/* Conditional batch norm away from its start (0), the same in every GAN made here, so that
 * it scales and shifts the activations of the checks below. */
static void set_cbn(cg_gan *gan)
{
    for (int t = 0; t < gan->g.n_tensors; t++)
        if (!strncmp(gan->g.tensors[t].name, "cbn", 3))
            tu_fill_uniform(gan->g.param + gan->g.tensors[t].offset, gan->g.tensors[t].count,
                            -0.3f, 0.3f, 500 + (uint64_t)t);
}

static void fill_batch(cg_gan *gan, float *real, int B, int first)
{
    tu_fill_uniform(real, (size_t)B * PIX, gan->data_lo, 1.0f, 77 + (uint64_t)first);
    /* three classes, each in several groups: a class's gradient rows are summed over groups */
    for (int i = 0; i < B; i++)
        gan->labels[i] = (first + i) % 3 * 7;
}

/* Two threads standing for two ranks: sum() adds both threads' buffers in rank order, which
 * is what MPI_Allreduce gives here (each rank's batch-norm table has zeros in the other's
 * rows, so any order gives the same bits). */
typedef struct {
    pthread_barrier_t barrier;
    const double *buf[2];
} pair_sync;

typedef struct {
    pair_sync *ps;
    int rank;
} pair_end;

static void pair_sum(void *user, double *buf, int n)
{
    pair_end *pe = user;
    pair_sync *ps = pe->ps;
    double *total = malloc(sizeof(double) * (size_t)n);
    ps->buf[pe->rank] = buf;
    pthread_barrier_wait(&ps->barrier);
    for (int i = 0; i < n; i++)
        total[i] = ps->buf[0][i] + ps->buf[1][i];
    pthread_barrier_wait(&ps->barrier); /* both have read both buffers */
    memcpy(buf, total, sizeof(double) * (size_t)n);
    free(total);
}

/* One half of a batch of B in G groups, as rank r of 2: groups r G/2 .. (r+1) G/2 - 1. */
typedef struct {
    const char *model;
    int conditional, B, G, step, rank;
    pair_sync *ps;
    const int32_t *labels;
    const float *real;
    int64_t *gsum[2]; /* out: G's and D's fixed-point sums */
    size_t n[2];
    int rc;
} half_rank;

static void *half_run(void *arg)
{
    half_rank *h = arg;
    const int B = h->B, G = h->G;
    cg_gan gan;
    cg_error e;
    if (make_gan(&gan, h->model, h->conditional, B, B / 2))
        return NULL;
    set_cbn(&gan);
    pair_end pe = {h->ps, h->rank};
    gan.g.sync.sum = gan.d.sync.sum = pair_sum;
    gan.g.sync.user = gan.d.sync.user = &pe;
    if (cg_gan_set_groups(&gan, G, h->rank * G / 2, G / 2, &e) == 0) {
        memcpy(gan.labels, h->labels, sizeof(int32_t) * B / 2);
        cg_gan_grads(&gan, h->real, h->step, h->rank * B / 2, NULL, NULL);
        cg_net *nets[2] = {&gan.g, &gan.d};
        for (int k = 0; k < 2; k++) {
            h->n[k] = nets[k]->n_params;
            h->gsum[k] = malloc(8 * (h->n[k] + 1));
            memcpy(h->gsum[k], nets[k]->gsum, 8 * (h->n[k] + 1));
        }
        h->rc = 0;
    }
    cg_gan_free(&gan);
    return NULL;
}

/* Activations of two passes over the same batch that lie on different sides of a ReLU /
 * LeakyReLU kink (output > 0 in one, not in the other), over G's tape and both of D's. Float
 * rounding of ~1e-7 can move a pre-activation that close to 0 across, and then that unit's
 * derivative jumps (1 vs 0 or 0.2): a real difference of the two functions there, not an
 * error of either. Comparing gradients to rounding precision needs zero such units. */
static long kink_flips(const cg_gan *a, const cg_gan *b)
{
    const int B = a->cfg.local_batch;
    long flips = 0;
    for (int k = 0; k < 3; k++) { /* G; D's reals; D's fakes */
        const cg_net *net = k ? &a->d : &a->g;
        const cg_tape *ta = k ? &a->tape_d : &a->tape_g, *tb = k ? &b->tape_d : &b->tape_g;
        for (int i = 0; i < net->n_layers; i++) {
            const cg_layer *L = &net->layers[i];
            if (L->spec.act != CG_ACT_RELU && L->spec.act != CG_ACT_LEAKY)
                continue;
            /* The two D passes may hold a sample at different places (groups differ). */
            const size_t hw = L->out_h ? (size_t)L->out_h * L->out_w : 1;
            for (int s = 0; s < B; s++) {
                const size_t sa = k ? cg_gan_d_sample(a, s, k - 1) : (size_t)s;
                const size_t sb = k ? cg_gan_d_sample(b, s, k - 1) : (size_t)s;
                for (size_t e = 0; e < (size_t)L->out_c * hw; e++) {
                    const size_t c = e / hw, j = e % hw;
                    const size_t ia = L->out_h ? (c * ta->batch + sa) * hw + j : sa * L->out_c + e;
                    const size_t ib = L->out_h ? (c * tb->batch + sb) * hw + j : sb * L->out_c + e;
                    flips += (ta->act[i][ia] > 0.0f) != (tb->act[i][ib] > 0.0f);
                }
            }
        }
    }
    return flips;
}

static void test_model(const char *model, int conditional, int STEP)
{
    enum { B = 8, G = 4 };
    char tag[64];
    snprintf(tag, sizeof tag, "%s%s", model, conditional ? " conditional" : "");
    cg_gan ref, ex;
    if (make_gan(&ref, model, conditional, B, B) || make_gan(&ex, model, conditional, B, B)) {
        CHECK(0);
        return;
    }
    set_cbn(&ref);
    set_cbn(&ex);
    cg_error e;
    CHECK(cg_gan_set_groups(&ex, G, 0, G, &e) == 0);
    float *real = tu_falloc((size_t)B * PIX);
    fill_batch(&ref, real, B, 0);
    memcpy(ex.labels, ref.labels, sizeof(int32_t) * B);
    cg_gan_grads(&ref, real, STEP, 0, NULL, NULL);
    cg_gan_grads(&ex, real, STEP, 0, NULL, NULL);
    CHECK(cg_gan_finish_grads(&ref) == 0);
    CHECK(cg_gan_finish_grads(&ex) == 0);
    const long flips = kink_flips(&ref, &ex);
    CHECKF(flips == 0, "%s, step %d: %ld units on different sides of a kink in exact and float "
           "mode (rounding); the comparison below needs a step without", tag, STEP, flips);
    const double dg = tu_tensor_rel_diff(&ex.g, ex.g.grad, ref.g.grad);
    const double dd = tu_tensor_rel_diff(&ex.d, ex.d.grad, ref.d.grad);
    printf("%s: exact vs float gradients, per-tensor max rel diff G %.2g D %.2g\n", tag, dg, dd);
    CHECKF(dg <= 1e-5 && dd <= 1e-5, "%s: exact gradients differ from float ones (G %.3g, D %.3g)",
           tag, dg, dd);
    int64_t *whole[2] = {ex.g.gsum, ex.d.gsum};
    size_t np[2] = {ex.g.n_params, ex.d.n_params};

    /* Two half batches as two ranks would compute them, at the same time. */
    {
        int64_t *sum[2] = {calloc(np[0] + 1, 8), calloc(np[1] + 1, 8)};
        pair_sync ps;
        pthread_barrier_init(&ps.barrier, NULL, 2);
        half_rank h[2];
        pthread_t th[2];
        for (int r = 0; r < 2; r++) {
            h[r] = (half_rank){model, conditional, B, G, STEP, r, &ps, ref.labels + r * B / 2,
                               real + (size_t)r * (B / 2) * PIX, {NULL, NULL}, {0, 0}, -1};
            CHECK(pthread_create(&th[r], NULL, half_run, &h[r]) == 0);
        }
        for (int r = 0; r < 2; r++) {
            pthread_join(th[r], NULL);
            for (int k = 0; k < 2; k++) {
                const int ok = h[r].rc == 0 && h[r].n[k] == np[k];
                CHECKF(ok, "%s: half batch %d failed", tag, r);
                for (size_t i = 0; ok && i <= np[k]; i++)
                    sum[k][i] += h[r].gsum[k][i];
                free(h[r].gsum[k]);
            }
        }
        pthread_barrier_destroy(&ps.barrier);
        int equal = 1;
        for (int k = 0; k < 2; k++) {
            const int eq = !memcmp(sum[k], whole[k], 8 * (np[k] + 1));
            CHECKF(eq, "%s: %s: the two half batches' fixed-point sums do not add up exactly to "
                   "the whole batch's", tag, k ? "D" : "G");
            equal &= eq;
        }
        if (equal)
            printf("%s: two half batches on two threads add up to the whole batch exactly\n",
                   tag);
        free(sum[0]), free(sum[1]);
    }

    /* A step's sums do not depend on what the buffer held: each tensor's are written by the
     * step's first fold (or cleared), whatever was there before. */
    {
        int64_t *keep[2] = {malloc(8 * (np[0] + 1)), malloc(8 * (np[1] + 1))};
        for (int k = 0; k < 2; k++) {
            memcpy(keep[k], whole[k], 8 * (np[k] + 1));
            memset(whole[k], 0x5a, 8 * (np[k] + 1));
        }
        cg_gan_grads(&ex, real, STEP, 0, NULL, NULL);
        for (int k = 0; k < 2; k++)
            CHECKF(!memcmp(keep[k], whole[k], 8 * (np[k] + 1)),
                   "%s: %s: the step's sums depend on what the buffer held before", tag,
                   k ? "D" : "G");
        free(keep[0]), free(keep[1]);
    }

    /* A NaN weight: the finish reports unusable gradients. */
    ex.d.param[ex.d.tensors[0].offset] = NAN;
    cg_gan_grads(&ex, real, STEP, 0, NULL, NULL);
    CHECKF(cg_gan_finish_grads(&ex) > 0, "%s: NaN gradient not reported", tag);
    cg_gan_init_weights(&ex);
    free(real);
    cg_gan_free(&ref);
    cg_gan_free(&ex);
}

/* cg_net_backward_scaled on D's pass of a step (reals and fakes): its parameter gradients
 * equal those of a plain backward pass from the seeds ones * scale (up to float rounding: the
 * scale is applied per layer), its input gradient that of the unit seeds, bit for bit. The
 * scales cover signs, zero (a hinge loss's fakes beyond the margin) and a wide range. */
static void test_scaled_backward(const char *model, int conditional)
{
    enum { B = 6, N = 2 * B };
    cg_gan gan;
    if (make_gan(&gan, model, conditional, B, B)) {
        CHECK(0);
        return;
    }
    float *real = tu_falloc((size_t)B * PIX);
    fill_batch(&gan, real, B, 0);
    cg_gan_grads(&gan, real, 2, 0, NULL, NULL); /* fills D's tape */
    cg_net *d = &gan.d;
    CHECK(gan.tape_d.batch == N);
    const float scale[N] = {0.5f, -2.0f, 0.0f, 1e-3f, 7.0f, -1.0f,
                            3.0f, 0.25f, -0.5f, 0.0f, -1e-2f, 2.0f};
    float *dx_plain = tu_falloc((size_t)N * PIX), *dx_scaled = tu_falloc((size_t)N * PIX);
    cg_net_zero_grads(d);
    cg_net_backward(d, &gan.tape_d, scale /* ones * scale */, 1, NULL);
    float *grad_plain = tu_fdup(d->grad, d->n_params);
    cg_net_backward(d, &gan.tape_d, gan.ones, 0, dx_plain);
    cg_net_zero_grads(d);
    cg_net_backward_scaled(d, &gan.tape_d, gan.ones, scale, dx_scaled);
    const double e = tu_tensor_rel_diff(d, d->grad, grad_plain);
    printf("%s%s: scaled backward vs backward of scaled seeds: %.2g\n", model,
           conditional ? " (conditional)" : "", e);
    CHECKF(cg_net_samples_apart(d) && e <= 1e-6, "%s: scaled backward's parameter gradients "
           "differ from the scaled seeds' (%.3g)", model, e);
    CHECKF(!memcmp(dx_plain, dx_scaled, sizeof(float) * N * PIX),
           "%s: scaled backward's input gradient differs from the unit seeds'", model);
    CHECK(cg_net_samples_apart(&gan.g) == !strcmp(model, "small")); /* dcgan's G: batch norm */
    free(real), free(dx_plain), free(dx_scaled), free(grad_plain);
    cg_gan_free(&gan);
}

/* Conditional cdcgan and dcgan from the same seed, one step in float and in exact mode: the
 * conditional batch norm starts at 0 (the identity) and appends its tensors after dcgan's, so
 * everything dcgan has is bit-identical; only the new tensors' gradients are extra. */
static void test_cdcgan_start(void)
{
    enum { B = 8, G = 4, STEP = 3 };
    float *real = tu_falloc((size_t)B * PIX);
    for (int exact = 0; exact < 2; exact++) {
        cg_gan a, b;
        if (make_gan(&a, "dcgan", 1, B, B) || make_gan(&b, "cdcgan", 1, B, B)) {
            CHECK(0);
            break;
        }
        cg_error e;
        if (exact)
            CHECK(cg_gan_set_groups(&a, G, 0, G, &e) == 0 &&
                  cg_gan_set_groups(&b, G, 0, G, &e) == 0);
        fill_batch(&a, real, B, 0);
        memcpy(b.labels, a.labels, sizeof(int32_t) * B);
        cg_gan_stats sa, sb;
        cg_gan_grads(&a, real, STEP, 0, NULL, &sa);
        cg_gan_grads(&b, real, STEP, 0, NULL, &sb);
        CHECK(cg_gan_finish_grads(&a) == 0 && cg_gan_finish_grads(&b) == 0);
        CHECKF(!memcmp(&sa, &sb, sizeof sa), "cdcgan vs dcgan (exact %d): losses differ", exact);
        const int last = a.g.n_layers - 1;
        CHECKF(b.g.n_layers == a.g.n_layers &&
                   !memcmp(a.tape_g.act[last], b.tape_g.act[last], sizeof(float) * B * PIX),
               "cdcgan vs dcgan (exact %d): the fakes differ", exact);
        CHECKF(a.d.n_params == b.d.n_params &&
                   !memcmp(a.d.grad, b.d.grad, sizeof(float) * a.d.n_params),
               "cdcgan vs dcgan (exact %d): D's gradients differ", exact);
        int same = 0, extra = 0;
        for (int t = 0; t < b.g.n_tensors; t++) {
            const cg_tensor *T = &b.g.tensors[t];
            const int ta = cg_net_find_tensor(&a.g, T->name);
            const float *pb = b.g.param + T->offset, *gb = b.g.grad + T->offset;
            if (ta < 0) { /* cbnK.gamma / beta: 0, with a gradient */
                size_t nonzero = 0, pz = 0;
                for (size_t i = 0; i < T->count; i++)
                    nonzero += gb[i] != 0.0f, pz += pb[i] == 0.0f;
                CHECKF(!strncmp(T->name, "cbn", 3) && pz == T->count && nonzero > 0,
                       "cdcgan (exact %d): %s: %zu of %zu zero, %zu non-zero gradients", exact,
                       T->name, pz, T->count, nonzero);
                extra++;
                continue;
            }
            const cg_tensor *TA = &a.g.tensors[ta];
            CHECKF(ta == t && TA->count == T->count &&
                       !memcmp(a.g.param + TA->offset, pb, sizeof(float) * T->count) &&
                       !memcmp(a.g.grad + TA->offset, gb, sizeof(float) * T->count),
                   "cdcgan vs dcgan (exact %d): G.%s differs", exact, T->name);
            same++;
        }
        CHECKF(extra == 4 && same == a.g.n_tensors, "cdcgan: %d extra and %d shared tensors",
               extra, same);
        printf("cdcgan conditional (exact %d): losses, fakes, D's and G's %d dcgan tensors "
               "bit-identical to dcgan's; %d conditional batch-norm tensors\n", exact, same,
               extra);
        cg_gan_free(&a);
        cg_gan_free(&b);
    }
    free(real);
}

/* A dense layer whose gradient is pushed past the fixed-point range (|g| >= 2^19) by a huge
 * output gradient: counted, not wrapped around; just inside the range: exact. */
static void test_range(void)
{
    const cg_layer_spec dense = {.op = CG_OP_DENSE, .out = 1};
    cg_net net;
    cg_tape tape;
    cg_error e;
    CHECK(cg_net_build(&net, "probe", &dense, 1, 3, 0, 0, 4, 0, &e) == 0);
    CHECK(cg_net_set_groups(&net, 2, 0, 2, 4, &e) == 0);
    cg_tape_alloc(&net, &tape);
    const float x[12] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    cg_fwd_opts o = {.training = 1};
    for (int big = 0; big < 2; big++) {
        const float g = big ? 1e6f : 1e5f, dout[4] = {g, g, g, g};
        cg_net_zero_grads(&net);
        cg_net_forward(&net, &tape, x, 4, &o);
        cg_net_backward(&net, &tape, dout, 1, NULL);
        const long bad = cg_net_exact_finish(&net);
        if (big)
            CHECKF(bad == 8, "2 groups x 4 params beyond the range: %ld reported", bad);
        else
            CHECKF(bad == 0 && net.grad[0] == 4e5f && net.grad[3] == 4e5f,
                   "in range: %ld bad, kernel grad %g, bias grad %g", bad, net.grad[0],
                   net.grad[3]);
    }
    cg_tape_free(&tape);
    cg_net_free(&net);
}

static void test_sum_groups(void)
{
    cg_error e;
    for (int P = 1; P <= 8; P *= 2)
        CHECKF(cg_sum_groups(64, P, 0, &e) == 8, "B 64 P %d: %d groups", P,
               cg_sum_groups(64, P, 0, &e));
    CHECK(cg_sum_groups(64, 16, 0, &e) == 16);
    CHECK(cg_sum_groups(96, 3, 0, &e) == 6);
    CHECK(cg_sum_groups(12, 1, 0, &e) == 6);
    CHECK(cg_sum_groups(7, 1, 0, &e) == 7);
    CHECK(cg_sum_groups(64, 2, 16, &e) == 16);
    CHECK(cg_sum_groups(64, 2, 3, &e) == -1 && strstr(e.msg, "does not divide"));
    CHECK(cg_sum_groups(64, 4, 2, &e) == -1 && strstr(e.msg, "multiple of the 4 ranks"));
}

int main(void)
{
    test_sgemm();
    set_threads(2);
    test_model("small", 0, 3);
    test_model("small", 1, 3);
    test_model("dcgan", 0, 3);
    test_model("dcgan", 1, 3);
    test_model("cdcgan", 1, 3);
    /* Conditional deep at step 3: one of D's 50,176 conv1 units sits within rounding of its
     * kink (kink_flips), so it is compared at step 4. */
    test_model("deep", 0, 3);
    test_model("deep", 1, 4);
    test_cdcgan_start();
    test_scaled_backward("dcgan", 1);
    test_scaled_backward("small", 0); /* dropout in D */
    test_range();
    test_sum_groups();
    return tu_finish("test_exact");
}
