#include "chargan/model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "chargan/rng.h"

/* ---- presets: the model tables ------------------------------------------------------- */

#define DENSE(n, a) {CG_OP_DENSE, (n), 0, 0, 0, 0, (a), 0.0f, 0.0f}
#define DENSE_LEAKY(n, al) {CG_OP_DENSE, (n), 0, 0, 0, 0, CG_ACT_LEAKY, (al), 0.0f}
#define UNFLATTEN(c, hw) {CG_OP_UNFLATTEN, (c), (hw), 0, 0, 0, CG_ACT_NONE, 0.0f, 0.0f}
#define FLATTEN() {CG_OP_FLATTEN, 0, 0, 0, 0, 0, CG_ACT_NONE, 0.0f, 0.0f}
#define CONV(c, k, s, p, a, al) {CG_OP_CONV, (c), (k), (s), (p), 0, (a), (al), 0.0f}
#define CONVT(c, k, s, p, op, a, al) {CG_OP_CONVT, (c), (k), (s), (p), (op), (a), (al), 0.0f}
#define DROPOUT(r) {CG_OP_DROPOUT, 0, 0, 0, 0, 0, CG_ACT_NONE, 0.0f, (r)}

/* The Keras DCGAN the project started from, with every channel width divided by `div`
 * (1: "seed", 4: "small"). Keras' 'same' padding for k = 3 is pad 1; for stride 2 the
 * transposed convolutions need output padding 1 to double the size exactly. */
static void seed_family(cg_preset *p, int div)
{
    const int c0 = 256 / div, c1 = 128 / div;
    const cg_layer_spec g[] = {
        DENSE(c0 * 7 * 7, CG_ACT_NONE),
        UNFLATTEN(c0, 7),
        CONVT(c0, 3, 2, 1, 1, CG_ACT_LEAKY, 0.3f),
        CONVT(c1, 3, 2, 1, 1, CG_ACT_LEAKY, 0.3f),
        CONVT(1, 3, 1, 1, 0, CG_ACT_SIGMOID, 0.0f),
    };
    const cg_layer_spec d[] = {
        CONV(c0, 3, 2, 1, CG_ACT_RELU, 0.0f),
        CONV(c1, 3, 2, 1, CG_ACT_RELU, 0.0f),
        FLATTEN(),
        DENSE(64, CG_ACT_RELU),
        DROPOUT(0.2f),
        DENSE(1, CG_ACT_NONE),
    };
    p->n_g = (int)(sizeof g / sizeof g[0]);
    p->n_d = (int)(sizeof d / sizeof d[0]);
    memcpy(p->g, g, sizeof g);
    memcpy(p->d, d, sizeof d);
}

int cg_preset_get(const char *name, int noise_dim, cg_preset *p)
{
    memset(p, 0, sizeof *p);
    p->noise_dim = noise_dim > 0 ? noise_dim : 150;
    if (!strcmp(name, "seed")) {
        p->name = "seed";
        seed_family(p, 1);
    } else if (!strcmp(name, "small")) {
        p->name = "small";
        seed_family(p, 4);
    } else {
        return -1;
    }
    return 0;
}

const char *cg_preset_names(void) { return "seed, small"; }

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
    int counts[6] = {0};
    size_t max_act = shape_size(c, h, w), max_col = 0;
    for (int i = 0; i < n_layers; i++) {
        cg_layer *L = &net->layers[i];
        const cg_layer_spec *s = &layers[i];
        L->spec = *s;
        L->in_c = c, L->in_h = h, L->in_w = w;
        L->w_tensor = L->b_tensor = -1;
        const int spatial = h > 0;
        static const char *prefix[] = {"dense", "unflatten", "flatten", "conv", "convt",
                                       "dropout"};
        snprintf(L->name, sizeof L->name, "%s%d", prefix[s->op], counts[s->op]++);
        switch (s->op) {
        case CG_OP_DENSE: {
            if (spatial)
                return cg_fail(e, "%s layer %d (%s): dense needs a flat input; add a flatten",
                               name, i, L->name);
            int kd[2] = {c, s->out}, bd[1] = {s->out};
            L->w_tensor = add_tensor(net, L->name, "kernel", 2, kd, c, s->out, e);
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
        case CG_OP_DROPOUT:
            if (spatial)
                return cg_fail(e, "%s layer %d: dropout is supported on flat inputs", name, i);
            if (!(s->rate >= 0.0f && s->rate < 1.0f))
                return cg_fail(e, "%s layer %d: dropout rate %g not in [0,1)", name, i,
                               (double)s->rate);
            break;
        }
        if (net->n_tensors == CG_MAX_TENSORS)
            return cg_fail(e, "%s: too many tensors", name);
        L->out_c = c, L->out_h = h, L->out_w = w;
        size_t sz = shape_size(c, h, w);
        if (sz > max_act)
            max_act = sz;
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
    return 0;
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
    memset(net, 0, sizeof *net);
}

void cg_net_init(cg_net *net, uint64_t seed, uint64_t stream_base)
{
    for (int t = 0; t < net->n_tensors; t++) {
        const cg_tensor *T = &net->tensors[t];
        float *p = net->param + T->offset;
        if (T->fan_in == 0) {
            memset(p, 0, sizeof(float) * T->count);
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
    }
    return 0;
}

void cg_tape_free(cg_tape *t)
{
    for (int i = 0; i < CG_MAX_LAYERS; i++) {
        cg_free(t->act[i]);
        cg_free(t->mask[i]);
    }
    memset(t, 0, sizeof *t);
}

/* ---- forward and backward ------------------------------------------------------------ */

static const float *tensor_ptr(const cg_net *net, const float *base, int t)
{
    return t < 0 ? NULL : base + net->tensors[t].offset;
}

const float *cg_net_forward(cg_net *net, cg_tape *t, const float *input, int B,
                            const cg_fwd_opts *o)
{
    t->batch = B;
    t->input = input;
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
            cg_dense_forward(B, L->in_c, L->out_c, x, w, b, y);
            break;
        case CG_OP_UNFLATTEN:
            cg_flat_to_cbhw(B, L->out_c, L->out_h * L->out_w, x, y);
            break;
        case CG_OP_FLATTEN:
            cg_cbhw_to_flat(B, L->in_c, L->in_h * L->in_w, x, y);
            break;
        case CG_OP_CONV:
            cg_conv2d_forward(&L->geom, B, x, w, b, y, net->col, net->col_cap);
            break;
        case CG_OP_CONVT:
            cg_convt2d_forward(&L->geom, B, x, w, b, y, net->col, net->col_cap);
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
        if (net->layers[i].w_tensor >= 0 || net->layers[i].b_tensor >= 0)
            return i;
    return net->n_layers;
}

void cg_net_backward(cg_net *net, cg_tape *t, const float *dout, int param_grads, float *dx)
{
    const int B = t->batch;
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
        /* The input gradient goes to the caller at layer 0, is skipped at the stop layer,
         * and otherwise lands in the other ping-pong buffer. */
        float *gx = i == 0 ? dx : (i == stop ? NULL : net->dbuf[cur ^ 1]);
        const float *w = tensor_ptr(net, net->param, L->w_tensor);
        float *dw = param_grads && L->w_tensor >= 0 ? net->grad + net->tensors[L->w_tensor].offset
                                                    : NULL;
        float *db = param_grads && L->b_tensor >= 0 ? net->grad + net->tensors[L->b_tensor].offset
                                                    : NULL;
        switch (L->spec.op) {
        case CG_OP_DENSE:
            cg_dense_backward(B, L->in_c, L->out_c, x, w, g, dw, db, gx);
            break;
        case CG_OP_UNFLATTEN:
            if (gx)
                cg_cbhw_to_flat(B, L->out_c, L->out_h * L->out_w, g, gx);
            break;
        case CG_OP_FLATTEN:
            if (gx)
                cg_flat_to_cbhw(B, L->in_c, L->in_h * L->in_w, g, gx);
            break;
        case CG_OP_CONV:
            cg_conv2d_backward(&L->geom, B, x, w, g, dw, db, gx, net->col, net->col_cap);
            break;
        case CG_OP_CONVT:
            cg_convt2d_backward(&L->geom, B, x, w, g, dw, db, gx, net->col, net->col_cap);
            break;
        case CG_OP_DROPOUT:
            cg_dropout_backward(B, L->out_c, L->spec.rate, t->mask[i], g);
            if (gx)
                memcpy(gx, g, sizeof(float) * out_n);
            break;
        }
        net->bwd_seconds[i] += cg_now() - t0;
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
