/* Per-rank timelines as Chrome trace events (chargan/trace.h). */
#include "chargan/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chargan/json.h"

enum { TRACK_COMPUTE, TRACK_MPI };
enum { PINGS = 8, TAG_CLOCK = 7301, TAG_EVENTS = 7302, COST_PROBES = 4096 };

static const struct {
    const char *name;
    int track;
} spans[CG_SPAN_N] = {
    [CG_SPAN_STEP] = {"step", TRACK_COMPUTE},
    [CG_SPAN_LOAD] = {"load batch", TRACK_COMPUTE},
    [CG_SPAN_G_FWD] = {"G forward", TRACK_COMPUTE},
    [CG_SPAN_D_FWD] = {"D forward", TRACK_COMPUTE},
    [CG_SPAN_D_BWD] = {"D backward", TRACK_COMPUTE},
    [CG_SPAN_G_BWD] = {"G backward", TRACK_COMPUTE},
    [CG_SPAN_WAIT] = {"wait for the sums", TRACK_COMPUTE},
    [CG_SPAN_STATS] = {"step statistics", TRACK_COMPUTE},
    [CG_SPAN_UNFOLD] = {"gradients from sums", TRACK_COMPUTE},
    [CG_SPAN_ADAM] = {"Adam", TRACK_COMPUTE},
    [CG_SPAN_EMA] = {"EMA", TRACK_COMPUTE},
    [CG_SPAN_SAMPLES] = {"samples", TRACK_COMPUTE},
    [CG_SPAN_EVAL] = {"evaluation", TRACK_COMPUTE},
    [CG_SPAN_CKPT] = {"checkpoint", TRACK_COMPUTE},
    [CG_SPAN_REDUCE_D] = {"allreduce D", TRACK_MPI},
    [CG_SPAN_REDUCE_G] = {"allreduce G", TRACK_MPI},
    [CG_SPAN_VAE] = {"VAE forward and backward", TRACK_COMPUTE},
};

int cg_trace_parse_steps(const char *s, long *first, long *last)
{
    char *end;
    errno = 0;
    *first = strtol(s, &end, 10);
    *last = *first;
    if (*end == ':')
        *last = strtol(end + 1, &end, 10);
    return errno || *end || end == s || *first < 1 || *last < *first ? -1 : 0;
}

/* Rank 0's clock minus rank r's, from the ping-pong with the shortest round trip: r's reading
 * is taken to be half-way through it. */
static double clock_offset(const cg_ctx *c)
{
    double offset = 0.0, best = 1e30, t[2];
    for (int r = 1; r < c->size; r++) {
        for (int k = 0; k < PINGS; k++) {
            if (c->rank == 0) {
                t[0] = cg_now();
                MPI_Send(NULL, 0, MPI_BYTE, r, TAG_CLOCK, c->world);
                MPI_Recv(&t[1], 1, MPI_DOUBLE, r, TAG_CLOCK, c->world, MPI_STATUS_IGNORE);
                const double t1 = cg_now();
                if (t1 - t[0] < best)
                    best = t1 - t[0], offset = 0.5 * (t[0] + t1) - t[1];
            } else if (c->rank == r) {
                MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_CLOCK, c->world, MPI_STATUS_IGNORE);
                t[1] = cg_now();
                MPI_Send(&t[1], 1, MPI_DOUBLE, 0, TAG_CLOCK, c->world);
            }
        }
        if (c->rank == 0)
            MPI_Send(&offset, 1, MPI_DOUBLE, r, TAG_CLOCK, c->world);
        else if (c->rank == r)
            MPI_Recv(&offset, 1, MPI_DOUBLE, 0, TAG_CLOCK, c->world, MPI_STATUS_IGNORE);
        best = 1e30;
    }
    return c->rank == 0 ? 0.0 : offset;
}

/* Rank 0: creates path.tmp and keeps it open for cg_trace_write. */
static int create_tmp(cg_trace *t, const cg_ctx *c, const char *path, cg_error *e)
{
    if (c->rank != 0)
        return 0;
    const size_t n = strlen(path) + 5;
    t->path = cg_alloc(n);
    snprintf(t->path, n, "%s.tmp", path);
    t->tmp = fopen(t->path, "w");
    if (!t->tmp)
        return cg_fail(e, "%s: %s", path, strerror(errno));
    t->path[n - 5] = '\0'; /* the final name */
    return 0;
}

int cg_trace_open(cg_trace *t, cg_ctx *c, const char *path, long first, long last,
                  size_t per_step, cg_error *e)
{
    memset(t, 0, sizeof *t);
    if (cg_bcast_status(c, 0, create_tmp(t, c, path, e), e)) {
        cg_trace_free(t);
        return -1;
    }
    t->first = first, t->last = last;
    t->cap = (size_t)(last - first + 1) * per_step;
    t->ev = cg_alloc(sizeof *t->ev * (t->cap > COST_PROBES ? t->cap : COST_PROBES));
    /* What one span costs: the same calls a step makes, into the buffer, then forgotten. */
    const size_t cap = t->cap;
    t->cap = COST_PROBES, t->on = 1;
    const double t0 = cg_now();
    for (int k = 0; k < COST_PROBES; k++)
        cg_trace_add(t, CG_SPAN_STEP, cg_trace_start(t), 0);
    t->event_cost = (cg_now() - t0) / COST_PROBES;
    t->cap = cap, t->n = 0, t->on = 0;
    t->offset = clock_offset(c);
    return 0;
}

/* path.tmp from path: the name cg_trace_write renames. */
static void tmp_name(const cg_trace *t, char *buf, size_t len)
{
    snprintf(buf, len, "%s.tmp", t->path);
}

void cg_trace_free(cg_trace *t)
{
    if (t->tmp) {
        char tmp[4200];
        tmp_name(t, tmp, sizeof tmp);
        fclose(t->tmp);
        remove(tmp);
    }
    cg_free(t->path);
    cg_free(t->ev);
    memset(t, 0, sizeof *t);
}

void cg_trace_add(cg_trace *t, cg_span span, double t0, int chunk)
{
    if (!t || !t->on)
        return;
    if (t->n == t->cap) {
        t->dropped++;
        return;
    }
    t->ev[t->n++] = (cg_trace_event){t0, cg_now(), (int32_t)t->step, (uint16_t)span,
                                     (uint16_t)chunk};
}

/* One event as Chrome's complete event ("ph": "X"), times in microseconds from origin. */
static void write_event(FILE *f, const cg_trace_event *ev, int rank, double offset,
                        double origin)
{
    const double ts = 1e6 * (ev->t0 + offset - origin), dur = 1e6 * (ev->t1 - ev->t0);
    const int track = spans[ev->span].track;
    json_t *args = json_pack("{s:I}", "step", (json_int_t)ev->step);
    if (track == TRACK_MPI)
        json_object_set_new(args, "chunk", json_integer(ev->chunk));
    fputs(",\n", f);
    cg_json_print(f, json_pack("{s:s, s:s, s:s, s:i, s:i, s:o, s:o, s:o}", "name", spans[ev->span].name, "cat",
                               track == TRACK_MPI ? "mpi" : "compute", "ph", "X", "pid", rank,
                               "tid", track, "ts", cg_json_num(ts, 3), "dur",
                               cg_json_num(dur, 3), "args", args));
}

/* The names of rank r's row and tracks (metadata events). */
static void write_names(FILE *f, int r, const char *host)
{
    char name[128];
    if (r > 0)
        fputs(",\n", f);
    snprintf(name, sizeof name, "rank %d (%s)", r, host);
    cg_json_print(f, json_pack("{s:s, s:s, s:i, s:{s:s}}", "name", "process_name", "ph", "M", "pid", r,
                               "args", "name", name));
    fputs(",\n", f);
    cg_json_print(f, json_pack("{s:s, s:s, s:i, s:{s:i}}", "name", "process_sort_index", "ph", "M",
                               "pid", r, "args", "sort_index", r));
    for (int k = 0; k < 2; k++) {
        fputs(",\n", f);
        cg_json_print(f, json_pack("{s:s, s:s, s:i, s:i, s:{s:s}}", "name", "thread_name", "ph", "M", "pid",
                                   r, "tid", k, "args", "name", k ? "MPI" : "compute"));
    }
}

typedef struct {
    double origin;     /* rank 0's clock at the earliest span of any rank */
    double events;     /* spans of all ranks */
    double dropped;
    char (*hosts)[64]; /* rank 0: every rank's host */
} trace_facts;

/* Collective: what rank 0 needs before it streams the events. */
static void gather_facts(const cg_trace *t, const cg_ctx *c, trace_facts *f)
{
    double first = t->n ? t->ev[0].t0 + t->offset : 1e300, counts[2] = {(double)t->n,
                                                                        (double)t->dropped};
    for (size_t i = 1; i < t->n; i++)
        if (t->ev[i].t0 + t->offset < first)
            first = t->ev[i].t0 + t->offset;
    MPI_Allreduce(&first, &f->origin, 1, MPI_DOUBLE, MPI_MIN, c->world);
    MPI_Allreduce(counts, &f->events, 2, MPI_DOUBLE, MPI_SUM, c->world);
    char host[64] = {0};
    int len;
    char full[MPI_MAX_PROCESSOR_NAME];
    MPI_Get_processor_name(full, &len);
    snprintf(host, sizeof host, "%.63s", full);
    f->hosts = c->rank == 0 ? calloc((size_t)c->size, sizeof *f->hosts) : NULL;
    MPI_Gather(host, 64, MPI_CHAR, f->hosts, 64, MPI_CHAR, 0, c->world);
}

/* Rank 0: every rank's spans in rank order, each rank sending its own in turn (so rank 0
 * holds one rank's spans at a time, whatever the rank count). f NULL: received and dropped,
 * so no rank is left blocked in its send. */
static void stream_events(const cg_trace *t, const cg_ctx *c, FILE *f, const trace_facts *x)
{
    if (c->rank != 0) {
        double head[2] = {(double)t->n, t->offset};
        MPI_Send(head, 2, MPI_DOUBLE, 0, TAG_EVENTS, c->world);
        MPI_Send(t->ev, (int)(t->n * sizeof *t->ev), MPI_BYTE, 0, TAG_EVENTS, c->world);
        return;
    }
    size_t cap = t->n;
    cg_trace_event *buf = NULL;
    for (int r = 0; r < c->size; r++) {
        double head[2] = {(double)t->n, 0.0};
        const cg_trace_event *ev = t->ev;
        if (r > 0) {
            MPI_Recv(head, 2, MPI_DOUBLE, r, TAG_EVENTS, c->world, MPI_STATUS_IGNORE);
            if ((size_t)head[0] > cap || !buf) {
                cap = (size_t)head[0] > cap ? (size_t)head[0] : cap;
                cg_free(buf);
                buf = cg_alloc(sizeof *buf * (cap ? cap : 1));
            }
            MPI_Recv(buf, (int)((size_t)head[0] * sizeof *buf), MPI_BYTE, r, TAG_EVENTS,
                     c->world, MPI_STATUS_IGNORE);
            ev = buf;
        }
        if (f)
            write_names(f, r, x->hosts[r]);
        for (size_t i = 0; f && i < (size_t)head[0]; i++)
            write_event(f, &ev[i], r, head[1], x->origin);
    }
    cg_free(buf);
}

/* Rank 0: the summary after the events. */
static json_t *trace_summary(const cg_trace *t, const cg_ctx *c, const trace_facts *x,
                             double median_step_ms)
{
    const long steps = t->last - t->first + 1;
    const double per_step = x->events / (double)c->size / (double)steps;
    const double overhead = median_step_ms > 0
                                ? 100.0 * per_step * t->event_cost * 1e3 / median_step_ms
                                : 0.0;
    return json_pack("{s:i, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o}", "ranks", c->size,
                     "first_step", (json_int_t)t->first, "last_step", (json_int_t)t->last,
                     "spans", (json_int_t)x->events, "dropped", (json_int_t)x->dropped,
                     "spans_per_step_per_rank", cg_json_num(per_step, 1),
                     "span_cost_us", cg_json_sig(1e6 * t->event_cost, 3), "median_step_ms",
                     cg_json_num(median_step_ms, 3), "recording_pct_of_step",
                     cg_json_sig(overhead, 3));
}

int cg_trace_write(cg_trace *t, cg_ctx *c, double median_step_ms, cg_error *e)
{
    trace_facts x;
    gather_facts(t, c, &x);
    char tmp[4200] = "";
    FILE *f = t->tmp;
    int st = 0;
    t->tmp = NULL;
    if (f) {
        tmp_name(t, tmp, sizeof tmp);
        fputs("{\"traceEvents\": [\n", f);
    }
    stream_events(t, c, f, &x);
    if (f) {
        fputs("],\n\"displayTimeUnit\": \"ms\",\n\"otherData\": ", f);
        cg_json_print(f, trace_summary(t, c, &x, median_step_ms));
        fputs("}\n", f);
        if (fflush(f) || ferror(f) | fsync(fileno(f)))
            st = cg_fail(e, "%s: %s", tmp, strerror(errno));
        fclose(f);
        if (!st && rename(tmp, t->path))
            st = cg_fail(e, "%s: %s", t->path, strerror(errno));
        if (st)
            remove(tmp);
    }
    free(x.hosts);
    return cg_bcast_status(c, 0, st, e);
}
