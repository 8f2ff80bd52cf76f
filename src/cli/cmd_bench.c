/* chargan bench: times full training steps on random input, or the machine's sgemm. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/blas.h"
#include "cli.h"
#include "chargan/gan.h"
#include "chargan/rng.h"
#include "chargan/train.h"

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: chargan bench [--model M] [--conditional] [--batch B] [--steps N]\n"
               "                    [--threads T]\n"
               "       chargan bench --sgemm N [--steps N] [--threads T]\n"
               "Runs N full training steps (both networks, Adam) on random input and prints a\n"
               "JSON line: ms_per_step (median after 2 warm-up steps), gflops, peak_rss_mb and\n"
               "a per-layer breakdown.\n\noptions:\n");
}

static int bench_sgemm(int n, int reps, int threads)
{
    float *a = cg_alloc(sizeof(float) * (size_t)n * n);
    float *b = cg_alloc(sizeof(float) * (size_t)n * n);
    float *c = cg_alloc(sizeof(float) * (size_t)n * n);
    for (size_t i = 0; i < (size_t)n * n; i++) {
        a[i] = cg_rng_uniform(1, 1, i) - 0.5f;
        b[i] = cg_rng_uniform(1, 2, i) - 0.5f;
    }
    double *ms = cg_alloc(sizeof(double) * (size_t)reps);
    cg_blas_set_threads(threads); /* the library's own threading: the machine's ceiling */
    for (int r = 0; r < reps + 1; r++) {
        double t0 = cg_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        if (r > 0)
            ms[r - 1] = 1e3 * (cg_now() - t0);
    }
    cg_blas_set_threads(1);
    double med = cg_median(ms, reps);
    printf("{\"sgemm_n\": %d, \"threads\": %d, \"ms\": %.3f, \"gflops\": %.2f}\n", n, threads,
           med, 2.0 * n * n * (double)n / (med * 1e6));
    cg_free(a), cg_free(b), cg_free(c), cg_free(ms);
    return 0;
}

static void print_layers(const cg_net *net, int steps, int first)
{
    for (int i = 0; i < net->n_layers; i++)
        printf("%s{\"net\": \"%s\", \"layer\": \"%s\", \"fwd_ms\": %.3f, \"bwd_ms\": %.3f}",
               first && i == 0 ? "" : ", ", net->name[0] == 'g' ? "G" : "D", net->layers[i].name,
               1e3 * net->fwd_seconds[i] / steps, 1e3 * net->bwd_seconds[i] / steps);
}

int cg_cmd_bench(cg_ctx *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--allreduce")) return cg_bench_allreduce(c, argc, argv);
    cg_gan_config cfg;
    cg_gan_default_config(&cfg);
    int steps = 10, threads = 0, sgemm = 0, groups = 0, float_sums = 0, conditional = 0;
    const char *model = cfg.model;
    const cg_opt opts[] = {
        {"model", CG_OPT_STR, &model, "seed | small | dcgan | cdcgan | deep (default seed)"},
        {"conditional", CG_OPT_FLAG, &conditional,
         "class-conditional model over 47 classes (EMNIST balanced), classes in turn"},
        {"batch", CG_OPT_INT, &cfg.global_batch, "batch (default 64)"},
        {"steps", CG_OPT_INT, &steps, "measured steps after 2 warm-up steps (default 10)"},
        {"threads", CG_OPT_INT, &threads, "BLAS threads (default: cores / ranks per node)"},
        {"sgemm", CG_OPT_INT, &sgemm, "time an N x N x N sgemm instead"},
        {"sum-groups", CG_OPT_INT, &groups,
         "exact-sum groups as in training (default: train's choice for one rank)"},
        {"float-sums", CG_OPT_FLAG, &float_sums,
         "sum gradients in float in one pass over the batch (not rank-count exact)"},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    cg_error perr;
    int pr = cg_parse_opts(opts, nopts, argc, argv, NULL, &perr);
    if (pr == 1) {
        bench_usage(stdout);
        cg_print_opts(stdout, opts, nopts);
        return 0;
    }
    if (pr) {
        fprintf(stderr, "chargan: error: bench: %s\n", perr.msg);
        return 2;
    }
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    cfg.local_batch = cfg.global_batch;
    cfg.n_classes = conditional ? 47 : 0;
    if (steps < 1 || cfg.global_batch < 1 || threads < 0 || sgemm < 0) {
        fprintf(stderr, "chargan: error: bench: --steps, --batch, --threads and --sgemm must "
                        "be positive\n");
        return 2;
    }
    cg_ctx_set_threads(c, threads);
    if (sgemm)
        return bench_sgemm(sgemm, steps, c->threads);

    cg_gan gan;
    cg_error e;
    if (cg_gan_init(&gan, &cfg, &e)) {
        fprintf(stderr, "chargan: error: bench: %s\n", e.msg);
        return 2;
    }
    const int G = float_sums ? 0 : cg_sum_groups(cfg.global_batch, 1, groups, &e);
    if (G < 0 || (G > 0 && cg_gan_set_groups(&gan, G, 0, G, &e))) {
        fprintf(stderr, "chargan: error: bench: %s\n", e.msg);
        cg_gan_free(&gan);
        return 2;
    }
    cg_gan_init_weights(&gan);
    const int B = cfg.local_batch;
    for (int i = 0; i < B && conditional; i++)
        gan.labels[i] = i % cfg.n_classes;
    float *real = cg_alloc(sizeof(float) * (size_t)B * 784);
    for (size_t i = 0; i < (size_t)B * 784; i++)
        real[i] = cg_rng_uniform(cfg.seed, 77, i);
    const int warmup = 2;
    double *ms = cg_alloc(sizeof(double) * (size_t)steps);
    cg_gan_stats st;
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) { /* per-layer times count only the measured steps */
            memset(gan.g.fwd_seconds, 0, sizeof(double) * (size_t)gan.g.n_layers);
            memset(gan.g.bwd_seconds, 0, sizeof(double) * (size_t)gan.g.n_layers);
            memset(gan.d.fwd_seconds, 0, sizeof(double) * (size_t)gan.d.n_layers);
            memset(gan.d.bwd_seconds, 0, sizeof(double) * (size_t)gan.d.n_layers);
        }
        double t0 = cg_now();
        cg_gan_grads(&gan, real, s, 0, NULL, &st);
        cg_gan_finish_grads(&gan);
        cg_gan_apply(&gan);
        if (s >= warmup)
            ms[s - warmup] = 1e3 * (cg_now() - t0);
    }
    const double flops = cg_gan_step_flops(&gan, B);
    const double med = cg_median(ms, steps);
    if (c->rank == 0) {
        printf("{\"model\": \"%s\", \"conditional\": %s, \"batch\": %d, \"threads\": %d, "
               "\"sum_groups\": %d, \"steps\": %d, "
               "\"ms_per_step\": %.2f, \"gflop_per_step\": %.3f, \"gflops\": %.2f, "
               "\"params_g\": %zu, \"params_d\": %zu, \"peak_rss_mb\": %.1f, \"loss_d\": %.5f, "
               "\"layers\": [",
               cfg.model, conditional ? "true" : "false", B, c->threads, G, steps, med,
               flops * 1e-9, flops / (med * 1e6),
               gan.g.n_params, gan.d.n_params, cg_peak_rss_mb(), st.loss_d);
        print_layers(&gan.g, steps, 1);
        print_layers(&gan.d, steps, 0);
        printf("]}\n");
    }
    cg_free(real);
    cg_free(ms);
    cg_gan_free(&gan);
    return 0;
}
