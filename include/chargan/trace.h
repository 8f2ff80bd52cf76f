/* A per-rank timeline of chosen training steps (`chargan train --trace FILE --trace-steps
 * A:B`), written by rank 0 as Chrome trace events: the JSON that Perfetto and chromium's
 * trace viewer open. One process row per rank with two tracks, compute and MPI; rank r's
 * clock is shifted onto rank 0's by an offset measured at start (the ping-pong with the
 * shortest round trip), so the rows line up across hosts.
 *
 * Recording a span is two clock reads and a 24-byte store into a buffer sized once for the
 * chosen steps; outside them nothing is read or stored (cg_trace_start returns 0 without
 * reading the clock). */
#ifndef CHARGAN_TRACE_H
#define CHARGAN_TRACE_H
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "chargan/dist.h"
#include "chargan/util.h"

/* What a span is; the table in trace.c names each and puts it on a track. */
typedef enum {
    CG_SPAN_STEP,     /* one training step, everything below inside it */
    CG_SPAN_LOAD,     /* this rank's batch: indices and pixels */
    CG_SPAN_G_FWD,    /* G's forward pass (the noise included) */
    CG_SPAN_D_FWD,    /* D on the reals and the fakes */
    CG_SPAN_D_BWD,    /* D's loss and parameter gradients */
    CG_SPAN_G_BWD,    /* G's loss through D, and G's gradients */
    CG_SPAN_WAIT,     /* waiting for what is left of the sums after G's backward pass */
    CG_SPAN_STATS,    /* the step's statistics summed over ranks */
    CG_SPAN_UNFOLD,   /* the summed int64 gradients back to float, and the finite check */
    CG_SPAN_ADAM,     /* both optimizers */
    CG_SPAN_EMA,      /* G's moving average */
    CG_SPAN_SAMPLES,  /* sample file and picture (rank 0) */
    CG_SPAN_EVAL,     /* quality score (rank 0) */
    CG_SPAN_CKPT,     /* checkpoint */
    CG_SPAN_REDUCE_D, /* MPI track: one chunk of D's gradient, posted to summed */
    CG_SPAN_REDUCE_G, /* MPI track: one chunk of G's gradient (a VAE: D is its decoder, G its
                         encoder) */
    CG_SPAN_VAE,      /* a VAE's forward and backward passes */
    CG_SPAN_N
} cg_span;

/* The most spans a trace holds per rank (96 MiB). */
#define CG_TRACE_MAX_SPANS ((size_t)1 << 22)

typedef struct {
    double t0, t1;  /* this rank's clock, seconds */
    int32_t step;   /* 1-based, as in the log */
    uint16_t span;  /* cg_span */
    uint16_t chunk; /* the reductions' chunk index */
} cg_trace_event;

typedef struct cg_trace {
    int on;               /* recording the current step */
    long first, last;     /* steps first..last (1-based, inclusive) are recorded */
    long step;            /* the step being recorded */
    double offset;        /* rank 0's clock minus this rank's, seconds */
    double event_cost;    /* seconds one recorded span costs, measured at open */
    cg_trace_event *ev;
    size_t n, cap;
    size_t dropped;       /* spans beyond cap (not recorded) */
    char *path;           /* rank 0: the trace file, written as path.tmp then renamed */
    FILE *tmp;            /* rank 0: path.tmp, open from cg_trace_open to cg_trace_write */
} cg_trace;

/* Collective: rank 0 creates path.tmp (so a path it cannot write fails before the run, not
 * after it), every rank sizes its buffer for steps first..last of at most per_step spans
 * each, measures what a span costs and its clock offset against rank 0. Returns 0, or -1 on
 * every rank with e set (nothing left open). */
int cg_trace_open(cg_trace *t, cg_ctx *c, const char *path, long first, long last,
                  size_t per_step, cg_error *e);
/* Frees the buffer; a temporary file never written is removed. */
void cg_trace_free(cg_trace *t);

/* Marks the start of step `step` (0-based): recording is on while it is in the window. */
static inline void cg_trace_step(cg_trace *t, long step)
{
    if (t && t->cap) {
        t->step = step + 1;
        t->on = t->step >= t->first && t->step <= t->last;
    }
}

/* The start of a span: the clock when recording, else 0 (no clock read). */
static inline double cg_trace_start(const cg_trace *t) { return t && t->on ? cg_now() : 0.0; }

/* Records a span from t0 (cg_trace_start) to now. */
void cg_trace_add(cg_trace *t, cg_span span, double t0, int chunk);

/* Collective: rank 0 gathers every rank's spans into the temporary file and renames it to
 * the trace's path. median_step_ms goes into the file's summary with the recording cost.
 * Returns 0, or -1 on every rank with e set when rank 0 could not write. */
int cg_trace_write(cg_trace *t, cg_ctx *c, double median_step_ms, cg_error *e);

/* Parses "A:B" (1 <= A <= B) or "A" (A:A). Returns 0, or -1. */
int cg_trace_parse_steps(const char *s, long *first, long *last);

#endif
