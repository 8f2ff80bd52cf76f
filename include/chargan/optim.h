/* Adam and RMSprop over a network's flat buffers: one loop over all parameters. */
#ifndef CHARGAN_OPTIM_H
#define CHARGAN_OPTIM_H
#include "chargan/model.h"

/* Which optimizer a model trains with. */
enum { CG_OPT_ADAM = 0, CG_OPT_RMSPROP = 1 };

typedef struct {
    float lr, beta1, beta2, eps;
    long t; /* steps taken; part of the checkpointed state */
} cg_adam;

/* Keras' Adam (the notebook's optimizer):
 *   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t);  w -= lr_t * m / (sqrt(v) + eps)
 * Increments a->t first. */
void cg_adam_step(cg_adam *a, float *param, const float *grad, float *m, float *v, size_t n);
/* The step of a network's parameters and moments: its gradient read from its exact sums in
 * exact mode (cg_exact_value of net->gsum, the values cg_net_exact_finish would write, so no
 * pass converts them first), else from net->grad. */
void cg_adam_step_net(cg_adam *a, cg_net *net);

typedef struct {
    float lr, rho, eps;
    long t; /* steps taken */
} cg_rmsprop;

/* Keras' defaults: lr 0.001, rho 0.9, eps 1e-7 (no momentum, not centered). */
#define CG_RMSPROP_LR 0.001f
#define CG_RMSPROP_RHO 0.9f
#define CG_RMSPROP_EPS 1e-7f

/* Keras' RMSprop (tf.keras 2.x without momentum, the Keras of Geron's book; eps outside the
 * square root as in its Adam), the mean square ms starting at 0:
 *   ms = rho ms + (1-rho) g^2;  w -= lr * g / (sqrt(ms) + eps)
 * Increments r->t (no bias correction uses it; it counts updates for schedules). */
void cg_rmsprop_step(cg_rmsprop *r, float *param, const float *grad, float *ms, size_t n);
/* As cg_adam_step_net; the mean square lives in net->adam_v. */
void cg_rmsprop_step_net(cg_rmsprop *r, cg_net *net);

#endif
