/* chargan bench --allreduce: times the gradient reduction that data-parallel training does
 * every step and fits the ring-allreduce cost model to it.
 *
 * For every message size (the real gradient reductions of G and D of the seed and small
 * models -- training sums int64 fixed point, 8 bytes per parameter plus one counter, timed
 * here as the same number of bytes -- and 4 KB .. 64 MB in powers of the --factor) it times
 * MPI_Allreduce(SUM, in place: as train.c does) and MPI_Iallreduce immediately followed by
 * MPI_Wait. One sample is the slowest rank's time of one call after a barrier; the reported
 * time is the median over the repetitions. Then it fits, by least squares on the relative
 * error (the sizes span four orders of magnitude, so an absolute fit would only see the
 * largest ones),
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
#include "chargan/json.h"

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

typedef struct {
    int reps, threads, factor, no_overlap;
    long min_bytes, max_bytes;
} ar_opts;

/* Parses and checks the options. Returns -1 to go on, else the exit status (0 after --help). */
static int ar_parse(cg_ctx *c, int argc, char **argv, ar_opts *o)
{
    int allreduce = 0;
    *o = (ar_opts){.reps = 10, .factor = 4, .min_bytes = 4096, .max_bytes = 64L << 20};
    const cg_opt opts[] = {
        {"allreduce", CG_OPT_FLAG, &allreduce, "time MPI allreduce (this mode)"},
        {"reps", CG_OPT_INT, &o->reps, "timed calls per size, median (10; fewer for slow sizes)"},
        {"min-bytes", CG_OPT_LONG, &o->min_bytes, "smallest size in bytes (4096)"},
        {"max-bytes", CG_OPT_LONG, &o->max_bytes, "largest size in bytes (67108864)"},
        {"factor", CG_OPT_INT, &o->factor, "ratio of successive sizes (4; 2 = finer)"},
        {"threads", CG_OPT_INT, &o->threads, "BLAS threads for the overlap test's compute"},
        {"no-overlap", CG_OPT_FLAG, &o->no_overlap, "skip the overlap test"},
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
    if (pr == 0 && (o->reps < 1 || o->reps > 100000 || o->threads < 0 || o->factor < 2))
        pr = cg_fail(&e, "--reps must be in 1..100000, --factor at least 2, --threads >= 0");
    if (pr == 0 && (o->min_bytes < 4 || o->max_bytes < o->min_bytes || o->max_bytes > (1L << 30)))
        pr = cg_fail(&e, "need 4 <= --min-bytes <= --max-bytes <= 1 GB");
    if (pr) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: bench --allreduce: %s\n", e.msg);
        return 2;
    }
    return -1;
}

/* The gradient reduction of one network: int64 fixed-point sums, 8 bytes (two floats) per
 * parameter plus one counter. */
static void real_point(ar_point *p, const char *model, const char *net, size_t params)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s.%s", model, net);
    p->params = params;
    p->count = 2 * (params + 1);
    p->real = 1;
}

/* The sizes: the real gradient buffers first (seed.G, seed.D, small.G, small.D), then the
 * sweep min..max bytes. Returns their number, or -1 with e set. */
static int ar_sizes(const ar_opts *o, ar_point *pts, cg_error *e)
{
    static const char *const models[] = {"seed", "small"};
    int np = 0;
    for (int m = 0; m < 2; m++) {
        cg_gan_config cfg;
        cg_gan_default_config(&cfg);
        snprintf(cfg.model, sizeof cfg.model, "%s", models[m]);
        cfg.global_batch = cfg.local_batch = 1; /* only the parameter counts are needed */
        cg_gan gan;
        if (cg_gan_init(&gan, &cfg, e))
            return -1;
        real_point(&pts[np++], models[m], "G", gan.g.n_params);
        real_point(&pts[np++], models[m], "D", gan.d.n_params);
        cg_gan_free(&gan);
    }
    for (long b = o->min_bytes; b <= o->max_bytes && np < MAX_SIZES; b *= o->factor) {
        memset(&pts[np], 0, sizeof pts[0]);
        snprintf(pts[np].name, sizeof pts[np].name, "%ld", b);
        pts[np].count = (size_t)b / sizeof(float);
        np++;
    }
    return np;
}

/* Times every size, blocking and non-blocking. Returns 1 when every rank's sums were right. */
static int ar_time_all(cg_ctx *c, ar_point *pts, int np, int reps, float *buf)
{
    const double budget = 1.0; /* seconds per size and operation */
    int ok = 1, all_ok = 0;
    for (int i = 0; i < np; i++) {
        int r1 = 0, r2 = 0;
        double mn = 0;
        pts[i].ar_ms = 1e3 * time_op(c, buf, pts[i].count, 0, reps, budget, &r1, &ok, &mn);
        pts[i].ar_min_ms = 1e3 * mn;
        pts[i].iar_ms = 1e3 * time_op(c, buf, pts[i].count, 1, reps, budget, &r2, &ok, NULL);
        pts[i].reps = r1 < r2 ? r1 : r2;
    }
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, c->world);
    return all_ok;
}

/* The ring model fitted to the sweep. */
typedef struct {
    int P;          /* ranks */
    int n;          /* sweep sizes fitted; 0 with one rank (nothing to fit) */
    double alpha;   /* seconds per message */
    double beta;    /* seconds per byte */
    double max_rel; /* the worst relative misfit */
} ar_fit;

/* Fits the ring model to the sweep's blocking times (not to the real gradient sizes). */
static void ar_fit_ring(int P, const ar_point *pts, int np, ar_fit *f)
{
    *f = (ar_fit){.P = P};
    if (P < 2)
        return;
    double m[MAX_SIZES], t[MAX_SIZES], a, b;
    for (int i = 0; i < np; i++)
        if (!pts[i].real) {
            m[f->n] = 2.0 * (P - 1) / P * (double)pts[i].count * sizeof(float);
            t[f->n] = pts[i].ar_ms * 1e-3;
            f->n++;
        }
    fit_ab(m, t, f->n, &a, &b);
    f->alpha = a / (2.0 * (P - 1));
    f->beta = b;
    for (int i = 0; i < f->n; i++) {
        const double rel = fabs((a + b * m[i]) / t[i] - 1.0);
        if (rel > f->max_rel)
            f->max_rel = rel;
    }
}

/* The fitted model's time in ms for `bytes` (0 with one rank). */
static double model_ms(const ar_fit *f, size_t bytes)
{
    const int P = f->P;
    if (P < 2)
        return 0.0;
    return 1e3 * (2.0 * (P - 1) * f->alpha + 2.0 * (P - 1) / P * (double)bytes * f->beta);
}

/* One overlap measurement: D's reduction started with MPI_Iallreduce, computation, MPI_Wait.
 * Fully hidden: total = compute; not at all: total = compute + comm. */
typedef struct {
    const char *name;
    size_t bytes;
    double comm_ms, compute_ms, total_ms, wait_ms, total_test_ms, wait_test_ms;
} overlap;

static void work_init(work *w)
{
    const size_t nn = (size_t)192 * 192;
    w->n = 192;
    w->a = cg_alloc(sizeof(float) * nn), w->b = cg_alloc(sizeof(float) * nn);
    w->c = cg_alloc(sizeof(float) * nn);
    for (size_t i = 0; i < nn; i++)
        w->a[i] = (float)(i % 7) * 0.01f, w->b[i] = (float)(i % 5) * 0.01f;
}

/* Seconds of `pieces` pieces of work: the slowest rank's median of `reps` runs, every rank
 * computing at once (as in a training step). */
static double work_seconds(cg_ctx *c, work *w, int pieces, int reps)
{
    double t[5], tmax;
    for (int k = 0; k < reps; k++) {
        MPI_Barrier(c->world);
        const double t0 = cg_now();
        for (int j = 0; j < pieces; j++)
            work_piece(w);
        t[k] = cg_now() - t0;
    }
    double med = cg_median(t, reps);
    MPI_Allreduce(&med, &tmax, 1, MPI_DOUBLE, MPI_MAX, c->world);
    return tmax;
}

/* Overlaps the reduction of d with computation that takes about twice as long as the
 * reduction alone (at least 2 ms); piece_s: the time of one piece of work. */
static void overlap_one(cg_ctx *c, const ar_point *d, float *buf, work *w, double piece_s,
                        overlap *ov)
{
    double target = 2.0 * d->iar_ms * 1e-3;
    if (target < 2e-3)
        target = 2e-3;
    int pieces = (int)ceil(target / piece_s);
    if (pieces < 1)
        pieces = 1;
    if (pieces > 5000)
        pieces = 5000;
    const double compute = work_seconds(c, w, pieces, 3); /* the computation alone */
    double wait0, wait1;
    const double tot0 = overlap_run(c, buf, d->count, w, pieces, 0, 5, &wait0);
    const double tot1 = overlap_run(c, buf, d->count, w, pieces, 1, 5, &wait1);
    *ov = (overlap){d->name, d->count * sizeof(float), d->iar_ms, compute * 1e3,
                    tot0 * 1e3, wait0 * 1e3, tot1 * 1e3, wait1 * 1e3};
}

/* The overlap test on D's reduction, small model then seed (pts from ar_sizes). Returns the
 * number of measurements in ov. */
static int ar_overlap(cg_ctx *c, const ar_point *pts, float *buf, overlap ov[2])
{
    work w;
    work_init(&w);
    const double piece_s = work_seconds(c, &w, 1, 5);
    overlap_one(c, &pts[3], buf, &w, piece_s, &ov[0]); /* small.D */
    overlap_one(c, &pts[1], buf, &w, piece_s, &ov[1]); /* seed.D */
    cg_free(w.a), cg_free(w.b), cg_free(w.c);
    return 2;
}

/* The readable table (rank 0). */
static void ar_print_table(const cg_ctx *c, const ar_point *pts, int np, const ar_fit *f,
                           const overlap *ov, int n_ov)
{
    const int P = c->size;
    printf("allreduce: %d rank%s on %d node%s, float32 sum in place; median of the slowest "
           "rank\n", P, P > 1 ? "s" : "", c->n_nodes, c->n_nodes > 1 ? "s" : "");
    printf("%-10s %12s %5s %13s %9s %14s %9s\n", "size", "bytes", "reps", "allreduce_ms",
           "(min)", "iallreduce_ms", "model_ms");
    for (int i = 0; i < np; i++) {
        const size_t bytes = pts[i].count * sizeof(float);
        printf("%-10s %12zu %5d %13.4f %9.4f %14.4f %9.4f\n", pts[i].name, bytes, pts[i].reps,
               pts[i].ar_ms, pts[i].ar_min_ms, pts[i].iar_ms, model_ms(f, bytes));
    }
    if (P > 1)
        printf("fit (ring model, %d sizes, relative least squares): alpha %.2f us, beta "
               "%.4f ns/B (%.2f GB/s), worst misfit %.0f%%\n", f->n, f->alpha * 1e6,
               f->beta * 1e9, f->beta > 0 ? 1e-9 / f->beta : 0.0, 100 * f->max_rel);
    for (int k = 0; k < n_ov; k++)
        printf("overlap %s (%zu B): Iallreduce+Wait alone %.3f ms, compute %.3f ms; "
               "Iallreduce, compute, Wait: %.3f ms (exposed %.3f ms); with MPI_Test "
               "between pieces: %.3f ms (exposed %.3f ms)\n",
               ov[k].name, ov[k].bytes, ov[k].comm_ms, ov[k].compute_ms, ov[k].total_ms,
               ov[k].total_ms - ov[k].compute_ms, ov[k].total_test_ms,
               ov[k].total_test_ms - ov[k].compute_ms);
}

static json_t *fit_json(const ar_fit *f)
{
    if (f->P < 2)
        return json_null();
    return json_pack("{s:s, s:o, s:o, s:o, s:i, s:o}",
                     "model", "t = 2(P-1) alpha + 2(P-1)/P n beta",
                     "alpha_us", cg_json_num(f->alpha * 1e6, 4),
                     "beta_ns_per_byte", cg_json_num(f->beta * 1e9, 6),
                     "bandwidth_gb_s", cg_json_num(f->beta > 0 ? 1e-9 / f->beta : 0.0, 4),
                     "sizes", f->n, "max_rel_error", cg_json_num(f->max_rel, 4));
}

/* One size: params (real gradients) or reps (the sweep) beside the times. */
static json_t *point_json(const ar_point *p, const ar_fit *f)
{
    const size_t bytes = p->count * sizeof(float);
    json_t *o = json_object();
    if (p->real)
        json_object_set_new(o, "params", json_integer((json_int_t)p->params));
    json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
    if (!p->real)
        json_object_set_new(o, "reps", json_integer(p->reps));
    json_object_set_new(o, "allreduce_ms", cg_json_num(p->ar_ms, 4));
    json_object_set_new(o, "allreduce_min_ms", cg_json_num(p->ar_min_ms, 4));
    json_object_set_new(o, "iallreduce_ms", cg_json_num(p->iar_ms, 4));
    json_object_set_new(o, "model_ms", cg_json_num(model_ms(f, bytes), 4));
    return o;
}

static json_t *overlap_json(const overlap *o)
{
    /* the fraction of the reduction's own time that the computation hid */
    const double h0 = o->comm_ms > 0 ? (o->comm_ms + o->compute_ms - o->total_ms) / o->comm_ms : 0;
    const double h1 =
        o->comm_ms > 0 ? (o->comm_ms + o->compute_ms - o->total_test_ms) / o->comm_ms : 0;
    return json_pack("{s:o, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                     "buffer", cg_json_str(o->name), "bytes", (json_int_t)o->bytes,
                     "comm_ms", cg_json_num(o->comm_ms, 4),
                     "compute_ms", cg_json_num(o->compute_ms, 4),
                     "total_ms", cg_json_num(o->total_ms, 4),
                     "wait_ms", cg_json_num(o->wait_ms, 4),
                     "hidden_fraction", cg_json_num(h0, 3),
                     "total_ms_with_test", cg_json_num(o->total_test_ms, 4),
                     "wait_ms_with_test", cg_json_num(o->wait_test_ms, 4),
                     "hidden_fraction_with_test", cg_json_num(h1, 3));
}

/* The JSON object, the last line of the output (rank 0). */
static void ar_print_json(const cg_ctx *c, double elapsed, const ar_point *pts, int np,
                          const ar_fit *f, const overlap *ov, int n_ov)
{
    json_t *grads = json_object(), *sizes = json_array(), *ovl = json_array();
    for (int i = 0; i < np; i++) {
        if (pts[i].real)
            json_object_set_new(grads, pts[i].name, point_json(&pts[i], f));
        else
            json_array_append_new(sizes, point_json(&pts[i], f));
    }
    for (int k = 0; k < n_ov; k++)
        json_array_append_new(ovl, overlap_json(&ov[k]));
    cg_json_print(stdout, json_pack("{s:s, s:i, s:i, s:i, s:i, s:o, s:o, s:o, s:o, s:o}",
                                    "bench", "allreduce", "ranks", c->size, "nodes", c->n_nodes,
                                    "cores", c->cores, "threads", c->threads,
                                    "elapsed_s", cg_json_num(elapsed, 2), "fit", fit_json(f),
                                    "gradients", grads, "sizes", sizes, "overlap", ovl));
    fflush(stdout);
}

int cg_bench_allreduce(cg_ctx *c, int argc, char **argv)
{
    ar_opts o;
    const int st = ar_parse(c, argc, argv, &o);
    if (st >= 0)
        return st;
    cg_ctx_set_threads(c, o.threads);

    ar_point pts[MAX_SIZES];
    cg_error e = {{0}};
    const int np = ar_sizes(&o, pts, &e);
    if (np < 0) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: bench --allreduce: %s\n", e.msg);
        return 1;
    }
    size_t maxn = 0;
    for (int i = 0; i < np; i++)
        if (pts[i].count > maxn)
            maxn = pts[i].count;
    float *buf = cg_alloc(sizeof(float) * maxn);

    const double t_start = cg_now();
    if (!ar_time_all(c, pts, np, o.reps, buf)) {
        if (c->rank == 0)
            fprintf(stderr, "chargan: error: bench --allreduce: wrong allreduce result\n");
        cg_free(buf);
        return 1;
    }
    ar_fit fit;
    ar_fit_ring(c->size, pts, np, &fit);
    overlap ov[2];
    const int n_ov = !o.no_overlap && c->size > 1 ? ar_overlap(c, pts, buf, ov) : 0;
    const double elapsed = cg_now() - t_start;

    if (c->rank == 0) {
        ar_print_table(c, pts, np, &fit, ov, n_ov);
        ar_print_json(c, elapsed, pts, np, &fit, ov, n_ov);
    }
    cg_free(buf);
    return 0;
}
