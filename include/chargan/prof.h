/* Where a training step's time goes, by kind of work (`chargan bench --breakdown`). The
 * layers' own times are kept per layer in cg_net; this table cuts across layers. Timing is
 * off (no clock read) wherever the cg_prof pointer is NULL, as in training. */
#ifndef CHARGAN_PROF_H
#define CHARGAN_PROF_H
#include "chargan/util.h"

typedef enum {
    CG_PROF_GEMM,    /* every cg_sgemm of the layers (dense, conv, transposed conv) */
    CG_PROF_COLS,    /* im2col, col2im and the convolutions' other copies (bias, clears) */
    CG_PROF_BN,      /* batch norm and conditional batch norm, forward and backward */
    CG_PROF_ACT,     /* point-wise activations, forward and backward */
    CG_PROF_FOLD,    /* the exact sums: gradients folded into int64 fixed point */
    CG_PROF_REDUCE,  /* the gradient allreduce over ranks (waiting included) */
    CG_PROF_ADAM,    /* both optimizers' updates */
    CG_PROF_EMA,     /* the generator's moving average */
    CG_PROF_NOISE,   /* the step's normal noise */
    CG_PROF_N
} cg_prof_kind;

struct cg_prof {
    double seconds[CG_PROF_N];
};
typedef struct cg_prof cg_prof;

/* Short names of the kinds, in order (for tables and JSON keys). */
extern const char *const cg_prof_names[CG_PROF_N];

/* A timed region: the clock and the profile's total at its start. Regions nest: a region's
 * time excludes what regions inside it added to other kinds. */
typedef struct {
    double t0, inner0;
} cg_prof_mark;

static inline double cg_prof_total(const cg_prof *p)
{
    double s = 0.0;
    for (int k = 0; k < CG_PROF_N; k++)
        s += p->seconds[k];
    return s;
}

static inline cg_prof_mark cg_prof_begin(const cg_prof *p)
{
    return p ? (cg_prof_mark){cg_now(), cg_prof_total(p)} : (cg_prof_mark){0.0, 0.0};
}

static inline void cg_prof_end(cg_prof *p, cg_prof_kind k, cg_prof_mark m)
{
    if (p)
        p->seconds[k] += cg_now() - m.t0 - (cg_prof_total(p) - m.inner0);
}

#endif
