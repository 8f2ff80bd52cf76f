/* chargan bench: times full training steps on random input, or the machine's sgemm. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/blas.h"
#include "cli.h"
#include "chargan/ema.h"
#include "chargan/gan.h"
#include "chargan/ranks.h"
#include "chargan/json.h"
#include "chargan/preset.h"
#include "chargan/rng.h"
#include "chargan/train.h"

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: chargan bench [--model M] [--conditional] [--batch B] [--steps N]\n"
               "                    [--threads T]\n"
               "       chargan bench --sgemm N [--steps N] [--threads T]\n"
               "Runs N full training steps on random input, as `train` runs them on these ranks\n"
               "(mpirun -np P: each rank a share of the batch, gradients summed over the\n"
               "ranks, Adam, the preset's EMA), and prints a JSON line: ms_per_step (median\n"
               "after 2 warm-up steps), gflops, peak_rss_mb and the per-layer times.\n\n"
               "options:\n");
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

/* Appends net's layers to arr: per step, ms forward and backward, GFLOP/s and share of the
 * step (ms_step). */
static void layers_json(json_t *arr, const cg_gan *gan, const cg_net *net, int steps,
                        double ms_step)
{
    for (int i = 0; i < net->n_layers; i++) {
        double f, b;
        cg_gan_layer_flops(gan, net, i, gan->cfg.local_batch, &f, &b);
        const double fwd = 1e3 * net->fwd_seconds[i] / steps, bwd = 1e3 * net->bwd_seconds[i] / steps;
        json_array_append_new(
            arr, json_pack("{s:s, s:o, s:o, s:o, s:o, s:o}", "net", net == &gan->g ? "G" : "D",
                           "layer", cg_json_str(net->layers[i].name), "fwd_ms",
                           cg_json_num(fwd, 3), "bwd_ms", cg_json_num(bwd, 3), "gflops",
                           cg_json_num((f + b) / ((fwd + bwd) * 1e6 + 1e-30), 2), "share",
                           cg_json_num((fwd + bwd) / ms_step, 4)));
    }
}

typedef struct {
    cg_gan_config cfg; /* model, batch and classes */
    int steps, threads, sgemm, groups, float_sums, conditional, breakdown;
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
        {"batch", CG_OPT_INT, &o->cfg.global_batch,
         "global batch, split over the ranks as in training (default 64)"},
        {"steps", CG_OPT_INT, &o->steps, "measured steps after 2 warm-up steps (default 10)"},
        {"threads", CG_OPT_INT, &o->threads, "BLAS threads (default: cores / ranks per node)"},
        {"sgemm", CG_OPT_INT, &o->sgemm, "time an N x N x N sgemm instead"},
        {"sum-groups", CG_OPT_INT, &o->groups,
         "exact-sum groups as in training (default: train's choice for the rank count)"},
        {"float-sums", CG_OPT_FLAG, &o->float_sums,
         "sum gradients in float in one pass over the batch (not rank-count exact)"},
        {"breakdown", CG_OPT_FLAG, &o->breakdown,
         "also print where the step's time goes: each layer, and the GEMMs, im2col, batch "
         "norm, activations, exact sums, allreduce, Adam, EMA and noise (rank 0's)"},
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
    o->cfg.n_classes = o->conditional ? 47 : 0;
    if (o->steps < 1 || o->cfg.global_batch < 1 || o->threads < 0 || o->sgemm < 0) {
        fprintf(stderr, "chargan: error: bench: --steps, --batch, --threads and --sgemm must "
                        "be positive\n");
        return 2;
    }
    return -1;
}

/* The GAN to time, as training sets it up on these ranks: this rank's share of the batch,
 * exact-sum groups (*groups: their number, 0 for float sums), batch-norm statistics over the
 * ranks, the preset's EMA, weights initialized, labels in turn. Returns 0, or -1 after the
 * error was printed (collective). */
static int bench_gan(cg_ctx *c, bench_opts *o, cg_gan *gan, int *groups)
{
    cg_error e = {{0}};
    int rc = -1;
    memset(gan, 0, sizeof *gan);
    o->cfg.local_batch = o->cfg.global_batch / c->size;
    if (o->cfg.global_batch % c->size)
        cg_fail(&e, "bench: --batch %d is not divisible by the %d ranks", o->cfg.global_batch,
                c->size);
    else if (!cg_gan_init(gan, &o->cfg, &e))
        rc = 0;
    cg_kind k;
    if (!rc)
        cg_kind_wrap_gan(&k, gan);
    if (!rc && (*groups = cg_join_ranks(&k, c, o->groups, o->float_sums, &e)) < 0)
        rc = -1;
    if (cg_agree(c, rc, &e)) {
        cg_gan_free(gan);
        return -1;
    }
    cg_gan_init_weights(gan);
    if (cg_ema_default(o->cfg.model) > 0)
        cg_gan_ema_enable(gan, cg_ema_default(o->cfg.model));
    for (int i = 0; i < o->cfg.local_batch && o->conditional; i++)
        gan->labels[i] = (c->rank * o->cfg.local_batch + i) % o->cfg.n_classes;
    return 0;
}

static void reset_times(cg_gan *gan, cg_prof *prof)
{
    const cg_net *nets[2] = {&gan->g, &gan->d};
    for (int k = 0; k < 2; k++) {
        memset(nets[k]->fwd_seconds, 0, sizeof(double) * (size_t)nets[k]->n_layers);
        memset(nets[k]->bwd_seconds, 0, sizeof(double) * (size_t)nets[k]->n_layers);
    }
    memset(prof, 0, sizeof *prof);
}

/* One training step as `train` takes it, without the data: gradients, D's sum over the ranks
 * overlapping G's backward pass, G's sum, Adam, the EMA. */
static void bench_step(cg_ctx *c, cg_gan *gan, cg_reducer *red, const float *real, long s,
                       cg_gan_stats *st)
{
    const cg_kind_hooks hooks = cg_reducer_hooks(red);
    cg_kind k;
    double v[CG_KIND_STATS];
    cg_kind_wrap_gan(&k, gan);
    k.ops->grads(&k, real, s, (long)c->rank * gan->cfg.local_batch, &hooks, v);
    *st = (cg_gan_stats){.loss_g = v[0], .loss_d = v[1], .d_real = v[2], .d_fake = v[3]};
    const cg_prof_mark m = cg_prof_begin(gan->prof);
    cg_reducer_finish(red);
    cg_prof_end(gan->prof, CG_PROF_REDUCE, m);
    cg_gan_apply(gan);
    cg_gan_ema_update(gan);
}

/* warmup + steps training steps on the images `real`; ms gets the times of the last `steps`,
 * and the per-layer and per-kind times count only those. */
static void bench_steps(cg_ctx *c, cg_gan *gan, const float *real, int warmup, int steps,
                        double *ms, cg_gan_stats *st, cg_prof *prof)
{
    cg_reducer red;
    cg_kind k;
    cg_kind_wrap_gan(&k, gan);
    cg_reducer_attach(&red, c, &k);
    for (int s = 0; s < warmup + steps; s++) {
        if (s == warmup)
            reset_times(gan, prof);
        const double t0 = cg_now();
        bench_step(c, gan, &red, real, s, st);
        if (s >= warmup)
            ms[s - warmup] = 1e3 * (cg_now() - t0);
    }
    cg_reducer_free(&red);
}

/* The time of each kind of work per step, and what is left of the mean step ("other": the
 * losses, dropout, label and projection layers, loop overhead). */
static json_t *kinds_json(const cg_prof *prof, int steps, double mean_ms)
{
    json_t *j = json_object();
    double sum = 0.0;
    for (int k = 0; k < CG_PROF_N; k++) {
        const double ms = 1e3 * prof->seconds[k] / steps;
        sum += ms;
        json_object_set_new(j, cg_prof_names[k], cg_json_num(ms, 3));
    }
    json_object_set_new(j, "other", cg_json_num(mean_ms - sum, 3));
    return j;
}

/* The breakdown as a table, from the report's JSON (one source for both). */
static void print_breakdown(const json_t *rep)
{
    const double step = json_number_value(json_object_get(rep, "mean_ms_per_step"));
    printf("%-3s %-12s %9s %9s %9s %7s\n", "net", "layer", "fwd ms", "bwd ms", "GFLOP/s",
           "share");
    size_t i;
    json_t *L;
    json_array_foreach(json_object_get(rep, "layers"), i, L)
        printf("%-3s %-12s %9.3f %9.3f %9.1f %6.1f%%\n",
               json_string_value(json_object_get(L, "net")),
               json_string_value(json_object_get(L, "layer")),
               json_number_value(json_object_get(L, "fwd_ms")),
               json_number_value(json_object_get(L, "bwd_ms")),
               json_number_value(json_object_get(L, "gflops")),
               100.0 * json_number_value(json_object_get(L, "share")));
    printf("\n%-24s %9s %7s\n", "kind of work", "ms/step", "share");
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(rep, "breakdown"), key, v)
        printf("%-24s %9.3f %6.1f%%\n", key, json_number_value(v),
               100.0 * json_number_value(v) / step);
    printf("%-24s %9.3f (%.1f GFLOP/s; median %.3f ms)\n\n", "step (mean)", step,
           json_number_value(json_object_get(rep, "gflop_per_step")) / step * 1e3,
           json_number_value(json_object_get(rep, "ms_per_step")));
}

static double mean(const double *v, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += v[i];
    return s / n;
}

/* The JSON line of the step benchmark (after the table with --breakdown). */
static void bench_report(const cg_ctx *c, const bench_opts *o, const cg_gan *gan, int groups,
                         const double *ms, double loss_d, const cg_prof *prof)
{
    /* The whole step's FLOPs over all ranks, as `train` reports them; the layers' rates are
     * rank 0's. */
    const double flops = cg_gan_step_flops(gan, o->cfg.local_batch) * c->size;
    const double med = cg_median((double *)ms, o->steps), avg = mean(ms, o->steps);
    json_t *layers = json_array();
    layers_json(layers, gan, &gan->g, o->steps, avg);
    layers_json(layers, gan, &gan->d, o->steps, avg);
    json_t *j = json_pack(
        "{s:o, s:b, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:I, s:I, s:o, s:o, s:o}",
        "model", cg_json_str(o->cfg.model), "conditional", o->conditional,
        "batch", o->cfg.local_batch, "ranks", c->size, "threads", c->threads,
        "sum_groups", groups, "steps", o->steps, "ms_per_step", cg_json_num(med, 2),
        "mean_ms_per_step", cg_json_num(avg, 2),
        "gflop_per_step", cg_json_num(flops * 1e-9, 3),
        "gflops", cg_json_num(flops / (med * 1e6), 2),
        "params_g", (json_int_t)gan->g.n_params, "params_d", (json_int_t)gan->d.n_params,
        "peak_rss_mb", cg_json_num(cg_peak_rss_mb(), 1), "loss_d", cg_json_num(loss_d, 5),
        "layers", layers);
    /* The parameters after the steps: the same on any rank count dividing the exact-sum
     * groups, as in training. */
    char hash[40];
    snprintf(hash, sizeof hash, "%016llx%016llx",
             (unsigned long long)cg_checksum_floats(gan->g.param, gan->g.n_params),
             (unsigned long long)cg_checksum_floats(gan->d.param, gan->d.n_params));
    json_object_set_new(j, "param_checksum", json_string(hash));
    if (o->breakdown) {
        json_object_set_new(j, "breakdown", kinds_json(prof, o->steps, avg));
        print_breakdown(j);
    }
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
    int groups = 0;
    if (bench_gan(c, &o, &gan, &groups))
        return 2;
    cg_prof prof = {{0}};
    if (o.breakdown)
        cg_gan_set_prof(&gan, &prof);
    const size_t n_real = (size_t)o.cfg.local_batch * CG_IMG_PIXELS;
    float *real = cg_alloc(sizeof(float) * n_real);
    for (size_t i = 0; i < n_real; i++)
        real[i] = cg_rng_uniform(o.cfg.seed, 77, (uint64_t)c->rank * n_real + i);
    double *ms = cg_alloc(sizeof(double) * (size_t)o.steps);
    cg_gan_stats st = {0};
    bench_steps(c, &gan, real, 2, o.steps, ms, &st, &prof);
    if (c->rank == 0)
        bench_report(c, &o, &gan, groups, ms, st.loss_d, &prof);
    cg_free(real);
    cg_free(ms);
    cg_gan_free(&gan);
    return 0;
}
