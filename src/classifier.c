/* The EMNIST classifier: softmax cross-entropy, the network, its training and its file; see
 * classifier.h. */
#include "chargan/classifier.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/optim.h"
#include "chargan/rng.h"
#include "h5io.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define PIX CG_IMG_PIXELS
#define FEAT CG_CLF_FEATURES

/* ---- softmax cross-entropy ----------------------------------------------------------- */

void cg_softmax(int B, int K, const float *logits, float *probs)
{
    for (int i = 0; i < B; i++) {
        const float *l = logits + (size_t)i * K;
        float *p = probs + (size_t)i * K;
        float mx = l[0];
        for (int k = 1; k < K; k++)
            mx = l[k] > mx ? l[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++) {
            const float ex = expf(l[k] - mx);
            p[k] = ex;
            s += ex;
        }
        const float inv = (float)(1.0 / s);
        for (int k = 0; k < K; k++)
            p[k] *= inv;
    }
}

double cg_softmax_xent(int B, int K, const float *logits, const int32_t *labels, float scale,
                       float *dlogits, float *probs)
{
    double total = 0.0;
    for (int i = 0; i < B; i++) {
        const float *l = logits + (size_t)i * K;
        float mx = l[0];
        for (int k = 1; k < K; k++)
            mx = l[k] > mx ? l[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++)
            s += exp((double)l[k] - mx);
        const double lse = mx + log(s);
        const int y = labels[i];
        total += lse - (double)l[y];
        if (dlogits || probs) {
            float *d = dlogits ? dlogits + (size_t)i * K : NULL;
            float *p = probs ? probs + (size_t)i * K : NULL;
            for (int k = 0; k < K; k++) {
                const double pk = exp((double)l[k] - lse);
                if (p)
                    p[k] = (float)pk;
                if (d)
                    d[k] = (float)(scale * (pk - (k == y ? 1.0 : 0.0)));
            }
        }
    }
    return scale * total;
}

int cg_argmax(const float *v, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        best = v[k] > v[best] ? k : best;
    return best;
}

/* ---- the network --------------------------------------------------------------------- */

int cg_classifier_layers(int n_classes, cg_layer_spec *out)
{
    const cg_layer_spec t[] = {
        {.op = CG_OP_CONV, .out = 32, .k = 3, .stride = 2, .pad = 1, .act = CG_ACT_RELU},
        {.op = CG_OP_CONV, .out = 64, .k = 3, .stride = 2, .pad = 1, .act = CG_ACT_RELU},
        {.op = CG_OP_FLATTEN},
        {.op = CG_OP_DENSE, .out = FEAT, .act = CG_ACT_RELU},
        {.op = CG_OP_DROPOUT, .rate = 0.3f},
        {.op = CG_OP_DENSE, .out = n_classes, .act = CG_ACT_NONE},
    };
    const int n = (int)(sizeof t / sizeof t[0]);
    memcpy(out, t, sizeof t);
    return n;
}

#define FEAT_LAYER 3 /* dense0 + ReLU in the table above */

int cg_classifier_init(cg_classifier *c, int n_classes, const char *chars, int max_batch,
                       uint64_t seed, cg_error *e)
{
    memset(c, 0, sizeof *c);
    if (n_classes < 2 || n_classes > CG_MAX_CLASSES)
        return cg_fail(e, "classifier: %d classes (2..%d supported)", n_classes,
                       CG_MAX_CLASSES);
    cg_layer_spec layers[CG_MAX_LAYERS];
    const int nl = cg_classifier_layers(n_classes, layers);
    if (cg_net_build(&c->net, "classifier", layers, nl, 1, 28, 28, max_batch, 0, e)) {
        cg_net_free(&c->net);
        return -1;
    }
    cg_tape_alloc(&c->net, &c->tape);
    cg_net_init(&c->net, seed, 0);
    c->n_classes = n_classes;
    c->max_batch = max_batch;
    c->feat_layer = FEAT_LAYER;
    for (int k = 0; k < n_classes; k++)
        c->chars[k] = chars ? chars[k] : (char)('?');
    return 0;
}

void cg_classifier_free(cg_classifier *c)
{
    cg_tape_free(&c->tape);
    cg_net_free(&c->net);
    if (c->heldout.mean)
        cg_gauss_free(&c->heldout);
    if (c->train.mean)
        cg_gauss_free(&c->train);
    memset(c, 0, sizeof *c);
}

void cg_classifier_forward(cg_classifier *c, const float *imgs, int n, float *feats,
                           float *probs)
{
    const cg_fwd_opts o = {0};
    const float *logits = cg_net_forward(&c->net, &c->tape, imgs, n, &o);
    if (feats)
        memcpy(feats, c->tape.act[c->feat_layer], sizeof(float) * (size_t)n * FEAT);
    if (probs)
        cg_softmax(n, c->n_classes, logits, probs);
}

/* ---- training ----------------------------------------------------------------------- */

void cg_clf_default_train_opts(cg_clf_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->epochs = 6;
    o->batch = 128;
    o->lr = 2e-3f;
    o->lr_final = 0.02f;
    o->seed = 1;
    o->shift = 1;
}

/* Copies image src (28x28) into dst moved by (dy, dx) pixels, zeros where it leaves. */
static void shift_image(const float *src, float *dst, int dy, int dx)
{
    for (int r = 0; r < 28; r++) {
        const int sr = r - dy;
        float *d = dst + r * 28;
        if (sr < 0 || sr >= 28) {
            memset(d, 0, sizeof(float) * 28);
            continue;
        }
        const float *s = src + sr * 28;
        for (int q = 0; q < 28; q++) {
            const int sq = q - dx;
            d[q] = sq >= 0 && sq < 28 ? s[sq] : 0.0f;
        }
    }
}

/* How many of the m rows of scores[m][K] have their argmax at labels[i]. */
static long count_right(const float *scores, int m, int K, const int32_t *labels)
{
    long right = 0;
    for (int i = 0; i < m; i++)
        right += cg_argmax(scores + (size_t)i * K, K) == labels[i];
    return right;
}

double cg_classifier_accuracy(cg_classifier *c, const cg_dataset *ds, const int64_t *idx,
                              long n)
{
    const int B = c->max_batch, K = c->n_classes;
    float *x = cg_alloc(sizeof(float) * (size_t)B * PIX);
    float *p = cg_alloc(sizeof(float) * (size_t)B * K);
    int32_t *lab = cg_alloc(sizeof(int32_t) * (size_t)B);
    long right = 0;
    for (long s = 0; s < n; s += B) {
        const int m = n - s < B ? (int)(n - s) : B;
        cg_data_batch(ds, idx + s, m, 0.0f, 1.0f, x, lab);
        cg_classifier_forward(c, x, m, NULL, p);
        right += count_right(p, m, K, lab);
    }
    cg_free(x);
    cg_free(p);
    cg_free(lab);
    return n ? (double)right / (double)n : NAN;
}

/* The state of a training run: options, batch size, buffers, optimizer, step counter. */
typedef struct {
    const cg_clf_train_opts *o;
    int B;
    int64_t *perm;
    float *x, *xs, *dl;
    int32_t *lab;
    cg_adam adam;
    long step, total;
} trainer;

static void trainer_init(trainer *t, const cg_clf_train_opts *o, int B, int K, long n_train)
{
    memset(t, 0, sizeof *t);
    t->o = o;
    t->B = B;
    t->perm = cg_alloc(sizeof(int64_t) * (size_t)n_train);
    t->x = cg_alloc(sizeof(float) * (size_t)B * PIX);
    t->xs = cg_alloc(sizeof(float) * (size_t)B * PIX);
    t->dl = cg_alloc(sizeof(float) * (size_t)B * K);
    t->lab = cg_alloc(sizeof(int32_t) * (size_t)B);
    t->adam = (cg_adam){o->lr, 0.9f, 0.999f, 1e-7f, 0};
    t->total = (n_train + B - 1) / B * o->epochs;
}

static void trainer_free(trainer *t)
{
    cg_free(t->perm);
    cg_free(t->x);
    cg_free(t->xs);
    cg_free(t->dl);
    cg_free(t->lab);
}

/* Epoch ep's order: train_idx shuffled by Fisher-Yates with (seed, CG_RNG_SHUFFLE, ep). */
static void epoch_order(int64_t *perm, const int64_t *train_idx, long n, uint64_t seed, int ep)
{
    memcpy(perm, train_idx, sizeof(int64_t) * (size_t)n);
    const uint64_t stream = cg_stream(CG_RNG_SHUFFLE, (uint64_t)ep);
    for (long i = n - 1; i > 0; i--) {
        const uint64_t u = cg_rng_u64(seed, stream, (uint64_t)i);
        const long j = (long)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
        const int64_t tmp = perm[i];
        perm[i] = perm[j];
        perm[j] = tmp;
    }
}

/* The m images in t->x moved by random translations of up to o->shift pixels each way (into
 * t->xs), or t->x itself without shifts. */
static const float *shifted_batch(trainer *t, int m)
{
    const int shift = t->o->shift;
    if (shift <= 0)
        return t->x;
    const uint64_t ss = cg_stream(CG_RNG_SHUFFLE, (1ull << 40) + (uint64_t)t->step);
    const int span = 2 * shift + 1;
    for (int i = 0; i < m; i++) {
        const uint64_t u = cg_rng_u64(t->o->seed, ss, (uint64_t)i);
        const int dy = (int)(u % (uint64_t)span) - shift;
        const int dx = (int)((u >> 32) % (uint64_t)span) - shift;
        shift_image(t->x + (size_t)i * PIX, t->xs + (size_t)i * PIX, dy, dx);
    }
    return t->xs;
}

/* One Adam step on the images idx[0..m): adds the summed loss and the right predictions. The
 * learning rate decays from lr to lr * lr_final along a cosine over the run. */
static void train_step(cg_classifier *c, const cg_dataset *ds, const int64_t *idx, int m,
                       trainer *t, double *loss_sum, long *right)
{
    const cg_clf_train_opts *o = t->o;
    cg_net *net = &c->net;
    const int K = c->n_classes;
    cg_data_batch(ds, idx, m, 0.0f, 1.0f, t->x, t->lab);
    const float *in = shifted_batch(t, m);
    memset(net->grad, 0, sizeof(float) * net->n_params);
    const cg_fwd_opts fo = {1, o->seed, (uint64_t)t->step, 0, NULL, NULL};
    const float *logits = cg_net_forward(net, &c->tape, in, m, &fo);
    *loss_sum += cg_softmax_xent(m, K, logits, t->lab, 1.0f / (float)m, t->dl, NULL) * m;
    *right += count_right(logits, m, K, t->lab);
    cg_net_backward(net, &c->tape, t->dl, 1, NULL);
    const double frac = t->total > 1 ? (double)t->step / (double)(t->total - 1) : 1.0;
    t->adam.lr = (float)(o->lr * (o->lr_final + (1.0 - o->lr_final) * 0.5 *
                                                    (1.0 + cos(M_PI * frac))));
    cg_adam_step(&t->adam, net->param, net->grad, net->adam_m, net->adam_v, net->n_params);
    t->step++;
}

/* One line per epoch: loss, training accuracy, (the last epoch, or every epoch with
 * eval_every_epoch) held-out accuracy, times. */
static void log_epoch(cg_classifier *c, const cg_dataset *ds, int ep, const trainer *t,
                      const int64_t *val_idx, long n_val, double loss_sum, long seen,
                      double t0, double t_start, FILE *log)
{
    const cg_clf_train_opts *o = t->o;
    fprintf(log, "epoch %d/%d: loss %.4f  train acc %.4f", ep + 1, o->epochs,
            loss_sum / (double)seen, c->train_accuracy);
    if (val_idx && n_val > 0 && (o->eval_every_epoch || ep + 1 == o->epochs)) {
        c->heldout_accuracy = cg_classifier_accuracy(c, ds, val_idx, n_val);
        fprintf(log, "  held-out acc %.4f", c->heldout_accuracy);
    }
    fprintf(log, "  (%.1f s, %.0f images/s; total %.1f s)\n", cg_now() - t0,
            (double)seen / (cg_now() - t0), cg_now() - t_start);
    fflush(log);
}

static int check_train_set(const cg_classifier *c, const cg_dataset *ds,
                           const int64_t *train_idx, long n_train, int B, cg_error *e)
{
    if (n_train < B)
        return cg_fail(e, "classifier: %ld training images, fewer than a batch (%d)", n_train,
                       B);
    for (long i = 0; i < n_train; i++)
        if (ds->labels[train_idx[i]] >= c->n_classes)
            return cg_fail(e, "classifier: label %d of image %lld is not below %d classes",
                           ds->labels[train_idx[i]], (long long)train_idx[i], c->n_classes);
    return 0;
}

int cg_classifier_train(cg_classifier *c, const cg_dataset *ds, const int64_t *train_idx,
                        long n_train, const int64_t *val_idx, long n_val,
                        const cg_clf_train_opts *o, FILE *log, cg_error *e)
{
    const int B = o->batch < c->max_batch ? o->batch : c->max_batch;
    if (check_train_set(c, ds, train_idx, n_train, B, e))
        return -1;
    trainer t;
    trainer_init(&t, o, B, c->n_classes, n_train);
    const double t_start = cg_now();
    for (int ep = 0; ep < o->epochs; ep++) {
        epoch_order(t.perm, train_idx, n_train, o->seed, ep);
        double loss_sum = 0.0;
        long right = 0, seen = 0;
        const double t0 = cg_now();
        for (long s = 0; s < n_train; s += B) {
            const int m = n_train - s < B ? (int)(n_train - s) : B;
            train_step(c, ds, t.perm + s, m, &t, &loss_sum, &right);
            seen += m;
        }
        c->train_accuracy = (double)right / (double)seen;
        if (log)
            log_epoch(c, ds, ep, &t, val_idx, n_val, loss_sum, seen, t0, t_start, log);
    }
    if (val_idx && n_val > 0 && !log)
        c->heldout_accuracy = cg_classifier_accuracy(c, ds, val_idx, n_val);
    c->heldout_images = n_val;
    c->train_images = n_train;
    trainer_free(&t);
    return 0;
}

/* ---- feature statistics ------------------------------------------------------------- */

/* Feature fit of images idx[0..n) into g (allocated here). */
static int fit_features(cg_classifier *c, const cg_dataset *ds, const int64_t *idx, long n,
                        cg_gauss *g)
{
    const int B = c->max_batch;
    float *x = cg_alloc(sizeof(float) * (size_t)B * PIX);
    float *f = cg_alloc(sizeof(float) * (size_t)B * FEAT);
    cg_moments m;
    cg_moments_init(&m, FEAT);
    for (long s = 0; s < n; s += B) {
        const int k = n - s < B ? (int)(n - s) : B;
        cg_data_batch(ds, idx + s, k, 0.0f, 1.0f, x, NULL);
        cg_classifier_forward(c, x, k, f, NULL);
        cg_moments_add(&m, f, k);
    }
    cg_gauss_init(g, FEAT);
    const int rc = cg_gauss_from_moments(&m, g);
    cg_moments_free(&m);
    cg_free(x);
    cg_free(f);
    return rc;
}

int cg_classifier_compute_stats(cg_classifier *c, const cg_dataset *ds, const int64_t *held,
                                long n_held, const int64_t *train, long n_train, cg_error *e)
{
    if (n_held < 2 || n_train < 2)
        return cg_fail(e, "classifier: feature statistics need at least 2 images per part "
                          "(held-out %ld, train %ld)", n_held, n_train);
    if (c->heldout.mean)
        cg_gauss_free(&c->heldout);
    if (c->train.mean)
        cg_gauss_free(&c->train);
    if (fit_features(c, ds, held, n_held, &c->heldout) ||
        fit_features(c, ds, train, n_train, &c->train))
        return cg_fail(e, "classifier: feature statistics failed");
    memset(c->class_counts, 0, sizeof c->class_counts);
    for (long i = 0; i < n_held; i++)
        c->class_counts[ds->labels[held[i]]]++;
    c->has_stats = 1;
    return 0;
}

/* ---- the classifier file: writing --------------------------------------------------- */

typedef struct {
    const cg_classifier *c;
    int epochs;
    uint64_t seed;
} save_ctx;

/* /weights/<tensor>: one checksummed chunk each. */
static int put_weights(hid_t f, const cg_net *net, const char *path, cg_error *e)
{
    hid_t g = cg_h5_group_new(f, "/weights", 0, path, e);
    if (g < 0)
        return -1;
    int rc = 0;
    for (int t = 0; t < net->n_tensors && !rc; t++) {
        const cg_tensor *T = &net->tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = cg_h5_dset_put(g, T->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, T->ndim, dims, dims,
                            net->param + T->offset, path, "/weights", e);
    }
    H5Gclose(g);
    return rc;
}

/* /stats: the two feature fits, the held-out class counts and the fits' image counts. */
static int put_stats(hid_t f, const cg_classifier *c, const char *path, cg_error *e)
{
    hid_t g = cg_h5_group_new(f, "/stats", 0, path, e);
    if (g < 0)
        return -1;
    hsize_t d1[1] = {FEAT}, d2[2] = {FEAT, FEAT}, dk[1] = {(hsize_t)c->n_classes};
    int64_t counts[CG_MAX_CLASSES];
    for (int k = 0; k < c->n_classes; k++)
        counts[k] = c->class_counts[k];
    const hid_t f64 = H5T_IEEE_F64LE, dbl = H5T_NATIVE_DOUBLE;
    const char *gp = "/stats";
    const int rc =
        cg_h5_dset_put(g, "heldout_mean", f64, dbl, 1, d1, d1, c->heldout.mean, path, gp, e) ||
        cg_h5_dset_put(g, "heldout_cov", f64, dbl, 2, d2, d2, c->heldout.cov, path, gp, e) ||
        cg_h5_dset_put(g, "train_mean", f64, dbl, 1, d1, d1, c->train.mean, path, gp, e) ||
        cg_h5_dset_put(g, "train_cov", f64, dbl, 2, d2, d2, c->train.cov, path, gp, e) ||
        cg_h5_dset_put(g, "heldout_class_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dk, dk,
                       counts, path, gp, e) ||
        cg_h5_attr_put_i64(g, "heldout_fit_images", c->heldout.n, path, e) ||
        cg_h5_attr_put_i64(g, "train_fit_images", c->train.n, path, e);
    H5Gclose(g);
    return rc ? -1 : 0;
}

/* The root's attributes (format above). */
static int put_attrs(hid_t f, const save_ctx *s, const char *path, cg_error *e)
{
    const cg_classifier *c = s->c;
    char classes[CG_MAX_CLASSES + 1] = {0}, rule[160];
    memcpy(classes, c->chars, (size_t)c->n_classes);
    snprintf(rule, sizeof rule,
             "image i is held out when splitmix64(i ^ 0x%016llX) %% 5 == 0 (about 20%%)",
             (unsigned long long)CG_HELDOUT_SALT);
    const char *arch = "conv 1->32 k3 s2 p1 relu; conv 32->64 k3 s2 p1 relu; flatten; "
                       "dense 3136->128 relu (features); dropout 0.3; dense 128->K";
    if (cg_h5_attr_put_str(f, "format", CG_CLF_FORMAT, path, e) ||
        cg_h5_attr_put_i32(f, "format_version", CG_CLF_FORMAT_VERSION, path, e) ||
        cg_h5_attr_put_str(f, "classes", classes, path, e) ||
        cg_h5_attr_put_i32(f, "n_classes", c->n_classes, path, e) ||
        cg_h5_attr_put_i32(f, "feature_dim", FEAT, path, e) ||
        cg_h5_attr_put_f64(f, "heldout_accuracy", c->heldout_accuracy, path, e) ||
        cg_h5_attr_put_f64(f, "train_accuracy", c->train_accuracy, path, e) ||
        cg_h5_attr_put_i64(f, "heldout_images", c->heldout_images, path, e) ||
        cg_h5_attr_put_i64(f, "train_images", c->train_images, path, e) ||
        cg_h5_attr_put_i32(f, "epochs", s->epochs, path, e) ||
        cg_h5_attr_put_u64(f, "seed", s->seed, path, e) ||
        cg_h5_attr_put_str(f, "data", c->source, path, e) ||
        cg_h5_attr_put_str(f, "split_rule", rule, path, e) ||
        cg_h5_attr_put_str(f, "architecture", arch, path, e))
        return -1;
    return cg_h5_attr_put_created(f, path, e);
}

static int fill_file(hid_t f, const void *ctx, const char *path, cg_error *e)
{
    const save_ctx *s = ctx;
    if (put_weights(f, &s->c->net, path, e) ||
        (s->c->has_stats && put_stats(f, s->c, path, e)))
        return -1;
    return put_attrs(f, s, path, e);
}

/* Written like a checkpoint (crash-safe), but into an existing directory. */
int cg_classifier_save(const char *path, const cg_classifier *c, int epochs, uint64_t seed,
                       cg_error *e)
{
    const save_ctx s = {c, epochs, seed};
    const size_t stats = c->has_stats ? sizeof(double) * 2 * (FEAT + FEAT * FEAT) : 0;
    return cg_h5_write(path, "classifier", 0, fill_file, &s,
                       sizeof(float) * c->net.n_params + stats, e);
}

/* ---- the classifier file: reading --------------------------------------------------- */

/* format, format_version, n_classes, feature_dim and classes: what building c needs. An
 * attribute of the wrong type or range is reported as such (cg_h5_attr_get's message). */
static int read_header(hid_t f, const char *path, int32_t *nk, char *classes, size_t len,
                       cg_error *e)
{
    const char *what = "classifier file";
    char fmt[64] = "", shown[64];
    int32_t version = 0, fd = 0;
    int r = cg_h5_attr_get_strbuf(f, "format", fmt, sizeof fmt, path, e);
    if (r < 0)
        return -1;
    if (r == 0 || strcmp(fmt, CG_CLF_FORMAT))
        return cg_fail(e, "%s: not a chargan classifier file (format attribute '%s', expected "
                          "'%s'; make one with `chargan classifier train`)",
                       path, cg_h5_printable(fmt, shown, sizeof shown), CG_CLF_FORMAT);
    if (cg_h5_attr_need(f, "format_version", H5T_NATIVE_INT32, &version, path, what, e))
        return -1;
    if (version != CG_CLF_FORMAT_VERSION)
        return cg_fail(e, "%s: classifier format_version %d, this build reads %d", path,
                       (int)version, CG_CLF_FORMAT_VERSION);
    if (cg_h5_attr_need(f, "n_classes", H5T_NATIVE_INT32, nk, path, what, e) ||
        cg_h5_attr_need(f, "feature_dim", H5T_NATIVE_INT32, &fd, path, what, e) ||
        (r = cg_h5_attr_get_strbuf(f, "classes", classes, len, path, e)) < 0)
        return -1;
    if (r == 0 || fd != FEAT || (int)strlen(classes) != *nk)
        return cg_fail(e, "%s: not a valid classifier file: n_classes, feature_dim or classes "
                          "missing or inconsistent", path);
    return 0;
}

/* The optional summary attributes: accuracies, image counts, the data's description. */
static void read_summary(hid_t f, const char *path, cg_classifier *c)
{
    cg_error ignored = {{0}};
    int64_t v;
    cg_h5_attr_get(f, "heldout_accuracy", H5T_NATIVE_DOUBLE, &c->heldout_accuracy, path,
                   &ignored);
    cg_h5_attr_get(f, "train_accuracy", H5T_NATIVE_DOUBLE, &c->train_accuracy, path, &ignored);
    if (cg_h5_attr_get(f, "heldout_images", H5T_NATIVE_INT64, &v, path, &ignored) == 1)
        c->heldout_images = (long)v;
    if (cg_h5_attr_get(f, "train_images", H5T_NATIVE_INT64, &v, path, &ignored) == 1)
        c->train_images = (long)v;
    char source[512];
    if (cg_h5_attr_get_strbuf(f, "data", source, sizeof source, path, &ignored) == 1)
        snprintf(c->source, sizeof c->source, "%s", source);
}

static int read_weights(hid_t f, const char *path, cg_classifier *c, cg_error *e)
{
    hid_t g = cg_h5_group_open(f, "/weights", path, "classifier file", e);
    if (g < 0)
        return -1;
    int rc = 0;
    for (int t = 0; !rc && t < c->net.n_tensors; t++) {
        const cg_tensor *T = &c->net.tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = cg_h5_dset_read(g, T->name, H5T_NATIVE_FLOAT, T->ndim, dims,
                             c->net.param + T->offset, path, "/weights", "the classifier", e);
    }
    H5Oclose(g);
    return rc;
}

/* /stats, when the file has it: the two fits and the held-out class counts. */
static int read_stats(hid_t f, const char *path, cg_classifier *c, cg_error *e)
{
    if (H5Lexists(f, "stats", H5P_DEFAULT) <= 0)
        return 0;
    hid_t g = cg_h5_group_open(f, "/stats", path, "classifier file", e);
    if (g < 0)
        return -1;
    cg_gauss_init(&c->heldout, FEAT);
    cg_gauss_init(&c->train, FEAT);
    const int nk = c->n_classes;
    hsize_t d1[1] = {FEAT}, d2[2] = {FEAT, FEAT}, dk[1] = {(hsize_t)nk};
    int64_t counts[CG_MAX_CLASSES], nfit[2] = {0, 0};
    const hid_t dbl = H5T_NATIVE_DOUBLE;
    const char *gp = "/stats", *who = "the classifier";
    int rc = cg_h5_dset_read(g, "heldout_mean", dbl, 1, d1, c->heldout.mean, path, gp, who, e) ||
             cg_h5_dset_read(g, "heldout_cov", dbl, 2, d2, c->heldout.cov, path, gp, who, e) ||
             cg_h5_dset_read(g, "train_mean", dbl, 1, d1, c->train.mean, path, gp, who, e) ||
             cg_h5_dset_read(g, "train_cov", dbl, 2, d2, c->train.cov, path, gp, who, e) ||
             cg_h5_dset_read(g, "heldout_class_counts", H5T_NATIVE_INT64, 1, dk, counts, path,
                             gp, who, e);
    if (!rc) {
        cg_error ignored = {{0}};
        cg_h5_attr_get(g, "heldout_fit_images", H5T_NATIVE_INT64, &nfit[0], path, &ignored);
        cg_h5_attr_get(g, "train_fit_images", H5T_NATIVE_INT64, &nfit[1], path, &ignored);
        c->heldout.n = (long)nfit[0];
        c->train.n = (long)nfit[1];
        for (int k = 0; k < nk; k++)
            c->class_counts[k] = (long)counts[k];
        c->has_stats = 1;
    }
    H5Oclose(g);
    return rc ? -1 : 0;
}

int cg_classifier_load(const char *path, cg_classifier *c, int max_batch, cg_error *e)
{
    memset(c, 0, sizeof *c);
    hid_t f = cg_h5_open_ro(path, e);
    if (f < 0)
        return -1;
    char classes[256];
    int32_t nk = 0;
    if (read_header(f, path, &nk, classes, sizeof classes, e) ||
        cg_classifier_init(c, nk, classes, max_batch, 0, e)) {
        H5Fclose(f);
        return -1;
    }
    read_summary(f, path, c);
    const int rc = read_weights(f, path, c, e) || read_stats(f, path, c, e);
    H5Fclose(f);
    if (rc) {
        cg_classifier_free(c);
        return -1;
    }
    return 0;
}
