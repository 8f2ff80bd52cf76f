/* chargan bench --allreduce: times the gradient reduction that data-parallel training does
 * every step and fits the ring-allreduce cost model to it.
 *
 * For every message size (the real gradient reductions of G and D of the seed and small
 * models -- training sums int64 fixed point, 8 bytes per parameter plus one counter, timed
 * here as the same number of bytes -- and 4 KB .. 64 MB in powers of the --factor) it times
 * MPI_Allreduce(SUM, in place: as train.c does) and MPI_Iallreduce immediately followed by MPI_Wait. One sample
 * is the slowest rank's time of one call after a barrier; the reported time is the median
 * over the repetitions. Then it fits, by least squares on the relative error (the sizes span
 * four orders of magnitude, so an absolute fit would only see the largest ones),
 *
 *     t(n) = 2(P-1) alpha + 2(P-1)/P n beta          (n in bytes)
 *
 * the cost of a ring allreduce (reduce-scatter + allgather: 2(P-1) messages of n/P bytes).
 * alpha is the per-message latency, 1/beta the link bandwidth the ring sees. Open MPI picks
 * other algorithms (recursive doubling for small messages, ...) on its own; the fit says how
 * well the ring model describes what the library actually does (model_ms beside every
 * measured point).
 *
 * The overlap test starts an MPI_Iallreduce of D's gradient, computes (sgemm) for about twice
 * as long as the reduction takes, and waits: how much of the reduction the computation hides,
 * once without MPI calls during the computation (as in a backward pass without collectives)
 * and once with MPI_Test between the pieces of computation (progress for Open MPI's
 * non-blocking collectives, which advance only inside MPI calls).
 *
 * Output: a readable table, then one JSON object as the last line (rank 0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/gan.h"

#define MAX_SIZES 64

typedef struct {
    char name[32];      /* "seed.G", "small.D", "16384" ... */
    size_t count;       /* floats */
    double ar_ms;       /* median MPI_Allreduce */
    double iar_ms;      /* median MPI_Iallreduce + MPI_Wait */
    double ar_min_ms;   /* fastest MPI_Allreduce (the least disturbed by other load) */
    int reps;
    int real;           /* a real gradient size (not used in the fit) */
    size_t params;      /* its parameter count */
} ar_point;

/* One timed collective: slowest rank, after a barrier. The buffer is refilled before each
 * call (outside the timing) so that every call sums the same values and the result can be
 * checked. */
static double time_one(cg_ctx *c, float *buf, size_t n, int nonblocking)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = 1.0f;
    MPI_Barrier(c->world);
    double t0 = cg_now();
    if (nonblocking) {
        MPI_Request r;
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->world, &r);
        MPI_Wait(&r, MPI_STATUS_IGNORE);
    } else {
        MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->world);
    }
    double t = cg_now() - t0, tmax = 0.0;
    MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, c->world);
    return tmax;
}

/* Median of `reps` timings (after one warm-up call), fewer when one call is slow: at most
 * about budget_s per size and operation, at least 3 calls. Every rank takes the same
 * decisions because they depend only on the (max-reduced) times. */
static double time_op(cg_ctx *c, float *buf, size_t n, int nonblocking, int reps,
                      double budget_s, int *done, int *ok, double *min_s)
{
    double first = time_one(c, buf, n, nonblocking); /* warm-up: connections, buffers */
    int r = reps;
    if (first * r > budget_s)
        r = (int)(budget_s / (first > 0 ? first : 1e-9));
    if (r < 3)
        r = 3;
    if (r > reps)
        r = reps;
    double *t = cg_alloc(sizeof(double) * (size_t)r);
    for (int i = 0; i < r; i++)
        t[i] = time_one(c, buf, n, nonblocking);
    /* every element is the sum of P ones */
    if (buf[0] != (float)c->size || buf[n - 1] != (float)c->size)
        *ok = 0;
    double med = cg_median(t, r); /* sorts t */
    if (min_s)
        *min_s = t[0];
    cg_free(t);
    *done = r;
    return med;
}

/* Weighted least squares of t = a + b m with weights 1/t^2 (relative error), a >= 0. */
static void fit_ab(const double *m, const double *t, int n, double *a, double *b)
{
    double S = 0, Sm = 0, St = 0, Smm = 0, Smt = 0;
    for (int i = 0; i < n; i++) {
        double w = 1.0 / (t[i] * t[i]);
        S += w, Sm += w * m[i], St += w * t[i], Smm += w * m[i] * m[i], Smt += w * m[i] * t[i];
    }
    double det = S * Smm - Sm * Sm;
    *a = det != 0 ? (St * Smm - Sm * Smt) / det : 0.0;
    *b = det != 0 ? (S * Smt - Sm * St) / det : 0.0;
    if (*a < 0) { /* latency cannot be negative: fit the slope alone */
        *a = 0;
        *b = Smm > 0 ? Smt / Smm : 0.0;
    }
}

/* A piece of computation for the overlap test: one 192^3 sgemm. */
typedef struct {
    float *a, *b, *c;
    int n;
} work;

static void work_piece(work *w)
{
    cg_sgemm(0, 0, w->n, w->n, w->n, 1.0f, w->a, w->n, w->b, w->n, 0.5f, w->c, w->n);
}

/* Iallreduce of n floats, `pieces` pieces of work, wait. Returns the slowest rank's total
 * time and (in *wait_s) its time spent in the final MPI_Wait; median of reps. */
static double overlap_run(cg_ctx *c, float *buf, size_t n, work *w, int pieces, int test,
                          int reps, double *wait_s)
{
    double *tt = cg_alloc(sizeof(double) * (size_t)reps);
    double *ww = cg_alloc(sizeof(double) * (size_t)reps);
    for (int r = 0; r < reps; r++) {
        for (size_t i = 0; i < n; i++)
            buf[i] = 1.0f;
        MPI_Barrier(c->world);
        double t0 = cg_now();
        MPI_Request req;
        MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, c->world, &req);
        int flag = 0;
        for (int k = 0; k < pieces; k++) {
            work_piece(w);
            if (test && !flag)
                MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
        }
        double tw = cg_now();
        MPI_Wait(&req, MPI_STATUS_IGNORE);
        double t1 = cg_now();
        double mine[2] = {t1 - t0, t1 - tw}, mx[2];
        MPI_Allreduce(mine, mx, 2, MPI_DOUBLE, MPI_MAX, c->world);
        tt[r] = mx[0], ww[r] = mx[1];
    }
    double med = cg_median(tt, reps);
    *wait_s = cg_median(ww, reps);
    cg_free(tt);
    cg_free(ww);
    return med;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: [mpirun -np P] chargan bench --allreduce [--reps R] [--min-bytes N]\n"
            "                      [--max-bytes N] [--factor F] [--threads T] [--no-overlap]\n"
            "Times MPI_Allreduce and MPI_Iallreduce+MPI_Wait (float sums, in place) on the\n"
            "gradient buffers of the seed and small models and on sizes min..max bytes (powers\n"
            "of F), median over R calls of the slowest rank; fits the ring-allreduce model\n"
            "t = 2(P-1) alpha + 2(P-1)/P n beta; measures how much of D's reduction computation\n"
            "hides. Prints a table, then one JSON object (the last line).\n\noptions:\n");
}

int cg_bench_allreduce(cg_ctx *c, int argc, char **argv)
{
    int allreduce = 0, reps = 10, threads = 0, factor = 4, no_overlap = 0;
    long min_bytes = 4096, max_bytes = 64L << 20;
    const cg_opt opts[] = {
        {"allreduce", CG_OPT_FLAG, &allreduce, "time MPI allreduce (this mode)"},
        {"reps", CG_OPT_INT, &reps, "timed calls per size, median (10; fewer for slow sizes)"},
        {"min-bytes", CG_OPT_LONG, &min_bytes, "smallest size in bytes (4096)"},
        {"max-bytes", CG_OPT_LONG, &max_bytes, "largest size in bytes (67108864)"},
        {"factor", CG_OPT_INT, &factor, "ratio of successive sizes (4; 2 = finer)"},
        {"threads", CG_OPT_INT, &threads, "BLAS threads for the overlap test's compute"},
        {"no-overlap", CG_OPT_FLAG, &no_overlap, "skip the overlap test"},
    };
    const int nopts = (int)(sizeof opts / sizeof opts[0]);
    cg_error e = {{0}};
    int pr = cg_parse_opts(opts, nopts, argc, argv, NULL, &e);
    if (pr == 1) {
        if (c->rank == 0) {
            usage(stdout);
            cg_print_opts(stdout, opts, nopts);
        }
        return 0;
    }
    if (pr == 0 && (reps < 1 || reps > 100000 || threads < 0 || factor < 2))
        pr = cg_fail(&e, "--reps must be in 1..100000, --factor at least 2, --threads >= 0");
    if (pr == 0 && (min_bytes < 4 || max_bytes < min_bytes || max_bytes > (1L << 30)))
        pr = cg_fail(&e, "need 4 <= --min-bytes <= --max-bytes <= 1 GB");
    if (pr) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: bench --allreduce: %s\n", e.msg);
        return 2;
    }
    cg_ctx_set_threads(c, threads);
    const int P = c->size;

    /* The sizes: real gradient buffers first, then the sweep. */
    ar_point pts[MAX_SIZES];
    int np = 0;
    static const char *const models[] = {"seed", "small"};
    for (int m = 0; m < 2; m++) {
        cg_gan_config cfg;
        cg_gan_default_config(&cfg);
        snprintf(cfg.model, sizeof cfg.model, "%s", models[m]);
        cfg.global_batch = cfg.local_batch = 1; /* only the parameter counts are needed */
        cg_gan gan;
        if (cg_gan_init(&gan, &cfg, &e)) {
            if (c->rank == 0)
                fprintf(stderr, "chargan: error: bench --allreduce: %s\n", e.msg);
            return 1;
        }
        memset(&pts[np], 0, 2 * sizeof pts[0]);
        snprintf(pts[np].name, sizeof pts[np].name, "%s.G", models[m]);
        pts[np].params = gan.g.n_params;
        pts[np].count = 2 * (gan.g.n_params + 1), pts[np].real = 1, np++;
        snprintf(pts[np].name, sizeof pts[np].name, "%s.D", models[m]);
        pts[np].params = gan.d.n_params;
        pts[np].count = 2 * (gan.d.n_params + 1), pts[np].real = 1, np++;
        cg_gan_free(&gan);
    }
    for (long b = min_bytes; b <= max_bytes && np < MAX_SIZES; b *= factor) {
        memset(&pts[np], 0, sizeof pts[0]);
        snprintf(pts[np].name, sizeof pts[np].name, "%ld", b);
        pts[np].count = (size_t)b / sizeof(float);
        np++;
    }
    size_t maxn = 0;
    for (int i = 0; i < np; i++)
        if (pts[i].count > maxn)
            maxn = pts[i].count;
    float *buf = cg_alloc(sizeof(float) * maxn);

    int ok = 1;
    const double budget = 1.0; /* seconds per size and operation */
    double t_start = cg_now();
    for (int i = 0; i < np; i++) {
        int r1 = 0, r2 = 0;
        double mn = 0;
        pts[i].ar_ms = 1e3 * time_op(c, buf, pts[i].count, 0, reps, budget, &r1, &ok, &mn);
        pts[i].ar_min_ms = 1e3 * mn;
        pts[i].iar_ms = 1e3 * time_op(c, buf, pts[i].count, 1, reps, budget, &r2, &ok, NULL);
        pts[i].reps = r1 < r2 ? r1 : r2;
    }
    int all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    if (!all_ok) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: bench --allreduce: wrong allreduce result\n");
        cg_free(buf);
        return 1;
    }

    /* Fit on the sweep (blocking times). With one rank there is nothing to fit. */
    double alpha = 0, beta = 0, max_rel = 0;
    int nfit = 0;
    if (P > 1) {
        double m[MAX_SIZES], t[MAX_SIZES], a, b;
        for (int i = 0; i < np; i++)
            if (!pts[i].real) {
                m[nfit] = 2.0 * (P - 1) / P * (double)pts[i].count * sizeof(float);
                t[nfit] = pts[i].ar_ms * 1e-3;
                nfit++;
            }
        fit_ab(m, t, nfit, &a, &b);
        alpha = a / (2.0 * (P - 1));
        beta = b;
        for (int i = 0; i < nfit; i++) {
            double rel = fabs((a + b * m[i]) / t[i] - 1.0);
            if (rel > max_rel)
                max_rel = rel;
        }
    }
#define MODEL_MS(n)                                                                          \
    (P > 1 ? 1e3 * (2.0 * (P - 1) * alpha + 2.0 * (P - 1) / P * (double)(n) * beta) : 0.0)

    /* Overlap: D's reduction (small model, then seed) started with MPI_Iallreduce, then
     * computation that takes about twice as long as the reduction alone (at least 2 ms), then
     * MPI_Wait. Fully hidden: total = compute; not at all: total = compute + comm. */
    typedef struct {
        const char *name;
        double bytes, comm_ms, compute_ms, total_ms, wait_ms, total_test_ms, wait_test_ms;
    } overlap;
    overlap ov[2];
    int n_ov = 0;
    if (!no_overlap && P > 1) {
        work w = {NULL, NULL, NULL, 192};
        size_t nn = (size_t)w.n * w.n;
        w.a = cg_alloc(sizeof(float) * nn), w.b = cg_alloc(sizeof(float) * nn);
        w.c = cg_alloc(sizeof(float) * nn);
        for (size_t i = 0; i < nn; i++)
            w.a[i] = (float)(i % 7) * 0.01f, w.b[i] = (float)(i % 5) * 0.01f;
        /* the time of one piece, measured with every rank computing at once (as in a step) */
        double tp[5], tpm;
        for (int k = 0; k < 5; k++) {
            MPI_Barrier(c->world);
            double t0 = cg_now();
            work_piece(&w);
            tp[k] = cg_now() - t0;
        }
        double piece = cg_median(tp, 5);
        MPI_Allreduce(&piece, &tpm, 1, MPI_DOUBLE, MPI_MAX, c->world);
        for (int m = 0; m < 2; m++) {
            const ar_point *d = &pts[2 * (1 - m) + 1]; /* small.D, then seed.D */
            double target = 2.0 * d->iar_ms * 1e-3;
            if (target < 2e-3)
                target = 2e-3;
            int pieces = (int)ceil(target / tpm);
            if (pieces < 1)
                pieces = 1;
            if (pieces > 5000)
                pieces = 5000;
            double tc[3], tcm;
            for (int k = 0; k < 3; k++) { /* the computation alone */
                MPI_Barrier(c->world);
                double t0 = cg_now();
                for (int j = 0; j < pieces; j++)
                    work_piece(&w);
                tc[k] = cg_now() - t0;
            }
            double compute = cg_median(tc, 3);
            MPI_Allreduce(&compute, &tcm, 1, MPI_DOUBLE, MPI_MAX, c->world);
            double wait0, wait1;
            double tot0 = overlap_run(c, buf, d->count, &w, pieces, 0, 5, &wait0);
            double tot1 = overlap_run(c, buf, d->count, &w, pieces, 1, 5, &wait1);
            ov[n_ov++] = (overlap){m == 0 ? "small.D" : "seed.D",
                                   (double)d->count * sizeof(float), d->iar_ms, tcm * 1e3,
                                   tot0 * 1e3, wait0 * 1e3, tot1 * 1e3, wait1 * 1e3};
        }
        cg_free(w.a), cg_free(w.b), cg_free(w.c);
    }
    const double elapsed = cg_now() - t_start;

    if (c->rank == 0) {
        printf("allreduce: %d rank%s on %d node%s, float32 sum in place; median of the slowest "
               "rank\n", P, P > 1 ? "s" : "", c->n_nodes, c->n_nodes > 1 ? "s" : "");
        printf("%-10s %12s %5s %13s %9s %14s %9s\n", "size", "bytes", "reps", "allreduce_ms",
               "(min)", "iallreduce_ms", "model_ms");
        for (int i = 0; i < np; i++)
            printf("%-10s %12zu %5d %13.4f %9.4f %14.4f %9.4f\n", pts[i].name,
                   pts[i].count * sizeof(float), pts[i].reps, pts[i].ar_ms, pts[i].ar_min_ms,
                   pts[i].iar_ms, MODEL_MS(pts[i].count * sizeof(float)));
        if (P > 1)
            printf("fit (ring model, %d sizes, relative least squares): alpha %.2f us, beta "
                   "%.4f ns/B (%.2f GB/s), worst misfit %.0f%%\n",
                   nfit, alpha * 1e6, beta * 1e9, beta > 0 ? 1e-9 / beta : 0.0, 100 * max_rel);
        for (int k = 0; k < n_ov; k++)
            printf("overlap %s (%.0f B): Iallreduce+Wait alone %.3f ms, compute %.3f ms; "
                   "Iallreduce, compute, Wait: %.3f ms (exposed %.3f ms); with MPI_Test "
                   "between pieces: %.3f ms (exposed %.3f ms)\n",
                   ov[k].name, ov[k].bytes, ov[k].comm_ms, ov[k].compute_ms, ov[k].total_ms,
                   ov[k].total_ms - ov[k].compute_ms, ov[k].total_test_ms,
                   ov[k].total_test_ms - ov[k].compute_ms);

        printf("{\"bench\": \"allreduce\", \"ranks\": %d, \"nodes\": %d, \"cores\": %d, "
               "\"threads\": %d, \"elapsed_s\": %.2f, ",
               P, c->n_nodes, c->cores, c->threads, elapsed);
        if (P > 1)
            printf("\"fit\": {\"model\": \"t = 2(P-1) alpha + 2(P-1)/P n beta\", "
                   "\"alpha_us\": %.4f, \"beta_ns_per_byte\": %.6f, \"bandwidth_gb_s\": %.4f, "
                   "\"sizes\": %d, \"max_rel_error\": %.4f}, ",
                   alpha * 1e6, beta * 1e9, beta > 0 ? 1e-9 / beta : 0.0, nfit, max_rel);
        else
            printf("\"fit\": null, ");
        printf("\"gradients\": {");
        for (int i = 0, first = 1; i < np; i++) {
            if (!pts[i].real)
                continue;
            printf("%s\"%s\": {\"params\": %zu, \"bytes\": %zu, \"allreduce_ms\": %.4f, "
                   "\"allreduce_min_ms\": %.4f, \"iallreduce_ms\": %.4f, \"model_ms\": %.4f}",
                   first ? "" : ", ", pts[i].name, pts[i].params, pts[i].count * sizeof(float),
                   pts[i].ar_ms, pts[i].ar_min_ms, pts[i].iar_ms,
                   MODEL_MS(pts[i].count * sizeof(float)));
            first = 0;
        }
        printf("}, \"sizes\": [");
        for (int i = 0, first = 1; i < np; i++) {
            if (pts[i].real)
                continue;
            printf("%s{\"bytes\": %zu, \"reps\": %d, \"allreduce_ms\": %.4f, "
                   "\"allreduce_min_ms\": %.4f, \"iallreduce_ms\": %.4f, \"model_ms\": %.4f}",
                   first ? "" : ", ", pts[i].count * sizeof(float), pts[i].reps, pts[i].ar_ms,
                   pts[i].ar_min_ms, pts[i].iar_ms, MODEL_MS(pts[i].count * sizeof(float)));
            first = 0;
        }
        printf("], \"overlap\": [");
        for (int k = 0; k < n_ov; k++) {
            /* the fraction of the reduction's own time that the computation hid */
            const overlap *o = &ov[k];
            double h0 = o->comm_ms > 0 ? (o->comm_ms + o->compute_ms - o->total_ms) / o->comm_ms : 0;
            double h1 =
                o->comm_ms > 0 ? (o->comm_ms + o->compute_ms - o->total_test_ms) / o->comm_ms : 0;
            printf("%s{\"buffer\": \"%s\", \"bytes\": %.0f, \"comm_ms\": %.4f, "
                   "\"compute_ms\": %.4f, \"total_ms\": %.4f, \"wait_ms\": %.4f, "
                   "\"hidden_fraction\": %.3f, \"total_ms_with_test\": %.4f, "
                   "\"wait_ms_with_test\": %.4f, \"hidden_fraction_with_test\": %.3f}",
                   k ? ", " : "", o->name, o->bytes, o->comm_ms, o->compute_ms, o->total_ms,
                   o->wait_ms, h0, o->total_test_ms, o->wait_test_ms, h1);
        }
        printf("]}\n");
        fflush(stdout);
    }
#undef MODEL_MS
    cg_free(buf);
    return 0;
}
