#include "chargan/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chargan/prof.h"
#include "chargan/rng.h"

/* ---- building ------------------------------------------------------------------------ */

static size_t shape_size(int c, int h, int w) { return (size_t)c * (h ? h : 1) * (w ? w : 1); }

static int add_tensor(cg_net *net, const char *layer, const char *what, int ndim,
                      const int *dims, int fan_in, int fan_out, cg_error *e)
{
    if (net->n_tensors == CG_MAX_TENSORS)
        return cg_fail(e, "%s: more than %d parameter tensors", net->name, CG_MAX_TENSORS);
    cg_tensor *t = &net->tensors[net->n_tensors];
    snprintf(t->name, sizeof t->name, "%s.%s", layer, what);
    t->ndim = ndim;
    t->count = 1;
    for (int i = 0; i < ndim; i++) {
        t->dims[i] = dims[i];
        t->count *= (size_t)dims[i];
    }
    t->offset = net->n_params;
    t->fan_in = fan_in;
    t->fan_out = fan_out;
    t->init = 0.0f;
    t->init_kind = CG_INIT_GLOROT;
    t->trainable = 1;
    net->n_params += t->count;
    return net->n_tensors++;
}

/* Shapes and counters carried from layer to layer while a network is built. */
typedef struct {
    const char *name;             /* of the network, for messages */
    int c, h, w;                  /* the shape entering the next layer (h = w = 0: flat) */
    int counts[8];                /* layers of each op so far, numbering their names */
    int n_bn, widest_bn;          /* batch norms so far and the most channels of one */
    int bn_number[CG_MAX_LAYERS]; /* layer i's batch norm is bn<bn_number[i]> */
    size_t max_act, max_col;      /* largest activation and im2col matrix of one sample */
} build_state;

/* Ops by cg_op and activations by cg_act: layer names and the JSON description use them. */
static const char *const op_names[] = {"dense", "unflatten", "flatten", "conv", "convt",
                                       "dropout", "labels", "project"};
static const char *const act_names[] = {"none", "relu", "leaky_relu", "sigmoid", "tanh", "selu"};

/* Names the layer after its op and records its input shape; it has no tensors yet. */
static void begin_layer(cg_layer *L, const cg_layer_spec *s, build_state *st)
{
    L->spec = *s;
    L->in_c = st->c, L->in_h = st->h, L->in_w = st->w;
    L->w_tensor = L->b_tensor = -1;
    L->bn_gamma = L->bn_beta = L->bn_mean = L->bn_var = -1;
    L->cbn_gamma = L->cbn_beta = -1;
    L->e_tensor = -1;
    snprintf(L->name, sizeof L->name, "%s%d", op_names[s->op], st->counts[s->op]++);
}

static int build_dense(cg_net *net, cg_layer *L, int i, build_state *st, cg_error *e)
{
    const cg_layer_spec *s = &L->spec;
    const int c = st->c;
    if (st->h > 0)
        return cg_fail(e, "%s layer %d (%s): dense needs a flat input; add a flatten",
                       st->name, i, L->name);
    int kd[2] = {c, s->out}, bd[1] = {s->out};
    L->w_tensor = add_tensor(net, L->name, "kernel", 2, kd, c, s->out, e);
    if (!s->bn)
        L->b_tensor = add_tensor(net, L->name, "bias", 1, bd, 0, 0, e);
    L->fwd_flops = L->bwd_w_flops = L->bwd_x_flops = 2.0 * c * s->out;
    st->c = s->out;
    return 0;
}

static int build_unflatten(const cg_layer *L, int i, build_state *st, cg_error *e)
{
    const cg_layer_spec *s = &L->spec;
    if (st->h > 0 || st->c != s->out * s->k * s->k)
        return cg_fail(e, "%s layer %d: cannot unflatten %d features to %dx%dx%d", st->name,
                       i, st->c, s->out, s->k, s->k);
    st->c = s->out, st->h = st->w = s->k;
    return 0;
}

static int build_flatten(int i, build_state *st, cg_error *e)
{
    if (!(st->h > 0))
        return cg_fail(e, "%s layer %d: flatten needs a spatial input", st->name, i);
    st->c = st->c * st->h * st->w, st->h = st->w = 0;
    return 0;
}

/* The output size and kernel of a convolution (or a transposed one), and the rows and
 * columns of its im2col matrix for one sample. */
static void conv_shape(cg_net *net, cg_layer *L, const build_state *st, size_t *col_rows,
                       size_t *col_cols, cg_error *e)
{
    const cg_layer_spec *s = &L->spec;
    const int c = st->c, h = st->h, w = st->w, kk = s->k * s->k;
    cg_conv_geom *g = &L->geom;
    if (s->op == CG_OP_CONV) {
        g->hout = cg_conv_out(h, s->k, s->stride, s->pad);
        g->wout = cg_conv_out(w, s->k, s->stride, s->pad);
        int kd[4] = {s->out, c, s->k, s->k};
        L->w_tensor = add_tensor(net, L->name, "kernel", 4, kd, c * kk, s->out * kk, e);
        *col_rows = (size_t)c * kk, *col_cols = (size_t)g->hout * g->wout;
    } else {
        g->hout = cg_convt_out(h, s->k, s->stride, s->pad, s->out_pad);
        g->wout = cg_convt_out(w, s->k, s->stride, s->pad, s->out_pad);
        /* Keras' fans for a transposed kernel (k, k, out, in): in = out*kk. */
        int kd[4] = {c, s->out, s->k, s->k};
        L->w_tensor = add_tensor(net, L->name, "kernel", 4, kd, s->out * kk, c * kk, e);
        *col_rows = (size_t)s->out * kk, *col_cols = (size_t)h * w;
    }
}

static int build_conv(cg_net *net, cg_layer *L, int i, build_state *st, cg_error *e)
{
    const cg_layer_spec *s = &L->spec;
    const int c = st->c, h = st->h, w = st->w, kk = s->k * s->k;
    if (!(h > 0))
        return cg_fail(e, "%s layer %d (%s): convolution needs a spatial input", st->name, i,
                       L->name);
    cg_conv_geom *g = &L->geom;
    g->cin = c, g->hin = h, g->win = w, g->cout = s->out;
    g->k = s->k, g->stride = s->stride, g->pad = s->pad, g->out_pad = s->out_pad;
    size_t col_rows, col_cols;
    conv_shape(net, L, st, &col_rows, &col_cols, e);
    if (g->hout < 1 || g->wout < 1)
        return cg_fail(e, "%s layer %d (%s): output size %dx%d", st->name, i, L->name,
                       g->hout, g->wout);
    int bd[1] = {s->out};
    if (!s->bn)
        L->b_tensor = add_tensor(net, L->name, "bias", 1, bd, 0, 0, e);
    /* The multiply-adds per sample: every output (conv) or input (transposed) pixel meets a
     * cin*cout*k*k block of weights. */
    double pixels = s->op == CG_OP_CONV ? (double)g->hout * g->wout : (double)h * w;
    L->fwd_flops = L->bwd_w_flops = L->bwd_x_flops = 2.0 * c * s->out * kk * pixels;
    if (col_rows * col_cols > st->max_col)
        st->max_col = col_rows * col_cols;
    st->c = s->out, st->h = g->hout, st->w = g->wout;
    return 0;
}

static int build_labels(const cg_layer *L, int i, build_state *st, cg_error *e)
{
    if (st->h > 0 || L->spec.out < 1)
        return cg_fail(e, "%s layer %d: labels join flat inputs", st->name, i);
    st->c += L->spec.out;
    return 0;
}

static int build_project(cg_net *net, cg_layer *L, int i, build_state *st, cg_error *e)
{
    const cg_layer_spec *s = &L->spec;
    const int c = st->c;
    if (st->h > 0 || s->out < 1 || s->bn)
        return cg_fail(e, "%s layer %d: projection needs flat input and classes", st->name, i);
    int kd[2] = {c, 1}, bd[1] = {1}, ed[2] = {s->out, c};
    L->w_tensor = add_tensor(net, L->name, "kernel", 2, kd, c, 1, e);
    L->b_tensor = add_tensor(net, L->name, "bias", 1, bd, 0, 0, e);
    L->e_tensor = add_tensor(net, L->name, "embed", 2, ed, c, s->out, e);
    L->fwd_flops = L->bwd_w_flops = L->bwd_x_flops = 4.0 * c;
    st->c = 1;
    return 0;
}

static int build_dropout(const cg_layer *L, int i, const build_state *st, cg_error *e)
{
    if (st->h > 0)
        return cg_fail(e, "%s layer %d: dropout is supported on flat inputs", st->name, i);
    if (!(L->spec.rate >= 0.0f && L->spec.rate < 1.0f))
        return cg_fail(e, "%s layer %d: dropout rate %g not in [0,1)", st->name, i,
                       (double)L->spec.rate);
    return 0;
}

/* The batch norm after a dense or convolution layer: bnK's gamma, beta and running
 * averages over the layer's output channels. */
static int build_bn(cg_net *net, cg_layer *L, int i, build_state *st, cg_error *e)
{
    const cg_layer_spec *s = &L->spec;
    if (!s->bn && s->cbn)
        return cg_fail(e, "%s layer %d: conditional batch norm needs batch norm", st->name, i);
    if (!s->bn)
        return 0;
    if (s->op != CG_OP_DENSE && s->op != CG_OP_CONV && s->op != CG_OP_CONVT)
        return cg_fail(e, "%s layer %d: batch norm follows dense or conv layers", st->name, i);
    if (s->cbn < 0)
        return cg_fail(e, "%s layer %d: %d classes for conditional batch norm", st->name, i,
                       s->cbn);
    st->bn_number[i] = st->n_bn;
    char bn_name[24];
    snprintf(bn_name, sizeof bn_name, "bn%d", st->n_bn++);
    int cd[1] = {st->c};
    L->bn_gamma = add_tensor(net, bn_name, "gamma", 1, cd, 0, 0, e);
    L->bn_beta = add_tensor(net, bn_name, "beta", 1, cd, 0, 0, e);
    L->bn_mean = add_tensor(net, bn_name, "running_mean", 1, cd, 0, 0, e);
    L->bn_var = add_tensor(net, bn_name, "running_var", 1, cd, 0, 0, e);
    if (L->bn_var < 0)
        return -1;
    net->tensors[L->bn_gamma].init = 1.0f;
    net->tensors[L->bn_var].init = 1.0f;
    net->tensors[L->bn_mean].trainable = 0;
    net->tensors[L->bn_var].trainable = 0;
    if (st->c > st->widest_bn)
        st->widest_bn = st->c;
    return 0;
}

/* Layer i: its shapes, its tensors and its batch norm's. */
static int build_layer(cg_net *net, int i, const cg_layer_spec *s, build_state *st,
                       cg_error *e)
{
    cg_layer *L = &net->layers[i];
    begin_layer(L, s, st);
    int rc = 0;
    switch (s->op) {
    case CG_OP_DENSE:
        rc = build_dense(net, L, i, st, e);
        break;
    case CG_OP_UNFLATTEN:
        rc = build_unflatten(L, i, st, e);
        break;
    case CG_OP_FLATTEN:
        rc = build_flatten(i, st, e);
        break;
    case CG_OP_CONV:
    case CG_OP_CONVT:
        rc = build_conv(net, L, i, st, e);
        break;
    case CG_OP_LABELS:
        rc = build_labels(L, i, st, e);
        break;
    case CG_OP_PROJECT:
        rc = build_project(net, L, i, st, e);
        break;
    case CG_OP_DROPOUT:
        rc = build_dropout(L, i, st, e);
        break;
    }
    if (rc || (rc = build_bn(net, L, i, st, e)))
        return rc;
    if (s->init != CG_INIT_GLOROT && s->init != CG_INIT_LECUN)
        return cg_fail(e, "%s layer %d: unknown kernel initialization %d", st->name, i, s->init);
    if (L->w_tensor >= 0)
        net->tensors[L->w_tensor].init_kind = s->init;
    if (net->n_tensors == CG_MAX_TENSORS)
        return cg_fail(e, "%s: too many tensors", st->name);
    L->out_c = st->c, L->out_h = st->h, L->out_w = st->w;
    size_t sz = shape_size(st->c, st->h, st->w);
    if (sz > st->max_act)
        st->max_act = sz;
    return 0;
}

/* The conditional batch norms' tensors come after all others, so that every other tensor
 * keeps its index and so its initialization stream (cg_net_init): with them at 0 the network
 * starts exactly as the one without them. Named after their batch norm: bnK's are cbnK.gamma
 * and cbnK.beta, [classes][channels], both 0 at the start. */
static int build_cbn(cg_net *net, const build_state *st, cg_error *e)
{
    for (int i = 0; i < net->n_layers; i++) {
        cg_layer *L = &net->layers[i];
        if (!L->spec.cbn)
            continue;
        char cbn_name[24];
        snprintf(cbn_name, sizeof cbn_name, "cbn%d", st->bn_number[i]);
        int cd[2] = {L->spec.cbn, L->out_c};
        L->cbn_gamma = add_tensor(net, cbn_name, "gamma", 2, cd, 0, 0, e);
        L->cbn_beta = add_tensor(net, cbn_name, "beta", 2, cd, 0, 0, e);
        if (L->cbn_beta < 0)
            return -1;
    }
    return 0;
}

/* Parameters, their gradient and moments, and every scratch buffer a step needs. */
static void alloc_buffers(cg_net *net, const build_state *st, size_t col_cap_floats)
{
    const size_t max_col = st->max_col, max_act = st->max_act, B = (size_t)net->max_batch;
    /* im2col scratch: at least one sample's columns, at most the requested cap, and never
     * more than the whole batch needs. */
    size_t cap = col_cap_floats ? col_cap_floats : (size_t)4 << 20;
    if (cap < max_col)
        cap = max_col;
    if (cap > max_col * B)
        cap = max_col * B;
    net->work.cap = cap;
    net->work.col = cg_alloc(sizeof(float) * (cap ? cap : 1));
    net->max_act = max_act;
    net->dbuf[0] = cg_alloc(sizeof(float) * max_act * B);
    net->dbuf[1] = cg_alloc(sizeof(float) * max_act * B);
    net->param = cg_alloc(sizeof(float) * net->n_params);
    net->grad = cg_alloc(sizeof(float) * net->n_params);
    net->adam_m = cg_alloc(sizeof(float) * net->n_params);
    net->adam_v = cg_alloc(sizeof(float) * net->n_params);
    net->fwd_seconds = cg_alloc(sizeof(double) * (size_t)net->n_layers);
    net->bwd_seconds = cg_alloc(sizeof(double) * (size_t)net->n_layers);
    net->widest_bn = st->widest_bn;
    net->bn_scratch = cg_alloc(sizeof(double) * (2 * (size_t)st->widest_bn + 1));
}

int cg_net_build(cg_net *net, const char *name, const cg_layer_spec *layers, int n_layers,
                 int in_c, int in_h, int in_w, int max_batch, size_t col_cap_floats,
                 cg_error *e)
{
    memset(net, 0, sizeof *net);
    snprintf(net->name, sizeof net->name, "%s", name);
    if (n_layers < 1 || n_layers > CG_MAX_LAYERS)
        return cg_fail(e, "%s: %d layers (1..%d supported)", name, n_layers, CG_MAX_LAYERS);
    if (max_batch < 1)
        return cg_fail(e, "%s: batch %d must be positive", name, max_batch);
    net->n_layers = n_layers;
    net->max_batch = max_batch;
    build_state st = {.name = name, .c = in_c, .h = in_h, .w = in_w};
    st.max_act = shape_size(in_c, in_h, in_w);
    for (int i = 0; i < n_layers; i++) {
        int rc = build_layer(net, i, &layers[i], &st, e);
        if (rc)
            return rc;
    }
    if (build_cbn(net, &st, e))
        return -1;
    alloc_buffers(net, &st, col_cap_floats);
    return 0;
}

int cg_net_set_groups(cg_net *net, int groups, int first_group, int local_groups, int batch,
                      cg_error *e)
{
    if (groups < 1 || local_groups < 1 || first_group < 0 ||
        first_group + local_groups > groups || batch % local_groups)
        return cg_fail(e, "%s: %d groups (%d local from %d) do not fit a batch of %d",
                       net->name, groups, local_groups, first_group, batch);
    net->group = batch / local_groups;
    net->sync.groups = groups;
    net->sync.first_group = first_group;
    net->sync.local_groups = local_groups;
    cg_free(net->bn_scratch);
    net->bn_scratch = cg_alloc(sizeof(double) * (2 * (size_t)net->widest_bn * groups + 1));
    if (!net->gsum) {
        net->gsum = cg_alloc(sizeof(int64_t) * (net->n_params + 1));
        net->unset = cg_alloc((size_t)net->n_tensors);
    }
    return 0;
}

/* Whether tensor t's sums are written whole by the first fold of a step: trainable tensors,
 * but not the class tables of conditional batch norm, whose rows are folded class by class. */
static int folded_whole(const cg_net *net, int t)
{
    for (int i = 0; i < net->n_layers; i++)
        if (t == net->layers[i].cbn_gamma || t == net->layers[i].cbn_beta)
            return 0;
    return net->tensors[t].trainable;
}

/* Whether tensor t is a dense layer's kernel, whose float gradient in exact mode is scratch
 * that beta-0 GEMMs overwrite (dense_kernel_grad_exact). */
static int dense_kernel(const cg_net *net, int t)
{
    for (int i = 0; i < net->n_layers; i++)
        if (t == net->layers[i].w_tensor && net->layers[i].spec.op == CG_OP_DENSE)
            return 1;
    return 0;
}

void cg_net_zero_grads(cg_net *net)
{
    if (!net->gsum) {
        memset(net->grad, 0, sizeof(float) * net->n_params);
        return;
    }
    /* Sums written by their first fold need no clearing pass (2x the float gradient's size,
     * one of the step's largest memory passes); the others are cleared here. So are the float
     * gradients, but the dense kernels' (most of the parameters of every preset). */
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        if (!dense_kernel(net, t))
            memset(net->grad + T->offset, 0, sizeof(float) * T->count);
        net->unset[t] = (uint8_t)folded_whole(net, t);
        if (!net->unset[t])
            memset(net->gsum + T->offset, 0, sizeof(int64_t) * T->count);
    }
    net->gsum[net->n_params] = 0;
}

/* Fixed point of the exact sums: 2^32 units per 1.0. A value v becomes round(v * 2^32) by
 * adding 1.5 * 2^52 in double (which rounds to an integer for |v * 2^32| < 2^51) and reading
 * the bits, a conversion the compiler can vectorize. */
#define EXACT_SCALE 4294967296.0
#define EXACT_RANGE 524288.0f /* 2^19 */
static const double exact_magic = 6755399441055744.0;

static inline int64_t to_fixed(float v)
{
    double d = (double)v * EXACT_SCALE + exact_magic;
    int64_t bits, mbits;
    memcpy(&bits, &d, sizeof bits);
    memcpy(&mbits, &exact_magic, sizeof mbits);
    return bits - mbits;
}

/* acc[i] += fixed(src[i]) (`add`) or acc[i] = fixed(src[i]) for n values; returns how many
 * were not usable (NaN, Inf, beyond the range), which count as 0. Branch-free so that it
 * vectorizes; `add` is a constant in each caller below, so its branch folds away. */
static inline long fold_core(const float *restrict src, int64_t *restrict acc, long n, int add)
{
    long bad = 0;
    for (long i = 0; i < n; i++) {
        const int64_t ok = fabsf(src[i]) < EXACT_RANGE; /* NaN compares false */
        const int64_t v = to_fixed(src[i]) & -ok; /* unusable values: 0, no int64 overflow */
        bad += 1 - ok;
        acc[i] = add ? acc[i] + v : v;
    }
    return bad;
}

/* fold_core, built for AVX2 as well as the baseline and chosen at run time (this loop bounds
 * the cost of exact sums). Serial: callers split large work over threads. */
__attribute__((target_clones("avx2", "default"))) static long
fold_add(const float *restrict src, int64_t *restrict acc, long n)
{
    return fold_core(src, acc, n, 1);
}

__attribute__((target_clones("avx2", "default"))) static long
fold_set(const float *restrict src, int64_t *restrict acc, long n)
{
    return fold_core(src, acc, n, 0);
}

/* fold_add or fold_set, then src cleared when `clear`. */
static long fold_span(float *src, int64_t *acc, long n, int add, int clear)
{
    const long bad = add ? fold_add(src, acc, n) : fold_set(src, acc, n);
    if (clear)
        memset(src, 0, sizeof(float) * (size_t)n);
    return bad;
}

/* One tensor's group gradient into its sums (written by the step's first fold, added to
 * after), src = 0; counts unusable values. */
static void fold_tensor(cg_net *net, int t)
{
    if (t < 0)
        return;
    const cg_tensor *T = &net->tensors[t];
    const cg_prof_mark m = cg_prof_begin(net->work.prof);
    net->gsum[net->n_params] += fold_span(net->grad + T->offset, net->gsum + T->offset,
                                          (long)T->count, !net->unset[t], 1);
    net->unset[t] = 0;
    cg_prof_end(net->work.prof, CG_PROF_FOLD, m);
}

/* Exact mode, a dense kernel's gradient: the sum over groups of X_g^T dY_g. Computing one full
 * kernel-sized product per group and folding it made large dense layers memory-bound (dcgan's
 * 6272x256 kernel: ~38 bytes moved per parameter per group). Instead the kernel is cut into
 * tiles of about EXACT_TILE values, EXACT_TILE_COLS columns wide at most; for each tile every
 * group's product and its fold stay in cache. Both sides of a tile stay long: one row-thin tile
 * across a 6272-wide kernel would repack the whole of dY for every two rows. Tiles depend on
 * the shapes only, so the result is the same on any rank count; the tiles run on the OpenMP
 * threads (disjoint parts of the kernel). The float gradient of the kernel serves as scratch
 * (GEMMs with beta 0 overwrite it). */
#define EXACT_TILE 16384
#define EXACT_TILE_COLS 256
static void dense_kernel_grad_exact(cg_net *net, const cg_layer *L, const float *x,
                                    const float *dy, int B, int gs)
{
    const int in = L->in_c, out = L->out_c;
    const cg_tensor *T = &net->tensors[L->w_tensor];
    const int cols = out < EXACT_TILE_COLS ? out : EXACT_TILE_COLS;
    int rows = EXACT_TILE / cols;
    rows = rows < 1 ? 1 : (rows > in ? in : rows);
    const int row_tiles = (in + rows - 1) / rows, col_tiles = (out + cols - 1) / cols;
    const int first_adds = !net->unset[L->w_tensor];
    long bad = 0;
    cg_prof *prof = net->work.prof;
    const cg_prof_mark m = cg_prof_begin(prof);
    double t_gemm = 0.0, t_fold = 0.0; /* thread time, to split the wall time between them */
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad, t_gemm, t_fold)
    for (int t = 0; t < row_tiles * col_tiles; t++) {
        const int r0 = t / col_tiles * rows, nr = in - r0 < rows ? in - r0 : rows;
        const int c0 = t % col_tiles * cols, nc = out - c0 < cols ? out - c0 : cols;
        float *tile = net->grad + T->offset + (size_t)r0 * out + c0;
        int64_t *acc = net->gsum + T->offset + (size_t)r0 * out + c0;
        for (int b0 = 0; b0 < B; b0 += gs) {
            const double t0 = prof ? cg_now() : 0.0;
            cg_sgemm(1, 0, nr, nc, gs, 1.0f, x + (size_t)b0 * in + r0, in,
                     dy + (size_t)b0 * out + c0, out, 0.0f, tile, out);
            const double t1 = prof ? cg_now() : 0.0;
            for (int r = 0; r < nr; r++)
                bad += fold_span(tile + (size_t)r * out, acc + (size_t)r * out, nc,
                                 first_adds || b0 > 0, 0);
            t_gemm += t1 - t0;
            t_fold += (prof ? cg_now() : 0.0) - t1;
        }
    }
    net->gsum[net->n_params] += bad;
    net->unset[L->w_tensor] = 0;
    if (prof) {
        const double wall = cg_now() - m.t0, share = t_gemm / (t_gemm + t_fold + 1e-30);
        prof->seconds[CG_PROF_GEMM] += wall * share;
        prof->seconds[CG_PROF_FOLD] += wall * (1.0 - share);
    }
}

long cg_net_exact_finish(cg_net *net)
{
    if (!net->gsum)
        return 0;
    const long n = (long)net->n_params;
    const cg_prof_mark m = cg_prof_begin(net->work.prof);
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++)
        net->grad[i] = cg_exact_value(net->gsum[i]);
    cg_prof_end(net->work.prof, CG_PROF_FOLD, m);
    return (long)net->gsum[n];
}

long cg_net_exact_unusable(const cg_net *net)
{
    return net->gsum ? (long)net->gsum[net->n_params] : 0;
}

void cg_net_share_scratch(cg_net *a, cg_net *b)
{
    cg_net *col_owner = a->work.cap >= b->work.cap ? a : b, *col_user = col_owner == a ? b : a;
    cg_free(col_user->work.col);
    col_user->work.col = col_owner->work.col;
    col_user->borrowed_col = 1;
    const size_t act_a = a->max_act * (size_t)a->max_batch;
    const size_t act_b = b->max_act * (size_t)b->max_batch;
    cg_net *d_owner = act_a >= act_b ? a : b, *d_user = d_owner == a ? b : a;
    for (int k = 0; k < 2; k++) {
        cg_free(d_user->dbuf[k]);
        d_user->dbuf[k] = d_owner->dbuf[k];
    }
    d_user->borrowed_dbuf = 1;
}

void cg_net_free(cg_net *net)
{
    if (!net->borrowed_col)
        cg_free(net->work.col);
    if (!net->borrowed_dbuf) {
        cg_free(net->dbuf[0]);
        cg_free(net->dbuf[1]);
    }
    cg_free(net->param);
    cg_free(net->grad);
    cg_free(net->adam_m);
    cg_free(net->adam_v);
    cg_free(net->fwd_seconds);
    cg_free(net->bwd_seconds);
    cg_free(net->bn_scratch);
    cg_free(net->gsum);
    cg_free(net->unset);
    memset(net, 0, sizeof *net);
}

/* Keras' lecun_normal (model.h). Element i redraws beyond two standard deviations, its k-th
 * draw at index i * LECUN_DRAWS + k, so every element is a function of its index alone; all
 * LECUN_DRAWS beyond (probability 0.0455^16 ~ 4e-22) leave 0. */
#define LECUN_DRAWS 16
static void init_lecun(float *p, size_t n, int fan_in, uint64_t seed, uint64_t stream)
{
    const double sd = sqrt(1.0 / fan_in) / 0.87962566103423978;
    for (size_t i = 0; i < n; i++) {
        float z = 0.0f;
        for (uint64_t k = 0; k < LECUN_DRAWS; k++) {
            const float d = cg_rng_normal(seed, stream, (uint64_t)i * LECUN_DRAWS + k);
            if (fabsf(d) <= 2.0f) {
                z = d;
                break;
            }
        }
        p[i] = (float)(z * sd);
    }
}

void cg_net_init(cg_net *net, uint64_t seed, uint64_t stream_base)
{
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        float *p = net->param + T->offset;
        if (T->fan_in == 0) {
            for (size_t i = 0; i < T->count; i++)
                p[i] = T->init;
            continue;
        }
        const uint64_t stream = cg_stream(CG_RNG_INIT, stream_base + (uint64_t)t);
        if (T->init_kind == CG_INIT_LECUN) {
            init_lecun(p, T->count, T->fan_in, seed, stream);
            continue;
        }
        const float limit = sqrtf(6.0f / (float)(T->fan_in + T->fan_out));
        for (size_t i = 0; i < T->count; i++)
            p[i] = (2.0f * cg_rng_uniform(seed, stream, i) - 1.0f) * limit;
    }
}

size_t cg_net_out_size(const cg_net *net)
{
    const cg_layer *L = &net->layers[net->n_layers - 1];
    return shape_size(L->out_c, L->out_h, L->out_w);
}

size_t cg_net_in_size(const cg_net *net)
{
    const cg_layer *L = &net->layers[0];
    return shape_size(L->in_c, L->in_h, L->in_w);
}

int cg_net_find_tensor(const cg_net *net, const char *name)
{
    for (int t = 0; t < net->n_tensors; t++)
        if (!strcmp(net->tensors[t].name, name))
            return t;
    return -1;
}

int cg_tape_alloc(const cg_net *net, cg_tape *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < net->n_layers; i++) {
        const cg_layer *L = &net->layers[i];
        size_t n = shape_size(L->out_c, L->out_h, L->out_w) * (size_t)net->max_batch;
        t->act[i] = cg_alloc(sizeof(float) * n);
        if (L->spec.op == CG_OP_DROPOUT)
            t->mask[i] = cg_alloc(n);
        if (L->spec.bn) {
            t->xhat[i] = cg_alloc(sizeof(float) * n);
            t->invstd[i] = cg_alloc(sizeof(float) * (size_t)L->out_c);
        }
    }
    return 0;
}

void cg_tape_free(cg_tape *t)
{
    for (int i = 0; i < CG_MAX_LAYERS; i++) {
        cg_free(t->act[i]);
        cg_free(t->mask[i]);
        cg_free(t->xhat[i]);
        cg_free(t->invstd[i]);
    }
    memset(t, 0, sizeof *t);
}

/* ---- forward and backward ------------------------------------------------------------ */

static const float *tensor_ptr(const cg_net *net, const float *base, int t)
{
    return t < 0 ? NULL : base + net->tensors[t].offset;
}

/* Where the elements of one batch-norm channel lie: CBHW keeps a channel contiguous, flat
 * [B][F] interleaves channels. */
static void bn_view(const cg_layer *L, int B, size_t *cs, size_t *es, size_t *n)
{
    if (L->out_h > 0) {
        *n = (size_t)B * L->out_h * L->out_w;
        *cs = *n, *es = 1;
    } else {
        *n = (size_t)B;
        *cs = 1, *es = (size_t)L->out_c;
    }
}

/* Elements of one sample in one channel of a layer's output. */
static int sample_size(const cg_layer *L) { return L->out_h > 0 ? L->out_h * L->out_w : 1; }

/* Samples per pass of the linear layers: the group size for training passes in exact mode
 * (so every group's GEMMs have the same shapes on any rank count), else the whole batch. */
static int pass_size(const cg_net *net, int B, int training)
{
    return training && net->group > 0 && B % net->group == 0 ? net->group : B;
}

/* The batch-norm synchronization of a pass: the part layout only when the pass runs in the
 * groups it describes. */
static cg_sync pass_sync(const cg_net *net, int B, int gs)
{
    cg_sync s = net->sync;
    if (gs != net->group || B / gs != s.local_groups)
        s.groups = s.first_group = s.local_groups = 0;
    return s;
}

/* What the layers of one forward or backward pass share. */
typedef struct {
    cg_net *net;
    cg_tape *t;
    int B, gs;          /* samples of the pass, and samples per pass of the linear layers */
    cg_sync sync;       /* the batch-norm synchronization of the pass */
    int param_grads;    /* backward: parameter gradients are accumulated */
    int exact;          /* backward: ... and folded into the exact sums */
    const float *scale; /* backward: per-sample factor of the parameter gradients' seeds */
} net_pass;

/* Dropout of layer i over B samples, masks keyed by each sample's global index. */
static void dropout_forward(const cg_layer *L, const cg_fwd_opts *o, int i, int B, float *y,
                            uint8_t *mask)
{
    const uint64_t stream = cg_stream(CG_RNG_DROPOUT, o->step * CG_MAX_LAYERS + i);
    const size_t F = (size_t)L->out_c;
    if (!o->sample_ids) {
        cg_dropout_forward(B, L->out_c, L->spec.rate, o->seed, stream, o->first_sample, y, mask);
        return;
    }
    for (int b = 0; b < B; b++)
        cg_dropout_forward(1, L->out_c, L->spec.rate, o->seed, stream, o->sample_ids[b],
                           y + b * F, mask + b * F);
}

/* Layer i's own op, from x into y. */
static void op_forward(const net_pass *p, const cg_fwd_opts *o, int i, const float *x, float *y)
{
    cg_net *net = p->net;
    cg_tape *t = p->t;
    const cg_layer *L = &net->layers[i];
    const int B = p->B, gs = p->gs;
    const float *w = tensor_ptr(net, net->param, L->w_tensor);
    const float *b = tensor_ptr(net, net->param, L->b_tensor);
    const size_t out_n = shape_size(L->out_c, L->out_h, L->out_w) * (size_t)B;
    switch (L->spec.op) {
    case CG_OP_DENSE: {
        const cg_prof_mark m = cg_prof_begin(net->work.prof);
        for (int b0 = 0; b0 < B; b0 += gs)
            cg_dense_forward(gs, L->in_c, L->out_c, x + (size_t)b0 * L->in_c, w, b,
                             y + (size_t)b0 * L->out_c);
        cg_prof_end(net->work.prof, CG_PROF_GEMM, m);
        break;
    }
    case CG_OP_UNFLATTEN:
    case CG_OP_FLATTEN: {
        const cg_prof_mark m = cg_prof_begin(net->work.prof);
        if (L->spec.op == CG_OP_UNFLATTEN)
            cg_flat_to_cbhw(B, L->out_c, L->out_h * L->out_w, x, y);
        else
            cg_cbhw_to_flat(B, L->in_c, L->in_h * L->in_w, x, y);
        cg_prof_end(net->work.prof, CG_PROF_COLS, m);
        break;
    }
    case CG_OP_CONV:
        for (int b0 = 0; b0 < B; b0 += gs)
            cg_conv2d_forward(&L->geom, B, b0, gs, x, w, b, y, &net->work);
        break;
    case CG_OP_CONVT:
        for (int b0 = 0; b0 < B; b0 += gs)
            cg_convt2d_forward(&L->geom, B, b0, gs, x, w, b, y, &net->work);
        break;
    case CG_OP_DROPOUT:
        memcpy(y, x, sizeof(float) * out_n);
        if (o && o->training && L->spec.rate > 0.0f)
            dropout_forward(L, o, i, B, y, t->mask[i]);
        else
            memset(t->mask[i], 1, out_n);
        break;
    case CG_OP_LABELS:
        cg_labels_forward(B, L->in_c, L->spec.out, x, t->labels, y);
        break;
    case CG_OP_PROJECT:
        cg_project_forward(B, L->in_c, x, w, b, tensor_ptr(net, net->param, L->e_tensor),
                           t->labels, y);
        break;
    }
}

/* Layer i's batch norm, in place on its output y, and its conditional affine if any. */
static void bn_layer_forward(const net_pass *p, const cg_fwd_opts *o, int i, float *y)
{
    cg_net *net = p->net;
    cg_tape *t = p->t;
    const cg_layer *L = &net->layers[i];
    const int B = p->B;
    size_t cs, es, n;
    bn_view(L, B, &cs, &es, &n);
    const cg_prof_mark m = cg_prof_begin(net->work.prof);
    float *par = net->param;
    cg_bn_forward(L->out_c, n, cs, es, y, t->xhat[i], t->invstd[i],
                  par + net->tensors[L->bn_gamma].offset, par + net->tensors[L->bn_beta].offset,
                  par + net->tensors[L->bn_mean].offset, par + net->tensors[L->bn_var].offset,
                  CG_BN_MOMENTUM, CG_BN_EPS, o && o->training, &p->sync, net->bn_scratch);
    if (L->spec.cbn) /* its input is recomputed from xhat for the backward pass */
        cg_cond_affine_forward(L->out_c, B, sample_size(L), cs, es, t->labels, y,
                               par + net->tensors[L->cbn_gamma].offset,
                               par + net->tensors[L->cbn_beta].offset, y);
    cg_prof_end(net->work.prof, CG_PROF_BN, m);
}

const float *cg_net_forward(cg_net *net, cg_tape *t, const float *input, int B,
                            const cg_fwd_opts *o)
{
    const int gs = pass_size(net, B, o && o->training);
    const net_pass p = {.net = net, .t = t, .B = B, .gs = gs, .sync = pass_sync(net, B, gs)};
    t->batch = B;
    t->input = input;
    t->labels = o ? o->labels : NULL;
    t->training = o && o->training;
    const float *x = input;
    for (int i = 0; i < net->n_layers; i++) {
        const double t0 = cg_now();
        const cg_layer *L = &net->layers[i];
        float *y = t->act[i];
        op_forward(&p, o, i, x, y);
        if (L->spec.bn)
            bn_layer_forward(&p, o, i, y);
        const cg_prof_mark m = cg_prof_begin(net->work.prof);
        cg_act_forward(L->spec.act, L->spec.alpha,
                       shape_size(L->out_c, L->out_h, L->out_w) * (size_t)B, y);
        cg_prof_end(net->work.prof, CG_PROF_ACT, m);
        x = y;
        net->fwd_seconds[i] += cg_now() - t0;
    }
    return x;
}

static int first_param_layer(const cg_net *net)
{
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].w_tensor >= 0 || net->layers[i].b_tensor >= 0 ||
            net->layers[i].bn_gamma >= 0)
            return i;
    return net->n_layers;
}

/* Exact mode: a [classes][n] tensor's gradient from one group, non-zero only in the rows of
 * the group's classes: only those rows are folded (a class met again folds zeros). */
static void fold_class_rows(cg_net *net, int t, const int32_t *labels, int n)
{
    const cg_tensor *T = &net->tensors[t];
    const size_t len = (size_t)T->dims[1];
    const cg_prof_mark m = cg_prof_begin(net->work.prof);
    for (int i = 0; i < n; i++) {
        const size_t at = T->offset + (size_t)labels[i] * len;
        net->gsum[net->n_params] += fold_span(net->grad + at, net->gsum + at, (long)len, 1, 1);
    }
    cg_prof_end(net->work.prof, CG_PROF_FOLD, m);
}

/* Exact mode: the group's part of the layer's batch-norm gradients, from the per-part sums
 * cg_bn_backward leaves in the scratch table (dbeta, then dgamma). */
static void fold_bn_part(cg_net *net, const cg_layer *L, const cg_sync *s, int part)
{
    const int C = L->out_c;
    const double *row = net->bn_scratch + 2 * (size_t)C * (s->first_group + part);
    float *db = net->grad + net->tensors[L->bn_beta].offset;
    float *dg = net->grad + net->tensors[L->bn_gamma].offset;
    for (int c = 0; c < C; c++)
        db[c] = (float)row[c], dg[c] = (float)row[C + c];
    fold_tensor(net, L->bn_beta);
    fold_tensor(net, L->bn_gamma);
}

/* Conditional batch norm's affine, backward in place on g. No sample meets another here, so a
 * group's gradient is its samples' sum: group by group, each folded before the next adds to
 * it (as a dense bias). */
static void cbn_backward(const net_pass *p, int i, float *g, size_t cs, size_t es)
{
    cg_net *net = p->net;
    const cg_tape *t = p->t;
    const cg_layer *L = &net->layers[i];
    const int hw = sample_size(L);
    float *dcg = p->param_grads ? net->grad + net->tensors[L->cbn_gamma].offset : NULL;
    float *dcb = p->param_grads ? net->grad + net->tensors[L->cbn_beta].offset : NULL;
    const float *par = net->param;
    for (int b0 = 0; b0 < p->B; b0 += p->gs) {
        const size_t at = (size_t)b0 * hw * es;
        const cg_bn_output x = {t->xhat[i] + at, par + net->tensors[L->bn_gamma].offset,
                                par + net->tensors[L->bn_beta].offset};
        cg_cond_affine_backward(L->out_c, p->gs, hw, cs, es, t->labels + b0, &x,
                                par + net->tensors[L->cbn_gamma].offset, g + at, dcg, dcb);
        if (p->exact) {
            fold_class_rows(net, L->cbn_gamma, t->labels + b0, p->gs);
            fold_class_rows(net, L->cbn_beta, t->labels + b0, p->gs);
        }
    }
}

/* Layer i's batch norm (and conditional affine), backward in place on g. */
static void bn_layer_backward(const net_pass *p, int i, float *g)
{
    cg_net *net = p->net;
    const cg_tape *t = p->t;
    const cg_layer *L = &net->layers[i];
    size_t cs, es, n;
    bn_view(L, p->B, &cs, &es, &n);
    const cg_prof_mark m = cg_prof_begin(net->work.prof);
    if (L->spec.cbn)
        cbn_backward(p, i, g, cs, es);
    /* Exact mode folds each group's sums from the part table; a pass that is not cut into
     * parts accumulates them in float and folds them once. */
    const int parts = p->exact && p->sync.groups > 1, direct = p->param_grads && !parts;
    cg_bn_backward(L->out_c, n, cs, es, g, t->xhat[i], t->invstd[i],
                   net->param + net->tensors[L->bn_gamma].offset,
                   direct ? net->grad + net->tensors[L->bn_gamma].offset : NULL,
                   direct ? net->grad + net->tensors[L->bn_beta].offset : NULL, &p->sync,
                   net->bn_scratch);
    for (int part = 0; parts && part < p->sync.local_groups; part++)
        fold_bn_part(net, L, &p->sync, part);
    if (p->exact && !parts) {
        fold_tensor(net, L->bn_beta);
        fold_tensor(net, L->bn_gamma);
    }
    cg_prof_end(net->work.prof, CG_PROF_BN, m);
}

/* Where tensor t's gradient accumulates in this pass; NULL when it is not wanted. */
static float *grad_ptr(const net_pass *p, int t)
{
    return p->param_grads && t >= 0 ? p->net->grad + p->net->tensors[t].offset : NULL;
}

/* A layer's parameter gradients in one pass, NULL where none is accumulated. */
typedef struct {
    float *dw, *db, *de;
} layer_grads;

/* g[sample b] *= scale[b] for a layer's output gradient of B samples. */
static void scale_samples(const cg_layer *L, int B, const float *scale, float *g)
{
    const size_t hw = (size_t)sample_size(L);
    const int C = L->out_c;
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++) {
            /* CBHW: channel c of sample b; flat [B][C]: feature c of sample b */
            float *v = L->out_h > 0 ? g + ((size_t)c * B + b) * hw : g + (size_t)b * C + c;
            for (size_t j = 0; j < hw; j++)
                v[j] *= scale[b];
        }
}

/* One group of samples, from b0, of a layer that sums over samples. */
static void group_backward(const net_pass *p, const cg_layer *L, int b0, const float *x,
                           float *g, const layer_grads *d, float *gx)
{
    cg_net *net = p->net;
    const int B = p->B, gs = p->gs, F = L->in_c;
    const float *w = tensor_ptr(net, net->param, L->w_tensor);
    const float *e = tensor_ptr(net, net->param, L->e_tensor);
    if (L->spec.op == CG_OP_DENSE) {
        const cg_prof_mark m = cg_prof_begin(net->work.prof);
        cg_dense_backward(gs, F, L->out_c, x + (size_t)b0 * F, w, g + (size_t)b0 * L->out_c,
                          d->dw, d->db, gx ? gx + (size_t)b0 * F : NULL);
        cg_prof_end(net->work.prof, CG_PROF_GEMM, m);
    } else if (L->spec.op == CG_OP_CONV)
        cg_conv2d_backward(&L->geom, B, b0, gs, x, w, g, d->dw, d->db, gx, &net->work);
    else if (L->spec.op == CG_OP_CONVT)
        cg_convt2d_backward(&L->geom, B, b0, gs, x, w, g, d->dw, d->db, gx, &net->work);
    else
        cg_project_backward(gs, F, x + (size_t)b0 * F, w, e, p->t->labels + b0, g + b0, d->dw,
                            d->db, d->de, gx ? gx + (size_t)b0 * F : NULL);
}

/* Dense, convolution and projection layers. They sum over samples, so they run group by
 * group; in exact mode each group's parameter gradient is folded into gsum before the next
 * group adds to it. A dense kernel is the exception: it is summed tile by tile over all
 * groups at once, so the group loop leaves it alone. */
static void linear_backward(const net_pass *p, const cg_layer *L, const float *x, float *g,
                            float *gx)
{
    cg_net *net = p->net;
    layer_grads d = {grad_ptr(p, L->w_tensor), grad_ptr(p, L->b_tensor),
                     grad_ptr(p, L->e_tensor)};
    if (p->scale) {
        /* The input gradient of the seeds as given, then g (no longer needed) scaled in place
         * for the parameter gradients. */
        const layer_grads none = {NULL, NULL, NULL};
        for (int b0 = 0; gx && b0 < p->B; b0 += p->gs)
            group_backward(p, L, b0, x, g, &none, gx);
        scale_samples(L, p->B, p->scale, g);
        gx = NULL;
    }
    if (p->exact && d.dw && L->spec.op == CG_OP_DENSE) {
        dense_kernel_grad_exact(net, L, x, g, p->B, p->gs);
        d.dw = NULL;
    }
    for (int b0 = 0; b0 < p->B; b0 += p->gs) {
        group_backward(p, L, b0, x, g, &d, gx);
        if (p->exact) {
            fold_tensor(net, d.dw ? L->w_tensor : -1);
            fold_tensor(net, d.db ? L->b_tensor : -1);
            fold_tensor(net, d.de ? L->e_tensor : -1);
        }
        if (net->progress.fn && b0 + p->gs < p->B) /* a layer's groups are long waits */
            net->progress.fn(net->progress.user, -1);
    }
}

/* Layer i's own op, backward: g (its output gradient) into gx (NULL: not needed). */
static void op_backward(const net_pass *p, int i, const float *x, float *g, float *gx)
{
    const cg_layer *L = &p->net->layers[i];
    const int B = p->B;
    switch (L->spec.op) {
    case CG_OP_DENSE:
    case CG_OP_CONV:
    case CG_OP_CONVT:
    case CG_OP_PROJECT:
        linear_backward(p, L, x, g, gx);
        break;
    case CG_OP_UNFLATTEN:
        if (gx)
            cg_cbhw_to_flat(B, L->out_c, L->out_h * L->out_w, g, gx);
        break;
    case CG_OP_FLATTEN:
        if (gx)
            cg_flat_to_cbhw(B, L->in_c, L->in_h * L->in_w, g, gx);
        break;
    case CG_OP_DROPOUT:
        if (p->t->training)
            cg_dropout_backward(B, L->out_c, L->spec.rate, p->t->mask[i], g);
        if (gx)
            memcpy(gx, g, sizeof(float) * shape_size(L->out_c, L->out_h, L->out_w) * (size_t)B);
        break;
    case CG_OP_LABELS:
        if (gx)
            cg_labels_backward(B, L->in_c, L->spec.out, g, gx);
        break;
    }
}

/* Exact mode, after layer L's backward pass: any of its tensors whose sums no fold wrote this
 * step reads zero (its gradient is final once the layer is done). */
static void seal_layer(cg_net *net, const cg_layer *L)
{
    int ts[CG_LAYER_TENSORS];
    for (int k = 0, n = cg_layer_tensors(L, ts); k < n; k++)
        if (ts[k] >= 0 && net->unset[ts[k]]) {
            const cg_tensor *T = &net->tensors[ts[k]];
            memset(net->gsum + T->offset, 0, sizeof(int64_t) * T->count);
            net->unset[ts[k]] = 0;
        }
}

static void net_backward(cg_net *net, cg_tape *t, const float *dout, int param_grads,
                         const float *scale, float *dx)
{
    const int B = t->batch;
    const int gs = pass_size(net, B, t->training);
    const net_pass p = {.net = net, .t = t, .B = B, .gs = gs, .sync = pass_sync(net, B, gs),
                        .param_grads = param_grads, .exact = param_grads && net->gsum,
                        .scale = scale};
    const int stop = dx ? 0 : (param_grads ? first_param_layer(net) : net->n_layers);
    int cur = 0;
    float *g = net->dbuf[cur];
    memcpy(g, dout, sizeof(float) * cg_net_out_size(net) * (size_t)B);
    for (int i = net->n_layers - 1; i >= stop; i--) {
        const double t0 = cg_now();
        const cg_layer *L = &net->layers[i];
        const size_t out_n = shape_size(L->out_c, L->out_h, L->out_w) * (size_t)B;
        const cg_prof_mark m = cg_prof_begin(net->work.prof);
        cg_act_backward(L->spec.act, L->spec.alpha, out_n, t->act[i], g);
        cg_prof_end(net->work.prof, CG_PROF_ACT, m);
        if (L->spec.bn)
            bn_layer_backward(&p, i, g);
        /* The input gradient goes to the caller at layer 0, is skipped at the stop layer,
         * and otherwise lands in the other ping-pong buffer. */
        float *gx = i == 0 ? dx : (i == stop ? NULL : net->dbuf[cur ^ 1]);
        op_backward(&p, i, i ? t->act[i - 1] : t->input, g, gx);
        if (p.exact)
            seal_layer(net, L);
        net->bwd_seconds[i] += cg_now() - t0;
        if (net->progress.fn)
            net->progress.fn(net->progress.user, i);
        if (i > 0 && gx) {
            cur ^= 1;
            g = gx;
        }
    }
}

void cg_net_backward(cg_net *net, cg_tape *t, const float *dout, int param_grads, float *dx)
{
    net_backward(net, t, dout, param_grads, NULL, dx);
}

int cg_layer_tensors(const cg_layer *L, int ts[CG_LAYER_TENSORS])
{
    const int all[CG_LAYER_TENSORS] = {L->w_tensor, L->b_tensor, L->bn_gamma, L->bn_beta,
                                       L->bn_mean,  L->bn_var,   L->e_tensor};
    memcpy(ts, all, sizeof all);
    return CG_LAYER_TENSORS;
}

int cg_net_samples_apart(const cg_net *net)
{
    for (int i = 0; i < net->n_layers; i++)
        if (net->layers[i].spec.bn)
            return 0;
    return 1;
}

void cg_net_backward_scaled(cg_net *net, cg_tape *t, const float *dout, const float *scale,
                            float *dx)
{
    net_backward(net, t, dout, 1, scale, dx);
}

double cg_net_fwd_flops(const cg_net *net)
{
    double f = 0.0;
    for (int i = 0; i < net->n_layers; i++)
        f += net->layers[i].fwd_flops;
    return f;
}

double cg_layer_bwd_flops(const cg_net *net, int i, int param_grads, int input_grad)
{
    const int stop = input_grad ? 0 : (param_grads ? first_param_layer(net) : net->n_layers);
    const cg_layer *L = &net->layers[i];
    if (i < stop)
        return 0.0;
    return (param_grads ? L->bwd_w_flops : 0.0) + (i > stop || input_grad ? L->bwd_x_flops : 0.0);
}

double cg_net_bwd_flops(const cg_net *net, int param_grads, int input_grad)
{
    double f = 0.0;
    for (int i = 0; i < net->n_layers; i++)
        f += cg_layer_bwd_flops(net, i, param_grads, input_grad);
    return f;
}

/* ---- description --------------------------------------------------------------------- */

static json_t *shape_json(int c, int h, int w)
{
    return h > 0 ? json_pack("[iii]", c, h, w) : json_pack("[i]", c);
}

/* The names of a layer's tensors by role; roles the layer lacks are left out. */
static json_t *tensors_json(const cg_net *net, const cg_layer *L)
{
    const struct {
        const char *role;
        int t;
    } r[] = {{"kernel", L->w_tensor},       {"bias", L->b_tensor},
             {"bn_gamma", L->bn_gamma},     {"bn_beta", L->bn_beta},
             {"bn_running_mean", L->bn_mean}, {"bn_running_var", L->bn_var},
             {"cbn_gamma", L->cbn_gamma},   {"cbn_beta", L->cbn_beta},
             {"embed", L->e_tensor}};
    json_t *o = json_object();
    for (size_t i = 0; o && i < sizeof r / sizeof r[0]; i++)
        if (r[i].t >= 0 &&
            json_object_set_new(o, r[i].role, json_string(net->tensors[r[i].t].name))) {
            json_decref(o);
            o = NULL;
        }
    return o;
}

/* Batch norm as inference computes it (model.c's bn_layer_forward, nn.c's cg_bn_forward),
 * then the conditional affine, both between the layer's op and its activation. */
static int add_bn_json(json_t *o, const cg_layer_spec *s)
{
    int rc = json_object_set_new(o, "bn_eps", cg_json_float(CG_BN_EPS)) ||
             json_object_set_new(o, "bn_momentum", cg_json_float(CG_BN_MOMENTUM)) ||
             json_object_set_new(o, "bn_inference",
                                 json_string("y = (x - running_mean) * invstd * gamma + beta, "
                                             "invstd = 1 / sqrt(running_var + eps) per channel"));
    if (!rc && s->cbn)
        rc = json_object_set_new(o, "cbn_inference",
                                 json_string("y = x * (1 + cbn_gamma[class]) + cbn_beta[class], "
                                             "after the batch norm"));
    return rc ? -1 : 0;
}

static json_t *layer_json(const cg_net *net, const cg_layer *L)
{
    const cg_layer_spec *s = &L->spec;
    json_t *o = json_pack("{s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:o, s:o, s:i, s:i, s:o, "
                          "s:o, s:o}",
                          "name", L->name, "op", op_names[s->op], "out", s->out, "k", s->k,
                          "stride", s->stride, "pad", s->pad, "out_pad", s->out_pad, "act",
                          act_names[s->act], "alpha", cg_json_float(s->alpha), "rate",
                          cg_json_float(s->rate), "bn", s->bn, "cbn", s->cbn, "input",
                          shape_json(L->in_c, L->in_h, L->in_w), "output",
                          shape_json(L->out_c, L->out_h, L->out_w), "tensors",
                          tensors_json(net, L));
    if (o && s->bn && add_bn_json(o, s)) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

json_t *cg_net_layers_json(const cg_net *net)
{
    json_t *a = json_array();
    for (int i = 0; a && i < net->n_layers; i++)
        if (json_array_append_new(a, layer_json(net, &net->layers[i]))) {
            json_decref(a);
            a = NULL;
        }
    return a;
}
