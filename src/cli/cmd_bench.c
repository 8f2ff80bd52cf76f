/* chargan bench: times full training steps on random input, or the machine's sgemm. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/blas.h"
#include "cli.h"
#include "chargan/gan.h"
#include "chargan/json.h"
#include "chargan/preset.h"
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
    cg_json_print(stdout, json_pack("{s:i, s:i, s:o, s:o}", "sgemm_n", n, "threads", threads,
                                    "ms", cg_json_num(med, 3), "gflops",
                                    cg_json_num(2.0 * n * n * (double)n / (med * 1e6), 2)));
    cg_free(a), cg_free(b), cg_free(c), cg_free(ms);
    return 0;
}

/* Appends the per-layer times of net (ms per measured step) to the array arr. */
static void layers_json(json_t *arr, const cg_net *net, int steps)
{
    for (int i = 0; i < net->n_layers; i++)
        json_array_append_new(
            arr, json_pack("{s:s, s:o, s:o, s:o}", "net", net->name[0] == 'g' ? "G" : "D",
                           "layer", cg_json_str(net->layers[i].name),
                           "fwd_ms", cg_json_num(1e3 * net->fwd_seconds[i] / steps, 3),
                           "bwd_ms", cg_json_num(1e3 * net->bwd_seconds[i] / steps, 3)));
}

typedef struct {
    cg_gan_config cfg; /* model, batch and classes */
    int steps, threads, sgemm, groups, float_sums, conditional;
} bench_opts;

/* Parses and checks the options into o. Returns -1 to go on, else the exit status (0 after
 * --help). */
static int bench_parse(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof *o);
    cg_gan_default_config(&o->cfg);
    o->steps = 10;
    const char *model = o->cfg.model;
    char model_help[160];
    snprintf(model_help, sizeof model_help, "a preset: %s (default %s)", cg_preset_names(),
             o->cfg.model);
    const cg_opt opts[] = {
        {"model", CG_OPT_STR, &model, model_help},
        {"conditional", CG_OPT_FLAG, &o->conditional,
         "class-conditional model over 47 classes (EMNIST balanced), classes in turn"},
        {"batch", CG_OPT_INT, &o->cfg.global_batch, "batch (default 64)"},
        {"steps", CG_OPT_INT, &o->steps, "measured steps after 2 warm-up steps (default 10)"},
        {"threads", CG_OPT_INT, &o->threads, "BLAS threads (default: cores / ranks per node)"},
        {"sgemm", CG_OPT_INT, &o->sgemm, "time an N x N x N sgemm instead"},
        {"sum-groups", CG_OPT_INT, &o->groups,
         "exact-sum groups as in training (default: train's choice for one rank)"},
        {"float-sums", CG_OPT_FLAG, &o->float_sums,
         "sum gradients in float in one pass over the batch (not rank-count exact)"},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    cg_error perr;
    const int pr = cg_parse_opts(opts, nopts, argc, argv, NULL, &perr);
    if (pr == 1) {
        bench_usage(stdout);
        cg_print_opts(stdout, opts, nopts);
        return 0;
    }
    if (pr) {
        fprintf(stderr, "chargan: error: bench: %s\n", perr.msg);
        return 2;
    }
    if (model != o->cfg.model)
        snprintf(o->cfg.model, sizeof o->cfg.model, "%s", model);
    o->cfg.local_batch = o->cfg.global_batch;
    o->cfg.n_classes = o->conditional ? 47 : 0;
    if (o->steps < 1 || o->cfg.global_batch < 1 || o->threads < 0 || o->sgemm < 0) {
        fprintf(stderr, "chargan: error: bench: --steps, --batch, --threads and --sgemm must "
                        "be positive\n");
        return 2;
    }
    return -1;
}

/* The GAN to time: built, exact-sum groups set (*groups: their number, 0 for float sums),
 * weights initialized, labels in turn. Returns 0, or -1 after printing the error. */
static int bench_gan(const bench_opts *o, cg_gan *gan, int *groups)
{
    cg_error e;
    if (cg_gan_init(gan, &o->cfg, &e)) {
        fprintf(stderr, "chargan: error: bench: %s\n", e.msg);
        return -1;
    }
    const int G = o->float_sums ? 0 : cg_sum_groups(o->cfg.global_batch, 1, o->groups, &e);
    if (G < 0 || (G > 0 && cg_gan_set_groups(gan, G, 0, G, &e))) {
        fprintf(stderr, "chargan: error: bench: %s\n", e.msg);
        cg_gan_free(gan);
        return -1;
    }
    cg_gan_init_weights(gan);
    for (int i = 0; i < o->cfg.local_batch && o->conditional; i++)
        gan->labels[i] = i % o->cfg.n_classes;
    *groups = G;
    return 0;
}

static void reset_layer_times(cg_net *net)
{
    memset(net->fwd_seconds, 0, sizeof(double) * (size_t)net->n_layers);
    memset(net->bwd_seconds, 0, sizeof(double) * (size_t)net->n_layers);
}

/* warmup + steps training steps on the images `real`; ms gets the times of the last `steps`,
 * and the per-layer times count only those. */
static void bench_steps(cg_gan *gan, const float *real, int warmup, int steps, double *ms,
                        cg_gan_stats *st)
{
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup) {
            reset_layer_times(&gan->g);
            reset_layer_times(&gan->d);
        }
        const double t0 = cg_now();
        cg_gan_grads(gan, real, s, 0, NULL, st);
        cg_gan_finish_grads(gan);
        cg_gan_apply(gan);
        if (s >= warmup)
            ms[s - warmup] = 1e3 * (cg_now() - t0);
    }
}

/* The JSON line of the step benchmark; med: the median step in ms. */
static void bench_report(const cg_ctx *c, const bench_opts *o, const cg_gan *gan, int groups,
                         double med, double loss_d)
{
    const double flops = cg_gan_step_flops(gan, o->cfg.local_batch);
    json_t *layers = json_array();
    layers_json(layers, &gan->g, o->steps);
    layers_json(layers, &gan->d, o->steps);
    json_t *j = json_pack(
        "{s:o, s:b, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o}",
        "model", cg_json_str(o->cfg.model), "conditional", o->conditional,
        "batch", o->cfg.local_batch, "threads", c->threads, "sum_groups", groups,
        "steps", o->steps, "ms_per_step", cg_json_num(med, 2),
        "gflop_per_step", cg_json_num(flops * 1e-9, 3),
        "gflops", cg_json_num(flops / (med * 1e6), 2),
        "params_g", (json_int_t)gan->g.n_params, "params_d", (json_int_t)gan->d.n_params,
        "peak_rss_mb", cg_json_num(cg_peak_rss_mb(), 1), "loss_d", cg_json_num(loss_d, 5),
        "layers", layers);
    cg_json_print(stdout, j);
}

int cg_cmd_bench(cg_ctx *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--allreduce"))
            return cg_bench_allreduce(c, argc, argv);
    bench_opts o;
    const int rc = bench_parse(argc, argv, &o);
    if (rc >= 0)
        return rc;
    cg_ctx_set_threads(c, o.threads);
    if (o.sgemm)
        return bench_sgemm(o.sgemm, o.steps, c->threads);

    cg_gan gan;
    int groups;
    if (bench_gan(&o, &gan, &groups))
        return 2;
    const size_t n_real = (size_t)o.cfg.local_batch * CG_IMG_PIXELS;
    float *real = cg_alloc(sizeof(float) * n_real);
    for (size_t i = 0; i < n_real; i++)
        real[i] = cg_rng_uniform(o.cfg.seed, 77, i);
    double *ms = cg_alloc(sizeof(double) * (size_t)o.steps);
    cg_gan_stats st;
    bench_steps(&gan, real, 2, o.steps, ms, &st);
    if (c->rank == 0)
        bench_report(c, &o, &gan, groups, cg_median(ms, o.steps), st.loss_d);
    cg_free(real);
    cg_free(ms);
    cg_gan_free(&gan);
    return 0;
}
