/* Adam over a network's flat buffers: one loop over all parameters. */
#ifndef CHARGAN_OPTIM_H
#define CHARGAN_OPTIM_H
#include "chargan/model.h"

typedef struct {
    float lr, beta1, beta2, eps;
    long t; /* steps taken; part of the checkpointed state */
} cg_adam;

/* Keras' Adam (the notebook's optimizer):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t);  w -= lr_t * m / (sqrt(v) + eps)
 * Increments a->t first. */
void cg_adam_step(cg_adam *a, float *param, const float *grad, float *m, float *v, size_t n);

#endif
