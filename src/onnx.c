/* The generator as an ONNX model (chargan/export.h), through protobuf-c's C code for ONNX's
 * own schema (onnx.proto, compiled by protoc-c at build time). The graph comes from walking
 * G's layer table, so every preset, and any table of the ops below, exports the same way:
 * a new preset needs no code here, and an op the graph cannot express is refused by name.
 * Parameter initializers point into the network's parameter buffer (raw little-endian
 * float32, no copy); every other piece of the messages comes from one list of allocations
 * freed at the end. */
#include "chargan/export.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef CHARGAN_HAVE_ONNX

int cg_onnx_available(const char **why)
{
    if (why)
        *why = CHARGAN_NO_ONNX_REASON;
    return 0;
}

int cg_onnx_write_generator(const char *path, const cg_gan *gan, const json_t *desc,
                            long *bytes, cg_error *e)
{
    (void)gan, (void)desc, (void)bytes;
    return cg_fail(e, "%s: this build has no ONNX export (%s)", path, CHARGAN_NO_ONNX_REASON);
}

#else
#include CHARGAN_ONNX_HEADER /* onnx.pb-c.h, generated from onnx.proto */
#include "chargan_version.h" /* generated at build time: CHARGAN_VERSION_STRING */

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ONNX raw_data is little-endian, and initializers here are the floats as in memory"
#endif

int cg_onnx_available(const char **why)
{
    if (why)
        *why = "";
    return 1;
}

/* At most about a dozen nodes and ten initializers per layer (conditional batch norm is the
 * most), so fixed tables of these sizes hold any net of CG_MAX_LAYERS layers. */
enum { OX_MAX_NODES = 16 * CG_MAX_LAYERS, OX_MAX_INITS = 16 * CG_MAX_LAYERS, OX_MAX_ATTRS = 8 };

typedef struct {
    void **mem;
    size_t n_mem, cap_mem;
    Onnx__NodeProto *nodes[OX_MAX_NODES];
    Onnx__TensorProto *inits[OX_MAX_INITS];
    size_t n_nodes, n_inits;
    int overflow;
} ox;

/* Zeroed memory that ox_free releases; running out of memory here is fatal (a model's
 * messages are a few kB besides the parameters, which are not copied). */
static void *ox_new(ox *b, size_t size)
{
    if (b->n_mem == b->cap_mem) {
        b->cap_mem = b->cap_mem ? 2 * b->cap_mem : 256;
        void **m = realloc(b->mem, sizeof *m * b->cap_mem);
        if (!m)
            cg_die("out of memory building the ONNX model");
        b->mem = m;
    }
    void *p = calloc(1, size ? size : 1);
    if (!p)
        cg_die("out of memory building the ONNX model");
    return b->mem[b->n_mem++] = p;
}

static void ox_free(ox *b)
{
    for (size_t i = 0; i < b->n_mem; i++)
        free(b->mem[i]);
    free(b->mem);
}

__attribute__((format(printf, 2, 3))) static char *ox_str(ox *b, const char *fmt, ...)
{
    va_list ap, aq;
    va_start(ap, fmt);
    va_copy(aq, ap);
    const int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ox_new(b, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, aq);
    va_end(aq);
    return s;
}

/* Node op(in[0..n_in)) -> out, named after its output. */
static Onnx__NodeProto *ox_node(ox *b, const char *op, const char *out, const char *const *in,
                                size_t n_in)
{
    Onnx__NodeProto *n = ox_new(b, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = ox_str(b, "%s", op);
    n->name = ox_str(b, "%s", out);
    n->n_input = n_in;
    n->input = ox_new(b, sizeof(char *) * n_in);
    for (size_t i = 0; i < n_in; i++)
        n->input[i] = ox_str(b, "%s", in[i]);
    n->n_output = 1;
    n->output = ox_new(b, sizeof(char *));
    n->output[0] = ox_str(b, "%s", out);
    n->attribute = ox_new(b, sizeof(Onnx__AttributeProto *) * OX_MAX_ATTRS);
    if (b->n_nodes < OX_MAX_NODES)
        b->nodes[b->n_nodes++] = n;
    else
        b->overflow = 1;
    return n;
}
#define NODE(b, op, out, ...)                                                                 \
    ox_node(b, op, out, (const char *const[]){__VA_ARGS__},                                   \
            sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))

static Onnx__AttributeProto *ox_attr(ox *b, Onnx__NodeProto *n, const char *name,
                                     Onnx__AttributeProto__AttributeType type)
{
    Onnx__AttributeProto *a = ox_new(b, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = ox_str(b, "%s", name);
    a->has_type = 1;
    a->type = type;
    if (n->n_attribute < OX_MAX_ATTRS)
        n->attribute[n->n_attribute++] = a;
    else
        b->overflow = 1;
    return a;
}

static void ox_attr_int(ox *b, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = ox_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    a->has_i = 1;
    a->i = v;
}

static void ox_attr_float(ox *b, Onnx__NodeProto *n, const char *name, float v)
{
    Onnx__AttributeProto *a = ox_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    a->has_f = 1;
    a->f = v;
}

/* count copies of v: chargan's kernels, strides and pads are the same along both axes. */
static void ox_attr_ints(ox *b, Onnx__NodeProto *n, const char *name, size_t count, int64_t v)
{
    Onnx__AttributeProto *a = ox_attr(b, n, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    a->n_ints = count;
    a->ints = ox_new(b, sizeof(int64_t) * count);
    for (size_t i = 0; i < count; i++)
        a->ints[i] = v;
}

static Onnx__TensorProto *ox_tensor(ox *b, const char *name, int dtype, size_t ndim,
                                    const int64_t *dims)
{
    Onnx__TensorProto *t = ox_new(b, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = ox_str(b, "%s", name);
    t->n_dims = ndim;
    t->dims = ox_new(b, sizeof(int64_t) * (ndim ? ndim : 1));
    if (ndim) /* a scalar has no dims (and may pass NULL) */
        memcpy(t->dims, dims, sizeof(int64_t) * ndim);
    t->has_data_type = 1;
    t->data_type = dtype;
    if (b->n_inits < OX_MAX_INITS)
        b->inits[b->n_inits++] = t;
    else
        b->overflow = 1;
    return t;
}

/* A float32 initializer over data (not copied: it must outlive the packing). */
static void ox_floats(ox *b, const char *name, size_t ndim, const int64_t *dims,
                      const float *data)
{
    Onnx__TensorProto *t = ox_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims);
    size_t count = 1;
    for (size_t i = 0; i < ndim; i++)
        count *= (size_t)dims[i];
    t->has_raw_data = 1;
    t->raw_data.len = count * sizeof(float);
    t->raw_data.data = (uint8_t *)data;
}

static void ox_scalar(ox *b, const char *name, float v)
{
    float *p = ox_new(b, sizeof *p);
    *p = v;
    ox_floats(b, name, 0, NULL, p);
}

/* A 1-D int64 initializer (Reshape's target shapes). */
static void ox_int64s(ox *b, const char *name, size_t n, const int64_t *v)
{
    const int64_t dims[1] = {(int64_t)n};
    Onnx__TensorProto *t = ox_tensor(b, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, dims);
    t->n_int64_data = n;
    t->int64_data = ox_new(b, sizeof(int64_t) * n);
    memcpy(t->int64_data, v, sizeof(int64_t) * n);
}

/* Tensor `i` of net g as an initializer under its own name ("dense0.kernel", ...). */
static const char *ox_param(ox *b, const cg_net *g, int i)
{
    const cg_tensor *T = &g->tensors[i];
    int64_t dims[4];
    for (int d = 0; d < T->ndim; d++)
        dims[d] = T->dims[d];
    ox_floats(b, T->name, (size_t)T->ndim, dims, g->param + T->offset);
    return T->name;
}

/* A graph input or output; a negative dimension is the dynamic batch "N". */
static Onnx__ValueInfoProto *ox_value(ox *b, const char *name, int dtype, size_t ndim,
                                      const int64_t *dims)
{
    Onnx__TensorShapeProto *shape = ox_new(b, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = ndim;
    shape->dim = ox_new(b, sizeof *shape->dim * ndim);
    for (size_t i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = ox_new(b, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (dims[i] < 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = ox_str(b, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        shape->dim[i] = d;
    }
    Onnx__TypeProto__Tensor *tt = ox_new(b, sizeof *tt);
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = dtype;
    tt->shape = shape;
    Onnx__TypeProto *type = ox_new(b, sizeof *type);
    onnx__type_proto__init(type);
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    Onnx__ValueInfoProto *v = ox_new(b, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = ox_str(b, "%s", name);
    v->type = type;
    return v;
}

/* The walk over G's layers: x is the name of the value the next layer reads, flat whether
 * it is [N][F] (else [N][C][H][W]). */
typedef struct {
    ox *b;
    const cg_net *g;
    int K; /* classes; > 0: the graph has the input "label" */
    const char *x;
    cg_error *e;
} walk;

/* The one-hot class from a [K][K] identity, joined to the features (cg_labels_forward). */
static int op_labels(walk *w, const cg_layer *L)
{
    const int K = L->spec.out;
    if (K != w->K)
        return cg_fail(w->e, "%s: %d classes, but the model has %d", L->name, K, w->K);
    float *eye = ox_new(w->b, sizeof(float) * (size_t)K * K);
    for (int k = 0; k < K; k++)
        eye[(size_t)k * K + k] = 1.0f;
    const char *id = ox_str(w->b, "%s.identity", L->name);
    ox_floats(w->b, id, 2, (const int64_t[]){K, K}, eye);
    const char *hot = ox_str(w->b, "%s.onehot", L->name);
    ox_attr_int(w->b, NODE(w->b, "Gather", hot, id, "label"), "axis", 0);
    ox_attr_int(w->b, NODE(w->b, "Concat", L->name, w->x, hot), "axis", 1);
    w->x = L->name;
    return 0;
}

/* y = x W (+ b): Gemm with a bias, MatMul without (a batch-normed layer has none). */
static void op_dense(walk *w, const cg_layer *L)
{
    const char *W = ox_param(w->b, w->g, L->w_tensor);
    if (L->b_tensor >= 0)
        NODE(w->b, "Gemm", L->name, w->x, W, ox_param(w->b, w->g, L->b_tensor));
    else
        NODE(w->b, "MatMul", L->name, w->x, W);
    w->x = L->name;
}

/* [N][C*H*W] -> [N][C][H][W]: chargan flattens in NCHW order (f = c*H*W + h*W + w). */
static void op_reshape(walk *w, const char *out, int c, int h, int wd)
{
    const char *shape = ox_str(w->b, "%s.shape", out);
    ox_int64s(w->b, shape, 4, (const int64_t[]){-1, c, h, wd});
    NODE(w->b, "Reshape", out, w->x, shape);
    w->x = out;
}

static void op_conv(walk *w, const cg_layer *L)
{
    const cg_layer_spec *s = &L->spec;
    const int t = s->op == CG_OP_CONVT;
    const char *W = ox_param(w->b, w->g, L->w_tensor);
    Onnx__NodeProto *n =
        L->b_tensor >= 0
            ? NODE(w->b, t ? "ConvTranspose" : "Conv", L->name, w->x, W,
                   ox_param(w->b, w->g, L->b_tensor))
            : NODE(w->b, t ? "ConvTranspose" : "Conv", L->name, w->x, W);
    ox_attr_ints(w->b, n, "kernel_shape", 2, s->k);
    ox_attr_ints(w->b, n, "strides", 2, s->stride);
    ox_attr_ints(w->b, n, "pads", 4, s->pad);
    if (t && s->out_pad)
        ox_attr_ints(w->b, n, "output_padding", 2, s->out_pad);
    w->x = L->name;
}

/* Conditional batch norm's affine, y = x * (1 + gamma[label]) + beta[label]
 * (cg_cond_affine_forward): the 1 + gamma table is added here in float as there, the rows
 * gathered by label and, on images, shaped [N][C][1][1] to broadcast over H and W. */
static void op_cbn(walk *w, const cg_layer *L)
{
    ox *b = w->b;
    const cg_tensor *G = &w->g->tensors[L->cbn_gamma];
    float *scale = ox_new(b, sizeof(float) * G->count);
    for (size_t i = 0; i < G->count; i++)
        scale[i] = 1.0f + w->g->param[G->offset + i];
    const char *sname = ox_str(b, "%s_plus_1", G->name);
    ox_floats(b, sname, 2, (const int64_t[]){G->dims[0], G->dims[1]}, scale);
    const char *beta = ox_param(b, w->g, L->cbn_beta);
    const char *gs = ox_str(b, "%s.cbn_scale", L->name), *gb = ox_str(b, "%s.cbn_shift", L->name);
    ox_attr_int(b, NODE(b, "Gather", gs, sname, "label"), "axis", 0);
    ox_attr_int(b, NODE(b, "Gather", gb, beta, "label"), "axis", 0);
    if (L->out_h > 0) {
        const char *shape = ox_str(b, "%s.cbn_shape", L->name);
        ox_int64s(b, shape, 4, (const int64_t[]){-1, L->out_c, 1, 1});
        const char *gs4 = ox_str(b, "%s.4d", gs), *gb4 = ox_str(b, "%s.4d", gb);
        NODE(b, "Reshape", gs4, gs, shape);
        NODE(b, "Reshape", gb4, gb, shape);
        gs = gs4, gb = gb4;
    }
    const char *mul = ox_str(b, "%s.cbn_mul", L->name), *add = ox_str(b, "%s.cbn", L->name);
    NODE(b, "Mul", mul, w->x, gs);
    NODE(b, "Add", add, mul, gb);
    w->x = add;
}

/* Batch norm from its running averages (inference), then the conditional affine. */
static void op_bn(walk *w, const cg_layer *L)
{
    ox *b = w->b;
    const char *out = ox_str(b, "%s.bn", L->name);
    Onnx__NodeProto *n = NODE(b, "BatchNormalization", out, w->x,
                              ox_param(b, w->g, L->bn_gamma), ox_param(b, w->g, L->bn_beta),
                              ox_param(b, w->g, L->bn_mean), ox_param(b, w->g, L->bn_var));
    ox_attr_float(b, n, "epsilon", CG_BN_EPS);
    w->x = out;
    if (L->spec.cbn)
        op_cbn(w, L);
}

static void op_act(walk *w, const cg_layer *L)
{
    static const char *const names[] = {[CG_ACT_RELU] = "Relu", [CG_ACT_LEAKY] = "LeakyRelu",
                                        [CG_ACT_SIGMOID] = "Sigmoid", [CG_ACT_TANH] = "Tanh",
                                        [CG_ACT_SELU] = "Selu"};
    if (L->spec.act == CG_ACT_NONE)
        return;
    const char *out = ox_str(w->b, "%s.act", L->name);
    Onnx__NodeProto *n = NODE(w->b, names[L->spec.act], out, w->x);
    if (L->spec.act == CG_ACT_LEAKY)
        ox_attr_float(w->b, n, "alpha", L->spec.alpha);
    if (L->spec.act == CG_ACT_SELU) { /* ONNX's defaults, written out: they are the same */
        ox_attr_float(w->b, n, "alpha", (float)CG_SELU_ALPHA);
        ox_attr_float(w->b, n, "gamma", (float)CG_SELU_SCALE);
    }
    w->x = out;
}

/* Layer L's op, its batch norm and activation. */
static int op_layer(walk *w, const cg_layer *L)
{
    switch (L->spec.op) {
    case CG_OP_LABELS:
        if (op_labels(w, L))
            return -1;
        break;
    case CG_OP_DENSE:
        op_dense(w, L);
        break;
    case CG_OP_UNFLATTEN:
        op_reshape(w, L->name, L->out_c, L->out_h, L->out_w);
        break;
    case CG_OP_FLATTEN:
        ox_attr_int(w->b, NODE(w->b, "Flatten", L->name, w->x), "axis", 1);
        w->x = L->name;
        break;
    case CG_OP_CONV:
    case CG_OP_CONVT:
        op_conv(w, L);
        break;
    case CG_OP_DROPOUT: /* the identity at inference */
        break;
    case CG_OP_PROJECT:
        return cg_fail(w->e, "layer %s: a projection layer (a discriminator's output) is not "
                             "part of a generator's ONNX export", L->name);
    }
    if (L->spec.bn)
        op_bn(w, L);
    op_act(w, L);
    return 0;
}

/* The output "image" [N][1][28][28] in [0, 1]: tanh generators are mapped by 0.5 * (y + 1)
 * in float as cg_gan_generate does. */
static int op_output(walk *w, const cg_gan *gan)
{
    const cg_layer *L = &w->g->layers[w->g->n_layers - 1];
    const int flat = L->out_h == 0;
    if (flat ? L->out_c != 28 * 28 : L->out_c != 1 || L->out_h != 28 || L->out_w != 28)
        return cg_fail(w->e, "the generator's output %dx%dx%d is not a 28x28 image",
                       L->out_c, L->out_h, L->out_w);
    if (flat)
        op_reshape(w, "output.image", 1, 28, 28);
    if (gan->preset.tanh_output) {
        ox_scalar(w->b, "output.one", 1.0f);
        ox_scalar(w->b, "output.half", 0.5f);
        NODE(w->b, "Add", "output.plus_one", w->x, "output.one");
        NODE(w->b, "Mul", "image", "output.plus_one", "output.half");
    } else {
        NODE(w->b, "Identity", "image", w->x);
    }
    return 0;
}
#undef NODE

/* metadata_props: the description's fields under chargan.* names, and all of it as JSON. */
static void ox_metadata(ox *b, Onnx__ModelProto *model, const json_t *desc)
{
    static const char *const keys[][2] = {
        {"chargan.classes", "classes"},   {"chargan.noise_dim", "noise_dim"},
        {"chargan.preset", "preset"},     {"chargan.step", "step"},
        {"chargan.version", "chargan_version"}, {"chargan.conditional", "conditional"},
        {"chargan.generator", "generator"},
    };
    const size_t n = sizeof keys / sizeof keys[0];
    model->metadata_props = ox_new(b, sizeof(Onnx__StringStringEntryProto *) * (n + 1));
    for (size_t i = 0; i <= n; i++) {
        Onnx__StringStringEntryProto *p = ox_new(b, sizeof *p);
        onnx__string_string_entry_proto__init(p);
        if (i == n) {
            char *text = cg_json_text(desc);
            p->key = ox_str(b, "chargan.json");
            p->value = ox_str(b, "%s", text);
            free(text);
        } else {
            const json_t *v = json_object_get(desc, keys[i][1]);
            p->key = ox_str(b, "%s", keys[i][0]);
            p->value = json_is_string(v)    ? ox_str(b, "%s", json_string_value(v))
                       : json_is_integer(v) ? ox_str(b, "%" JSON_INTEGER_FORMAT,
                                                      json_integer_value(v))
                                            : ox_str(b, "%s", json_is_true(v) ? "true" : "false");
        }
        model->metadata_props[model->n_metadata_props++] = p;
    }
}

/* The graph's inputs (z, and label when conditional) and output. */
static void ox_io(ox *b, Onnx__GraphProto *graph, const cg_gan *gan)
{
    const int K = gan->preset.n_classes;
    graph->input = ox_new(b, sizeof(Onnx__ValueInfoProto *) * 2);
    graph->input[graph->n_input++] = ox_value(b, "z", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 2,
                                              (const int64_t[]){-1, gan->preset.noise_dim});
    if (K > 0)
        graph->input[graph->n_input++] =
            ox_value(b, "label", ONNX__TENSOR_PROTO__DATA_TYPE__INT64, 1, (const int64_t[]){-1});
    graph->output = ox_new(b, sizeof(Onnx__ValueInfoProto *));
    graph->output[graph->n_output++] = ox_value(b, "image", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT,
                                                4, (const int64_t[]){-1, 1, 28, 28});
}

/* The whole model into *model (its pieces owned by b). */
static int ox_model(ox *b, Onnx__ModelProto *model, const cg_gan *gan, const json_t *desc,
                    cg_error *e)
{
    walk w = {b, &gan->g, gan->preset.n_classes, "z", e};
    for (int i = 0; i < gan->g.n_layers; i++)
        if (op_layer(&w, &gan->g.layers[i]))
            return -1;
    if (op_output(&w, gan))
        return -1;
    if (b->overflow)
        return cg_fail(e, "the generator needs more ONNX nodes than the exporter's tables hold");
    Onnx__GraphProto *graph = ox_new(b, sizeof *graph);
    onnx__graph_proto__init(graph);
    graph->name = ox_str(b, "chargan_%s_generator", gan->preset.name);
    graph->n_node = b->n_nodes, graph->node = b->nodes;
    graph->n_initializer = b->n_inits, graph->initializer = b->inits;
    ox_io(b, graph, gan);
    Onnx__OperatorSetIdProto *opset = ox_new(b, sizeof *opset);
    onnx__operator_set_id_proto__init(opset);
    opset->domain = ox_str(b, "%s", "");
    opset->has_version = 1;
    opset->version = CG_ONNX_OPSET;
    onnx__model_proto__init(model);
    model->has_ir_version = 1;
    model->ir_version = CG_ONNX_IR_VERSION;
    model->n_opset_import = 1;
    model->opset_import = ox_new(b, sizeof opset);
    model->opset_import[0] = opset;
    model->producer_name = ox_str(b, "chargan");
    model->producer_version = ox_str(b, "%s", CHARGAN_VERSION_STRING);
    model->graph = graph;
    ox_metadata(b, model, desc);
    return 0;
}

int cg_onnx_write_generator(const char *path, const cg_gan *gan, const json_t *desc,
                            long *bytes, cg_error *e)
{
    ox *b = calloc(1, sizeof *b);
    if (!b)
        return cg_fail(e, "%s: out of memory", path);
    Onnx__ModelProto model;
    int rc = ox_model(b, &model, gan, desc, e);
    if (rc) {
        char msg[sizeof e->msg];
        snprintf(msg, sizeof msg, "%s", e->msg);
        rc = cg_fail(e, "%s: cannot export: %s", path, msg);
    } else {
        const size_t size = onnx__model_proto__get_packed_size(&model);
        uint8_t *buf = malloc(size ? size : 1);
        if (!buf)
            rc = cg_fail(e, "%s: out of memory (%zu bytes)", path, size);
        else if (onnx__model_proto__pack(&model, buf) != size)
            rc = cg_fail(e, "%s: protobuf-c packed a model of an unexpected size", path);
        else
            rc = cg_write_file(path, buf, size, e);
        if (!rc && bytes)
            *bytes = (long)size;
        free(buf);
    }
    ox_free(b);
    free(b);
    return rc;
}

#endif
