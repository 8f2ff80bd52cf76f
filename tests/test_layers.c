/* Every layer primitive of nn.h checked on its own:
 *
 *  - conv2d and conv2d-transpose: forward against a naive direct loop in double, backward
 *    (input, weight and bias gradients) against the naive adjoint loop AND against central
 *    finite differences of L = sum(y * r) for EVERY element of x, w and b; odd sizes (5x7,
 *    9x9, 7x6, ...), cin 3 / cout 2, batch 3, strides 1 and 2, padding 0/1/2, output padding
 *    0/1, kernels 1, 3 and 4; each with a scratch cap forcing one sample per chunk, chunks of 2+1 and
 *    one chunk of the whole batch (the three must agree); accumulation of dw/db (two backward
 *    calls add up, on top of what was there), overwrite of dx (pre-filled with NaN), NULL
 *    gradients skipped, dy left untouched.
 *  - im2col / col2im: im2col against a naive gather, col2im as its exact adjoint that
 *    accumulates and touches only its chunk of samples; cg_chunk_samples.
 *  - dense: the same forward / adjoint / FD / accumulation checks.
 *  - activations (none, relu, leaky 0.3, sigmoid, tanh): forward against libm in double,
 *    backward against the closed-form derivative and finite differences (inputs kept away from
 *    the kinks at 0), sigmoid saturation at |x| = 100 and beyond.
 *  - dropout: masks keyed only by the global sample index (offset batches see the same rows),
 *    depend on seed and stream, keep rate ~ 1 - rate, rate 0 is the identity, the scaling, and
 *    backward against finite differences with the mask fixed.
 *  - BCE with logits: value against the naive formula at moderate logits (hard and soft
 *    targets), finite and correct limits at |logit| = 100 and 1e4, gradient against the
 *    closed form and finite differences.
 *  - flat <-> CBHW transposes: index mapping and round trip.
 *
 * Everything runs on one thread; then the exact (non-FD) checks of im2col, every third
 * convolution configuration and dense run again with 2 threads (OpenMP loops, threaded sgemm).
 *
 * The FD loss is accumulated in double; the perturbation is h = 1e-2 for the (bilinear)
 * conv/dense layers, where central differences have no truncation error, and 1e-3 for the
 * nonlinear point-wise functions. An entry passes when |analytic - numeric| <=
 * tol * max(1, |analytic|) with tol = 2e-3; every analytic gradient here is O(0.1..10), so a
 * wrong index or a missing term is off by O(1) and cannot pass. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/dist.h"
#include "chargan/nn.h"
#include "chargan/rng.h"
#include "testutil.h"

#define FD_TOL 2e-3
/* Forward/adjoint against the naive double loops: max error relative to 1 + max|ref|. */
#define EXACT_TOL 1e-5

/* 0: skip the finite differences (the second, multithreaded pass of main) */
static int fd_enabled = 1;

static const tu_fd_opts FD_LINEAR = {1e-2f, FD_TOL, 1.0, 0, 1};
static const tu_fd_opts FD_POINTWISE = {1e-3f, FD_TOL, 1.0, 0, 1};

/* Worst FD errors per family, for the summary. */
static double worst_conv_fd, worst_convt_fd, worst_dense_fd, worst_act_fd, worst_misc_fd;
static double worst_exact;

static void note(double *worst, tu_fd_report r)
{
    if (r.worst > *worst)
        *worst = r.worst;
}

/* tu_err_vs_ref, noted in worst_exact. */
static double err_vs_ref(const float *a, const double *ref, size_t n)
{
    return tu_err_vs_ref(a, ref, n, &worst_exact);
}

/* ======================================================================================== */
/* Convolutions */

typedef struct {
    int transposed;
    int cin, hin, win, cout, k, stride, pad, out_pad;
    int hout, wout; /* expected output size */
} conv_case;

typedef struct {
    int transposed;
    cg_conv_geom g;
    int B;
    float *x, *w, *b, *y, *r;
    cg_work wk; /* im2col scratch of wk.cap floats, not profiled */
    size_t nx, nw, ny;
} conv_ctx;

static void conv_forward(conv_ctx *c)
{
    if (c->transposed)
        cg_convt2d_forward(&c->g, c->B, 0, c->B, c->x, c->w, c->b, c->y, &c->wk);
    else
        cg_conv2d_forward(&c->g, c->B, 0, c->B, c->x, c->w, c->b, c->y, &c->wk);
}

static void conv_backward(conv_ctx *c, const float *dy, float *dw, float *db, float *dx)
{
    if (c->transposed)
        cg_convt2d_backward(&c->g, c->B, 0, c->B, c->x, c->w, dy, dw, db, dx, &c->wk);
    else
        cg_conv2d_backward(&c->g, c->B, 0, c->B, c->x, c->w, dy, dw, db, dx, &c->wk);
}

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    conv_forward(c);
    return tu_dot(c->y, c->r, c->ny);
}

/* Naive convolution relation in double. Let the "small" grid be the conv's output / the
 * transposed conv's input (hs x ws) and the "large" grid the conv's input / the transposed
 * conv's output (hl x wl). Small pixel (i, j) meets large pixel (i*s - p + ki, j*s - p + kj)
 * through kernel tap (ki, kj). Computes y, and the adjoint dx, dw, db for upstream dy. */
static void naive_conv(const conv_ctx *c, const float *dy, double *y, double *dx, double *dw,
                       double *db)
{
    const cg_conv_geom *g = &c->g;
    const int B = c->B, k = g->k, s = g->stride, p = g->pad;
    const int T = c->transposed;
    const int hs = T ? g->hin : g->hout, ws = T ? g->win : g->wout;
    const int hl = T ? g->hout : g->hin, wl = T ? g->wout : g->win;
    memset(y, 0, sizeof(double) * c->ny);
    memset(dx, 0, sizeof(double) * c->nx);
    memset(dw, 0, sizeof(double) * c->nw);
    memset(db, 0, sizeof(double) * (size_t)g->cout);
    const size_t nyo = (size_t)B * g->hout * g->wout;
    for (int co = 0; co < g->cout; co++)
        for (size_t i = 0; i < nyo; i++) {
            y[(size_t)co * nyo + i] = c->b[co];
            db[co] += dy[(size_t)co * nyo + i];
        }
    for (int ci = 0; ci < g->cin; ci++)
        for (int co = 0; co < g->cout; co++)
            for (int ki = 0; ki < k; ki++)
                for (int kj = 0; kj < k; kj++) {
                    /* PyTorch layouts: conv [out][in][k][k], transposed [in][out][k][k] */
                    const size_t wi = T ? (((size_t)ci * g->cout + co) * k + ki) * k + kj
                                        : (((size_t)co * g->cin + ci) * k + ki) * k + kj;
                    const double wv = c->w[wi];
                    for (int b = 0; b < B; b++)
                        for (int i = 0; i < hs; i++)
                            for (int j = 0; j < ws; j++) {
                                const int L = i * s - p + ki, M = j * s - p + kj;
                                if (L < 0 || L >= hl || M < 0 || M >= wl)
                                    continue;
                                const size_t small_x = (((size_t)ci * B + b) * hs + i) * ws + j;
                                const size_t large_x = (((size_t)ci * B + b) * hl + L) * wl + M;
                                const size_t small_y = (((size_t)co * B + b) * hs + i) * ws + j;
                                const size_t large_y = (((size_t)co * B + b) * hl + L) * wl + M;
                                if (!T) { /* x on the large grid, y on the small one */
                                    y[small_y] += wv * c->x[large_x];
                                    dx[large_x] += wv * dy[small_y];
                                    dw[wi] += (double)c->x[large_x] * dy[small_y];
                                } else { /* x on the small grid, y on the large one */
                                    y[large_y] += wv * c->x[small_x];
                                    dx[small_x] += wv * dy[large_y];
                                    dw[wi] += (double)c->x[small_x] * dy[large_y];
                                }
                            }
                }
}

static void test_conv_case(const conv_case *cc, int case_no)
{
    const int B = 3;
    conv_ctx c;
    memset(&c, 0, sizeof c);
    c.transposed = cc->transposed;
    c.B = B;
    cg_conv_geom *g = &c.g;
    g->cin = cc->cin, g->hin = cc->hin, g->win = cc->win, g->cout = cc->cout;
    g->k = cc->k, g->stride = cc->stride, g->pad = cc->pad, g->out_pad = cc->out_pad;
    if (cc->transposed) {
        g->hout = cg_convt_out(g->hin, g->k, g->stride, g->pad, g->out_pad);
        g->wout = cg_convt_out(g->win, g->k, g->stride, g->pad, g->out_pad);
    } else {
        g->hout = cg_conv_out(g->hin, g->k, g->stride, g->pad);
        g->wout = cg_conv_out(g->win, g->k, g->stride, g->pad);
    }
    char tag[96];
    snprintf(tag, sizeof tag, "%s#%d %dx%dx%d k%d s%d p%d op%d -> %dx%dx%d",
             cc->transposed ? "convt" : "conv", case_no, g->cin, g->hin, g->win, g->k,
             g->stride, g->pad, g->out_pad, g->cout, g->hout, g->wout);
    CHECKF(g->hout == cc->hout && g->wout == cc->wout, "%s: output size, expected %dx%d", tag,
           cc->hout, cc->wout);
    if (g->hout != cc->hout || g->wout != cc->wout)
        return;

    c.nx = (size_t)g->cin * B * g->hin * g->win;
    c.ny = (size_t)g->cout * B * g->hout * g->wout;
    c.nw = (size_t)g->cin * g->cout * g->k * g->k;
    const uint64_t st = 1000u * (uint64_t)(case_no + 1) + (cc->transposed ? 500u : 0u);
    c.x = tu_falloc(c.nx);
    c.w = tu_falloc(c.nw);
    c.b = tu_falloc((size_t)g->cout);
    c.y = tu_falloc(c.ny);
    c.r = tu_falloc(c.ny);
    tu_fill_uniform(c.x, c.nx, -1.0f, 1.0f, st + 1);
    tu_fill_uniform(c.w, c.nw, -1.0f, 1.0f, st + 2);
    tu_fill_uniform(c.b, (size_t)g->cout, -1.0f, 1.0f, st + 3);
    tu_fill_uniform(c.r, c.ny, -1.0f, 1.0f, st + 4);
    float *r_copy = tu_fdup(c.r, c.ny);

    /* Naive reference for everything. */
    double *y_ref = malloc(sizeof(double) * c.ny), *dx_ref = malloc(sizeof(double) * c.nx);
    double *dw_ref = malloc(sizeof(double) * c.nw), *db_ref = malloc(sizeof(double) * g->cout);
    naive_conv(&c, c.r, y_ref, dx_ref, dw_ref, db_ref);

    /* Columns per sample of the GEMM scratch: conv im2cols its input onto its output grid,
     * the transposed conv its output gradient onto its input grid. */
    const size_t rows = (size_t)(cc->transposed ? g->cout : g->cin) * g->k * g->k;
    const size_t per = rows * (size_t)(cc->transposed ? g->hin * g->win : g->hout * g->wout);
    const size_t caps[3] = {(size_t)B * per, per, 2 * per}; /* 1 chunk, 3 chunks, 2+1 */
    const char *cap_name[3] = {"1 chunk", "3 chunks", "2+1 chunks"};
    float *y0 = NULL, *dx0 = NULL, *dw0 = NULL, *db0 = NULL; /* the one-chunk results */
    double *worst_fd = cc->transposed ? &worst_convt_fd : &worst_conv_fd;

    for (int v = 0; v < 3; v++) {
        c.wk.cap = caps[v];
        CHECK(cg_chunk_samples(rows, per / rows, caps[v], B) == (v == 0 ? 3 : v == 1 ? 1 : 2));
        c.wk.col = tu_falloc(c.wk.cap); /* exactly cap: ASan sees any overrun */
        char what[160];

        /* forward vs naive */
        conv_forward(&c);
        double e = err_vs_ref(c.y, y_ref, c.ny);
        CHECKF(e <= EXACT_TOL, "%s %s: forward vs naive error %.3g", tag, cap_name[v], e);

        /* backward vs naive adjoint; dx pre-filled with NaN must be overwritten */
        float *dx = tu_falloc(c.nx), *dw = tu_falloc(c.nw), *db = tu_falloc((size_t)g->cout);
        for (size_t i = 0; i < c.nx; i++)
            dx[i] = NAN;
        conv_backward(&c, c.r, dw, db, dx);
        CHECKF(memcmp(c.r, r_copy, sizeof(float) * c.ny) == 0, "%s: backward modified dy", tag);
        CHECKF(tu_all_finite(dx, c.nx), "%s %s: dx not overwritten (NaN left)", tag, cap_name[v]);
        e = err_vs_ref(dx, dx_ref, c.nx);
        CHECKF(e <= EXACT_TOL, "%s %s: dx vs naive error %.3g", tag, cap_name[v], e);
        e = err_vs_ref(dw, dw_ref, c.nw);
        CHECKF(e <= EXACT_TOL, "%s %s: dw vs naive error %.3g", tag, cap_name[v], e);
        e = err_vs_ref(db, db_ref, (size_t)g->cout);
        CHECKF(e <= EXACT_TOL, "%s %s: db vs naive error %.3g", tag, cap_name[v], e);

        /* finite differences of L = sum(y r), every element */
        if (fd_enabled) {
            snprintf(what, sizeof what, "%s %s dx", tag, cap_name[v]);
            note(worst_fd, tu_fd_check(what, c.x, dx, c.nx, NULL, 0, conv_loss, &c, &FD_LINEAR));
            snprintf(what, sizeof what, "%s %s dw", tag, cap_name[v]);
            note(worst_fd, tu_fd_check(what, c.w, dw, c.nw, NULL, 0, conv_loss, &c, &FD_LINEAR));
            snprintf(what, sizeof what, "%s %s db", tag, cap_name[v]);
            note(worst_fd, tu_fd_check(what, c.b, db, (size_t)g->cout, NULL, 0, conv_loss, &c,
                                       &FD_LINEAR));
        }

        /* chunked == unchunked (up to float summation order) */
        if (v == 0) {
            conv_forward(&c);
            y0 = tu_fdup(c.y, c.ny), dx0 = tu_fdup(dx, c.nx), dw0 = tu_fdup(dw, c.nw);
            db0 = tu_fdup(db, (size_t)g->cout);
        } else {
            conv_forward(&c);
            CHECKF(tu_max_rel_diff(c.y, y0, c.ny) <= 1e-6, "%s: y %s != 1 chunk", tag,
                   cap_name[v]);
            CHECKF(tu_max_rel_diff(dx, dx0, c.nx) <= 1e-6, "%s: dx %s != 1 chunk", tag,
                   cap_name[v]);
            CHECKF(tu_max_rel_diff(dw, dw0, c.nw) <= 1e-5, "%s: dw %s != 1 chunk (%.3g)", tag,
                   cap_name[v], tu_max_rel_diff(dw, dw0, c.nw));
            CHECKF(tu_max_rel_diff(db, db0, (size_t)g->cout) <= 1e-6, "%s: db %s != 1 chunk",
                   tag, cap_name[v]);
        }

        /* accumulation: starting from D0, two backward calls give D0 + 2 G; NULL outputs are
         * skipped; dx alone equals dx from the full call */
        float *acc_w = tu_falloc(c.nw), *acc_b = tu_falloc((size_t)g->cout);
        tu_fill_uniform(acc_w, c.nw, -1.0f, 1.0f, st + 7);
        tu_fill_uniform(acc_b, (size_t)g->cout, -1.0f, 1.0f, st + 8);
        float *d0w = tu_fdup(acc_w, c.nw), *d0b = tu_fdup(acc_b, (size_t)g->cout);
        conv_backward(&c, c.r, acc_w, NULL, NULL);
        conv_backward(&c, c.r, acc_w, acc_b, NULL);
        conv_backward(&c, c.r, NULL, acc_b, NULL);
        double ew = 0.0, eb = 0.0;
        for (size_t i = 0; i < c.nw; i++)
            ew = fmax(ew, fabs(acc_w[i] - (d0w[i] + 2.0 * dw_ref[i])) / (1.0 + fabs(dw_ref[i])));
        for (int i = 0; i < g->cout; i++)
            eb = fmax(eb, fabs(acc_b[i] - (d0b[i] + 2.0 * db_ref[i])) / (1.0 + fabs(db_ref[i])));
        CHECKF(ew <= 1e-5 && eb <= 1e-5, "%s %s: accumulation dw err %.3g db err %.3g", tag,
               cap_name[v], ew, eb);
        float *dx_only = tu_falloc(c.nx);
        for (size_t i = 0; i < c.nx; i++)
            dx_only[i] = NAN;
        conv_backward(&c, c.r, NULL, NULL, dx_only);
        CHECKF(memcmp(dx_only, dx, sizeof(float) * c.nx) == 0, "%s %s: dx alone != dx", tag,
               cap_name[v]);

        free(acc_w), free(acc_b), free(d0w), free(d0b), free(dx_only);
        free(dx), free(dw), free(db), free(c.wk.col);
        c.wk.col = NULL;
    }
    free(y0), free(dx0), free(dw0), free(db0);
    free(y_ref), free(dx_ref), free(dw_ref), free(db_ref);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.r), free(r_copy);
}

/* stride 1: every configuration; stride k: every k-th (the multithreaded second pass) */
static void test_convolutions(int stride)
{
    /* transposed, cin, hin, win, cout, k, stride, pad, out_pad, expected hout, wout */
    static const conv_case cases[] = {
        {0, 3, 5, 7, 2, 3, 1, 0, 0, 3, 5},
        {0, 3, 5, 7, 2, 3, 1, 1, 0, 5, 7},
        {0, 3, 9, 9, 2, 3, 2, 1, 0, 5, 5},
        {0, 3, 5, 7, 2, 3, 2, 2, 0, 4, 5},
        {0, 3, 9, 9, 2, 1, 2, 0, 0, 5, 5},
        {0, 3, 5, 7, 2, 1, 1, 0, 0, 5, 7},
        {0, 3, 5, 7, 2, 4, 2, 1, 0, 2, 3},
        {0, 3, 7, 6, 2, 3, 2, 0, 0, 3, 2}, /* last input column unused */
        {0, 3, 9, 9, 2, 3, 1, 2, 0, 11, 11},
        {0, 2, 9, 9, 3, 3, 2, 1, 0, 5, 5}, /* cin < cout */
        {1, 3, 5, 7, 2, 3, 1, 0, 0, 7, 9},
        {1, 3, 5, 7, 2, 3, 1, 1, 0, 5, 7},
        {1, 3, 5, 7, 2, 3, 2, 1, 1, 10, 14}, /* Keras 'same', stride 2 */
        {1, 3, 5, 7, 2, 3, 2, 1, 0, 9, 13},
        {1, 3, 5, 5, 2, 3, 2, 2, 1, 8, 8},
        {1, 3, 5, 7, 2, 1, 2, 0, 1, 10, 14}, /* pixels no tap reaches: bias only */
        {1, 3, 4, 5, 2, 4, 2, 1, 0, 8, 10},
        {1, 3, 9, 9, 2, 3, 2, 1, 1, 18, 18},
        {1, 3, 3, 5, 2, 3, 2, 0, 1, 8, 12},
        {1, 2, 5, 7, 3, 3, 2, 1, 1, 10, 14}, /* cin < cout */
    };
    size_t n = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i += (size_t)stride, n++)
        test_conv_case(&cases[i], (int)i);
    printf("conv / convt: %zu configurations x 3 chunkings checked\n", n);
}

/* ======================================================================================== */
/* im2col / col2im */

static void test_im2col(void)
{
    const int C = 2, H = 5, W = 7, B = 3, b0 = 1, nb = 2, k = 3, s = 2, p = 1;
    const int Ho = cg_conv_out(H, k, s, p), Wo = cg_conv_out(W, k, s, p);
    CHECK(Ho == 3 && Wo == 4);
    const size_t nx = (size_t)C * B * H * W, ncol = (size_t)C * k * k * nb * Ho * Wo;
    float *x = tu_falloc(nx), *col = tu_falloc(ncol), *c = tu_falloc(ncol), *z = tu_falloc(nx);
    tu_fill_uniform(x, nx, -1.0f, 1.0f, 71);
    tu_fill_uniform(c, ncol, -1.0f, 1.0f, 72);
    tu_fill_uniform(z, nx, -1.0f, 1.0f, 73);
    float *z0 = tu_fdup(z, nx);
    cg_im2col(x, C, H, W, B, b0, nb, k, s, p, Ho, Wo, col);
    int bad = 0;
    for (int ch = 0; ch < C; ch++)
        for (int ki = 0; ki < k; ki++)
            for (int kj = 0; kj < k; kj++)
                for (int bl = 0; bl < nb; bl++)
                    for (int ho = 0; ho < Ho; ho++)
                        for (int wo = 0; wo < Wo; wo++) {
                            int hi = ho * s - p + ki, wi = wo * s - p + kj;
                            float ref = (hi >= 0 && hi < H && wi >= 0 && wi < W)
                                            ? x[(((size_t)ch * B + b0 + bl) * H + hi) * W + wi]
                                            : 0.0f;
                            size_t at = ((size_t)(ch * k + ki) * k + kj) * nb * Ho * Wo +
                                        ((size_t)bl * Ho + ho) * Wo + wo;
                            bad += col[at] != ref;
                        }
    CHECKF(bad == 0, "im2col: %d entries differ from the naive gather", bad);
    /* col2im is the adjoint and accumulates: <im2col(x), c> == <x, col2im(c) - z0> */
    cg_col2im(c, C, H, W, B, b0, nb, k, s, p, Ho, Wo, z);
    double lhs = tu_dot(col, c, ncol), rhs = 0.0;
    for (size_t i = 0; i < nx; i++)
        rhs += (double)x[i] * ((double)z[i] - (double)z0[i]);
    CHECKF(fabs(lhs - rhs) <= 1e-5 * (1.0 + fabs(lhs)), "col2im adjoint: %.9g vs %.9g", lhs, rhs);
    /* samples outside [b0, b0 + nb) untouched */
    int touched = 0;
    for (int ch = 0; ch < C; ch++)
        touched += memcmp(z + (size_t)ch * B * H * W, z0 + (size_t)ch * B * H * W,
                          sizeof(float) * (size_t)H * W) != 0;
    CHECKF(touched == 0, "col2im wrote outside its chunk of samples");

    CHECK(cg_chunk_samples(10, 5, 120, 4) == 2);
    CHECK(cg_chunk_samples(10, 5, 49, 4) == 1); /* never 0 */
    CHECK(cg_chunk_samples(10, 5, 1000, 4) == 4);
    CHECK(cg_chunk_samples(10, 5, 200, 4) == 4);
    free(x), free(col), free(c), free(z), free(z0);
}

/* ======================================================================================== */
/* Dense */

typedef struct {
    int B, in, out;
    float *x, *w, *b, *y, *r;
} dense_ctx;

static double dense_loss(void *p)
{
    dense_ctx *c = p;
    cg_dense_forward(c->B, c->in, c->out, c->x, c->w, c->b, c->y);
    return tu_dot(c->y, c->r, (size_t)c->B * c->out);
}

static void test_dense_case(int B, int in, int out, uint64_t st)
{
    dense_ctx c = {B, in, out, NULL, NULL, NULL, NULL, NULL};
    const size_t nx = (size_t)B * in, nw = (size_t)in * out, ny = (size_t)B * out;
    c.x = tu_falloc(nx), c.w = tu_falloc(nw), c.b = tu_falloc(out), c.y = tu_falloc(ny);
    c.r = tu_falloc(ny);
    tu_fill_uniform(c.x, nx, -1.0f, 1.0f, st + 1);
    tu_fill_uniform(c.w, nw, -1.0f, 1.0f, st + 2);
    tu_fill_uniform(c.b, out, -1.0f, 1.0f, st + 3);
    tu_fill_uniform(c.r, ny, -1.0f, 1.0f, st + 4);
    char tag[64];
    snprintf(tag, sizeof tag, "dense B%d %d->%d", B, in, out);

    /* naive y = x w + b, dx = dy w^T, dw = x^T dy, db = sum_b dy (w is [in][out]) */
    double *y_ref = calloc(ny, sizeof(double)), *dx_ref = calloc(nx, sizeof(double));
    double *dw_ref = calloc(nw, sizeof(double)), *db_ref = calloc(out, sizeof(double));
    for (int b = 0; b < B; b++)
        for (int j = 0; j < out; j++) {
            double s = c.b[j];
            for (int i = 0; i < in; i++)
                s += (double)c.x[b * in + i] * c.w[i * out + j];
            y_ref[b * out + j] = s;
            db_ref[j] += c.r[b * out + j];
            for (int i = 0; i < in; i++) {
                dx_ref[b * in + i] += (double)c.r[b * out + j] * c.w[i * out + j];
                dw_ref[i * out + j] += (double)c.x[b * in + i] * c.r[b * out + j];
            }
        }
    cg_dense_forward(B, in, out, c.x, c.w, c.b, c.y);
    CHECKF(err_vs_ref(c.y, y_ref, ny) <= EXACT_TOL, "%s: forward vs naive", tag);
    /* no bias */
    cg_dense_forward(B, in, out, c.x, c.w, NULL, c.y);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int j = 0; j < out; j++)
            bad += fabs(c.y[b * out + j] - (y_ref[b * out + j] - c.b[j])) > 1e-5;
    CHECKF(bad == 0, "%s: forward without bias", tag);

    float *dx = tu_falloc(nx), *dw = tu_falloc(nw), *db = tu_falloc(out);
    for (size_t i = 0; i < nx; i++)
        dx[i] = NAN;
    float *r_copy = tu_fdup(c.r, ny);
    cg_dense_backward(B, in, out, c.x, c.w, c.r, dw, db, dx);
    CHECKF(memcmp(c.r, r_copy, sizeof(float) * ny) == 0, "%s: backward modified dy", tag);
    CHECKF(tu_all_finite(dx, nx), "%s: dx not overwritten", tag);
    CHECKF(err_vs_ref(dx, dx_ref, nx) <= EXACT_TOL, "%s: dx vs naive", tag);
    CHECKF(err_vs_ref(dw, dw_ref, nw) <= EXACT_TOL, "%s: dw vs naive", tag);
    CHECKF(err_vs_ref(db, db_ref, out) <= EXACT_TOL, "%s: db vs naive", tag);
    char what[96];
    if (fd_enabled) {
        snprintf(what, sizeof what, "%s dx", tag);
        note(&worst_dense_fd, tu_fd_check(what, c.x, dx, nx, NULL, 0, dense_loss, &c, &FD_LINEAR));
        snprintf(what, sizeof what, "%s dw", tag);
        note(&worst_dense_fd, tu_fd_check(what, c.w, dw, nw, NULL, 0, dense_loss, &c, &FD_LINEAR));
        snprintf(what, sizeof what, "%s db", tag);
        note(&worst_dense_fd, tu_fd_check(what, c.b, db, out, NULL, 0, dense_loss, &c, &FD_LINEAR));
    }

    /* accumulation: a second call doubles dw and db (started from zero) */
    cg_dense_backward(B, in, out, c.x, c.w, c.r, dw, db, NULL);
    double ew = 0.0, eb = 0.0;
    for (size_t i = 0; i < nw; i++)
        ew = fmax(ew, fabs(dw[i] - 2.0 * dw_ref[i]) / (1.0 + fabs(dw_ref[i])));
    for (int j = 0; j < out; j++)
        eb = fmax(eb, fabs(db[j] - 2.0 * db_ref[j]) / (1.0 + fabs(db_ref[j])));
    CHECKF(ew <= 1e-5 && eb <= 1e-5, "%s: second backward does not double dw/db (%.3g %.3g)",
           tag, ew, eb);
    float *dx2 = tu_falloc(nx);
    cg_dense_backward(B, in, out, c.x, c.w, c.r, NULL, NULL, dx2);
    CHECKF(memcmp(dx2, dx, sizeof(float) * nx) == 0, "%s: dx alone != dx", tag);

    free(y_ref), free(dx_ref), free(dw_ref), free(db_ref), free(dx), free(dw), free(db);
    free(dx2), free(r_copy), free(c.x), free(c.w), free(c.b), free(c.y), free(c.r);
}

static void test_dense(void)
{
    test_dense_case(3, 5, 4, 3000);
    test_dense_case(1, 7, 3, 3100);
    test_dense_case(5, 9, 1, 3200); /* a logit layer */
}

/* ======================================================================================== */
/* Activations */

typedef struct {
    cg_act act;
    float alpha;
    size_t n;
    float *x, *y, *r;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    memcpy(c->y, c->x, sizeof(float) * c->n);
    cg_act_forward(c->act, c->alpha, c->n, c->y);
    return tu_dot(c->y, c->r, c->n);
}

static double act_ref(cg_act a, double alpha, double x)
{
    switch (a) {
    case CG_ACT_NONE: return x;
    case CG_ACT_RELU: return x > 0 ? x : 0.0;
    case CG_ACT_LEAKY: return x > 0 ? x : alpha * x;
    case CG_ACT_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case CG_ACT_TANH: return tanh(x);
    case CG_ACT_SELU: return CG_SELU_SCALE * (x > 0 ? x : CG_SELU_ALPHA * expm1(x));
    }
    return NAN;
}

static double act_dref(cg_act a, double alpha, double x)
{
    switch (a) {
    case CG_ACT_NONE: return 1.0;
    case CG_ACT_RELU: return x > 0 ? 1.0 : 0.0;
    case CG_ACT_LEAKY: return x > 0 ? 1.0 : alpha;
    case CG_ACT_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-x));
        return s * (1.0 - s);
    }
    case CG_ACT_TANH: return 1.0 - tanh(x) * tanh(x);
    case CG_ACT_SELU: return CG_SELU_SCALE * (x > 0 ? 1.0 : CG_SELU_ALPHA * exp(x));
    }
    return NAN;
}

static void test_activations(void)
{
    static const struct {
        cg_act act;
        float alpha;
        const char *name;
    } acts[] = {{CG_ACT_NONE, 0.0f, "none"},
                {CG_ACT_RELU, 0.0f, "relu"},
                {CG_ACT_LEAKY, 0.3f, "leaky0.3"},
                {CG_ACT_SIGMOID, 0.0f, "sigmoid"},
                {CG_ACT_TANH, 0.0f, "tanh"},
                {CG_ACT_SELU, 0.0f, "selu"}};
    const size_t n = 3 * 5 * 7;
    for (size_t a = 0; a < sizeof acts / sizeof acts[0]; a++) {
        act_ctx c = {acts[a].act, acts[a].alpha, n, tu_falloc(n), tu_falloc(n), tu_falloc(n)};
        /* |x| in [0.05, 3]: h = 1e-3 never crosses the kink at 0 */
        tu_fill_away_from_zero(c.x, n, 0.05f, 3.0f, 4000 + a);
        tu_fill_uniform(c.r, n, -1.0f, 1.0f, 4100 + a);
        act_loss(&c); /* c.y = act(x) */
        double ef = 0.0, eb = 0.0;
        for (size_t i = 0; i < n; i++)
            ef = fmax(ef, fabs(c.y[i] - act_ref(acts[a].act, acts[a].alpha, c.x[i])));
        float *dx = tu_fdup(c.r, n);
        cg_act_backward(acts[a].act, acts[a].alpha, n, c.y, dx);
        for (size_t i = 0; i < n; i++)
            eb = fmax(eb, fabs(dx[i] - c.r[i] * act_dref(acts[a].act, acts[a].alpha, c.x[i])));
        CHECKF(ef <= 1e-6, "%s forward error %.3g", acts[a].name, ef);
        CHECKF(eb <= 1e-6, "%s backward vs closed-form derivative error %.3g", acts[a].name, eb);
        char what[64];
        snprintf(what, sizeof what, "act %s dx", acts[a].name);
        note(&worst_act_fd, tu_fd_check(what, c.x, dx, n, NULL, 0, act_loss, &c, &FD_POINTWISE));
        free(dx), free(c.x), free(c.y), free(c.r);
    }
    /* sigmoid saturation: finite, in [0, 1], correct limits, derivative finite */
    const float big[] = {100.0f, -100.0f, 1e4f, -1e4f, 88.8f, -88.8f, 0.0f};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        float s = cg_sigmoidf(big[i]);
        double ref = 1.0 / (1.0 + exp(-(double)big[i]));
        CHECKF(isfinite(s) && s >= 0.0f && s <= 1.0f && fabs(s - ref) <= 1e-7,
               "sigmoid(%g) = %g (expected %g)", big[i], s, ref);
        float y = big[i], d = 1.0f;
        cg_act_forward(CG_ACT_SIGMOID, 0.0f, 1, &y);
        cg_act_backward(CG_ACT_SIGMOID, 0.0f, 1, &y, &d);
        CHECKF(y == s && isfinite(d) && d >= 0.0f && d <= 0.25f, "sigmoid act at %g: %g %g",
               big[i], y, d);
        y = big[i];
        cg_act_forward(CG_ACT_TANH, 0.0f, 1, &y);
        CHECKF(isfinite(y) && fabs(y - tanh(big[i])) <= 1e-7, "tanh(%g) = %g", big[i], y);
    }
    /* SELU by hand: selu(1) = scale = 1.05070099; selu(-1) = scale alpha (e^-1 - 1) =
     * 1.75809934 * -0.63212056 = -1.11133074, derivative there scale alpha e^-1 = 0.64676860;
     * selu(0) = 0 with the left derivative scale alpha = 1.75809934 (y = 0 is not > 0); far
     * left it saturates at -scale alpha = -1.75809934 with a derivative that is 0 to float
     * precision. */
    const struct {
        float x;
        double y, d, tol_d;
    } sel[] = {{1.0f, 1.05070099, 1.05070099, 1e-6},
               {-1.0f, -1.11133074, 0.64676860, 1e-6},
               {0.0f, 0.0, 1.75809934, 1e-6},
               {-100.0f, -1.75809934, 0.0, 2.5e-7}};
    for (size_t i = 0; i < sizeof sel / sizeof sel[0]; i++) {
        float y = sel[i].x, d = 1.0f;
        cg_act_forward(CG_ACT_SELU, 0.0f, 1, &y);
        cg_act_backward(CG_ACT_SELU, 0.0f, 1, &y, &d);
        CHECKF(fabs(y - sel[i].y) <= 1e-6 && fabs(d - sel[i].d) <= sel[i].tol_d,
               "selu(%g) = %.8g (expected %.8g), derivative %.8g (expected %.8g)",
               (double)sel[i].x, y, sel[i].y, d, sel[i].d);
    }
}

/* ======================================================================================== */
/* Dropout */

typedef struct {
    int B, F;
    float rate;
    uint64_t seed, stream, first;
    float *x, *y, *r;
    uint8_t *mask;
} drop_ctx;

static double drop_loss(void *p)
{
    drop_ctx *c = p;
    const size_t n = (size_t)c->B * c->F;
    memcpy(c->y, c->x, sizeof(float) * n);
    cg_dropout_forward(c->B, c->F, c->rate, c->seed, c->stream, c->first, c->y, c->mask);
    return tu_dot(c->y, c->r, n);
}

static void test_dropout(void)
{
    const int B = 4, F = 37;
    const size_t n = (size_t)B * F;
    drop_ctx c = {B, F, 0.3f, 99, 5, 0, tu_falloc(n), tu_falloc(n), tu_falloc(n), calloc(n, 1)};
    tu_fill_away_from_zero(c.x, n, 0.1f, 2.0f, 5000);
    tu_fill_uniform(c.r, n, -1.0f, 1.0f, 5001);
    drop_loss(&c);
    const float scale = 1.0f / (1.0f - c.rate);
    size_t kept = 0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        kept += c.mask[i] != 0;
        bad += c.mask[i] > 1;
        bad += c.mask[i] ? c.y[i] != c.x[i] * scale : c.y[i] != 0.0f;
    }
    CHECKF(bad == 0, "dropout: %d outputs are not x/(1-rate) or 0 by the mask", bad);
    /* keep probability 0.7: 148 draws, sd ~ 5.6 */
    CHECKF(kept >= 80 && kept <= 125, "dropout kept %zu of %zu at rate 0.3", kept, n);

    /* the mask depends only on (seed, stream, global sample index) */
    for (int first = 1; first <= 3; first++) {
        const int nb = B - first;
        float *y2 = tu_fdup(c.x + (size_t)first * F, (size_t)nb * F);
        uint8_t *m2 = calloc((size_t)nb * F, 1);
        cg_dropout_forward(nb, F, c.rate, c.seed, c.stream, (uint64_t)first, y2, m2);
        CHECKF(memcmp(m2, c.mask + (size_t)first * F, (size_t)nb * F) == 0,
               "dropout: rows from first_sample %d differ from the full batch's", first);
        CHECKF(memcmp(y2, c.y + (size_t)first * F, sizeof(float) * nb * F) == 0,
               "dropout: outputs from first_sample %d differ", first);
        free(y2), free(m2);
    }
    /* another stream, another seed, another offset: other masks */
    uint8_t *m3 = calloc(n, 1);
    float *y3 = tu_fdup(c.x, n);
    cg_dropout_forward(B, F, c.rate, c.seed, c.stream + 1, 0, y3, m3);
    CHECK(memcmp(m3, c.mask, n) != 0);
    memcpy(y3, c.x, sizeof(float) * n);
    cg_dropout_forward(B, F, c.rate, c.seed + 1, c.stream, 0, y3, m3);
    CHECK(memcmp(m3, c.mask, n) != 0);
    memcpy(y3, c.x, sizeof(float) * n);
    cg_dropout_forward(B, F, c.rate, c.seed, c.stream, 7, y3, m3);
    CHECK(memcmp(m3, c.mask, n) != 0);
    /* rate 0: identity */
    memcpy(y3, c.x, sizeof(float) * n);
    cg_dropout_forward(B, F, 0.0f, c.seed, c.stream, 0, y3, m3);
    CHECK(memcmp(y3, c.x, sizeof(float) * n) == 0);
    free(m3), free(y3);

    /* backward: exactly dy * mask / (1 - rate), and FD with the mask fixed by its key */
    float *dx = tu_fdup(c.r, n);
    cg_dropout_backward(B, F, c.rate, c.mask, dx);
    bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += dx[i] != (c.mask[i] ? c.r[i] * scale : 0.0f);
    CHECKF(bad == 0, "dropout backward: %d entries wrong", bad);
    note(&worst_misc_fd, tu_fd_check("dropout dx", c.x, dx, n, NULL, 0, drop_loss, &c,
                                     &FD_POINTWISE));
    free(dx), free(c.x), free(c.y), free(c.r), free(c.mask);
}

/* ======================================================================================== */
/* BCE with logits */

typedef struct {
    int n;
    float *l, *t;
    float scale;
} bce_ctx;

static double bce_loss(void *p)
{
    bce_ctx *c = p;
    return cg_bce_logits(c->n, c->l, c->t, c->scale, NULL);
}

static void test_bce(void)
{
    enum { N = 24 };
    bce_ctx c = {N, tu_falloc(N), tu_falloc(N), 0.37f};
    tu_fill_uniform(c.l, N, -5.0f, 5.0f, 6000);
    for (int i = 0; i < N; i++)
        c.t[i] = i % 3 == 0 ? 1.0f : i % 3 == 1 ? 0.0f : 0.3f; /* hard and soft targets */
    float *d = tu_falloc(N);
    double v = cg_bce_logits(N, c.l, c.t, c.scale, d);
    /* naive: -(t log s + (1 - t) log(1 - s)), s = 1 / (1 + e^-l), fine at |l| <= 5 */
    double ref = 0.0, ed = 0.0;
    for (int i = 0; i < N; i++) {
        double s = 1.0 / (1.0 + exp(-(double)c.l[i]));
        ref += -(c.t[i] * log(s) + (1.0 - c.t[i]) * log(1.0 - s));
        ed = fmax(ed, fabs(d[i] - c.scale * (s - c.t[i])));
    }
    ref *= c.scale;
    CHECKF(fabs(v - ref) <= 1e-12 * fabs(ref), "bce %.15g vs naive %.15g", v, ref);
    CHECKF(ed <= 1e-7, "bce dlogit vs scale*(sigmoid - t): %.3g", ed);
    note(&worst_misc_fd, tu_fd_check("bce dlogit", c.l, d, N, NULL, 0, bce_loss, &c,
                                     &(tu_fd_opts){1e-2f, 1e-3, 1e-2, 0, 1}));
    /* the returned value does not depend on passing dlogit */
    CHECK(cg_bce_logits(N, c.l, c.t, c.scale, NULL) == v);

    /* saturation: the naive formula overflows (log 0) here; the stable one must give the
     * limits max(l,0) - l t (+ log1p(e^-|l|) ~ 4e-44 at 100) */
    const float L[] = {100.0f, 100.0f, -100.0f, -100.0f, 1e4f, -1e4f, 100.0f};
    const float T[] = {1.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, 0.25f};
    for (size_t i = 0; i < sizeof L / sizeof L[0]; i++) {
        float dl;
        double lv = cg_bce_logits(1, &L[i], &T[i], 1.0f, &dl);
        double lim = (L[i] > 0 ? L[i] : 0.0) - (double)L[i] * T[i];
        double dlim = (L[i] > 0 ? 1.0 : 0.0) - T[i];
        CHECKF(isfinite(lv) && fabs(lv - lim) <= 1e-12 * (1.0 + lim), "bce(l=%g, t=%g) = %.17g, "
               "limit %.17g", L[i], T[i], lv, lim);
        CHECKF(isfinite(dl) && fabs(dl - dlim) <= 1e-7, "dbce(l=%g, t=%g) = %g, limit %g", L[i],
               T[i], dl, dlim);
    }
    free(c.l), free(c.t), free(d);
}

/* ======================================================================================== */
/* Layout transposes */

static void test_transposes(void)
{
    const int B = 3, C = 4, HW = 5 * 7;
    const size_t n = (size_t)B * C * HW;
    float *flat = tu_falloc(n), *cbhw = tu_falloc(n), *back = tu_falloc(n);
    for (size_t i = 0; i < n; i++)
        flat[i] = (float)i;
    cg_flat_to_cbhw(B, C, HW, flat, cbhw);
    int bad = 0;
    for (int b = 0; b < B; b++)
        for (int ch = 0; ch < C; ch++)
            for (int p = 0; p < HW; p++)
                bad += cbhw[((size_t)ch * B + b) * HW + p] != flat[((size_t)b * C + ch) * HW + p];
    CHECKF(bad == 0, "flat_to_cbhw: %d misplaced entries", bad);
    cg_cbhw_to_flat(B, C, HW, cbhw, back);
    CHECK(memcmp(back, flat, sizeof(float) * n) == 0);
    /* and the other way round */
    tu_fill_uniform(cbhw, n, -1.0f, 1.0f, 7000);
    cg_cbhw_to_flat(B, C, HW, cbhw, flat);
    cg_flat_to_cbhw(B, C, HW, flat, back);
    CHECK(memcmp(back, cbhw, sizeof(float) * n) == 0);
    free(flat), free(cbhw), free(back);
}

int main(void)
{
    /* The finite differences are thousands of tiny problems: one thread (more only adds
     * OpenMP/BLAS synchronization, which is slow on a loaded machine). */
    cg_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    cg_ctx_set_threads(&ctx, 1);
    test_im2col();
    test_convolutions(1);
    test_dense();
    test_activations();
    test_dropout();
    test_bce();
    test_transposes();
    /* Again with 2 threads (OpenMP im2col/col2im, threaded sgemm): every check but the FDs,
     * on every third convolution configuration (threads are slow on a loaded machine). */
    cg_ctx_set_threads(&ctx, 2);
    fd_enabled = 0;
    test_im2col();
    test_convolutions(3);
    test_dense();
    printf("second pass with 2 threads done\n");
    printf("worst normalized FD error: conv %.2e, convt %.2e, dense %.2e, activations %.2e, "
           "dropout/bce %.2e (tolerance %.0e; %zu entries)\n",
           worst_conv_fd, worst_convt_fd, worst_dense_fd, worst_act_fd, worst_misc_fd, FD_TOL,
           tu_fd_global_checked);
    printf("worst error vs naive double loops: %.2e (tolerance %.0e)\n", worst_exact, EXACT_TOL);
    return tu_finish("test_layers");
}
