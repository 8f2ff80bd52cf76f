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
    double ema;             /* EMA decay of G's weights (chargan/ema.h); < 0: the model's
                               default (cg_ema_default); 0: no EMA */
    int exclude_heldout;    /* train only on the classifier-train part (!cg_heldout(i)), so
                               the FID reference (the held-out part) stays unseen */
} cg_train_opts;

void cg_train_default_opts(cg_train_opts *o);

/* Runs training; collective. Returns the process exit code (0 ok, 1 failure, with the
 * message printed once). */
int cg_train(cg_ctx *c, const cg_train_opts *o);

/* Order-independent checksum of a float buffer's bit patterns. */
uint64_t cg_checksum(const float *p, size_t n);

#endif
