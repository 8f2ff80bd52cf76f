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
#include "chargan/ckpt.h"
#include "chargan/classifier.h"
#include "chargan/ema.h"
#include "chargan/generate.h"
#include "chargan/rng.h"
#include "chargan/png.h"
#include "chargan/version.h"

void cg_train_default_opts(cg_train_opts *o)
{
    memset(o, 0, sizeof *o);
    cg_gan_default_config(&o->gan);
    o->data.limit = 60000; /* the seed trained on the first 60,000 images */
    o->epochs = 50;
    o->out = "chargan-out";
    o->log_every = 50;
    o->keep = 3;
    o->eval_n = 2000;
    o->ema = -1.0; /* the model's default */
}

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

uint64_t cg_checksum(const float *p, size_t n)
{
    /* Sum of bit patterns mixed per position: any single flipped bit changes it. */
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        h += cg_mix64(((uint64_t)i << 32) ^ bits);
    }
    return h;
}

/* ---- output directory and metrics ---------------------------------------------------- */

static int make_dirs(const char *path, cg_error *e)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return cg_fail(e, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0777) && errno != EEXIST)
            return cg_fail(e, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0777) && errno != EEXIST)
        return cg_fail(e, "%s: cannot create directory: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) || !S_ISDIR(st.st_mode))
        return cg_fail(e, "%s: not a directory", buf);
    return 0;
}

/* Creates OUT and proves it writable by creating and removing a probe file. */
static int prepare_out(const char *out, cg_error *e)
{
    if (make_dirs(out, e))
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

/* One JSON object per write(2) on an O_APPEND descriptor: concurrent or interrupted writers
 * never interleave half lines. */
static void append_line(int fd, const char *line)
{
    if (fd < 0)
        return;
    size_t n = strlen(line);
    if (write(fd, line, n) != (ssize_t)n)
        fprintf(stderr, "chargan: warning: metrics.jsonl: short write: %s\n", strerror(errno));
}

/* The run's first metrics line (and each restart's): the stack it runs on, so that any result
 * can be traced to its libraries; printed on stdout too. check_ms < 0: no self-check (float
 * sums, or one thread per rank: nothing to compare). */
static void start_line(int fd, const cg_ctx *c, long first_step, double check_ms)
{
    cg_stack s;
    cg_stack_get(&s);
    char js[1536], line[2048], ms[32] = "null";
    cg_stack_json(&s, js, sizeof js);
    if (check_ms >= 0)
        snprintf(ms, sizeof ms, "%.3f", check_ms);
    snprintf(line, sizeof line,
             "{\"start\": true, \"step\": %ld, \"ranks\": %d, \"threads\": %d, %s, "
             "\"blas_selfcheck_ms\": %s}\n",
             first_step, c->size, c->threads, js, ms);
    append_line(fd, line);
    printf("stack: chargan %s; MPI %s; BLAS %s; HDF5 %s\n", s.chargan, s.mpi, s.blas, s.hdf5);
    if (check_ms >= 0)
        printf("blas: self-check passed: probe GEMMs bit-identical at 1 and %d threads "
               "(%.1f ms)\n", c->threads, check_ms);
}

/* ---- gradient reduction -------------------------------------------------------------- */

typedef struct {
    cg_ctx *c;
    MPI_Request req_d;
    double wait_s;
} reducer;

/* Called between layers of G's backward pass: lets MPI progress D's reduction while G
 * computes (Open MPI's shared-memory and TCP transports advance only inside MPI calls). */
static void poke_d_reduction(void *user)
{
    reducer *r = user;
    int done = 0;
    if (r->req_d != MPI_REQUEST_NULL)
        MPI_Test(&r->req_d, &done, MPI_STATUS_IGNORE);
}

/* The flat gradient sum over ranks: int64 fixed point in exact mode (cg_net_set_groups), else
 * float. Non-blocking when req is given. */
static void reduce_grads(cg_ctx *c, cg_net *net, MPI_Request *req)
{
    void *buf = net->gsum ? (void *)net->gsum : (void *)net->grad;
    const int n = (int)net->n_params + (net->gsum ? 1 : 0);
    const MPI_Datatype type = net->gsum ? MPI_INT64_T : MPI_FLOAT;
    if (req)
        MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, MPI_SUM, c->world, req);
    else
        MPI_Allreduce(MPI_IN_PLACE, buf, n, type, MPI_SUM, c->world);
}

static int all_finite(const float *p, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += p[i] * 0.0f; /* NaN or Inf anywhere makes acc NaN */
    return acc == 0.0f;
}

static void start_d_reduction(void *user, cg_gan *gan)
{
    reducer *r = user;
    r->req_d = MPI_REQUEST_NULL;
    if (r->c->size > 1)
        reduce_grads(r->c, &gan->d, &r->req_d);
}

/* Batch-norm statistics are sums over the global batch. */
static void sum_over_ranks(void *user, double *buf, int n)
{
    cg_ctx *c = user;
    if (c->size > 1)
        MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, c->world);
}

/* ---- checkpoints and samples --------------------------------------------------------- */

static void config_json(const cg_train_opts *o, const cg_gan_config *cfg, const cg_dataset *ds,
                        long total, int groups, double ema, long used, char *buf, size_t len)
{
    snprintf(buf, len,
             "{\"model\": \"%s\", \"conditional\": %s, \"n_classes\": %d, \"classes\": \"%s\", "
             "\"noise_dim\": %d, \"global_batch\": %d, \"lr_g\": %g, \"lr_d\": %g, "
             "\"beta1\": %g, \"beta2\": %g, \"eps\": %g, \"seed\": %llu, \"steps\": %ld, "
             "\"epochs\": %ld, \"data\": \"%s\", \"limit\": %ld, \"images\": %ld, "
             "\"ckpt_every\": %ld, \"sample_every\": %ld, \"sum_groups\": %d, \"ema\": %g, "
             "\"exclude_heldout\": %s, \"images_used\": %ld, \"loss\": \"%s\", "
             "\"lr_decay_start\": %ld}",
             cfg->model, cfg->n_classes ? "true" : "false", cfg->n_classes,
             cfg->n_classes ? ds->chars : "", cfg->noise_dim, cfg->global_batch,
             (double)cfg->lr_g, (double)cfg->lr_d, (double)cfg->beta1, (double)cfg->beta2,
             (double)cfg->eps, (unsigned long long)cfg->seed, total, o->steps ? 0 : o->epochs,
             ds->source, o->data.limit, ds->n, o->ckpt_every, o->sample_every, groups, ema,
             o->exclude_heldout ? "true" : "false", used,
             cfg->loss == CG_LOSS_HINGE ? "hinge" : "bce", cfg->lr_decay_start);
    /* JSON strings: the data source is a path; make quotes and backslashes harmless. */
    for (char *p = strstr(buf, "\"data\": \"") + 9; *p && strncmp(p, "\", \"limit", 9); p++)
        if (*p == '"' || *p == '\\')
            *p = '\'';
}

/* Rank 0 writes; every rank learns whether it worked. */
static int write_checkpoint(cg_ctx *c, const cg_train_opts *o, const cg_gan *gan, long step,
                            long epoch, const char *config, char *path, size_t len)
{
    cg_error e = {{0}};
    int st = 0;
    if (c->rank == 0) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/checkpoints", o->out);
        double t0 = cg_now();
        st = cg_ckpt_write(dir, gan, step, epoch, c->size, config, path, len, &e);
        if (!st && o->keep > 0 && cg_ckpt_prune(dir, o->keep, &e) < 0) {
            fprintf(stderr, "chargan: warning: %s\n", e.msg);
        }
        if (!st && o->log_every > 0) {
            printf("checkpoint: %s (%.2f s)\n", path, cg_now() - t0);
            fflush(stdout);
        }
    }
    if (cg_bcast_status(c, 0, st, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    return 0;
}

#define SAMPLE_GRID 81 /* 9 x 9, like the seed's figure */

/* Buffers of the sample pictures, allocated once on rank 0 before the first step. */
typedef struct {
    float *z, *img;
} sample_bufs;

/* Rank 0 only: always the first 81 samples of `chargan sample` with the run's seed (the same
 * noise vectors every time), so pictures across steps compare. */
static void write_samples(const cg_train_opts *o, cg_gan *gan, const cg_dataset *ds,
                          const sample_bufs *buf, long step)
{
    const int K = gan->preset.n_classes;
    int32_t labels[SAMPLE_GRID];
    char captions[SAMPLE_GRID + 1] = {0};
    for (int i = 0; i < SAMPLE_GRID; i++) {
        labels[i] = K ? i % K : 0;
        captions[i] = K ? ds->chars[labels[i]] : ' ';
    }
    cg_gan_ema_swap(gan); /* draw from the EMA generator when there is one */
    cg_generate(gan, gan->cfg.seed, 0, SAMPLE_GRID, K ? labels : NULL, 1.0f, buf->img, buf->z);
    cg_gan_ema_swap(gan);
    char path[4200];
    cg_error e;
    snprintf(path, sizeof path, "%s/samples/step-%08ld.h5", o->out, step);
    if (cg_samples_write(path, buf->img, SAMPLE_GRID, step, gan->cfg.model, gan->cfg.seed,
                         K ? labels : NULL, &e))
        fprintf(stderr, "chargan: warning: %s\n", e.msg);
    snprintf(path, sizeof path, "%s/samples/step-%08ld.png", o->out, step);
    if (cg_png_grid(path, buf->img, SAMPLE_GRID, 9, 3, K ? captions : NULL, &e))
        fprintf(stderr, "chargan: warning: %s\n", e.msg);
}

/* Finds and loads the checkpoint to resume from on rank 0 and broadcasts the state.
 * Returns the step to continue from (0: fresh start) or -1 on error (printed). */
static long resume_state(cg_ctx *c, const cg_train_opts *o, cg_gan *gan)
{
    cg_error e = {{0}};
    char path[4200] = {0};
    int st = 0;
    long step = 0;
    if (c->rank == 0) {
        if (!strcmp(o->resume, "auto")) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/checkpoints", o->out);
            int found = cg_ckpt_find_latest(dir, gan->cfg.model, path, sizeof path, &e);
            st = found < 0 ? -1 : 0;
            if (found == 0)
                printf("resume: no checkpoint in %s; starting from scratch\n", dir);
        } else {
            snprintf(path, sizeof path, "%s", o->resume);
        }
        if (!st && path[0]) {
            cg_ckpt_meta m;
            st = cg_ckpt_load(path, gan, &m, &e);
            if (!st) {
                if (m.seed != gan->cfg.seed || m.global_batch != gan->cfg.global_batch)
                    st = cg_fail(&e, "%s: trained with --seed %llu --batch %d, but this run "
                                     "asks for --seed %llu --batch %d; a resumed run must use "
                                     "the same values",
                                 path, (unsigned long long)m.seed, m.global_batch,
                                 (unsigned long long)gan->cfg.seed, gan->cfg.global_batch);
                /* The sampler's index set must not change under a resumed run either. */
                const int ck_ex = strstr(m.config_json, "\"exclude_heldout\": true") != NULL;
                if (!st && ck_ex != !!o->exclude_heldout)
                    st = cg_fail(&e, "%s: trained %s --exclude-heldout, but this run asks for "
                                     "the opposite; a resumed run must use the same data",
                                 path, ck_ex ? "with" : "without");
                step = m.step;
                if (!st)
                    printf("resume: %s (step %ld, written by %d rank%s)\n", path, m.step,
                           m.world_size, m.world_size > 1 ? "s" : "");
                if (!st && gan->ema_g && (!m.has_ema || m.ema_decay != gan->ema_decay))
                    printf("resume: %s; EMA decay %g from here on\n",
                           m.has_ema ? "the checkpoint's EMA continues"
                                     : "the checkpoint has no EMA: it starts from its weights",
                           gan->ema_decay);
                if (!st && !gan->ema_g && m.has_ema)
                    printf("resume: this run keeps no EMA (--ema 0, or the model's "
                           "default): the checkpoint's is not continued\n");
                cg_ckpt_meta_free(&m);
            }
        }
        fflush(stdout);
    }
    if (cg_bcast_status(c, 0, st, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return -1;
    }
    long adam[2] = {gan->adam_g.t, gan->adam_d.t};
    MPI_Bcast(&step, 1, MPI_LONG, 0, c->world);
    MPI_Bcast(adam, 2, MPI_LONG, 0, c->world);
    gan->adam_g.t = adam[0], gan->adam_d.t = adam[1];
    cg_net *nets[2] = {&gan->g, &gan->d};
    for (int k = 0; k < 2; k++) {
        float *bufs[3] = {nets[k]->param, nets[k]->adam_m, nets[k]->adam_v};
        for (int b = 0; b < 3; b++)
            MPI_Bcast(bufs[b], (int)nets[k]->n_params, MPI_FLOAT, 0, c->world);
    }
    if (gan->ema_g)
        MPI_Bcast(gan->ema_g, (int)gan->g.n_params, MPI_FLOAT, 0, c->world);
    return step;
}

/* ---- the loop ------------------------------------------------------------------------ */

static void env_failure_injection(const cg_ctx *c, long step)
{
    /* Test hook: CHARGAN_TEST_FAIL_RANK=r CHARGAN_TEST_FAIL_STEP=s makes rank r fail at step s
     * as an out-of-memory or hardware error would: abruptly, with no collective goodbye. */
    const char *r = getenv("CHARGAN_TEST_FAIL_RANK"), *s = getenv("CHARGAN_TEST_FAIL_STEP");
    if (r && s && atoi(r) == c->rank && atol(s) == step)
        cg_die("injected failure at step %ld (CHARGAN_TEST_FAIL_RANK)", step);
}

int cg_train(cg_ctx *c, const cg_train_opts *o)
{
    cg_error e = {{0}};
    int st = 0, rc = 1, metrics_fd = -1, evaluating = 0, clf_loaded = 0;
    /* Everything below is released at `out`; zeroed first so any early exit can go there. */
    cg_dataset ds;
    cg_sampler sampler;
    cg_gan gan;
    cg_classifier clf;
    cg_evaluator ev;
    sample_bufs pics = {NULL, NULL};
    char *config = NULL;
    float *real = NULL;
    int64_t *idx = NULL;
    double *step_ms = NULL;
    memset(&ds, 0, sizeof ds);
    memset(&sampler, 0, sizeof sampler);
    memset(&gan, 0, sizeof gan);
    memset(&clf, 0, sizeof clf);
    memset(&ev, 0, sizeof ev);
    cg_ctx_set_threads(c, o->threads);
    /* From the start: a signal during data loading or resume must not kill a rank outright
     * (the loop acts on it after the first step; there is nothing to save before). */
    install_signal_handlers();

    /* Output directory: rank 0 creates it; everybody learns the outcome. */
    if (c->rank == 0)
        st = prepare_out(o->out, &e);
    if (cg_bcast_status(c, 0, st, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }

    /* Exact mode promises the same bits on any thread count: make sure this BLAS keeps it
     * before anything is trained. */
    double check_ms = -1.0;
    if (!o->float_sums && c->threads > 1) {
        st = cg_blas_selfcheck(c->threads, &check_ms, e.msg, sizeof e.msg);
        if (cg_agree(c, st, &e))
            return 1;
    }

    double t_load = cg_now();
    if (cg_data_load(c, &o->data, &ds, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1; /* nothing loaded, nothing to free */
    }
    t_load = cg_now() - t_load;

    cg_gan_config cfg = o->gan;
    cfg.local_batch = cfg.global_batch / c->size;
    cfg.n_classes = o->conditional ? ds.n_classes : 0;
    if (o->exclude_heldout) {
        /* Only the classifier-train part: the sampler permutes positions in this list. */
        int64_t *part = cg_alloc(sizeof(int64_t) * (size_t)ds.n);
        const long np = cg_part_indices(ds.n, 0, part);
        st = cg_sampler_init_subset(&sampler, part, np, cfg.global_batch, cfg.seed, &e);
        cg_free(part);
    } else {
        st = cg_sampler_init(&sampler, ds.n, cfg.global_batch, cfg.seed, &e);
    }
    if (!st)
        st = cg_gan_init(&gan, &cfg, &e);
    /* Exact gradient sums over fixed groups of the global batch: the parameters after any
     * number of steps are bit-identical for every rank count that divides the groups. */
    const int groups =
        o->float_sums ? 0 : cg_sum_groups(cfg.global_batch, c->size, o->sum_groups, &e);
    if (!st && groups < 0)
        st = -1;
    if (!st && groups > 0)
        st = cg_gan_set_groups(&gan, groups, c->rank * (groups / c->size), groups / c->size,
                               &e);
    if (cg_agree(c, st, &e))
        goto out;
    const double ema = o->ema < 0 ? cg_ema_default(gan.cfg.model) : o->ema;
    if (ema > 0)
        cg_gan_ema_enable(&gan, ema);
    const long total = o->steps > 0 ? o->steps : o->epochs * sampler.batches_per_epoch;
    if (cfg.lr_decay_start >= total) {
        /* Same on every rank: no collective needed to agree. */
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: train: --lr-decay-start %ld is not before the "
                            "last step (%ld)\n", cfg.lr_decay_start, total);
        rc = 1;
        goto out;
    }
    gan.cfg.lr_decay_end = total;
    cfg = gan.cfg; /* with the preset's defaults filled in */
    gan.g.sync.sum = gan.d.sync.sum = sum_over_ranks;
    gan.g.sync.user = gan.d.sync.user = c;

    /* Rank 0 initializes (or loads a checkpoint); one broadcast per flat buffer makes every
     * rank identical. */
    long first_step = 0;
    if (c->rank == 0) {
        cg_gan_init_weights(&gan);
        cg_gan_ema_reset(&gan); /* the EMA starts at the initial weights */
    }
    if (o->resume) {
        first_step = resume_state(c, o, &gan);
        if (first_step < 0)
            goto out;
    } else {
        MPI_Bcast(gan.g.param, (int)gan.g.n_params, MPI_FLOAT, 0, c->world);
        MPI_Bcast(gan.d.param, (int)gan.d.n_params, MPI_FLOAT, 0, c->world);
        if (gan.ema_g)
            MPI_Bcast(gan.ema_g, (int)gan.g.n_params, MPI_FLOAT, 0, c->world);
    }
    if (first_step >= total) {
        if (c->rank == 0)
            printf("chargan train: the run is already complete (step %ld of %ld); nothing to "
                   "do\n", first_step, total);
        rc = 0;
        goto out;
    }
    config = cg_alloc(8192);
    config_json(o, &cfg, &ds, total, groups, ema > 0 ? ema : 0.0, sampler.n, config, 8192);

    if (c->rank == 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/metrics.jsonl", o->out);
        metrics_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (metrics_fd < 0)
            fprintf(stderr, "chargan: warning: %s: %s; metrics not written\n", path,
                    strerror(errno));
        printf("chargan train: model %s (G %zu, D %zu parameters), %d rank%s on %d node%s, "
               "%d BLAS thread%s each\n",
               cfg.model, gan.g.n_params, gan.d.n_params, c->size, c->size > 1 ? "s" : "",
               c->n_nodes, c->n_nodes > 1 ? "s" : "", c->threads, c->threads > 1 ? "s" : "");
        start_line(metrics_fd, c, first_step, check_ms);
        char sums[48] = "float sums";
        if (groups)
            snprintf(sums, sizeof sums, "exact sums over %d groups", groups);
        printf("data: %s: %ld images (loaded in %.2f s); global batch %d (%d per rank, %s), "
               "%ld batches per epoch, %ld steps%s\n",
               ds.source, ds.n, t_load, cfg.global_batch, cfg.local_batch, sums,
               sampler.batches_per_epoch, total, first_step ? " (resumed)" : "");
        if (o->exclude_heldout)
            printf("data: --exclude-heldout: training on the %ld classifier-train images; "
                   "the %ld held-out ones (the FID reference) are never used\n",
                   sampler.n, ds.n - sampler.n);
        if (gan.ema_g)
            printf("ema: decay %g (warm-up min(decay, (1+t)/(10+t))); samples and scores use "
                   "the EMA generator\n", gan.ema_decay);
        fflush(stdout);
    }

    /* The quality score runs on rank 0 between steps; the other ranks simply wait for it at
     * the next step's reduction, so they lose the evaluation's time and no more. */
    if (o->eval_every > 0) {
        st = 0;
        if (c->rank == 0) {
            if (!o->classifier)
                st = cg_fail(&e, "--eval-every needs --classifier FILE (make one with "
                                 "'chargan classifier train')");
            else if ((clf_loaded = cg_classifier_load(o->classifier, &clf, 256, &e) == 0))
                st = cg_eval_setup(&ev, &clf, &clf.heldout, 256, cfg.noise_dim, &e);
            else
                st = -1;
            evaluating = st == 0;
        }
        if (cg_bcast_status(c, 0, st, &e)) {
            if (c->rank == 0)
                fprintf(stderr, "chargan: error: %s\n", e.msg);
            goto out;
        }
    }

    const int lb = cfg.local_batch;
    real = cg_alloc(sizeof(float) * (size_t)lb * CG_IMG_PIXELS);
    idx = cg_alloc(sizeof(int64_t) * (size_t)lb);
    step_ms = cg_alloc(sizeof(double) * (size_t)(total - first_step));
    if (c->rank == 0) {
        pics.z = cg_alloc(sizeof(float) * SAMPLE_GRID * (size_t)cfg.noise_dim);
        pics.img = cg_alloc(sizeof(float) * SAMPLE_GRID * CG_IMG_PIXELS);
    }
    reducer red = {c, MPI_REQUEST_NULL, 0.0};
    cg_gan_hooks hooks = {start_d_reduction, &red};
    gan.g.progress = (cg_progress){poke_d_reduction, &red};
    int stopped_by = 0;
    rc = 0;
    long step = 0, epoch = first_step / sampler.batches_per_epoch, done = first_step;
    double t_start = cg_now(), wait_total = 0.0, eval_seconds = 0.0;
    char ckpt_path[4200] = {0};
    for (step = first_step; step < total; step++) {
        const double t0 = cg_now();
        env_failure_injection(c, step);
        epoch = cg_sampler_batch(&sampler, step, c->rank, c->size, idx);
        cg_data_batch(&ds, idx, lb, gan.data_lo, 1.0f, real, gan.labels);
        cg_gan_stats s;
        cg_gan_grads(&gan, real, step, (long)c->rank * lb, &hooks, &s);

        /* G's gradient is complete: reduce it while D's reduction may still be in flight,
         * then the losses (4 numbers) for logging and the NaN check. */
        double w0 = cg_now();
        /* stats[4] carries the stop request: a signal may reach only some ranks, and the
         * sum makes every rank stop after the same step. */
        /* Rank 0's clock decides the time limit, so all ranks stop after the same step. */
        const int out_of_time = c->rank == 0 && o->time_limit > 0 &&
                                cg_now() - t_start >= o->time_limit;
        double stats[5] = {s.loss_d, s.loss_g, s.d_real, s.d_fake,
                           (double)stop_signal + (out_of_time ? 1000.0 : 0.0)};
        if (c->size > 1) {
            reduce_grads(c, &gan.g, NULL);
            MPI_Allreduce(MPI_IN_PLACE, stats, 5, MPI_DOUBLE, MPI_SUM, c->world);
            MPI_Wait(&red.req_d, MPI_STATUS_IGNORE);
        }
        const double wait = cg_now() - w0;
        wait_total += wait;
        const long bad = o->float_sums ? !all_finite(gan.g.grad, gan.g.n_params) +
                                             !all_finite(gan.d.grad, gan.d.n_params)
                                       : cg_gan_finish_grads(&gan);

        /* Every rank holds the same reduced values, so every rank takes the same branch. */
        if (!isfinite(stats[0]) || !isfinite(stats[1]) || bad) {
            if (c->rank == 0)
                fprintf(stderr, "chargan: error: step %ld: %s (loss_D %g, loss_G %g); "
                                "stopping before the update so no garbage is written\n",
                        step + 1,
                        isfinite(stats[0]) && isfinite(stats[1])
                            ? "non-finite or exploding gradient (|g| >= 2^19)"
                            : "non-finite loss",
                        stats[0], stats[1]);
            rc = 1;
            break;
        }
        cg_gan_apply(&gan);
        cg_gan_ema_update(&gan);
        done = step + 1;
        step_ms[step - first_step] = 1e3 * (cg_now() - t0);

        if (o->check_every > 0 && done % o->check_every == 0) {
            uint64_t sum[3] = {cg_checksum(gan.g.param, gan.g.n_params),
                               cg_checksum(gan.d.param, gan.d.n_params),
                               gan.ema_g ? cg_checksum(gan.ema_g, gan.g.n_params) : 0};
            uint64_t lo[3], hi[3];
            MPI_Allreduce(sum, lo, 3, MPI_UINT64_T, MPI_MIN, c->world);
            MPI_Allreduce(sum, hi, 3, MPI_UINT64_T, MPI_MAX, c->world);
            if (lo[0] != hi[0] || lo[1] != hi[1] || lo[2] != hi[2]) {
                if (c->rank == 0)
                    fprintf(stderr, "chargan: error: step %ld: ranks hold different parameters "
                                    "(%s checksums differ)\n",
                            done, lo[0] != hi[0] ? "generator"
                                  : lo[1] != hi[1] ? "discriminator" : "generator EMA");
                rc = 1;
                break;
            }
            if (c->rank == 0)
                printf("check: step %ld: parameters%s bit-identical on all %d ranks (%016llx)\n",
                       done, gan.ema_g ? " and EMA" : "", c->size, (unsigned long long)sum[0]);
        }
        if (c->rank == 0 && o->log_every > 0 && (done % o->log_every == 0 || done == total)) {
            double el = cg_now() - t_start;
            double ips = (double)(done - first_step) * cfg.global_batch / el;
            double eta = el / (double)(done - first_step) * (double)(total - done);
            printf("step %ld/%ld epoch %ld loss_G %.4f loss_D %.4f D(x) %.3f D(G(z)) %.3f "
                   "%.1f img/s ETA %.0fs\n",
                   done, total, epoch + 1, stats[1], stats[0], stats[2], stats[3], ips, eta);
            fflush(stdout);
            char line[512];
            snprintf(line, sizeof line,
                     "{\"step\": %ld, \"total\": %ld, \"epoch\": %ld, \"loss_g\": %.6f, "
                     "\"loss_d\": %.6f, \"d_real\": %.6f, \"d_fake\": %.6f, \"images_per_s\": %.2f, "
                     "\"mpi_wait_ms\": %.3f, \"elapsed_s\": %.3f, \"eta_s\": %.1f}\n",
                     done, total, epoch + 1, stats[1], stats[0], stats[2], stats[3], ips,
                     1e3 * wait, el, eta);
            append_line(metrics_fd, line);
        }
        const int stopping = stats[4] != 0.0;
        if (c->rank == 0 && o->sample_every > 0 && done % o->sample_every == 0)
            write_samples(o, &gan, &ds, &pics, done);
        if (evaluating && (done % o->eval_every == 0 || done == total || stopping)) {
            cg_eval_result r;
            char js[512], line[768];
            cg_gan_ema_swap(&gan); /* score the EMA generator when there is one */
            const int bad = cg_eval_gan(&ev, &gan, cfg.n_classes ? ds.chars : NULL, o->eval_n,
                                        &r, &e);
            cg_gan_ema_swap(&gan);
            if (bad) {
                fprintf(stderr, "chargan: warning: evaluation failed: %s\n", e.msg);
            } else {
                cg_eval_result_json(&r, js, sizeof js);
                eval_seconds += r.seconds;
                snprintf(line, sizeof line,
                         "{\"eval\": true, \"step\": %ld, \"elapsed_s\": %.3f, "
                         "\"train_s\": %.3f, \"generator\": \"%s\", \"score\": %s}\n",
                         done, cg_now() - t_start, cg_now() - t_start - eval_seconds,
                         gan.ema_g ? "ema" : "raw", js);
                append_line(metrics_fd, line);
                if (o->log_every > 0) {
                    printf("eval: step %ld FID %.2f confidence %.3f classes %d%s%s (%.1f s)\n",
                           done, r.fid, r.confidence, r.classes_covered,
                           cfg.n_classes ? " (conditional)" : "", gan.ema_g ? " (EMA)" : "",
                           r.seconds);
                    fflush(stdout);
                }
            }
        }
        if (stopping) {
            stopped_by = stats[4] >= 1000.0 ? 2 : 1;
            break;
        }
        if (o->ckpt_every > 0 && done % o->ckpt_every == 0 && done < total &&
            write_checkpoint(c, o, &gan, done, epoch, config, ckpt_path, sizeof ckpt_path)) {
            rc = 1;
            break;
        }
    }
    /* The final checkpoint: at the end of the run, or when a signal asked to stop. */
    if (rc == 0 && done > first_step) {
        if (c->rank == 0 && (done == total || stopped_by) &&
            !(o->sample_every > 0 && done % o->sample_every == 0))
            write_samples(o, &gan, &ds, &pics, done);
        if (write_checkpoint(c, o, &gan, done, epoch, config, ckpt_path, sizeof ckpt_path))
            rc = 1;
    }
    if (rc == 0 && done < total && c->rank == 0) {
        printf("chargan train: stopped by %s after step %ld of %ld; checkpoint %s.\n"
               "To continue, run the same command with --resume auto.\n",
               stopped_by == 2 ? "--time-limit"
               : stop_signal ? signal_name((int)stop_signal)
                             : "a signal on another rank",
               done,
               total, ckpt_path);
        fflush(stdout);
    }
    const double wall = cg_now() - t_start;
    if (c->rank == 0 && rc == 0) {
        const long ran = done - first_step;
        double med = ran ? cg_median(step_ms, (int)ran) : 0.0;
        char line[768];
        snprintf(line, sizeof line,
                 "{\"summary\": true, \"model\": \"%s\", \"ranks\": %d, \"threads\": %d, "
                 "\"global_batch\": %d, \"steps\": %ld, \"wall_s\": %.3f, \"images_per_s\": %.2f, "
                 "\"median_ms_per_step\": %.3f, \"mpi_wait_ms_per_step\": %.3f, "
                 "\"gflops\": %.2f}\n",
                 cfg.model, c->size, c->threads, cfg.global_batch, ran, wall,
                 wall > 0 ? (double)ran * cfg.global_batch / wall : 0.0, med,
                 ran ? 1e3 * wait_total / (double)ran : 0.0,
                 med > 0 ? cg_gan_step_flops(&gan, cfg.global_batch) / (med * 1e6) : 0.0);
        fputs(line, stdout);
        fflush(stdout);
        append_line(metrics_fd, line);
    }
out:
    if (metrics_fd >= 0)
        close(metrics_fd);
    if (evaluating)
        cg_eval_free(&ev);
    if (clf_loaded)
        cg_classifier_free(&clf);
    cg_free(pics.z);
    cg_free(pics.img);
    cg_free(config);
    cg_free(real);
    cg_free(idx);
    cg_free(step_ms);
    cg_gan_free(&gan);
    cg_sampler_free(&sampler);
    cg_data_free(&ds);
    return rc;
}
