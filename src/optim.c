#include "chargan/optim.h"

#include <math.h>

void cg_adam_step(cg_adam *a, float *param, const float *grad, float *m, float *v, size_t n)
{
    a->t++;
    /* Bias corrections in double: beta2^t underflows float precision within a few thousand
     * steps' worth of differences. */
    const double t = (double)a->t;
    const float lr_t = (float)((double)a->lr * sqrt(1.0 - pow((double)a->beta2, t)) /
                               (1.0 - pow((double)a->beta1, t)));
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
    const float c1 = 1.0f - b1, c2 = 1.0f - b2;
    for (size_t i = 0; i < n; i++) {
        const float g = grad[i];
        const float mi = b1 * m[i] + c1 * g;
        const float vi = b2 * v[i] + c2 * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= lr_t * mi / (sqrtf(vi) + eps);
    }
}
