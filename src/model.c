#include "chargan/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

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
    t->trainable = 1;
    net->n_params += t->count;
    return net->n_tensors++;
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
    int c = in_c, h = in_h, w = in_w;
    int counts[8] = {0}, n_bn = 0, widest_bn = 0, bn_number[CG_MAX_LAYERS] = {0};
    size_t max_act = shape_size(c, h, w), max_col = 0;
    for (int i = 0; i < n_layers; i++) {
        cg_layer *L = &net->layers[i];
        const cg_layer_spec *s = &layers[i];
        L->spec = *s;
        L->in_c = c, L->in_h = h, L->in_w = w;
        L->w_tensor = L->b_tensor = -1;
        L->bn_gamma = L->bn_beta = L->bn_mean = L->bn_var = -1;
        L->cbn_gamma = L->cbn_beta = -1;
        L->e_tensor = -1;
        const int spatial = h > 0;
        static const char *prefix[] = {"dense", "unflatten", "flatten", "conv", "convt",
                                       "dropout", "labels", "project"};
        snprintf(L->name, sizeof L->name, "%s%d", prefix[s->op], counts[s->op]++);
        switch (s->op) {
        case CG_OP_DENSE: {
            if (spatial)
                return cg_fail(e, "%s layer %d (%s): dense needs a flat input; add a flatten",
                               name, i, L->name);
            int kd[2] = {c, s->out}, bd[1] = {s->out};
            L->w_tensor = add_tensor(net, L->name, "kernel", 2, kd, c, s->out, e);
            if (!s->bn)
                L->b_tensor = add_tensor(net, L->name, "bias", 1, bd, 0, 0, e);
            L->fwd_flops = L->bwd_w_flops = L->bwd_x_flops = 2.0 * c * s->out;
            c = s->out;
            break;
        }
        case CG_OP_UNFLATTEN:
            if (spatial || c != s->out * s->k * s->k)
                return cg_fail(e, "%s layer %d: cannot unflatten %d features to %dx%dx%d", name,
                               i, c, s->out, s->k, s->k);
            c = s->out, h = w = s->k;
            break;
        case CG_OP_FLATTEN:
            if (!spatial)
                return cg_fail(e, "%s layer %d: flatten needs a spatial input", name, i);
            c = c * h * w, h = w = 0;
            break;
        case CG_OP_CONV:
        case CG_OP_CONVT: {
            if (!spatial)
                return cg_fail(e, "%s layer %d (%s): convolution needs a spatial input", name,
                               i, L->name);
            cg_conv_geom *g = &L->geom;
            g->cin = c, g->hin = h, g->win = w, g->cout = s->out;
            g->k = s->k, g->stride = s->stride, g->pad = s->pad, g->out_pad = s->out_pad;
            const int kk = s->k * s->k;
            size_t col_rows, col_cols;
            if (s->op == CG_OP_CONV) {
                g->hout = cg_conv_out(h, s->k, s->stride, s->pad);
                g->wout = cg_conv_out(w, s->k, s->stride, s->pad);
                int kd[4] = {s->out, c, s->k, s->k};
                L->w_tensor = add_tensor(net, L->name, "kernel", 4, kd, c * kk, s->out * kk, e);
                col_rows = (size_t)c * kk, col_cols = (size_t)g->hout * g->wout;
            } else {
                g->hout = cg_convt_out(h, s->k, s->stride, s->pad, s->out_pad);
                g->wout = cg_convt_out(w, s->k, s->stride, s->pad, s->out_pad);
                /* Keras' fans for a transposed kernel (k, k, out, in): in = out*kk. */
                int kd[4] = {c, s->out, s->k, s->k};
                L->w_tensor = add_tensor(net, L->name, "kernel", 4, kd, s->out * kk, c * kk, e);
                col_rows = (size_t)s->out * kk, col_cols = (size_t)h * w;
            }
            if (g->hout < 1 || g->wout < 1)
                return cg_fail(e, "%s layer %d (%s): output size %dx%d", name, i, L->name,
                               g->hout, g->wout);
            int bd[1] = {s->out};
            if (!s->bn)
                L->b_tensor = add_tensor(net, L->name, "bias", 1, bd, 0, 0, e);
            /* The multiply-adds per sample: every output (conv) or input (transposed) pixel
             * meets a cin*cout*k*k block of weights. */
            double pixels = s->op == CG_OP_CONV ? (double)g->hout * g->wout : (double)h * w;
            L->fwd_flops = L->bwd_w_flops = L->bwd_x_flops = 2.0 * c * s->out * kk * pixels;
            if (col_rows * col_cols > max_col)
                max_col = col_rows * col_cols;
            c = s->out, h = g->hout, w = g->wout;
            break;
        }
        case CG_OP_LABELS:
            if (spatial || s->out < 1)
                return cg_fail(e, "%s layer %d: labels join flat inputs", name, i);
            c += s->out;
            break;
        case CG_OP_PROJECT: {
            if (spatial || s->out < 1 || s->bn)
                return cg_fail(e, "%s layer %d: projection needs flat input and classes", name,
                               i);
            int kd[2] = {c, 1}, bd[1] = {1}, ed[2] = {s->out, c};
            L->w_tensor = add_tensor(net, L->name, "kernel", 2, kd, c, 1, e);
            L->b_tensor = add_tensor(net, L->name, "bias", 1, bd, 0, 0, e);
            L->e_tensor = add_tensor(net, L->name, "embed", 2, ed, c, s->out, e);
            L->fwd_flops = L->bwd_w_flops = L->bwd_x_flops = 4.0 * c;
            c = 1;
            break;
        }
        case CG_OP_DROPOUT:
            if (spatial)
                return cg_fail(e, "%s layer %d: dropout is supported on flat inputs", name, i);
            if (!(s->rate >= 0.0f && s->rate < 1.0f))
                return cg_fail(e, "%s layer %d: dropout rate %g not in [0,1)", name, i,
                               (double)s->rate);
            break;
        }
        if (s->bn) {
            if (s->op != CG_OP_DENSE && s->op != CG_OP_CONV && s->op != CG_OP_CONVT)
                return cg_fail(e, "%s layer %d: batch norm follows dense or conv layers", name,
                               i);
            if (s->cbn < 0)
                return cg_fail(e, "%s layer %d: %d classes for conditional batch norm", name, i,
                               s->cbn);
            bn_number[i] = n_bn;
            char bn_name[24];
            snprintf(bn_name, sizeof bn_name, "bn%d", n_bn++);
            int cd[1] = {c};
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
            if (c > widest_bn)
                widest_bn = c;
        } else if (s->cbn) {
            return cg_fail(e, "%s layer %d: conditional batch norm needs batch norm", name, i);
        }
        if (net->n_tensors == CG_MAX_TENSORS)
            return cg_fail(e, "%s: too many tensors", name);
        L->out_c = c, L->out_h = h, L->out_w = w;
        size_t sz = shape_size(c, h, w);
        if (sz > max_act)
            max_act = sz;
    }
    /* The conditional batch norms' tensors come after all others, so that every other tensor
     * keeps its index and so its initialization stream (cg_net_init): with them at 0 the
     * network starts exactly as the one without them. Named after their batch norm: bnK's
     * are cbnK.gamma and cbnK.beta, [classes][channels], both 0 at the start. */
    for (int i = 0; i < n_layers; i++) {
        cg_layer *L = &net->layers[i];
        if (!L->spec.cbn)
            continue;
        char cbn_name[24];
        snprintf(cbn_name, sizeof cbn_name, "cbn%d", bn_number[i]);
        int cd[2] = {L->spec.cbn, L->out_c};
        L->cbn_gamma = add_tensor(net, cbn_name, "gamma", 2, cd, 0, 0, e);
        L->cbn_beta = add_tensor(net, cbn_name, "beta", 2, cd, 0, 0, e);
        if (L->cbn_beta < 0)
            return -1;
    }
    /* im2col scratch: at least one sample's columns, at most the requested cap, and never
     * more than the whole batch needs. */
    size_t cap = col_cap_floats ? col_cap_floats : (size_t)4 << 20;
    if (cap < max_col)
        cap = max_col;
    if (cap > max_col * (size_t)max_batch)
        cap = max_col * (size_t)max_batch;
    net->col_cap = cap;
    net->col = cg_alloc(sizeof(float) * (cap ? cap : 1));
    net->max_act = max_act;
    net->dbuf[0] = cg_alloc(sizeof(float) * max_act * (size_t)max_batch);
    net->dbuf[1] = cg_alloc(sizeof(float) * max_act * (size_t)max_batch);
    net->param = cg_alloc(sizeof(float) * net->n_params);
    net->grad = cg_alloc(sizeof(float) * net->n_params);
    net->adam_m = cg_alloc(sizeof(float) * net->n_params);
    net->adam_v = cg_alloc(sizeof(float) * net->n_params);
    net->fwd_seconds = cg_alloc(sizeof(double) * (size_t)n_layers);
    net->bwd_seconds = cg_alloc(sizeof(double) * (size_t)n_layers);
    net->widest_bn = widest_bn;
    net->bn_scratch = cg_alloc(sizeof(double) * (2 * (size_t)widest_bn + 1));
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
    if (!net->gsum)
        net->gsum = cg_alloc(sizeof(int64_t) * (net->n_params + 1));
    return 0;
}

void cg_net_zero_grads(cg_net *net)
{
    memset(net->grad, 0, sizeof(float) * net->n_params);
    if (net->gsum)
        memset(net->gsum, 0, sizeof(int64_t) * (net->n_params + 1));
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

/* acc[i] += fixed(src[i]) for n values (src cleared when `clear`); returns how many were not
 * usable (NaN, Inf, beyond the range), which add 0. Branch-free so that it vectorizes; built
 * for AVX2 as well as the baseline, chosen at run time (this loop bounds the cost of exact
 * sums). Serial: callers split large work over threads. */
__attribute__((target_clones("avx2", "default"))) static long
fold_span(float *restrict src, int64_t *restrict acc, long n, int clear)
{
    long bad = 0;
    for (long i = 0; i < n; i++) {
        const int64_t ok = fabsf(src[i]) < EXACT_RANGE; /* NaN compares false */
        bad += 1 - ok;
        acc[i] += to_fixed(src[i]) & -ok; /* unusable values add 0: no int64 overflow */
    }
    if (clear)
        memset(src, 0, sizeof(float) * (size_t)n);
    return bad;
}

/* acc += fixed(src), src = 0, for one tensor's group gradient; counts unusable values. */
static void fold_tensor(cg_net *net, int t)
{
    if (t < 0)
        return;
    const cg_tensor *T = &net->tensors[t];
    net->gsum[net->n_params] +=
        fold_span(net->grad + T->offset, net->gsum + T->offset, (long)T->count, 1);
}

/* Exact mode, a dense kernel's gradient: the sum over groups of X_g^T dY_g. Computing one full
 * kernel-sized product per group and folding it made large dense layers memory-bound (dcgan's
 * 6272x256 kernel: ~38 bytes moved per parameter per group). Instead the kernel is cut into
 * tiles of about EXACT_TILE values; for each tile every group's product and its fold stay in
 * cache. Tiles depend on the shapes only, so the result is the same on any rank count; the
 * tiles run on the OpenMP threads (disjoint parts of the kernel). The float gradient of the
 * kernel serves as scratch (GEMMs with beta 0 overwrite it). */
#define EXACT_TILE 16384
static void dense_kernel_grad_exact(cg_net *net, const cg_layer *L, const float *x,
                                    const float *dy, int B, int gs)
{
    const int in = L->in_c, out = L->out_c;
    const cg_tensor *T = &net->tensors[L->w_tensor];
    int rows = EXACT_TILE / out;
    rows = rows < 1 ? 1 : (rows > in ? in : rows);
    const int ntiles = (in + rows - 1) / rows;
    long bad = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
    for (int t = 0; t < ntiles; t++) {
        const int r0 = t * rows, nr = in - r0 < rows ? in - r0 : rows;
        float *tile = net->grad + T->offset + (size_t)r0 * out;
        int64_t *acc = net->gsum + T->offset + (size_t)r0 * out;
        for (int b0 = 0; b0 < B; b0 += gs) {
            cg_sgemm(1, 0, nr, out, gs, 1.0f, x + (size_t)b0 * in + r0, in,
                     dy + (size_t)b0 * out, out, 0.0f, tile, out);
            bad += fold_span(tile, acc, (long)nr * out, 0);
        }
    }
    net->gsum[net->n_params] += bad;
}

long cg_net_exact_finish(cg_net *net)
{
    if (!net->gsum)
        return 0;
    const long n = (long)net->n_params;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++)
        net->grad[i] = (float)((double)net->gsum[i] * (1.0 / EXACT_SCALE));
    return (long)net->gsum[n];
}

void cg_net_free(cg_net *net)
{
    cg_free(net->col);
    cg_free(net->dbuf[0]);
    cg_free(net->dbuf[1]);
    cg_free(net->param);
    cg_free(net->grad);
    cg_free(net->adam_m);
    cg_free(net->adam_v);
    cg_free(net->fwd_seconds);
    cg_free(net->bwd_seconds);
    cg_free(net->bn_scratch);
    cg_free(net->gsum);
    memset(net, 0, sizeof *net);
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
        const float limit = sqrtf(6.0f / (float)(T->fan_in + T->fan_out));
        const uint64_t stream = cg_stream(CG_RNG_INIT, stream_base + (uint64_t)t);
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
        if (L->spec.cbn)
            t->cbn_in[i] = cg_alloc(sizeof(float) * n);
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
        cg_free(t->cbn_in[i]);
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

const float *cg_net_forward(cg_net *net, cg_tape *t, const float *input, int B,
                            const cg_fwd_opts *o)
{
    const int gs = pass_size(net, B, o && o->training);
    const cg_sync sync = pass_sync(net, B, gs);
    t->batch = B;
    t->input = input;
    t->labels = o ? o->labels : NULL;
    t->training = o && o->training;
    const float *x = input;
    for (int i = 0; i < net->n_layers; i++) {
        const double t0 = cg_now();
        const cg_layer *L = &net->layers[i];
        const float *w = tensor_ptr(net, net->param, L->w_tensor);
        const float *b = tensor_ptr(net, net->param, L->b_tensor);
        float *y = t->act[i];
        const size_t out_n = shape_size(L->out_c, L->out_h, L->out_w) * (size_t)B;
        switch (L->spec.op) {
        case CG_OP_DENSE:
            for (int b0 = 0; b0 < B; b0 += gs)
                cg_dense_forward(gs, L->in_c, L->out_c, x + (size_t)b0 * L->in_c, w, b,
                                 y + (size_t)b0 * L->out_c);
            break;
        case CG_OP_UNFLATTEN:
            cg_flat_to_cbhw(B, L->out_c, L->out_h * L->out_w, x, y);
            break;
        case CG_OP_FLATTEN:
            cg_cbhw_to_flat(B, L->in_c, L->in_h * L->in_w, x, y);
            break;
        case CG_OP_CONV:
            for (int b0 = 0; b0 < B; b0 += gs)
                cg_conv2d_forward(&L->geom, B, b0, gs, x, w, b, y, net->col, net->col_cap);
            break;
        case CG_OP_CONVT:
            for (int b0 = 0; b0 < B; b0 += gs)
                cg_convt2d_forward(&L->geom, B, b0, gs, x, w, b, y, net->col, net->col_cap);
            break;
        case CG_OP_DROPOUT:
            memcpy(y, x, sizeof(float) * out_n);
            if (o && o->training && L->spec.rate > 0.0f)
                cg_dropout_forward(B, L->out_c, L->spec.rate, o->seed,
                                   cg_stream(CG_RNG_DROPOUT, o->step * CG_MAX_LAYERS + i),
                                   o->first_sample, y, t->mask[i]);
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
        if (L->spec.bn) {
            size_t cs, es, n;
            bn_view(L, B, &cs, &es, &n);
            float *par = net->param;
            cg_bn_forward(L->out_c, n, cs, es, y, t->xhat[i], t->invstd[i],
                          par + net->tensors[L->bn_gamma].offset,
                          par + net->tensors[L->bn_beta].offset,
                          par + net->tensors[L->bn_mean].offset,
                          par + net->tensors[L->bn_var].offset, 0.1f, 1e-5f,
                          o && o->training, &sync, net->bn_scratch);
            if (L->spec.cbn) { /* its input is kept for the gradient of its scale */
                memcpy(t->cbn_in[i], y, sizeof(float) * out_n);
                cg_cond_affine_forward(L->out_c, B, sample_size(L), cs, es, t->labels,
                                       t->cbn_in[i], par + net->tensors[L->cbn_gamma].offset,
                                       par + net->tensors[L->cbn_beta].offset, y);
            }
        }
        cg_act_forward(L->spec.act, L->spec.alpha, out_n, y);
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
    for (int i = 0; i < n; i++) {
        const size_t at = T->offset + (size_t)labels[i] * len;
        net->gsum[net->n_params] += fold_span(net->grad + at, net->gsum + at, (long)len, 1);
    }
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

void cg_net_backward(cg_net *net, cg_tape *t, const float *dout, int param_grads, float *dx)
{
    const int B = t->batch;
    const int gs = pass_size(net, B, t->training);
    const cg_sync sync = pass_sync(net, B, gs);
    const int exact = param_grads && net->gsum;
    const int stop = dx ? 0 : (param_grads ? first_param_layer(net) : net->n_layers);
    int cur = 0;
    float *g = net->dbuf[cur];
    memcpy(g, dout, sizeof(float) * cg_net_out_size(net) * (size_t)B);
    for (int i = net->n_layers - 1; i >= stop; i--) {
        const double t0 = cg_now();
        const cg_layer *L = &net->layers[i];
        const float *x = i ? t->act[i - 1] : t->input;
        const float *y = t->act[i];
        const size_t out_n = shape_size(L->out_c, L->out_h, L->out_w) * (size_t)B;
        cg_act_backward(L->spec.act, L->spec.alpha, out_n, y, g);
        if (L->spec.bn) {
            size_t cs, es, n;
            bn_view(L, B, &cs, &es, &n);
            if (L->spec.cbn) {
                /* No sample meets another here, so a group's gradient is its samples' sum:
                 * group by group, each folded before the next adds to it (as a dense bias). */
                const int hw = sample_size(L);
                float *dcg = param_grads ? net->grad + net->tensors[L->cbn_gamma].offset : NULL;
                float *dcb = param_grads ? net->grad + net->tensors[L->cbn_beta].offset : NULL;
                for (int b0 = 0; b0 < B; b0 += gs) {
                    const size_t at = (size_t)b0 * hw * es;
                    cg_cond_affine_backward(L->out_c, gs, hw, cs, es, t->labels + b0,
                                            t->cbn_in[i] + at,
                                            net->param + net->tensors[L->cbn_gamma].offset,
                                            g + at, dcg, dcb);
                    if (exact) {
                        fold_class_rows(net, L->cbn_gamma, t->labels + b0, gs);
                        fold_class_rows(net, L->cbn_beta, t->labels + b0, gs);
                    }
                }
            }
            /* Exact mode folds each group's sums from the part table; a pass that is not
             * cut into parts accumulates them in float and folds them once. */
            const int parts = exact && sync.groups > 1, direct = param_grads && !parts;
            cg_bn_backward(L->out_c, n, cs, es, g, t->xhat[i], t->invstd[i],
                           net->param + net->tensors[L->bn_gamma].offset,
                           direct ? net->grad + net->tensors[L->bn_gamma].offset : NULL,
                           direct ? net->grad + net->tensors[L->bn_beta].offset : NULL, &sync,
                           net->bn_scratch);
            for (int part = 0; parts && part < sync.local_groups; part++)
                fold_bn_part(net, L, &sync, part);
            if (exact && !parts) {
                fold_tensor(net, L->bn_beta);
                fold_tensor(net, L->bn_gamma);
            }
        }
        /* The input gradient goes to the caller at layer 0, is skipped at the stop layer,
         * and otherwise lands in the other ping-pong buffer. */
        float *gx = i == 0 ? dx : (i == stop ? NULL : net->dbuf[cur ^ 1]);
        const float *w = tensor_ptr(net, net->param, L->w_tensor);
        const float *e = tensor_ptr(net, net->param, L->e_tensor);
        float *dw = param_grads && L->w_tensor >= 0 ? net->grad + net->tensors[L->w_tensor].offset
                                                    : NULL;
        float *db = param_grads && L->b_tensor >= 0 ? net->grad + net->tensors[L->b_tensor].offset
                                                    : NULL;
        float *de = param_grads && L->e_tensor >= 0 ? net->grad + net->tensors[L->e_tensor].offset
                                                    : NULL;
        switch (L->spec.op) {
        case CG_OP_DENSE:
        case CG_OP_CONV:
        case CG_OP_CONVT:
        case CG_OP_PROJECT:
            /* Layers that sum over samples run group by group; in exact mode each group's
             * parameter gradient is folded into gsum before the next group adds to it. A dense
             * kernel is the exception: it is summed tile by tile over all groups at once, so
             * the group loop leaves it alone. */
            if (exact && dw && L->spec.op == CG_OP_DENSE) {
                dense_kernel_grad_exact(net, L, x, g, B, gs);
                dw = NULL;
            }
            for (int b0 = 0; b0 < B; b0 += gs) {
                const int F = L->in_c;
                if (L->spec.op == CG_OP_DENSE)
                    cg_dense_backward(gs, F, L->out_c, x + (size_t)b0 * F, w,
                                      g + (size_t)b0 * L->out_c, dw, db,
                                      gx ? gx + (size_t)b0 * F : NULL);
                else if (L->spec.op == CG_OP_CONV)
                    cg_conv2d_backward(&L->geom, B, b0, gs, x, w, g, dw, db, gx, net->col,
                                       net->col_cap);
                else if (L->spec.op == CG_OP_CONVT)
                    cg_convt2d_backward(&L->geom, B, b0, gs, x, w, g, dw, db, gx, net->col,
                                        net->col_cap);
                else
                    cg_project_backward(gs, F, x + (size_t)b0 * F, w, e, t->labels + b0,
                                        g + b0, dw, db, de, gx ? gx + (size_t)b0 * F : NULL);
                if (exact) {
                    fold_tensor(net, dw ? L->w_tensor : -1);
                    fold_tensor(net, db ? L->b_tensor : -1);
                    fold_tensor(net, de ? L->e_tensor : -1);
                }
            }
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
            if (t->training)
                cg_dropout_backward(B, L->out_c, L->spec.rate, t->mask[i], g);
            if (gx)
                memcpy(gx, g, sizeof(float) * out_n);
            break;
        case CG_OP_LABELS:
            if (gx)
                cg_labels_backward(B, L->in_c, L->spec.out, g, gx);
            break;
        }
        net->bwd_seconds[i] += cg_now() - t0;
        if (net->progress.fn)
            net->progress.fn(net->progress.user);
        if (i > 0 && gx) {
            cur ^= 1;
            g = gx;
        }
    }
}

double cg_net_fwd_flops(const cg_net *net)
{
    double f = 0.0;
    for (int i = 0; i < net->n_layers; i++)
        f += net->layers[i].fwd_flops;
    return f;
}

double cg_net_bwd_flops(const cg_net *net, int param_grads, int input_grad)
{
    const int stop = input_grad ? 0 : (param_grads ? first_param_layer(net) : net->n_layers);
    double f = 0.0;
    for (int i = net->n_layers - 1; i >= stop; i--) {
        const cg_layer *L = &net->layers[i];
        if (param_grads)
            f += L->bwd_w_flops;
        if (i > stop || input_grad)
            f += L->bwd_x_flops;
    }
    return f;
}
