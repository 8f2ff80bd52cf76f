/* Exact, rank-count independent gradient sums (cg_net_set_groups, cg_sgemm).
 *
 *  - cg_sgemm against double loops for every transpose combination, both split directions,
 *    beta 0 and 1, and bit-identical results on 1, 2 and 3 OpenMP threads (OpenBLAS's own
 *    threading is not: that is why the layers use cg_sgemm).
 *  - Exact mode computes the same gradients as float mode: per tensor
 *    max|a - b| / max|b| <= 1e-5 for small, dcgan and conditional dcgan (the fixed point has
 *    2^-32 resolution; float summation order differs at ~1e-7).
 *  - Splitting the batch over "ranks": for the models without batch norm, the fixed-point sums
 *    of two half batches (first_group 0 and 2 of 4, their own samples and global indices) add
 *    up to the whole batch's sums EXACTLY (int64 equality). The batch-norm models need a real
 *    synchronization and are covered by tests/test_train_mpi.sh (bit-identical parameters on
 *    1, 2, 4 and 8 ranks).
 *  - Unusable gradients are counted: a NaN parameter makes cg_gan_finish_grads report them,
 *    and so do gradients beyond the fixed-point range (a dense layer driven past 2^19).
 *  - cg_sum_groups: the default choice and the refusals. */
#include <math.h>
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

/* Per tensor max|a - b| / max|b| over both networks. */
static double tensor_rel_diff(const cg_net *net, const float *a, const float *b)
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

static void fill_batch(cg_gan *gan, float *real, int B, int first)
{
    tu_fill_uniform(real, (size_t)B * PIX, gan->data_lo, 1.0f, 77 + (uint64_t)first);
    for (int i = 0; i < B; i++)
        gan->labels[i] = (first + i) * 7 % 47;
}

static void test_model(const char *model, int conditional)
{
    enum { B = 8, G = 4, STEP = 3 };
    char tag[64];
    snprintf(tag, sizeof tag, "%s%s", model, conditional ? " conditional" : "");
    cg_gan ref, ex;
    if (make_gan(&ref, model, conditional, B, B) || make_gan(&ex, model, conditional, B, B)) {
        CHECK(0);
        return;
    }
    cg_error e;
    CHECK(cg_gan_set_groups(&ex, G, 0, G, &e) == 0);
    float *real = tu_falloc((size_t)B * PIX);
    fill_batch(&ref, real, B, 0);
    memcpy(ex.labels, ref.labels, sizeof(int32_t) * B);
    cg_gan_grads(&ref, real, STEP, 0, NULL, NULL);
    cg_gan_grads(&ex, real, STEP, 0, NULL, NULL);
    CHECK(cg_gan_finish_grads(&ref) == 0);
    CHECK(cg_gan_finish_grads(&ex) == 0);
    const double dg = tensor_rel_diff(&ex.g, ex.g.grad, ref.g.grad);
    const double dd = tensor_rel_diff(&ex.d, ex.d.grad, ref.d.grad);
    printf("%s: exact vs float gradients, per-tensor max rel diff G %.2g D %.2g\n", tag, dg, dd);
    CHECKF(dg <= 1e-5 && dd <= 1e-5, "%s: exact gradients differ from float ones (G %.3g, D %.3g)",
           tag, dg, dd);
    int64_t *whole[2] = {ex.g.gsum, ex.d.gsum};
    size_t np[2] = {ex.g.n_params, ex.d.n_params};

    /* Two half batches as two ranks would compute them (no batch norm: no synchronization). */
    if (strcmp(model, "dcgan")) {
        int64_t *sum[2] = {calloc(np[0] + 1, 8), calloc(np[1] + 1, 8)};
        for (int r = 0; r < 2; r++) {
            cg_gan half;
            if (make_gan(&half, model, conditional, B, B / 2)) {
                CHECK(0);
                break;
            }
            CHECK(cg_gan_set_groups(&half, G, r * G / 2, G / 2, &e) == 0);
            memcpy(half.labels, ref.labels + r * B / 2, sizeof(int32_t) * B / 2);
            cg_gan_grads(&half, real + (size_t)r * (B / 2) * PIX, STEP, r * B / 2, NULL, NULL);
            int64_t *part[2] = {half.g.gsum, half.d.gsum};
            for (int k = 0; k < 2; k++)
                for (size_t i = 0; i <= np[k]; i++)
                    sum[k][i] += part[k][i];
            cg_gan_free(&half);
        }
        for (int k = 0; k < 2; k++)
            CHECKF(!memcmp(sum[k], whole[k], 8 * (np[k] + 1)),
                   "%s: %s: the two half batches' fixed-point sums do not add up exactly to the "
                   "whole batch's", tag, k ? "D" : "G");
        printf("%s: two half batches add up to the whole batch exactly\n", tag);
        free(sum[0]), free(sum[1]);
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
    test_model("small", 0);
    test_model("small", 1);
    test_model("dcgan", 0);
    test_model("dcgan", 1);
    test_range();
    test_sum_groups();
    return tu_finish("test_exact");
}
