/* Model presets, one row each: the layer tables of G and D and the preset's time-to-quality
 * recipe (what `chargan train --model NAME` runs unless flags say otherwise). Everything that
 * needs a fact about a model (training defaults, help texts, the EMA default, benchmarks)
 * reads it from here. */
#ifndef CHARGAN_PRESET_H
#define CHARGAN_PRESET_H
#include "chargan/model.h"

typedef struct {
    const char *name;
    const char *help;                 /* what the model is, one line */
    void (*layers)(cg_preset *p);     /* fills G's and D's layer tables and the output kind */
    /* The recipe: */
    int conditional;                  /* condition on the data set's classes */
    int batch;                        /* global batch */
    float lr_g, lr_d;                 /* Adam learning rates (beta1 0.5, beta2 0.999) */
    long steps;                       /* the run's length; 0: `epochs` epochs */
    long epochs;
    int lr_decay_pct;                 /* both rates fall linearly to 0 from this percentage of
                                         the steps on; 0: constant */
    double ema;                       /* EMA decay of G's weights; 0: none */
    const char *split;                /* EMNIST split when --data is a directory */
    long limit;                       /* the first N images; 0: all */
} cg_preset_row;

/* The preset `chargan train` runs without --model. */
#define CG_DEFAULT_PRESET "deep"

/* The row of the named preset, or NULL. */
const cg_preset_row *cg_preset_find(const char *name);
/* All rows; *n gets their number. */
const cg_preset_row *cg_preset_rows(int *n);
/* Comma-separated names of all rows, for help and error messages. */
const char *cg_preset_names(void);
/* Fills p with the named preset's layers; n_classes > 0 makes it conditional. Returns 0, or
 * -1 for an unknown name. */
int cg_preset_get(const char *name, int noise_dim, int n_classes, cg_preset *p);

#endif
