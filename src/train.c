#include "chargan/train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <signal.h>

#include "chargan/blas.h"
#include "chargan/affinity.h"
#include "chargan/ckpt.h"
#include "chargan/trace.h"
#include "chargan/classifier.h"
#include "chargan/eval.h"
#include "chargan/kind.h"
#include "chargan/ranks.h"
#include "chargan/ema.h"
#include "chargan/generate.h"
#include "chargan/json.h"
#include "chargan/preset.h"
#include "chargan/settings.h"
#include "chargan/rng.h"
#include "chargan/png.h"
#include "chargan/version.h"

int cg_sum_groups(int B, int P, int requested, cg_error *e)
{
    if (requested > 0) {
        if (B % requested)
            return cg_fail(e, "--sum-groups %d does not divide --batch %d", requested, B);
        if (requested % P)
            return cg_fail(e, "--sum-groups %d is not a multiple of the %d ranks (each rank "
                              "holds whole groups)", requested, P);
        return requested;
    }
    for (int k = (P > 8 ? P : 8) / P; k > 1; k--)
        if (B % (P * k) == 0)
            return P * k;
    return P;
}

/* ---- signals ------------------------------------------------------------------------- */

/* The one piece of process-global state: a signal handler can only talk to the loop through
 * a static flag. SIGTERM, SIGINT and SIGUSR1 ask for a checkpoint and a clean exit after the
 * current step; a second SIGINT ends the process at once (a checkpoint being written then is
 * only a temporary file, never a half-written final one). */
static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig)
{
    if (sig == SIGINT && stop_signal == SIGINT) {
        static const char msg[] = "chargan: second interrupt: exiting now\n";
        if (write(2, msg, sizeof msg - 1) < 0) {
            /* nothing more to do in a signal handler */
        }
        _exit(130);
    }
    stop_signal = sig;
}

static void install_signal_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

static const char *signal_name(int sig)
{
    return sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1"
                                                                                 : "a signal";
}

/* ---- output directory and metrics ---------------------------------------------------- */

/* Creates OUT and proves it writable by creating and removing a probe file. */
static int prepare_out(const char *out, cg_error *e)
{
    if (cg_make_dirs(out, e))
        return -1;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.chargan-write-test-%d", out, (int)getpid());
    int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return cg_fail(e, "%s: output directory is not writable: %s", out, strerror(errno));
    close(fd);
    unlink(probe);
    return 0;
}

/* The run's first metrics line (and each restart's): the stack it runs on, so that any result
 * can be traced to its libraries; printed on stdout too. check_ms < 0: no self-check (float
 * sums, or one thread per rank: nothing to compare). */
static void start_line(int fd, const cg_ctx *c, long first_step, double check_ms)
{
    cg_stack s;
    cg_stack_get(&s);
    json_t *line = json_pack("{sbsIsisi}", "start", 1, "step", (json_int_t)first_step, "ranks",
                             c->size, "threads", c->threads);
    cg_stack_json(&s, line);
    json_object_set_new(line, "blas_selfcheck_ms", check_ms >= 0 ? cg_json_num(check_ms, 3)
                                                                 : json_null());
    cg_json_append(fd, line);
    printf("stack: chargan %s; MPI %s; BLAS %s; HDF5 %s\n", s.chargan, s.mpi, s.blas, s.hdf5);
    if (check_ms >= 0)
        printf("blas: self-check passed: probe GEMMs bit-identical at 1 and %d threads "
               "(%.1f ms)\n", c->threads, check_ms);
}

static int all_finite(const float *p, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += p[i] * 0.0f; /* NaN or Inf anywhere makes acc NaN */
    return acc == 0.0f;
}

/* ---- the run's state ------------------------------------------------------------------ */

#define SAMPLE_GRID 81 /* 9 x 9, like the notebook's figure */

/* Everything a run holds from its start to its end; zeroed first, so that any early exit
 * can release it. */
typedef struct {
    cg_ctx *c;
    cg_train_opts set;  /* resolved settings and the run's facts: the saved configuration */
    char classes[CG_MAX_CLASSES + 1];
    char *config;       /* its text, written into every checkpoint */
    cg_dataset ds;
    cg_sampler sampler;
    cg_kind model;      /* the kind's step and tensors; everything else here is shared */
    cg_classifier clf;
    cg_evaluator ev;
    int clf_loaded, evaluating;
    float *pic_z, *pic_img; /* the sample pictures (rank 0) */
    float *real;
    int64_t *idx;
    double *step_ms;
    int metrics_fd;
    int groups;         /* exact-sum groups; 0: float sums */
    long total, first_step, done, epoch;
    double check_ms, t_load, t_start, wait_total, eval_seconds;
    cg_reducer red;
    cg_trace trace;     /* --trace: the chosen steps' spans; cap 0 when off */
    char ckpt_path[4200];
} run;

/* What all ranks learn after a step (summed over ranks; one allreduce). */
typedef struct {
    double v[CG_KIND_STATS]; /* the kind's statistics (cg_kind_ops.stat_keys) */
    double stop_requests; /* ranks that caught a stop signal: any of them stops every rank */
    double out_of_time;   /* 1 when rank 0's clock passed --time-limit */
} step_stats;
enum { N_STEP_STATS = sizeof(step_stats) / sizeof(double) };

/* ---- checkpoints and samples --------------------------------------------------------- */

/* Rank 0 writes; every rank learns whether it worked. */
static int write_checkpoint(run *R)
{
    cg_error e = {{0}};
    int st = 0;
    const cg_train_opts *o = &R->set;
    const double t_span = cg_trace_start(&R->trace);
    if (R->c->rank == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/checkpoints", o->out);
        double t0 = cg_now();
        st = cg_ckpt_write_model(dir, &R->model, R->done, R->epoch, R->c->size, R->config,
                                 R->ckpt_path, sizeof R->ckpt_path, &e);
        if (!st && o->keep > 0 && cg_ckpt_prune(dir, o->keep, &e) < 0)
            fprintf(stderr, "chargan: warning: %s\n", e.msg);
        if (!st && o->log_every > 0) {
            printf("checkpoint: %s (%.2f s)\n", R->ckpt_path, cg_now() - t0);
            fflush(stdout);
        }
    }
    cg_trace_add(&R->trace, CG_SPAN_CKPT, t_span, 0);
    if (cg_bcast_status(R->c, 0, st, &e)) {
        if (R->c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Rank 0 only: always the first 81 samples of `chargan sample` with the run's seed (the same
 * noise vectors every time), so pictures across steps compare. */
static void write_samples(run *R)
{
    cg_kind *k = &R->model;
    const int K = k->n_classes;
    const double t0 = cg_trace_start(&R->trace);
    int32_t labels[SAMPLE_GRID];
    char captions[SAMPLE_GRID + 1] = {0};
    for (int i = 0; i < SAMPLE_GRID; i++) {
        labels[i] = K ? i % K : 0;
        captions[i] = K ? R->ds.chars[labels[i]] : ' ';
    }
    k->ops->ema_swap(k); /* draw from the EMA generator when there is one */
    cg_kind_generate(k, k->seed, 0, SAMPLE_GRID, K ? labels : NULL, 1.0f, R->pic_img,
                     R->pic_z);
    k->ops->ema_swap(k);
    char path[4200];
    cg_error e;
    snprintf(path, sizeof path, "%s/samples/step-%08ld.h5", R->set.out, R->done);
    if (cg_samples_write(path, R->pic_img, SAMPLE_GRID, R->done, k->model, k->seed,
                         K ? labels : NULL, &e))
        fprintf(stderr, "chargan: warning: %s\n", e.msg);
    snprintf(path, sizeof path, "%s/samples/step-%08ld.png", R->set.out, R->done);
    if (cg_png_grid(path, R->pic_img, SAMPLE_GRID, 9, 3, K ? captions : NULL, &e))
        fprintf(stderr, "chargan: warning: %s\n", e.msg);
    cg_trace_add(&R->trace, CG_SPAN_SAMPLES, t0, 0);
}

/* ---- resume -------------------------------------------------------------------------- */

/* The checkpoint to resume from (rank 0): --resume FILE, or the newest valid one in
 * OUT/checkpoints; path[0] == 0 when there is none. */
static int find_resume(const cg_train_opts *o, const char *model, char *path, size_t len,
                       cg_error *e)
{
    if (strcmp(o->resume, "auto")) {
        snprintf(path, len, "%s", o->resume);
        return 0;
    }
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/checkpoints", o->out);
    const int found = cg_ckpt_find_latest(dir, model, path, len, e);
    if (found == 0)
        printf("resume: no checkpoint in %s; starting from scratch\n", dir);
    return found < 0 ? -1 : 0;
}

/* Loads the checkpoint on rank 0 and checks that this run continues it. */
static int load_resume(run *R, const char *path, long *step, cg_error *e)
{
    const cg_kind *k = &R->model;
    cg_ckpt_meta m;
    if (cg_ckpt_load_model(path, &R->model, &m, e))
        return -1;
    int st = cg_settings_check_resume(&R->set, m.config_json, path, e);
    *step = m.step;
    if (!st)
        printf("resume: %s (step %ld, written by %d rank%s)\n", path, m.step, m.world_size,
               m.world_size > 1 ? "s" : "");
    if (!st && k->ema && (!m.has_ema || m.ema_decay != k->ema_decay))
        printf("resume: %s; EMA decay %g from here on\n",
               m.has_ema ? "the checkpoint's EMA continues"
                         : "the checkpoint has no EMA: it starts from its weights",
               k->ema_decay);
    if (!st && !k->ema && m.has_ema)
        printf("resume: this run keeps no EMA (--ema 0, or the model's default): the "
               "checkpoint's is not continued\n");
    cg_ckpt_meta_free(&m);
    return st;
}

/* Every rank gets rank 0's weights, optimizer state and EMA: one broadcast per flat buffer. */
static void share_state(cg_ctx *c, cg_kind *kd, int with_adam)
{
    long t[CG_KIND_NETS];
    for (int k = 0; k < kd->n_nets; k++)
        t[k] = *kd->nets[k].opt_t;
    MPI_Bcast(t, kd->n_nets, MPI_LONG, 0, c->world);
    for (int k = 0; k < kd->n_nets; k++) {
        cg_net *net = kd->nets[k].net;
        *kd->nets[k].opt_t = t[k];
        float *bufs[3] = {net->param, net->adam_m, net->adam_v};
        for (int b = 0; b < (with_adam ? 3 : 1); b++)
            MPI_Bcast(bufs[b], (int)net->n_params, MPI_FLOAT, 0, c->world);
    }
    if (kd->ema)
        MPI_Bcast(kd->ema, (int)kd->nets[kd->gen].net->n_params, MPI_FLOAT, 0, c->world);
}

/* Rank 0 initializes the weights or loads the checkpoint to resume from; then every rank
 * holds the same state. Returns the step to continue from, or -1 (printed). */
static long start_state(run *R)
{
    cg_ctx *c = R->c;
    cg_error e = {{0}};
    char path[4200] = {0};
    int st = 0;
    long step = 0;
    if (c->rank == 0) {
        R->model.ops->init_weights(&R->model);
        if (R->set.resume) {
            st = find_resume(&R->set, R->model.model, path, sizeof path, &e);
            if (!st && path[0])
                st = load_resume(R, path, &step, &e);
        }
        fflush(stdout);
    }
    if (R->set.resume && cg_bcast_status(c, 0, st, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    MPI_Bcast(&step, 1, MPI_LONG, 0, c->world);
    share_state(c, &R->model, R->set.resume != NULL);
    return step;
}

/* ---- opening the run ----------------------------------------------------------------- */

/* Rank 0 creates the output directory; in exact mode every rank checks that its BLAS keeps
 * the same bits on any thread count, before anything is trained. */
static int open_output(run *R)
{
    cg_error e = {{0}};
    int st = R->c->rank == 0 ? prepare_out(R->set.out, &e) : 0;
    if (cg_bcast_status(R->c, 0, st, &e)) {
        if (R->c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    R->check_ms = -1.0;
    if (!R->set.float_sums && R->c->threads > 1) {
        st = cg_blas_selfcheck(R->c->threads, &R->check_ms, e.msg, sizeof e.msg);
        if (cg_agree(R->c, st, &e))
            return -1;
    }
    return 0;
}

/* The sampler over the data set (with --exclude-heldout: over the classifier-train part
 * only, whose positions the sampler permutes). */
static int open_sampler(run *R, cg_error *e)
{
    const int batch = R->set.gan.global_batch;
    if (!R->set.exclude_heldout)
        return cg_sampler_init(&R->sampler, R->ds.n, batch, (uint64_t)R->set.seed, e);
    int64_t *part = cg_alloc(sizeof(int64_t) * (size_t)R->ds.n);
    const long np = cg_part_indices(R->ds.n, 0, part);
    const int st = cg_sampler_init_subset(&R->sampler, part, np, batch, (uint64_t)R->set.seed,
                                          e);
    cg_free(part);
    return st;
}

/* The model of the run's kind with the exact-sum groups of this rank (the parameters after
 * any number of steps are then bit-identical for every rank count that divides the groups)
 * and the EMA. */
static int open_model(run *R, cg_error *e)
{
    const cg_train_opts *o = &R->set;
    const int gan = cg_kind_find(o->model) == &cg_kind_gan;
    const int latent = gan ? o->gan.noise_dim : o->coding_dim;
    const cg_kind_setup s = {o->model, latent, o->conditional ? R->ds.n_classes : 0,
                             o->gan.global_batch, o->gan.global_batch / R->c->size,
                             (uint64_t)o->seed, o->ema > 0 ? o->ema : 0.0, o};
    if (cg_kind_init(&R->model, &s, e))
        return -1;
    R->groups = cg_join_ranks(&R->model, R->c, o->sum_groups, o->float_sums, e);
    return R->groups < 0 ? -1 : 0;
}

/* The run's length and learning-rate schedule, then the facts that complete the saved
 * configuration. Same on every rank: no collective needed to agree. */
static int open_schedule(run *R, cg_error *e)
{
    cg_train_opts *o = &R->set;
    R->total = o->steps > 0 ? o->steps : o->epochs * R->sampler.batches_per_epoch;
    if (o->gan.lr_decay_start == CG_DECAY_PRESET) {
        const cg_preset_row *row = cg_preset_find(o->model);
        const int pct = row ? row->lr_decay_pct : 0;
        o->gan.lr_decay_start = pct ? R->total * pct / 100 : -1;
    }
    if (o->gan.lr_decay_start >= R->total)
        return cg_fail(e, "train: --lr-decay-start %ld is not before the last step (%ld)",
                       o->gan.lr_decay_start, R->total);
    R->model.ops->set_schedule(&R->model, o->gan.lr_decay_start, R->total);
    R->model.ops->save_rates(&R->model, o);
    o->epochs = o->steps ? 0 : o->epochs;
    o->steps = R->total;
    o->sum_groups = R->groups;
    o->n_classes = R->model.n_classes;
    memcpy(R->classes, R->ds.chars, CG_MAX_CLASSES);
    o->classes = o->n_classes ? R->classes : "";
    o->images = R->ds.n;
    o->images_used = R->sampler.n;
    o->source = R->ds.source;
    json_t *cfg = cg_settings_json(o);
    R->config = cg_json_text(cfg);
    json_decref(cfg);
    return R->config ? 0 : cg_fail(e, "train: cannot write the configuration as JSON");
}

/* Rank 0: the metrics file and what the run is about to do. */
static void open_report(run *R)
{
    const cg_ctx *c = R->c;
    const cg_kind *k = &R->model;
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", R->set.out);
    R->metrics_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (R->metrics_fd < 0)
        fprintf(stderr, "chargan: warning: %s: %s; metrics not written\n", path, strerror(errno));
    printf("chargan train: model %s (%s %zu, %s %zu parameters), %d rank%s on %d node%s, "
           "%d BLAS thread%s each\n",
           k->model, k->nets[0].name, k->nets[0].net->n_params, k->nets[1].name,
           k->nets[1].net->n_params, c->size, c->size > 1 ? "s" : "",
           c->n_nodes, c->n_nodes > 1 ? "s" : "", c->threads, c->threads > 1 ? "s" : "");
    start_line(R->metrics_fd, c, R->first_step, R->check_ms);
    char sums[48] = "float sums";
    if (R->groups)
        snprintf(sums, sizeof sums, "exact sums over %d groups", R->groups);
    printf("data: %s: %ld images (loaded in %.2f s); global batch %d (%d per rank, %s), "
           "%ld batches per epoch, %ld steps%s\n",
           R->ds.source, R->ds.n, R->t_load, k->global_batch, k->local_batch, sums,
           R->sampler.batches_per_epoch, R->total, R->first_step ? " (resumed)" : "");
    if (R->set.exclude_heldout)
        printf("data: --exclude-heldout: training on the %ld classifier-train images; the %ld "
               "held-out ones (the FID reference) are never used\n",
               R->sampler.n, R->ds.n - R->sampler.n);
    if (k->ema)
        printf("ema: decay %g (warm-up min(decay, (1+t)/(10+t))); samples and scores use the "
               "EMA generator\n", k->ema_decay);
    fflush(stdout);
}

/* The quality score runs on rank 0 between steps; the other ranks simply wait for it at the
 * next step's reduction, so they lose the evaluation's time and no more. */
static int open_eval(run *R)
{
    cg_error e = {{0}};
    int st = 0;
    if (R->c->rank == 0) {
        if (!R->set.classifier)
            st = cg_fail(&e, "--eval-every needs --classifier FILE (make one with "
                             "'chargan classifier train')");
        else if ((R->clf_loaded = cg_classifier_load(R->set.classifier, &R->clf, 256, &e) == 0))
            st = cg_eval_setup(&R->ev, &R->clf, &R->clf.heldout, 256, R->model.latent_dim, &e);
        else
            st = -1;
        R->evaluating = st == 0;
    }
    if (cg_bcast_status(R->c, 0, st, &e)) {
        if (R->c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    return 0;
}

/* Opens the run: 0 to train, 1 when there is nothing left to do, -1 on an error (printed on
 * one rank, every rank returns it). */
/* Spans of one step at most: the passes and phases, plus every chunk of both sums. */
static size_t spans_per_step(const run *R)
{
    const size_t elem = R->set.float_sums ? sizeof(float) : sizeof(int64_t);
    const size_t bytes =
        (R->model.nets[0].net->n_params + R->model.nets[1].net->n_params + 2) * elem;
    return 16 + 2 + bytes / CG_REDUCE_CHUNK;
}

/* --trace: the window of steps (clipped at the run's end) and the clocks' offsets. */
static int open_trace(run *R)
{
    long first, last;
    if (!R->set.trace)
        return 0;
    cg_trace_parse_steps(R->set.trace_steps ? R->set.trace_steps : CG_TRACE_STEPS, &first,
                         &last);
    const size_t per = spans_per_step(R);
    const long end = last < R->total ? last : R->total;
    if (first > R->total || (size_t)(end - first + 1) * per > CG_TRACE_MAX_SPANS) {
        if (R->c->rank == 0 && first > R->total)
            fprintf(stderr, "chargan: error: train: --trace-steps %ld:%ld: the run ends at "
                            "step %ld\n", first, last, R->total);
        else if (R->c->rank == 0)
            fprintf(stderr, "chargan: error: train: --trace-steps %ld:%ld: too many steps "
                            "(%zu spans a step, at most %zu in all)\n", first, last, per,
                    CG_TRACE_MAX_SPANS);
        return -1;
    }
    cg_error e = {{0}};
    if (cg_trace_open(&R->trace, R->c, R->set.trace, first, end, per, &e)) {
        if (R->c->rank == 0)
            fprintf(stderr, "chargan: error: --trace: %s\n", e.msg);
        return -1;
    }
    R->model.ops->set_trace(&R->model, &R->trace);
    R->red.trace = &R->trace;
    return 0;
}

static int run_open(run *R)
{
    cg_ctx *c = R->c;
    cg_error e = {{0}};
    if (open_output(R))
        return -1;
    R->t_load = cg_now();
    if (cg_data_load(c, &R->set.data, &R->ds, &e)) { /* the same verdict on every rank */
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    R->t_load = cg_now() - R->t_load;
    int st = open_sampler(R, &e);
    if (!st)
        st = open_model(R, &e);
    if (cg_agree(c, st, &e))
        return -1;
    cg_affinity_report(c, stdout);
    if (open_schedule(R, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    if ((R->first_step = start_state(R)) < 0)
        return -1;
    R->epoch = R->first_step / R->sampler.batches_per_epoch;
    if (R->first_step >= R->total) {
        if (c->rank == 0)
            printf("chargan train: the run is already complete (step %ld of %ld); nothing to "
                   "do\n", R->first_step, R->total);
        return 1;
    }
    if (c->rank == 0)
        open_report(R);
    if (R->set.eval_every > 0 && open_eval(R))
        return -1;
    const int lb = R->model.local_batch;
    R->real = cg_alloc(sizeof(float) * (size_t)lb * CG_IMG_PIXELS);
    R->idx = cg_alloc(sizeof(int64_t) * (size_t)lb);
    R->step_ms = cg_alloc(sizeof(double) * (size_t)(R->total - R->first_step));
    if (c->rank == 0) {
        R->pic_z = cg_alloc(sizeof(float) * SAMPLE_GRID * (size_t)R->model.latent_dim);
        R->pic_img = cg_alloc(sizeof(float) * SAMPLE_GRID * CG_IMG_PIXELS);
    }
    cg_reducer_attach(&R->red, c, &R->model);
    return open_trace(R);
}

/* ---- one step ------------------------------------------------------------------------ */

static void env_failure_injection(const cg_ctx *c, long step)
{
    /* Test hook: CHARGAN_TEST_FAIL_RANK=r CHARGAN_TEST_FAIL_STEP=s makes rank r fail at step s
     * as an out-of-memory or hardware error would: abruptly, with no collective goodbye. */
    const char *r = getenv("CHARGAN_TEST_FAIL_RANK"), *s = getenv("CHARGAN_TEST_FAIL_STEP");
    if (r && s && atoi(r) == c->rank && atol(s) == step)
        cg_die("injected failure at step %ld (CHARGAN_TEST_FAIL_RANK)", step);
}

/* G's gradient is complete: reduce it while D's reduction may still be in flight, with the
 * step's statistics (losses for the log and the NaN check, and the stop requests, so that
 * every rank stops after the same step). Returns the seconds spent waiting. */
static double reduce_step(run *R, step_stats *s)
{
    cg_ctx *c = R->c;
    const double w0 = cg_now();
    s->stop_requests = stop_signal != 0;
    /* Rank 0's clock decides the time limit, so all ranks stop after the same step. */
    s->out_of_time = c->rank == 0 && R->set.time_limit > 0 &&
                     cg_now() - R->t_start >= R->set.time_limit;
    cg_reducer_finish(&R->red);
    const double t0 = cg_trace_start(&R->trace);
    if (c->size > 1)
        MPI_Allreduce(MPI_IN_PLACE, (double *)s, N_STEP_STATS, MPI_DOUBLE, MPI_SUM, c->world);
    cg_trace_add(&R->trace, CG_SPAN_STATS, t0, 0);
    return cg_now() - w0;
}

/* A loss or gradient that is not finite stops the run before the update (printed once). */
static int step_failed(run *R, long step, const step_stats *s, long bad)
{
    const cg_kind_ops *ops = R->model.ops;
    int finite = 1;
    for (int i = 0; i < ops->n_stats; i++)
        finite &= isfinite(s->v[i]) != 0;
    if (finite && !bad)
        return 0;
    if (R->c->rank == 0) {
        char vals[160] = "";
        for (int i = 0, at = 0; i < ops->n_stats && at < (int)sizeof vals; i++)
            at += snprintf(vals + at, sizeof vals - (size_t)at, "%s%s %g", i ? ", " : "",
                           ops->stat_labels[i], s->v[i]);
        fprintf(stderr, "chargan: error: step %ld: %s (%s); stopping before the update so no "
                        "garbage is written\n",
                step + 1, finite ? "non-finite or exploding gradient (|g| >= 2^19)"
                                 : "non-finite loss", vals);
    }
    return -1;
}

/* One training step: this rank's share of the batch, both networks' gradients summed over
 * all ranks, the updates. Returns 0, or -1 when a loss or gradient is not finite (printed;
 * nothing was updated). Every rank holds the same reduced values, so every rank takes the
 * same branch. */
static int train_step(run *R, long step, step_stats *s, double *wait)
{
    cg_kind *k = &R->model;
    const int lb = k->local_batch;
    env_failure_injection(R->c, step);
    double t0 = cg_trace_start(&R->trace);
    R->epoch = cg_sampler_batch(&R->sampler, step, R->c->rank, R->c->size, R->idx);
    cg_data_batch(&R->ds, R->idx, lb, k->data_lo, 1.0f, R->real, k->labels);
    cg_trace_add(&R->trace, CG_SPAN_LOAD, t0, 0);
    const cg_kind_hooks hooks = cg_reducer_hooks(&R->red);
    *s = (step_stats){{0}, 0.0, 0.0};
    k->ops->grads(k, R->real, step, (long)R->c->rank * lb, &hooks, s->v);
    *wait = reduce_step(R, s);
    t0 = cg_trace_start(&R->trace);
    long bad = 0;
    for (int i = 0; i < k->n_nets && R->set.float_sums; i++)
        bad += !all_finite(k->nets[i].net->grad, k->nets[i].net->n_params);
    if (!R->set.float_sums)
        bad = k->ops->finish_grads(k);
    cg_trace_add(&R->trace, CG_SPAN_UNFOLD, t0, 0);
    if (step_failed(R, step, s, bad))
        return -1;
    k->ops->apply(k);
    return 0;
}

/* ---- after a step -------------------------------------------------------------------- */

/* --check-every: all ranks must hold bit-identical parameters and EMA. */
static int check_ranks(run *R)
{
    cg_ctx *c = R->c;
    const cg_kind *k = &R->model;
    const cg_net *gen = k->nets[k->gen].net;
    uint64_t sum[3] = {cg_checksum_floats(k->nets[0].net->param, k->nets[0].net->n_params),
                       cg_checksum_floats(k->nets[1].net->param, k->nets[1].net->n_params),
                       k->ema ? cg_checksum_floats(k->ema, gen->n_params) : 0};
    uint64_t lo[3], hi[3];
    MPI_Allreduce(sum, lo, 3, MPI_UINT64_T, MPI_MIN, c->world);
    MPI_Allreduce(sum, hi, 3, MPI_UINT64_T, MPI_MAX, c->world);
    if (lo[0] != hi[0] || lo[1] != hi[1] || lo[2] != hi[2]) {
        const int which = lo[0] != hi[0] ? 0 : lo[1] != hi[1] ? 1 : k->gen;
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: step %ld: ranks hold different parameters (%s%s "
                            "checksums differ)\n",
                    R->done, k->nets[which].name, lo[0] != hi[0] || lo[1] != hi[1] ? "" : " EMA");
        return -1;
    }
    if (c->rank == 0)
        printf("check: step %ld: parameters%s bit-identical on all %d ranks (%016llx)\n",
               R->done, k->ema ? " and EMA" : "", c->size, (unsigned long long)sum[0]);
    return 0;
}

/* Rank 0: the progress line (the kind's statistics) and its JSON twin in metrics.jsonl. */
static void log_step(run *R, const step_stats *s, double wait)
{
    const cg_kind_ops *ops = R->model.ops;
    const long done = R->done, total = R->total, ran = done - R->first_step;
    const double el = cg_now() - R->t_start;
    const double ips = (double)ran * R->model.global_batch / el;
    const double eta = el / (double)ran * (double)(total - done);
    json_t *line = json_pack("{sIsIsI}", "step", (json_int_t)done, "total", (json_int_t)total,
                             "epoch", (json_int_t)(R->epoch + 1));
    printf("step %ld/%ld epoch %ld", done, total, R->epoch + 1);
    for (int i = 0; i < ops->n_stats; i++) {
        /* D's outputs are probabilities, shown as such; losses with 4 decimals. */
        printf(i >= 2 && ops == &cg_kind_gan ? " %s %.3f" : " %s %.4f", ops->stat_labels[i],
               s->v[i]);
        json_object_set_new(line, ops->stat_keys[i], cg_json_num(s->v[i], 6));
    }
    printf(" %.1f img/s ETA %.0fs\n", ips, eta);
    fflush(stdout);
    json_object_set_new(line, "images_per_s", cg_json_num(ips, 2));
    json_object_set_new(line, "mpi_wait_ms", cg_json_num(1e3 * wait, 3));
    json_object_set_new(line, "elapsed_s", cg_json_num(el, 3));
    json_object_set_new(line, "eta_s", cg_json_num(eta, 1));
    cg_json_append(R->metrics_fd, line);
}

/* Rank 0: scores the generator (its EMA when there is one) into metrics.jsonl. */
static void eval_step(run *R)
{
    cg_kind *k = &R->model;
    cg_eval_result r;
    cg_error e;
    const double t0 = cg_trace_start(&R->trace);
    k->ops->ema_swap(k);
    const int bad = cg_eval_model(&R->ev, k, k->n_classes ? R->ds.chars : NULL, R->set.eval_n,
                                  &r, &e);
    k->ops->ema_swap(k);
    cg_trace_add(&R->trace, CG_SPAN_EVAL, t0, 0);
    if (bad) {
        fprintf(stderr, "chargan: warning: evaluation failed: %s\n", e.msg);
        return;
    }
    R->eval_seconds += r.seconds;
    const double el = cg_now() - R->t_start;
    cg_json_append(R->metrics_fd,
                   json_pack("{sbsIsosososo}", "eval", 1, "step", (json_int_t)R->done,
                             "elapsed_s", cg_json_num(el, 3), "train_s",
                             cg_json_num(el - R->eval_seconds, 3), "generator",
                             json_string(k->ema ? "ema" : "raw"), "score",
                             cg_eval_result_json(&r)));
    if (R->set.log_every > 0) {
        printf("eval: step %ld FID %.2f confidence %.3f classes %d%s%s (%.1f s)\n", R->done,
               r.fid, r.confidence, r.classes_covered,
               k->n_classes ? " (conditional)" : "", k->ema ? " (EMA)" : "",
               r.seconds);
        fflush(stdout);
    }
}

/* What follows a step: the rank check, the log, samples, the score, the periodic
 * checkpoint. Returns 0 to go on, 1 to stop (a signal or the time limit: the caller writes
 * the final checkpoint), -1 on an error (printed). */
static int after_step(run *R, const step_stats *s, double wait)
{
    const cg_train_opts *o = &R->set;
    const long done = R->done;
    const int rank0 = R->c->rank == 0;
    const int stopping = s->stop_requests > 0 || s->out_of_time > 0;
    if (o->check_every > 0 && done % o->check_every == 0 && check_ranks(R))
        return -1;
    if (rank0 && o->log_every > 0 && (done % o->log_every == 0 || done == R->total))
        log_step(R, s, wait);
    if (rank0 && o->sample_every > 0 && done % o->sample_every == 0)
        write_samples(R);
    if (R->evaluating && (done % o->eval_every == 0 || done == R->total || stopping))
        eval_step(R);
    if (stopping)
        return 1;
    if (o->ckpt_every > 0 && done % o->ckpt_every == 0 && done < R->total &&
        write_checkpoint(R))
        return -1;
    return 0;
}

/* ---- closing the run ----------------------------------------------------------------- */

/* Rank 0: the run's summary, on stdout and in metrics.jsonl. */
static void summary(run *R)
{
    const long ran = R->done - R->first_step;
    const int B = R->model.global_batch;
    const double wall = cg_now() - R->t_start;
    const double med = ran ? cg_median(R->step_ms, (int)ran) : 0.0;
    json_t *line = json_pack(
        "{sbsssisisisIsososososo}", "summary", 1, "model", R->model.model, "ranks",
        R->c->size, "threads", R->c->threads, "global_batch", B, "steps", (json_int_t)ran,
        "wall_s", cg_json_num(wall, 3), "images_per_s",
        cg_json_num(wall > 0 ? (double)ran * B / wall : 0.0, 2), "median_ms_per_step",
        cg_json_num(med, 3), "mpi_wait_ms_per_step",
        cg_json_num(ran ? 1e3 * R->wait_total / (double)ran : 0.0, 3), "gflops",
        cg_json_num(med > 0 ? R->model.ops->step_flops(&R->model, B) / (med * 1e6) : 0.0, 2));
    cg_json_print(stdout, json_incref(line));
    fflush(stdout);
    cg_json_append(R->metrics_fd, line);
}

/* Collective: rank 0 writes the --trace file. Returns 0, or 1 (printed). */
static int finish_trace(run *R)
{
    cg_error e;
    const long ran = R->done - R->first_step;
    const double med = ran ? cg_median(R->step_ms, (int)ran) : 0.0;
    if (cg_trace_write(&R->trace, R->c, med, &e)) {
        if (R->c->rank == 0)
            fprintf(stderr, "chargan: error: --trace: %s\n", e.msg);
        return 1;
    }
    if (R->c->rank == 0 && R->set.log_every > 0)
        printf("trace: %s (steps %ld..%ld, %zu spans on rank 0, %.2f us each)\n", R->set.trace,
               R->trace.first, R->trace.last, R->trace.n, 1e6 * R->trace.event_cost);
    return 0;
}

/* The final checkpoint (at the end, or when a signal or the time limit stopped the run),
 * what to do next, the summary. Returns the exit code. */
static int run_finish(run *R, int rc, int stopped_by)
{
    const cg_train_opts *o = &R->set;
    const int rank0 = R->c->rank == 0;
    if (rc == 0 && R->done > R->first_step) {
        if (rank0 && !(o->sample_every > 0 && R->done % o->sample_every == 0))
            write_samples(R);
        if (write_checkpoint(R))
            rc = 1;
    }
    if (rc == 0 && R->done < R->total && rank0) {
        printf("chargan train: stopped by %s after step %ld of %ld; checkpoint %s.\n"
               "To continue, run the same command with --resume auto.\n",
               stopped_by == 2 ? "--time-limit"
               : stop_signal   ? signal_name((int)stop_signal)
                               : "a signal on another rank",
               R->done, R->total, R->ckpt_path);
        fflush(stdout);
    }
    if (rank0 && rc == 0)
        summary(R);
    if (rc == 0 && R->trace.cap)
        rc = finish_trace(R);
    return rc;
}

static void run_free(run *R)
{
    if (R->metrics_fd >= 0)
        close(R->metrics_fd);
    if (R->evaluating)
        cg_eval_free(&R->ev);
    if (R->clf_loaded)
        cg_classifier_free(&R->clf);
    cg_free(R->pic_z);
    cg_free(R->pic_img);
    free(R->config);
    cg_free(R->real);
    cg_free(R->idx);
    cg_free(R->step_ms);
    if (R->red.last)
        cg_reducer_free(&R->red);
    cg_trace_free(&R->trace);
    cg_kind_free(&R->model);
    cg_sampler_free(&R->sampler);
    cg_data_free(&R->ds);
}

int cg_train(cg_ctx *c, const cg_train_opts *o)
{
    run *R = calloc(1, sizeof *R);
    if (!R)
        cg_die("out of memory");
    R->c = c;
    R->set = *o;
    R->metrics_fd = -1;
    cg_ctx_set_threads(c, o->threads);
    /* From the start: a signal during data loading or resume must not kill a rank outright
     * (the loop acts on it after the first step; there is nothing to save before). */
    install_signal_handlers();
    int rc = run_open(R);
    if (rc) {
        rc = rc > 0 ? 0 : 1;
        run_free(R);
        free(R);
        return rc;
    }
    int stopped_by = 0;
    R->t_start = cg_now();
    R->done = R->first_step;
    for (long step = R->first_step; step < R->total && !rc && !stopped_by; step++) {
        cg_trace_step(&R->trace, step);
        const double t0 = cg_now();
        step_stats s;
        double wait;
        if (train_step(R, step, &s, &wait)) {
            rc = 1;
            break;
        }
        R->done = step + 1;
        R->wait_total += wait;
        R->step_ms[step - R->first_step] = 1e3 * (cg_now() - t0);
        const int next = after_step(R, &s, wait);
        cg_trace_add(&R->trace, CG_SPAN_STEP, t0, 0);
        rc = next < 0;
        if (next > 0)
            stopped_by = s.out_of_time > 0 ? 2 : 1;
    }
    rc = run_finish(R, rc, stopped_by);
    run_free(R);
    free(R);
    return rc;
}
