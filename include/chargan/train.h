/* The data-parallel training loop (chargan train). */
#ifndef CHARGAN_TRAIN_H
#define CHARGAN_TRAIN_H
#include "chargan/data.h"
#include "chargan/dist.h"
#include "chargan/gan.h"

typedef struct {
    cg_gan_config gan;      /* global_batch set; local_batch derived from the rank count */
    cg_data_opts data;
    long epochs;            /* used when steps == 0 */
    long steps;             /* total steps of the run, counted from its start */
    const char *out;        /* output directory */
    int log_every;
    int check_every;        /* compare parameter checksums across ranks every N steps; 0 off */
    int threads;            /* BLAS threads per rank; 0 = cores / ranks on the node */
    int conditional;        /* condition on the data set's classes */
    long ckpt_every;        /* checkpoint every N steps (0: only at the end and on signals) */
    int keep;               /* keep the newest K checkpoints (0: all) */
    const char *resume;     /* NULL, "auto" (newest valid in OUT/checkpoints) or a file */
    long sample_every;      /* sample file + PNG every N steps (0: only at the end) */
    double time_limit;      /* stop (checkpoint, exit 0) after this many seconds; 0: none */
    long eval_every;        /* quality score on rank 0 every N steps (0: never) */
    const char *classifier; /* classifier file for the score */
    long eval_n;            /* samples per score */
    int sum_groups;         /* exact-sum groups of the global batch; 0: cg_sum_groups' choice */
    int float_sums;         /* sum gradients in float instead (half the bytes, not exact) */
    double ema;             /* EMA decay of G's weights (chargan/ema.h); < 0: the model's
                               default (cg_ema_default); 0: no EMA */
    int exclude_heldout;    /* train only on the classifier-train part (!cg_heldout(i)), so
                               the FID reference (the held-out part) stays unseen */
} cg_train_opts;

void cg_train_default_opts(cg_train_opts *o);

/* The number of groups the global batch B is cut into for exact gradient sums on P ranks:
 * `requested` when positive, else the largest multiple of P that divides B and is at most
 * max(8, P) (8 for B = 64 and P = 1, 2, 4, 8, so those runs give bit-identical results).
 * Returns -1 when `requested` does not divide B or is not a multiple of P (e set). */
int cg_sum_groups(int B, int P, int requested, cg_error *e);

/* Runs training; collective. Returns the process exit code (0 ok, 1 failure, with the
 * message printed once). */
int cg_train(cg_ctx *c, const cg_train_opts *o);

/* Order-independent checksum of a float buffer's bit patterns. */
uint64_t cg_checksum(const float *p, size_t n);

#endif
