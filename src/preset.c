/* The model presets: layer tables and recipes (chargan/preset.h). */
#include "chargan/preset.h"

#include <string.h>

#include "chargan/optim.h"

#define DENSE(n, a) {.op = CG_OP_DENSE, .out = (n), .act = (a)}
#define DENSE_LEAKY(n, al) {.op = CG_OP_DENSE, .out = (n), .act = CG_ACT_LEAKY, .alpha = (al)}
#define BN_DENSE(n, a) {.op = CG_OP_DENSE, .out = (n), .act = (a), .bn = 1}
#define UNFLATTEN(c, hw) {.op = CG_OP_UNFLATTEN, .out = (c), .k = (hw)}
#define FLATTEN() {.op = CG_OP_FLATTEN}
#define CONV(c, ks, s, p, a, al)                                                              \
    {.op = CG_OP_CONV, .out = (c), .k = (ks), .stride = (s), .pad = (p), .act = (a), .alpha = (al)}
#define CONVT(c, ks, s, p, op_, a, al)                                                        \
    {.op = CG_OP_CONVT, .out = (c), .k = (ks), .stride = (s), .pad = (p), .out_pad = (op_),     \
     .act = (a), .alpha = (al)}
#define BN_CONVT(c, ks, s, p, op_, a)                                                         \
    {.op = CG_OP_CONVT, .out = (c), .k = (ks), .stride = (s), .pad = (p), .out_pad = (op_),     \
     .act = (a), .bn = 1}
#define DROPOUT(r) {.op = CG_OP_DROPOUT, .rate = (r)}
#define LABELS(n) {.op = CG_OP_LABELS, .out = (n)}
#define PROJECT(n) {.op = CG_OP_PROJECT, .out = (n)}

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

/* DCGAN (Radford et al. 2016) sized for 28x28: G projects the noise to 128x7x7 and doubles
 * the size twice with 4x4 stride-2 transposed convolutions, batch normalization and ReLU,
 * ending in tanh; D mirrors it with strided convolutions and LeakyReLU(0.2), no batch norm,
 * and a hidden dense layer after the convolutions (where a conditional D sees the label). */
static void dcgan(cg_preset *p)
{
    const cg_layer_spec g[] = {
        BN_DENSE(128 * 7 * 7, CG_ACT_RELU),
        UNFLATTEN(128, 7),
        BN_CONVT(64, 4, 2, 1, 0, CG_ACT_RELU),
        CONVT(1, 4, 2, 1, 0, CG_ACT_TANH, 0.0f),
    };
    const cg_layer_spec d[] = {
        CONV(64, 4, 2, 1, CG_ACT_LEAKY, 0.2f),
        CONV(128, 4, 2, 1, CG_ACT_LEAKY, 0.2f),
        FLATTEN(),
        DENSE_LEAKY(256, 0.2f),
        DENSE(1, CG_ACT_NONE),
    };
    p->n_g = (int)(sizeof g / sizeof g[0]);
    p->n_d = (int)(sizeof d / sizeof d[0]);
    memcpy(p->g, g, sizeof g);
    memcpy(p->d, d, sizeof d);
    p->tanh_output = 1;
}

/* dcgan with a deeper generator: a 3x3 stride-1 transposed convolution with batch norm and
 * ReLU after the projection to 7x7 and after the first upsampling, and a third stage at
 * 28x28 (upsample to 32 channels, then a 3x3 layer to the image), so each resolution refines
 * before the next doubles it; conditional batch norm when conditional. D is dcgan's. A step
 * costs 1.8x dcgan's FLOPs and reaches a given FID in far less time (docs/quality.md). */
static void deep(cg_preset *p)
{
    const cg_layer_spec g[] = {
        BN_DENSE(128 * 7 * 7, CG_ACT_RELU),
        UNFLATTEN(128, 7),
        BN_CONVT(128, 3, 1, 1, 0, CG_ACT_RELU),
        BN_CONVT(64, 4, 2, 1, 0, CG_ACT_RELU),
        BN_CONVT(64, 3, 1, 1, 0, CG_ACT_RELU),
        BN_CONVT(32, 4, 2, 1, 0, CG_ACT_RELU),
        CONVT(1, 3, 1, 1, 0, CG_ACT_TANH, 0.0f),
    };
    dcgan(p); /* D and the tanh output */
    p->n_g = (int)(sizeof g / sizeof g[0]);
    memcpy(p->g, g, sizeof g);
    p->cond_bn = 1;
}

/* Inserts `spec` at position `at` of a layer table of n layers. */
static void insert_layer(cg_layer_spec *t, int *n, int at, cg_layer_spec spec)
{
    memmove(t + at + 1, t + at, sizeof *t * (size_t)(*n - at));
    t[at] = spec;
    (*n)++;
}


static void seed(cg_preset *p) { seed_family(p, 1); }
static void small(cg_preset *p) { seed_family(p, 4); }
static void cdcgan(cg_preset *p)
{
    dcgan(p);
    p->cond_bn = 1;
}

/* The recipes. seed reproduces the notebook the project started from (Keras defaults for Adam
 * but lr 1e-5 / 3e-5, the first 60,000 images of EMNIST balanced, 50 epochs). dcgan and cdcgan
 * use G at Radford et al.'s 2e-4 and D at half of it, the best of three ratios measured. deep's
 * recipe is the best measured in a fixed time on 2 cores: batch 32, rates 3x dcgan's, falling
 * linearly to 0 over the last 40% of 10,000 steps (docs/quality.md).
 * The EMA of G's weights (0.999, the usual choice: Yazici et al. 2019) helps the presets that
 * reach a plateau within a CPU budget; seed and small, at lr 1e-5 / 3e-5, are still improving
 * fast after any budget, where an average lags behind (measured worse), so they keep none. */
static const cg_preset_row rows[] = {
    {.name = "seed", .layers = seed, .batch = 64, .lr_g = 1e-5f, .lr_d = 3e-5f, .epochs = 50,
     .split = "balanced-train", .limit = 60000,
     .help = "the Keras DCGAN the project started from, with its notebook's settings"},
    {.name = "small", .layers = small, .batch = 64, .lr_g = 1e-5f, .lr_d = 3e-5f, .epochs = 50,
     .split = "balanced-train", .limit = 60000,
     .help = "seed with every channel width divided by 4 (fast; for tests)"},
    {.name = "dcgan", .layers = dcgan, .batch = 64, .lr_g = 2e-4f, .lr_d = 1e-4f,
     .steps = 10000, .ema = 0.999, .split = "bymerge-test",
     .help = "DCGAN after Radford et al. 2016: batch norm in G, LeakyReLU in D"},
    {.name = "cdcgan", .layers = cdcgan, .conditional = 1, .batch = 64, .lr_g = 2e-4f,
     .lr_d = 1e-4f, .steps = 10000, .ema = 0.999, .split = "bymerge-test",
     .help = "dcgan whose G, when conditional, also gets the class at every batch norm"},
    {.name = "deep", .layers = deep, .conditional = 1, .batch = 32, .lr_g = 6e-4f,
     .lr_d = 3e-4f, .steps = 10000, .lr_decay_pct = 60, .ema = 0.999, .split = "bymerge-test",
     .help = "dcgan with a deeper G (3x3 layers at 7x7 and 14x14, a 28x28 stage) and "
             "conditional batch norm: the best measured"},
};

const cg_preset_row *cg_preset_rows(int *n)
{
    *n = (int)(sizeof rows / sizeof rows[0]);
    return rows;
}

const cg_preset_row *cg_preset_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof rows / sizeof rows[0]; i++)
        if (!strcmp(rows[i].name, name))
            return &rows[i];
    return NULL;
}

/* tests/test_layers.c checks that this lists every row. */
const char *cg_preset_names(void) { return "seed, small, dcgan, cdcgan, deep"; }

int cg_preset_get(const char *name, int noise_dim, int n_classes, cg_preset *p)
{
    memset(p, 0, sizeof *p);
    const cg_preset_row *row = cg_preset_find(name);
    if (!row)
        return -1;
    p->name = row->name;
    p->noise_dim = noise_dim > 0 ? noise_dim : 150;
    p->lr_g = row->lr_g, p->lr_d = row->lr_d;
    row->layers(p);
    if (n_classes > 0) {
        /* Conditional: the one-hot label joins the noise at G's input, and D's final dense
         * layer becomes a projection: logit = w.h + b + embed[label].h, so D scores how well
         * the image's features fit the class asked for (a projection discriminator). */
        p->n_classes = n_classes;
        insert_layer(p->g, &p->n_g, 0, (cg_layer_spec)LABELS(n_classes));
        p->d[p->n_d - 1] = (cg_layer_spec)PROJECT(n_classes);
        /* cond_bn (cdcgan, deep): G also gets the class at every batch norm, a per-class
         * scale and shift of each channel (conditional batch norm; de Vries et al. 2017, as
         * in Miyato & Koyama 2018's generator). cdcgan is dcgan with it, under a name of its
         * own, so that dcgan's tensors, and so its checkpoints and results, stay as they
         * were. */
        for (int i = 0; i < p->n_g && p->cond_bn; i++)
            if (p->g[i].bn)
                p->g[i].cbn = n_classes;
    }
    return 0;
}

/* ---- variational autoencoders ------------------------------------------------------------ */

#define SELU_DENSE(n) {.op = CG_OP_DENSE, .out = (n), .act = CG_ACT_SELU, .init = CG_INIT_LECUN}

/* The VAE of Geron's Hands-On Machine Learning (2nd ed., ch. 17): 784 -> 150 -> 100 SELU ->
 * mean and log-variance of a 10-dim coding; the decoder mirrors it (10 -> 100 -> 150 SELU ->
 * 784 sigmoid). The SELU layers start from LeCun normal, the initialization SELU's
 * self-normalization assumes (the book's ch. 11; its VAE listing leaves Keras' default, Glorot
 * uniform); the heads and the output layer keep Glorot uniform, Keras' default. */
static void vae_book(cg_vae_preset *p)
{
    const int c = p->coding_dim;
    const cg_layer_spec enc[] = {SELU_DENSE(150), SELU_DENSE(100), DENSE(2 * c, CG_ACT_NONE)};
    const cg_layer_spec dec[] = {SELU_DENSE(100), SELU_DENSE(150), DENSE(784, CG_ACT_NONE)};
    p->in_c = 784, p->in_h = p->in_w = 0;
    p->n_enc = (int)(sizeof enc / sizeof enc[0]);
    p->n_dec = (int)(sizeof dec / sizeof dec[0]);
    memcpy(p->enc, enc, sizeof enc);
    memcpy(p->dec, dec, sizeof dec);
}

/* A convolutional VAE in dcgan's shapes: the encoder is dcgan's D (4x4 stride-2 convolutions
 * to 64x14x14 and 128x7x7, LeakyReLU 0.2, a dense layer of 256) ending in the coding's two
 * heads; the decoder is dcgan's G without batch norm (no layer of a VAE needs batch statistics:
 * every sample's loss is its own) ending in the image's logits. */
static void vae_conv(cg_vae_preset *p)
{
    const int c = p->coding_dim;
    const cg_layer_spec enc[] = {
        CONV(64, 4, 2, 1, CG_ACT_LEAKY, 0.2f),
        CONV(128, 4, 2, 1, CG_ACT_LEAKY, 0.2f),
        FLATTEN(),
        DENSE_LEAKY(256, 0.2f),
        DENSE(2 * c, CG_ACT_NONE),
    };
    const cg_layer_spec dec[] = {
        DENSE(128 * 7 * 7, CG_ACT_RELU),
        UNFLATTEN(128, 7),
        CONVT(64, 4, 2, 1, 0, CG_ACT_RELU, 0.0f),
        CONVT(1, 4, 2, 1, 0, CG_ACT_NONE, 0.0f),
    };
    p->in_c = 1, p->in_h = p->in_w = 28;
    p->n_enc = (int)(sizeof enc / sizeof enc[0]);
    p->n_dec = (int)(sizeof dec / sizeof dec[0]);
    memcpy(p->enc, enc, sizeof enc);
    memcpy(p->dec, dec, sizeof dec);
}

/* The book trains its VAE with Keras' RMSprop (lr 1e-3) at batch 128; the convolutional one
 * takes the same optimizer at dcgan's batch. */
static const struct {
    const char *name;
    void (*layers)(cg_vae_preset *p);
    int batch, optimizer;
    float lr;
    long steps;
    const char *split, *help;
} vae_rows[] = {
    {"vae", vae_book, 128, CG_OPT_RMSPROP, 1e-3f, 10000, "bymerge-test",
     "the dense VAE of Geron's Hands-On ML (ch. 17): SELU layers, a coding of 10"},
    {"cvae", vae_conv, 64, CG_OPT_RMSPROP, 1e-3f, 10000, "bymerge-test",
     "a convolutional VAE in dcgan's shapes (dcgan's D as encoder, G as decoder)"},
};

const char *cg_vae_preset_names(void) { return "vae, cvae"; }

/* The conditional variant: the one-hot class joins the encoder where its input is flat (the
 * image for the dense VAE, after the flatten for the convolutional one) and the coding at the
 * decoder's input. */
static void vae_condition(cg_vae_preset *p, int n_classes)
{
    const cg_layer_spec labels = LABELS(n_classes);
    int at = 0;
    for (int i = 0; i < p->n_enc; i++)
        if (p->enc[i].op == CG_OP_FLATTEN)
            at = i + 1;
    insert_layer(p->enc, &p->n_enc, at, labels);
    insert_layer(p->dec, &p->n_dec, 0, labels);
    p->n_classes = n_classes;
}

int cg_vae_preset_get(const char *name, int coding_dim, int n_classes, cg_vae_preset *p)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; name && i < sizeof vae_rows / sizeof vae_rows[0]; i++) {
        if (strcmp(vae_rows[i].name, name))
            continue;
        p->name = vae_rows[i].name;
        p->coding_dim = coding_dim > 0 ? coding_dim : CG_VAE_CODING_DIM;
        p->batch = vae_rows[i].batch;
        p->optimizer = vae_rows[i].optimizer;
        p->lr = vae_rows[i].lr;
        p->steps = vae_rows[i].steps;
        p->split = vae_rows[i].split;
        p->help = vae_rows[i].help;
        vae_rows[i].layers(p);
        if (n_classes > 0)
            vae_condition(p, n_classes);
        return 0;
    }
    return -1;
}
