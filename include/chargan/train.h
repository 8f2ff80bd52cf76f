/* The data-parallel training loop (chargan train). */
#ifndef CHARGAN_TRAIN_H
#define CHARGAN_TRAIN_H
#include "chargan/data.h"
#include "chargan/dist.h"
#include "chargan/gan.h"

/* A run's settings: the options of `chargan train`, and the configuration saved in every
 * checkpoint. settings.c describes each field once (option, help, JSON key, resume rule);
 * fields marked "preset's" are filled from the model's preset row when not given. */
typedef struct cg_train_opts {
    const char *model;      /* preset name; NULL: CG_DEFAULT_PRESET */
    int conditional;        /* condition on the data set's classes; -1: the preset's */
    cg_gan_config gan;      /* noise_dim, global_batch (0: the preset's), lr_g / lr_d (0: the
                               preset's), beta1, beta2, eps, lr_decay_start (CG_DECAY_PRESET:
                               the preset's) */
    long seed;              /* weights, noise, data order */
    const char *loss;       /* "bce" or "hinge" (GANs) */
    const char *optimizer;  /* VAEs: "rmsprop" or "adam"; NULL: the preset's */
    float lr;               /* VAEs: learning rate; 0: the preset's */
    int coding_dim;         /* VAEs: size of the coding; 0: the preset's */
    cg_data_opts data;      /* split NULL and limit -1: the preset's */
    long epochs;            /* used when steps == 0 */
    long steps;             /* total steps of the run, counted from its start; steps and
                               epochs both 0: the preset's */
    int sum_groups;         /* exact-sum groups of the global batch; 0: cg_sum_groups' choice */
    int float_sums;         /* sum gradients in float instead (half the bytes, not exact) */
    double ema;             /* EMA decay of G's weights (chargan/ema.h); NaN: the preset's;
                               0: no EMA */
    int exclude_heldout;    /* train only on the classifier-train part (!cg_heldout(i)), so
                               the FID reference (the held-out part) stays unseen */
    long ckpt_every;        /* checkpoint every N steps (0: only at the end and on signals) */
    long sample_every;      /* sample file + PNG every N steps (0: only at the end) */
    long eval_every;        /* quality score on rank 0 every N steps (0: never) */
    const char *classifier; /* classifier file for the score */
    long eval_n;            /* samples per score */
    /* Per invocation, not saved: */
    const char *config;     /* settings file or checkpoint the run started from (--config) */
    const char *out;        /* output directory */
    int log_every;
    int check_every;        /* compare parameter checksums across ranks every N steps; 0 off */
    int threads;            /* BLAS threads per rank; 0 = cores / ranks on the node */
    int keep;               /* keep the newest K checkpoints (0: all) */
    const char *resume;     /* NULL, "auto" (newest valid in OUT/checkpoints) or a file */
    double time_limit;      /* stop (checkpoint, exit 0) after this many seconds; 0: none */
    const char *trace;      /* Chrome trace file of steps trace_steps (chargan/trace.h) */
    const char *trace_steps; /* "A:B", 1-based inclusive; NULL: CG_TRACE_STEPS */
    /* Facts of the run, recorded in the saved configuration (cg_train fills them): */
    int n_classes;
    const char *classes;              /* the character of each class */
    long images, images_used;         /* in the data set; in the sampler's index set */
    const char *source;               /* what was loaded (cg_dataset.source) */
} cg_train_opts;

#define CG_DECAY_PRESET (-2L)
/* The steps --trace records by default: ten, after the first (which warms caches up). */
#define CG_TRACE_STEPS "2:11"

/* The number of groups the global batch B is cut into for exact gradient sums on P ranks:
 * `requested` when positive, else the largest multiple of P that divides B and is at most
 * max(8, P) (8 for B = 64 and P = 1, 2, 4, 8, so those runs give bit-identical results).
 * Returns -1 when `requested` does not divide B or is not a multiple of P (e set). */
int cg_sum_groups(int B, int P, int requested, cg_error *e);

/* Runs training; collective. Returns the process exit code (0 ok, 1 failure, with the
 * message printed once). */
int cg_train(cg_ctx *c, const cg_train_opts *o);


#endif
