#include "chargan/train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chargan/rng.h"

void cg_train_default_opts(cg_train_opts *o)
{
    memset(o, 0, sizeof *o);
    cg_gan_default_config(&o->gan);
    o->data.limit = 60000; /* the seed trained on the first 60,000 images */
    o->epochs = 50;
    o->out = "chargan-out";
    o->log_every = 50;
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

/* ---- gradient reduction -------------------------------------------------------------- */

typedef struct {
    cg_ctx *c;
    MPI_Request req_d;
    double wait_s;
} reducer;

static void start_d_reduction(void *user, cg_gan *gan)
{
    reducer *r = user;
    r->req_d = MPI_REQUEST_NULL;
    if (r->c->size > 1)
        MPI_Iallreduce(MPI_IN_PLACE, gan->d.grad, (int)gan->d.n_params, MPI_FLOAT, MPI_SUM,
                       r->c->world, &r->req_d);
}

static int all_finite(const float *p, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += p[i] * 0.0f; /* NaN or Inf anywhere makes acc NaN */
    return acc == 0.0f;
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
    int st = 0;
    cg_ctx_set_threads(c, o->threads);

    /* Output directory: rank 0 creates it; everybody learns the outcome. */
    if (c->rank == 0)
        st = prepare_out(o->out, &e);
    if (cg_bcast_status(c, 0, st, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }

    cg_dataset ds;
    memset(&ds, 0, sizeof ds);
    double t_load = cg_now();
    if (cg_data_load(c, &o->data, &ds, &e)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    t_load = cg_now() - t_load;

    cg_gan_config cfg = o->gan;
    cfg.local_batch = cfg.global_batch / c->size;
    cg_sampler sampler;
    cg_gan gan;
    memset(&sampler, 0, sizeof sampler);
    memset(&gan, 0, sizeof gan);
    st = cg_sampler_init(&sampler, ds.n, cfg.global_batch, cfg.seed, &e);
    if (!st)
        st = cg_gan_init(&gan, &cfg, &e);
    if (cg_agree(c, st, &e)) {
        cg_sampler_free(&sampler);
        cg_data_free(&ds);
        return 1;
    }
    const long total = o->steps > 0 ? o->steps : o->epochs * sampler.batches_per_epoch;

    /* Rank 0 initializes; one broadcast per flat buffer makes every rank identical. */
    if (c->rank == 0)
        cg_gan_init_weights(&gan);
    MPI_Bcast(gan.g.param, (int)gan.g.n_params, MPI_FLOAT, 0, c->world);
    MPI_Bcast(gan.d.param, (int)gan.d.n_params, MPI_FLOAT, 0, c->world);

    int metrics_fd = -1;
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
        printf("data: %s: %ld images (loaded in %.2f s); global batch %d (%d per rank), "
               "%ld batches per epoch, %ld steps\n",
               ds.source, ds.n, t_load, cfg.global_batch, cfg.local_batch,
               sampler.batches_per_epoch, total);
        fflush(stdout);
    }

    const int lb = cfg.local_batch;
    float *real = cg_alloc(sizeof(float) * (size_t)lb * CG_IMG_PIXELS);
    int64_t *idx = cg_alloc(sizeof(int64_t) * (size_t)lb);
    double *step_ms = cg_alloc(sizeof(double) * (size_t)(total > 0 ? total : 1));
    reducer red = {c, MPI_REQUEST_NULL, 0.0};
    cg_gan_hooks hooks = {start_d_reduction, &red};
    int rc = 0;
    long step = 0, epoch = 0, done = 0;
    double t_start = cg_now(), wait_total = 0.0;
    for (step = 0; step < total; step++) {
        const double t0 = cg_now();
        env_failure_injection(c, step);
        epoch = cg_sampler_batch(&sampler, step, c->rank, c->size, idx);
        cg_data_batch(&ds, idx, lb, 0.0f, 1.0f, real, NULL);
        cg_gan_stats s;
        cg_gan_grads(&gan, real, step, (long)c->rank * lb, &hooks, &s);

        /* G's gradient is complete: reduce it while D's reduction may still be in flight,
         * then the losses (4 numbers) for logging and the NaN check. */
        double w0 = cg_now();
        double stats[4] = {s.loss_d, s.loss_g, s.d_real, s.d_fake};
        if (c->size > 1) {
            MPI_Allreduce(MPI_IN_PLACE, gan.g.grad, (int)gan.g.n_params, MPI_FLOAT, MPI_SUM,
                          c->world);
            MPI_Allreduce(MPI_IN_PLACE, stats, 4, MPI_DOUBLE, MPI_SUM, c->world);
            MPI_Wait(&red.req_d, MPI_STATUS_IGNORE);
        }
        const double wait = cg_now() - w0;
        wait_total += wait;

        /* Every rank holds the same reduced values, so every rank takes the same branch. */
        if (!isfinite(stats[0]) || !isfinite(stats[1]) ||
            !all_finite(gan.g.grad, gan.g.n_params) || !all_finite(gan.d.grad, gan.d.n_params)) {
            if (c->rank == 0)
                fprintf(stderr, "chargan: error: step %ld: non-finite %s (loss_D %g, loss_G %g); "
                                "stopping before the update so no garbage is written\n",
                        step + 1, isfinite(stats[0]) && isfinite(stats[1]) ? "gradient" : "loss",
                        stats[0], stats[1]);
            rc = 1;
            break;
        }
        cg_gan_apply(&gan);
        done = step + 1;
        step_ms[step] = 1e3 * (cg_now() - t0);

        if (o->check_every > 0 && done % o->check_every == 0) {
            uint64_t sum[2] = {cg_checksum(gan.g.param, gan.g.n_params),
                               cg_checksum(gan.d.param, gan.d.n_params)};
            uint64_t lo[2], hi[2];
            MPI_Allreduce(sum, lo, 2, MPI_UINT64_T, MPI_MIN, c->world);
            MPI_Allreduce(sum, hi, 2, MPI_UINT64_T, MPI_MAX, c->world);
            if (lo[0] != hi[0] || lo[1] != hi[1]) {
                if (c->rank == 0)
                    fprintf(stderr, "chargan: error: step %ld: ranks hold different parameters "
                                    "(%s checksums differ)\n",
                            done, lo[0] != hi[0] ? "generator" : "discriminator");
                rc = 1;
                break;
            }
            if (c->rank == 0 && o->log_every > 0)
                printf("check: step %ld: parameters bit-identical on all %d ranks (%016llx)\n",
                       done, c->size, (unsigned long long)sum[0]);
        }
        if (c->rank == 0 && o->log_every > 0 && (done % o->log_every == 0 || done == total)) {
            double el = cg_now() - t_start;
            double ips = (double)done * cfg.global_batch / el;
            double eta = el / (double)done * (double)(total - done);
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
    }
    const double wall = cg_now() - t_start;
    if (c->rank == 0 && rc == 0) {
        double med = done ? cg_median(step_ms, (int)done) : 0.0;
        char line[768];
        snprintf(line, sizeof line,
                 "{\"summary\": true, \"model\": \"%s\", \"ranks\": %d, \"threads\": %d, "
                 "\"global_batch\": %d, \"steps\": %ld, \"wall_s\": %.3f, \"images_per_s\": %.2f, "
                 "\"median_ms_per_step\": %.3f, \"mpi_wait_ms_per_step\": %.3f, "
                 "\"gflops\": %.2f}\n",
                 cfg.model, c->size, c->threads, cfg.global_batch, done, wall,
                 wall > 0 ? (double)done * cfg.global_batch / wall : 0.0, med,
                 done ? 1e3 * wait_total / (double)done : 0.0,
                 med > 0 ? cg_gan_step_flops(&gan, cfg.global_batch) / (med * 1e6) : 0.0);
        fputs(line, stdout);
        fflush(stdout);
        append_line(metrics_fd, line);
    }
    if (metrics_fd >= 0)
        close(metrics_fd);
    cg_free(real);
    cg_free(idx);
    cg_free(step_ms);
    cg_gan_free(&gan);
    cg_sampler_free(&sampler);
    cg_data_free(&ds);
    return rc;
}
