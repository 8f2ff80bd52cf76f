#include "chargan/nn.h"

#include <math.h>
#include <string.h>

#include "chargan/prof.h"
#include "chargan/rng.h"

int cg_conv_out(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

int cg_convt_out(int in, int k, int stride, int pad, int out_pad)
{
    return (in - 1) * stride - 2 * pad + k + out_pad;
}

/* The output columns wo in [*lo, *hi) whose input column wo * stride + off lies inside
 * [0, W): the others read padding. Computed once per kernel column, so the copy loops over
 * the valid span have no bounds test. */
static void valid_span(int W, int Wo, int stride, int off, int *lo, int *hi)
{
    int a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int b = W - off <= 0 ? 0 : (W - off + stride - 1) / stride;
    if (b > Wo)
        b = Wo;
    if (a > b)
        a = b;
    *lo = a, *hi = b;
}

void cg_im2col(const float *x, int C, int H, int W, int B, int b0, int nb, int k, int stride,
               int pad, int Ho, int Wo, float *col)
{
    const size_t ncol = (size_t)nb * Ho * Wo;
    /* Rows are independent: split them over the rank's threads (the GEMMs use the same
     * threads through OpenBLAS; the two never run at once). */
#pragma omp parallel for collapse(3) schedule(static)
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                float *row = col + ((size_t)(c * k + ki) * k + kj) * ncol;
                const int off = kj - pad;
                int lo, hi_end;
                valid_span(W, Wo, stride, off, &lo, &hi_end);
                for (int bl = 0; bl < nb; bl++) {
                    const float *img = x + ((size_t)c * B + b0 + bl) * H * W;
                    for (int ho = 0; ho < Ho; ho++) {
                        float *dst = row + ((size_t)bl * Ho + ho) * Wo;
                        int hi = ho * stride - pad + ki;
                        if (hi < 0 || hi >= H) {
                            memset(dst, 0, sizeof(float) * (size_t)Wo);
                            continue;
                        }
                        const float *src = img + (size_t)hi * W;
                        for (int wo = 0; wo < lo; wo++)
                            dst[wo] = 0.0f;
                        for (int wo = lo; wo < hi_end; wo++)
                            dst[wo] = src[wo * stride + off];
                        for (int wo = hi_end; wo < Wo; wo++)
                            dst[wo] = 0.0f;
                    }
                }
            }
}

void cg_col2im(const float *col, int C, int H, int W, int B, int b0, int nb, int k, int stride,
               int pad, int Ho, int Wo, float *x)
{
    const size_t ncol = (size_t)nb * Ho * Wo;
    /* Channels write disjoint parts of x, so they can be split over threads; the k*k rows of
     * one channel overlap and stay in one thread. */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++) {
                const float *row = col + ((size_t)(c * k + ki) * k + kj) * ncol;
                const int off = kj - pad;
                int lo, hi_end;
                valid_span(W, Wo, stride, off, &lo, &hi_end);
                for (int bl = 0; bl < nb; bl++) {
                    float *img = x + ((size_t)c * B + b0 + bl) * H * W;
                    for (int ho = 0; ho < Ho; ho++) {
                        int hi = ho * stride - pad + ki;
                        if (hi < 0 || hi >= H)
                            continue;
                        const float *src = row + ((size_t)bl * Ho + ho) * Wo;
                        float *dst = img + (size_t)hi * W;
                        for (int wo = lo; wo < hi_end; wo++)
                            dst[wo * stride + off] += src[wo];
                    }
                }
            }
}

int cg_chunk_samples(size_t rows, size_t cols, size_t col_cap, int B)
{
    size_t per = rows * cols;
    size_t nb = per ? col_cap / per : (size_t)B;
    if (nb < 1)
        nb = 1;
    if (nb > (size_t)B)
        nb = (size_t)B;
    return (int)nb;
}

/* Adds b[c] to elements [off, off+n) of channel c of an array whose channels are `stride`
 * floats apart. */
static void add_channel_bias(int C, size_t stride, size_t off, size_t n, const float *b,
                             float *y)
{
    for (int c = 0; c < C; c++) {
        float bc = b[c];
        float *row = y + (size_t)c * stride + off;
        for (size_t i = 0; i < n; i++)
            row[i] += bc;
    }
}

/* The loop of sum_pairs and sum_pairs_affine; `affine` is a constant at each call, so its
 * branch folds away. */
static inline void sum_pairs_core(const float *u, const float *v, float scale, float shift,
                                  int affine, size_t n, size_t es, double *a, double *b)
{
    double pa[4] = {0.0, 0.0, 0.0, 0.0}, pb[4] = {0.0, 0.0, 0.0, 0.0};
    const size_t n4 = n & ~(size_t)3;
    for (size_t j = 0; j < n4; j += 4)
        for (int k = 0; k < 4; k++) {
            const double x = u[(j + k) * es];
            const float y = v[(j + k) * es];
            pa[k] += x;
            pb[k] += x * (affine ? scale * y + shift : y);
        }
    for (size_t j = n4; j < n; j++) {
        const double x = u[j * es];
        const float y = v[j * es];
        pa[0] += x;
        pb[0] += x * (affine ? scale * y + shift : y);
    }
    *a = (pa[0] + pa[1]) + (pa[2] + pa[3]);
    if (b)
        *b = (pb[0] + pb[1]) + (pb[2] + pb[3]);
}

/* Sums in double of the n elements u[j*es] and, when b is not NULL, of u[j*es] * v[j*es]
 * (v NULL: u * u). Four partial sums per quantity, added in a fixed order at the end: the
 * result depends on the data alone, and the adds pipeline instead of waiting on each other
 * (one chain is bound by the add latency, 4 cycles per element). */
static void sum_pairs(const float *u, const float *v, size_t n, size_t es, double *a, double *b)
{
    sum_pairs_core(u, v ? v : u, 1.0f, 0.0f, 0, n, es, a, b);
}

/* sum_pairs of u and v' = scale * v + shift (v' in float, as the batch norm made it). */
static void sum_pairs_affine(const float *u, const float *v, float scale, float shift, size_t n,
                             size_t es, double *a, double *b)
{
    sum_pairs_core(u, v, scale, shift, 1, n, es, a, b);
}

/* db[c] += sum of elements [off, off+n) of channel c. */
static void channel_sum(int C, size_t stride, size_t off, size_t n, const float *dy, float *db)
{
    for (int c = 0; c < C; c++) {
        double s;
        sum_pairs(dy + (size_t)c * stride + off, NULL, n, 1, &s, NULL);
        db[c] += (float)s;
    }
}

/* Zeroes samples [b0, b0+n) of a [C][B][hw] array. */
static void clear_samples(int C, int B, int b0, int n, size_t hw, float *x)
{
    for (int c = 0; c < C; c++)
        memset(x + ((size_t)c * B + b0) * hw, 0, sizeof(float) * (size_t)n * hw);
}

void cg_conv2d_forward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                       const float *w, const float *b, float *y, const cg_work *wk)
{
    const int rows = g->cin * g->k * g->k;
    const int hw = g->hout * g->wout;
    const int nb = cg_chunk_samples((size_t)rows, (size_t)hw, wk->cap, n);
    for (int s = b0; s < b0 + n; s += nb) {
        int m = b0 + n - s < nb ? b0 + n - s : nb;
        cg_prof_mark t = cg_prof_begin(wk->prof);
        cg_im2col(x, g->cin, g->hin, g->win, B, s, m, g->k, g->stride, g->pad, g->hout,
                  g->wout, wk->col);
        cg_prof_end(wk->prof, CG_PROF_COLS, t);
        t = cg_prof_begin(wk->prof);
        cg_sgemm(0, 0, g->cout, m * hw, rows, 1.0f, w, rows, wk->col, m * hw, 0.0f,
                 y + (size_t)s * hw, B * hw);
        cg_prof_end(wk->prof, CG_PROF_GEMM, t);
    }
    const cg_prof_mark t = cg_prof_begin(wk->prof);
    if (b)
        add_channel_bias(g->cout, (size_t)B * hw, (size_t)b0 * hw, (size_t)n * hw, b, y);
    cg_prof_end(wk->prof, CG_PROF_COLS, t);
}

void cg_conv2d_backward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                        const float *w, const float *dy, float *dw, float *db, float *dx,
                        const cg_work *wk)
{
    const int rows = g->cin * g->k * g->k;
    const int hw = g->hout * g->wout;
    const int nb = cg_chunk_samples((size_t)rows, (size_t)hw, wk->cap, n);
    cg_prof_mark t = cg_prof_begin(wk->prof);
    if (db)
        channel_sum(g->cout, (size_t)B * hw, (size_t)b0 * hw, (size_t)n * hw, dy, db);
    if (dx)
        clear_samples(g->cin, B, b0, n, (size_t)g->hin * g->win, dx);
    cg_prof_end(wk->prof, CG_PROF_COLS, t);
    for (int s = b0; s < b0 + n; s += nb) {
        int m = b0 + n - s < nb ? b0 + n - s : nb;
        const float *dyc = dy + (size_t)s * hw;
        if (dw) {
            t = cg_prof_begin(wk->prof);
            cg_im2col(x, g->cin, g->hin, g->win, B, s, m, g->k, g->stride, g->pad, g->hout,
                      g->wout, wk->col);
            cg_prof_end(wk->prof, CG_PROF_COLS, t);
            t = cg_prof_begin(wk->prof);
            cg_sgemm(0, 1, g->cout, rows, m * hw, 1.0f, dyc, B * hw, wk->col, m * hw, 1.0f, dw,
                     rows);
            cg_prof_end(wk->prof, CG_PROF_GEMM, t);
        }
        if (dx) {
            t = cg_prof_begin(wk->prof);
            cg_sgemm(1, 0, rows, m * hw, g->cout, 1.0f, w, rows, dyc, B * hw, 0.0f, wk->col,
                     m * hw);
            cg_prof_end(wk->prof, CG_PROF_GEMM, t);
            t = cg_prof_begin(wk->prof);
            cg_col2im(wk->col, g->cin, g->hin, g->win, B, s, m, g->k, g->stride, g->pad,
                      g->hout, g->wout, dx);
            cg_prof_end(wk->prof, CG_PROF_COLS, t);
        }
    }
}

void cg_convt2d_forward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                        const float *w, const float *b, float *y, const cg_work *wk)
{
    /* The adjoint of a convolution (cout,hout,wout) -> (cin,hin,win): a GEMM into columns
     * followed by col2im, which scatters the columns onto the larger output. */
    const int rows = g->cout * g->k * g->k;
    const int hw_in = g->hin * g->win;
    const size_t hw_out = (size_t)g->hout * g->wout;
    const int nb = cg_chunk_samples((size_t)rows, (size_t)hw_in, wk->cap, n);
    cg_prof_mark t = cg_prof_begin(wk->prof);
    clear_samples(g->cout, B, b0, n, hw_out, y);
    cg_prof_end(wk->prof, CG_PROF_COLS, t);
    for (int s = b0; s < b0 + n; s += nb) {
        int m = b0 + n - s < nb ? b0 + n - s : nb;
        t = cg_prof_begin(wk->prof);
        cg_sgemm(1, 0, rows, m * hw_in, g->cin, 1.0f, w, rows, x + (size_t)s * hw_in,
                 B * hw_in, 0.0f, wk->col, m * hw_in);
        cg_prof_end(wk->prof, CG_PROF_GEMM, t);
        t = cg_prof_begin(wk->prof);
        cg_col2im(wk->col, g->cout, g->hout, g->wout, B, s, m, g->k, g->stride, g->pad, g->hin,
                  g->win, y);
        cg_prof_end(wk->prof, CG_PROF_COLS, t);
    }
    t = cg_prof_begin(wk->prof);
    if (b)
        add_channel_bias(g->cout, (size_t)B * hw_out, (size_t)b0 * hw_out, (size_t)n * hw_out, b,
                         y);
    cg_prof_end(wk->prof, CG_PROF_COLS, t);
}

void cg_convt2d_backward(const cg_conv_geom *g, int B, int b0, int n, const float *x,
                         const float *w, const float *dy, float *dw, float *db, float *dx,
                         const cg_work *wk)
{
    const int rows = g->cout * g->k * g->k;
    const int hw_in = g->hin * g->win;
    const size_t hw_out = (size_t)g->hout * g->wout;
    const int nb = cg_chunk_samples((size_t)rows, (size_t)hw_in, wk->cap, n);
    cg_prof_mark t = cg_prof_begin(wk->prof);
    if (db)
        channel_sum(g->cout, (size_t)B * hw_out, (size_t)b0 * hw_out, (size_t)n * hw_out, dy, db);
    cg_prof_end(wk->prof, CG_PROF_COLS, t);
    for (int s = b0; s < b0 + n; s += nb) {
        int m = b0 + n - s < nb ? b0 + n - s : nb;
        t = cg_prof_begin(wk->prof);
        cg_im2col(dy, g->cout, g->hout, g->wout, B, s, m, g->k, g->stride, g->pad, g->hin,
                  g->win, wk->col);
        cg_prof_end(wk->prof, CG_PROF_COLS, t);
        t = cg_prof_begin(wk->prof);
        if (dw)
            cg_sgemm(0, 1, g->cin, rows, m * hw_in, 1.0f, x + (size_t)s * hw_in, B * hw_in,
                     wk->col, m * hw_in, 1.0f, dw, rows);
        if (dx)
            cg_sgemm(0, 0, g->cin, m * hw_in, rows, 1.0f, w, rows, wk->col, m * hw_in, 0.0f,
                     dx + (size_t)s * hw_in, B * hw_in);
        cg_prof_end(wk->prof, CG_PROF_GEMM, t);
    }
}

void cg_dense_forward(int B, int in, int out, const float *x, const float *w, const float *b,
                      float *y)
{
    cg_sgemm(0, 0, B, out, in, 1.0f, x, in, w, out,
                0.0f, y, out);
    if (b)
        for (int i = 0; i < B; i++) {
            float *row = y + (size_t)i * out;
            for (int j = 0; j < out; j++)
                row[j] += b[j];
        }
}

void cg_dense_backward(int B, int in, int out, const float *x, const float *w, const float *dy,
                       float *dw, float *db, float *dx)
{
    if (dw)
        cg_sgemm(1, 0, in, out, B, 1.0f, x, in, dy, out,
                    1.0f, dw, out);
    if (db)
        for (int i = 0; i < B; i++) {
            const float *row = dy + (size_t)i * out;
            for (int j = 0; j < out; j++)
                db[j] += row[j];
        }
    if (dx)
        cg_sgemm(0, 1, B, in, out, 1.0f, dy, out, w, out,
                    0.0f, dx, in);
}

float cg_sigmoidf(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

void cg_act_forward(cg_act act, float alpha, size_t n, float *y)
{
    switch (act) {
    case CG_ACT_NONE:
        break;
    case CG_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            y[i] = y[i] > 0.0f ? y[i] : 0.0f;
        break;
    case CG_ACT_LEAKY:
        for (size_t i = 0; i < n; i++)
            y[i] = y[i] > 0.0f ? y[i] : alpha * y[i];
        break;
    case CG_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            y[i] = cg_sigmoidf(y[i]);
        break;
    case CG_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            y[i] = tanhf(y[i]);
        break;
    case CG_ACT_SELU: {
        const float s = (float)CG_SELU_SCALE, sa = (float)(CG_SELU_SCALE * CG_SELU_ALPHA);
        for (size_t i = 0; i < n; i++)
            y[i] = y[i] > 0.0f ? s * y[i] : sa * expm1f(y[i]);
        break;
    }
    }
}

void cg_act_backward(cg_act act, float alpha, size_t n, const float *y, float *dy)
{
    switch (act) {
    case CG_ACT_NONE:
        break;
    case CG_ACT_RELU:
        for (size_t i = 0; i < n; i++)
            dy[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        break;
    case CG_ACT_LEAKY: /* alpha > 0 keeps the sign, so y > 0 exactly when the input was */
        for (size_t i = 0; i < n; i++)
            dy[i] = y[i] > 0.0f ? dy[i] : alpha * dy[i];
        break;
    case CG_ACT_SIGMOID:
        for (size_t i = 0; i < n; i++)
            dy[i] *= y[i] * (1.0f - y[i]);
        break;
    case CG_ACT_TANH:
        for (size_t i = 0; i < n; i++)
            dy[i] *= 1.0f - y[i] * y[i];
        break;
    case CG_ACT_SELU: { /* y > 0 exactly when the input was: expm1 keeps the sign */
        const float s = (float)CG_SELU_SCALE, sa = (float)(CG_SELU_SCALE * CG_SELU_ALPHA);
        for (size_t i = 0; i < n; i++)
            dy[i] *= y[i] > 0.0f ? s : y[i] + sa;
        break;
    }
    }
}

void cg_dropout_forward(int B, int F, float rate, uint64_t seed, uint64_t stream,
                        uint64_t first_sample, float *y, uint8_t *mask)
{
    const float scale = 1.0f / (1.0f - rate);
    for (int i = 0; i < B; i++)
        for (int f = 0; f < F; f++) {
            size_t at = (size_t)i * F + f;
            uint64_t index = (first_sample + (uint64_t)i) * (uint64_t)F + (uint64_t)f;
            uint8_t keep = cg_rng_uniform(seed, stream, index) >= rate;
            mask[at] = keep;
            y[at] = keep ? y[at] * scale : 0.0f;
        }
}

void cg_dropout_backward(int B, int F, float rate, const uint8_t *mask, float *dy)
{
    const float scale = 1.0f / (1.0f - rate);
    const size_t n = (size_t)B * F;
    for (size_t i = 0; i < n; i++)
        dy[i] = mask[i] ? dy[i] * scale : 0.0f;
}

double cg_bce_logits(int n, const float *logit, const float *target, float scale,
                     float *dlogit)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        double l = logit[i], t = target[i];
        sum += (l > 0.0 ? l : 0.0) - l * t + log1p(exp(-fabs(l)));
        if (dlogit)
            dlogit[i] = scale * (cg_sigmoidf(logit[i]) - target[i]);
    }
    return sum * scale;
}

double cg_hinge_logits(int n, const float *logit, float sign, float scale, float *dlogit)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const double m = 1.0 - (double)sign * logit[i];
        sum += m > 0.0 ? m : 0.0;
        if (dlogit)
            dlogit[i] = m > 0.0 ? -sign * scale : 0.0f;
    }
    return sum * scale;
}

void cg_flat_to_cbhw(int B, int C, int HW, const float *flat, float *cbhw)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            memcpy(cbhw + ((size_t)c * B + b) * HW, flat + ((size_t)b * C + c) * HW,
                   sizeof(float) * (size_t)HW);
}

void cg_cbhw_to_flat(int B, int C, int HW, const float *cbhw, float *flat)
{
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            memcpy(flat + ((size_t)b * C + c) * HW, cbhw + ((size_t)c * B + b) * HW,
                   sizeof(float) * (size_t)HW);
}

/* The part layout of a batch-norm sum (see cg_sync): G parts in all, L of them here starting
 * at part `first`; one part for a single process without groups. */
static void bn_parts(const cg_sync *sync, int *G, int *first, int *L)
{
    *G = 1, *first = 0, *L = 1;
    if (sync && sync->groups > 1 && sync->local_groups >= 1) {
        *G = sync->groups, *first = sync->first_group, *L = sync->local_groups;
    }
}

/* Fills this process's rows of the [G][2C] table with the sums over each of its parts of
 * f1 = u and f2 = u * v (v NULL: u * u) for the n elements of each channel, zeroes the other
 * rows and sets the count after the table. */
static void bn_part_sums(int C, size_t n, size_t cs, size_t es, const float *u, const float *v,
                         const cg_sync *sync, double *table)
{
    int G, first, L;
    bn_parts(sync, &G, &first, &L);
    memset(table, 0, sizeof(double) * (2 * (size_t)C * G + 1));
    const size_t per = n / (size_t)L;
    for (int l = 0; l < L; l++) {
        double *row = table + 2 * (size_t)C * (first + l);
        for (int c = 0; c < C; c++) {
            const size_t at = (size_t)c * cs + (size_t)l * per * es;
            sum_pairs(u + at, v ? v + at : NULL, per, es, &row[c], &row[C + c]);
        }
    }
    table[2 * (size_t)C * G] = (double)n;
}

/* The number of parts of the table. */
static int bn_groups(const cg_sync *sync)
{
    int G, first, L;
    bn_parts(sync, &G, &first, &L);
    return G;
}

/* Sums the table of bn_part_sums over processes. */
static void bn_sync(const cg_sync *sync, int C, double *table)
{
    if (sync && sync->sum)
        sync->sum(sync->user, table, 2 * C * bn_groups(sync) + 1);
}

/* Column k of the [G][2C] table summed over the parts in part order. */
static double bn_total(const double *table, int C, int G, int k)
{
    double s = 0.0;
    for (int p = 0; p < G; p++)
        s += table[2 * (size_t)C * p + k];
    return s;
}

void cg_bn_forward(int C, size_t n, size_t cs, size_t es, float *y, float *xhat,
                   float *invstd, const float *gamma, const float *beta, float *run_mean,
                   float *run_var, float momentum, float eps, int training, const cg_sync *sync,
                   double *scratch)
{
    const int G = bn_groups(sync);
    if (training) {
        bn_part_sums(C, n, cs, es, y, NULL, sync, scratch);
        bn_sync(sync, C, scratch);
    }
    const double N = training ? scratch[2 * (size_t)C * G] : 0.0;
    for (int c = 0; c < C; c++) {
        double mean, var;
        if (training) {
            mean = bn_total(scratch, C, G, c) / N;
            var = bn_total(scratch, C, G, C + c) / N - mean * mean;
            if (var < 0.0)
                var = 0.0;
            run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * mean);
            run_var[c] = (float)((1.0 - momentum) * run_var[c] +
                                 momentum * var * (N > 1.0 ? N / (N - 1.0) : 1.0));
        } else {
            mean = run_mean[c], var = run_var[c];
        }
        const float is = (float)(1.0 / sqrt(var + (double)eps));
        const float m = (float)mean, gc = gamma[c], bc = beta[c];
        invstd[c] = is;
        float *yc = y + (size_t)c * cs, *xc = xhat + (size_t)c * cs;
        for (size_t j = 0; j < n; j++) {
            float xh = (yc[j * es] - m) * is;
            xc[j * es] = xh;
            yc[j * es] = gc * xh + bc;
        }
    }
}

void cg_bn_backward(int C, size_t n, size_t cs, size_t es, float *g, const float *xhat,
                    const float *invstd, const float *gamma, float *dgamma, float *dbeta,
                    const cg_sync *sync, double *scratch)
{
    /* dL/dz = invstd * (dxh - mean(dxh) - xhat * mean(dxh * xhat)), dxh = gamma * g, the
     * means over the GLOBAL batch. */
    int G, first, L;
    bn_parts(sync, &G, &first, &L);
    bn_part_sums(C, n, cs, es, g, xhat, sync, scratch);
    for (int c = 0; c < C && (dbeta || dgamma); c++) { /* this process's parts, before sync */
        double a = 0.0, b = 0.0;
        for (int l = 0; l < L; l++) {
            a += scratch[2 * (size_t)C * (first + l) + c];
            b += scratch[2 * (size_t)C * (first + l) + C + c];
        }
        if (dbeta)
            dbeta[c] += (float)a;
        if (dgamma)
            dgamma[c] += (float)b;
    }
    bn_sync(sync, C, scratch);
    const double N = scratch[2 * (size_t)C * G];
    for (int c = 0; c < C; c++) {
        const float ma = (float)(bn_total(scratch, C, G, c) / N);
        const float mb = (float)(bn_total(scratch, C, G, C + c) / N);
        const float gm = gamma[c], is = invstd[c];
        float *gc = g + (size_t)c * cs;
        const float *xc = xhat + (size_t)c * cs;
        for (size_t j = 0; j < n; j++)
            gc[j * es] = gm * is * (gc[j * es] - ma - xc[j * es] * mb);
    }
}

void cg_labels_forward(int B, int F, int K, const float *x, const int32_t *labels, float *y)
{
    for (int i = 0; i < B; i++) {
        float *row = y + (size_t)i * (F + K);
        memcpy(row, x + (size_t)i * F, sizeof(float) * (size_t)F);
        memset(row + F, 0, sizeof(float) * (size_t)K);
        if (labels[i] >= 0 && labels[i] < K)
            row[F + labels[i]] = 1.0f;
    }
}

void cg_labels_backward(int B, int F, int K, const float *dy, float *dx)
{
    for (int i = 0; i < B; i++)
        memcpy(dx + (size_t)i * F, dy + (size_t)i * (F + K), sizeof(float) * (size_t)F);
}

void cg_project_forward(int B, int F, const float *h, const float *w, const float *b,
                        const float *embed, const int32_t *labels, float *y)
{
    for (int i = 0; i < B; i++) {
        const float *hi = h + (size_t)i * F, *ei = embed + (size_t)labels[i] * F;
        double s = b ? b[0] : 0.0;
        for (int f = 0; f < F; f++)
            s += (double)hi[f] * ((double)w[f] + (double)ei[f]);
        y[i] = (float)s;
    }
}

void cg_project_backward(int B, int F, const float *h, const float *w, const float *embed,
                         const int32_t *labels, const float *dy, float *dw, float *db,
                         float *dembed, float *dh)
{
    for (int i = 0; i < B; i++) {
        const float *hi = h + (size_t)i * F, *ei = embed + (size_t)labels[i] * F;
        const float g = dy[i];
        if (db)
            db[0] += g;
        if (dw)
            for (int f = 0; f < F; f++)
                dw[f] += g * hi[f];
        if (dembed) {
            float *de = dembed + (size_t)labels[i] * F;
            for (int f = 0; f < F; f++)
                de[f] += g * hi[f];
        }
        if (dh)
            for (int f = 0; f < F; f++)
                dh[(size_t)i * F + f] = g * (w[f] + ei[f]);
    }
}

void cg_cond_affine_forward(int C, int B, int HW, size_t cs, size_t es, const int32_t *labels,
                            const float *x, const float *gamma, const float *beta, float *y)
{
    for (int b = 0; b < B; b++) {
        const float *gk = gamma + (size_t)labels[b] * C, *bk = beta + (size_t)labels[b] * C;
        for (int c = 0; c < C; c++) {
            const float s = 1.0f + gk[c], t = bk[c];
            const size_t at = (size_t)c * cs + (size_t)b * HW * es;
            for (int p = 0; p < HW; p++)
                y[at + p * es] = x[at + p * es] * s + t;
        }
    }
}

void cg_cond_affine_backward(int C, int B, int HW, size_t cs, size_t es, const int32_t *labels,
                             const cg_bn_output *x, const float *gamma, float *g,
                             float *dgamma, float *dbeta)
{
    for (int b = 0; b < B; b++) {
        const size_t row = (size_t)labels[b] * C;
        for (int c = 0; c < C; c++) {
            const float s = 1.0f + gamma[row + c];
            const size_t at = (size_t)c * cs + (size_t)b * HW * es;
            double sg, sgx;
            sum_pairs_affine(g + at, x->xhat + at, x->scale[c], x->shift[c], (size_t)HW, es,
                             &sg, &sgx);
            for (int p = 0; p < HW; p++)
                g[at + p * es] *= s;
            if (dbeta)
                dbeta[row + c] += (float)sg;
            if (dgamma)
                dgamma[row + c] += (float)sgx;
        }
    }
}
