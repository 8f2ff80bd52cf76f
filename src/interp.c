#include "chargan/interp.h"

#include <math.h>
#include <string.h>

#include "chargan/data.h"
#include "chargan/util.h"

void cg_lerp(const float *a, const float *b, int n, float t, float *out)
{
    /* Exact end points: (1 - t) a + t b need not round to b at t = 1. */
    if (t == 0.0f || t == 1.0f) {
        memcpy(out, t == 0.0f ? a : b, sizeof(float) * (size_t)n);
        return;
    }
    for (int i = 0; i < n; i++)
        out[i] = (float)((1.0 - t) * a[i] + (double)t * b[i]);
}

void cg_slerp(const float *a, const float *b, int n, float t, float *out)
{
    double aa = 0.0, bb = 0.0, ab = 0.0;
    for (int i = 0; i < n; i++) {
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
        ab += (double)a[i] * b[i];
    }
    const double norms = sqrt(aa * bb);
    double c = norms > 0.0 ? ab / norms : 1.0;
    c = c > 1.0 ? 1.0 : c < -1.0 ? -1.0 : c; /* rounding can leave |cos| just above 1 */
    const double w = acos(c), s = sin(w);
    if (!(s >= 1e-6) || t == 0.0f || t == 1.0f) {
        cg_lerp(a, b, n, t, out);
        return;
    }
    const double ka = sin((1.0 - t) * w) / s, kb = sin(t * w) / s;
    for (int i = 0; i < n; i++)
        out[i] = (float)(ka * a[i] + kb * b[i]);
}

void cg_interp_images(const cg_decoder *d, const float *a, const float *b, int steps,
                      const int32_t *labels, int rows, float *out)
{
    const int dim = d->code_dim, n = labels ? rows * steps : steps;
    float *codes = cg_alloc(sizeof(float) * (size_t)n * dim);
    int32_t *cls = labels ? cg_alloc(sizeof(int32_t) * (size_t)n) : NULL;
    for (int k = 0; k < steps; k++)
        d->path(a, b, dim, (float)k / (float)(steps - 1), codes + (size_t)k * dim);
    for (int r = 1; labels && r < rows; r++)
        memcpy(codes + (size_t)r * steps * dim, codes, sizeof(float) * (size_t)steps * dim);
    for (int i = 0; cls && i < n; i++)
        cls[i] = labels[i / steps];
    d->decode(d->model, codes, cls, n, out);
    cg_free(codes);
    cg_free(cls);
}

void cg_decode_batches(cg_forward_fn forward, void *model, int dim, int batch, const float *z,
                       const int32_t *labels, int n, float *out)
{
    for (int i = 0; i < n; i += batch) {
        const int b = n - i < batch ? n - i : batch;
        forward(model, z + (size_t)i * dim, labels ? labels + i : NULL, b,
                out + (size_t)i * CG_IMG_PIXELS);
    }
}
