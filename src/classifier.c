/* The EMNIST classifier, its file, softmax cross-entropy and the quality score; see
 * classifier.h. */
#include "chargan/classifier.h"
#include "chargan/generate.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "chargan/ckpt.h"
#include "chargan/rng.h"

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

#define PIX CG_IMG_PIXELS
#define FEAT CG_CLF_FEATURES

int cg_heldout(long index) { return cg_mix64((uint64_t)index ^ CG_HELDOUT_SALT) % 5 == 0; }

long cg_part_indices(long total, int held_out, int64_t *out)
{
    long n = 0;
    for (long i = 0; i < total; i++)
        if (cg_heldout(i) == !!held_out)
            out[n++] = i;
    return n;
}

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

/* ---- training ------------------------------------------------------------------------ */

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

/* Index of the largest of v[0..K) (the first one on ties). */
static int argmax(const float *v, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        best = v[k] > v[best] ? k : best;
    return best;
}

/* How many of the m rows of scores[m][K] have their argmax at labels[i]. */
static long count_right(const float *scores, int m, int K, const int32_t *labels)
{
    long right = 0;
    for (int i = 0; i < m; i++)
        right += argmax(scores + (size_t)i * K, K) == labels[i];
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

int cg_classifier_train(cg_classifier *c, const cg_dataset *ds, const int64_t *train_idx,
                        long n_train, const int64_t *val_idx, long n_val,
                        const cg_clf_train_opts *o, FILE *log, cg_error *e)
{
    const int K = c->n_classes, B = o->batch < c->max_batch ? o->batch : c->max_batch;
    if (n_train < B)
        return cg_fail(e, "classifier: %ld training images, fewer than a batch (%d)", n_train,
                       B);
    for (long i = 0; i < n_train; i++)
        if (ds->labels[train_idx[i]] >= K)
            return cg_fail(e, "classifier: label %d of image %lld is not below %d classes",
                           ds->labels[train_idx[i]], (long long)train_idx[i], K);
    int64_t *perm = cg_alloc(sizeof(int64_t) * (size_t)n_train);
    float *x = cg_alloc(sizeof(float) * (size_t)B * PIX);
    float *xs = cg_alloc(sizeof(float) * (size_t)B * PIX);
    float *dl = cg_alloc(sizeof(float) * (size_t)B * K);
    int32_t *lab = cg_alloc(sizeof(int32_t) * (size_t)B);
    cg_net *net = &c->net;
    cg_adam adam = {o->lr, 0.9f, 0.999f, 1e-7f, 0};
    const long steps_per_epoch = (n_train + B - 1) / B;
    const long total = steps_per_epoch * o->epochs;
    long step = 0;
    const double t_start = cg_now();
    for (int ep = 0; ep < o->epochs; ep++) {
        memcpy(perm, train_idx, sizeof(int64_t) * (size_t)n_train);
        const uint64_t stream = cg_stream(CG_RNG_SHUFFLE, (uint64_t)ep);
        for (long i = n_train - 1; i > 0; i--) {
            const uint64_t u = cg_rng_u64(o->seed, stream, (uint64_t)i);
            const long j = (long)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
            const int64_t t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        double loss_sum = 0.0;
        long right = 0, seen = 0;
        const double t0 = cg_now();
        for (long s = 0; s < n_train; s += B, step++) {
            const int m = n_train - s < B ? (int)(n_train - s) : B;
            cg_data_batch(ds, perm + s, m, 0.0f, 1.0f, x, lab);
            const float *in = x;
            if (o->shift > 0) {
                /* Random translation by up to o->shift pixels in each direction. */
                const uint64_t ss = cg_stream(CG_RNG_SHUFFLE, (1ull << 40) + (uint64_t)step);
                const int span = 2 * o->shift + 1;
                for (int i = 0; i < m; i++) {
                    const uint64_t u = cg_rng_u64(o->seed, ss, (uint64_t)i);
                    const int dy = (int)(u % (uint64_t)span) - o->shift;
                    const int dx = (int)((u >> 32) % (uint64_t)span) - o->shift;
                    shift_image(x + (size_t)i * PIX, xs + (size_t)i * PIX, dy, dx);
                }
                in = xs;
            }
            memset(net->grad, 0, sizeof(float) * net->n_params);
            const cg_fwd_opts fo = {1, o->seed, (uint64_t)step, 0, NULL};
            const float *logits = cg_net_forward(net, &c->tape, in, m, &fo);
            loss_sum += cg_softmax_xent(m, K, logits, lab, 1.0f / (float)m, dl, NULL) * m;
            right += count_right(logits, m, K, lab);
            seen += m;
            cg_net_backward(net, &c->tape, dl, 1, NULL);
            /* Cosine decay from lr to lr * lr_final over the run. */
            const double frac = total > 1 ? (double)step / (double)(total - 1) : 1.0;
            adam.lr = (float)(o->lr * (o->lr_final + (1.0 - o->lr_final) * 0.5 *
                                                         (1.0 + cos(M_PI * frac))));
            cg_adam_step(&adam, net->param, net->grad, net->adam_m, net->adam_v,
                         net->n_params);
        }
        c->train_accuracy = (double)right / (double)seen;
        if (log) {
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
    }
    if (val_idx && n_val > 0 && !log)
        c->heldout_accuracy = cg_classifier_accuracy(c, ds, val_idx, n_val);
    c->heldout_images = n_val;
    c->train_images = n_train;
    cg_free(perm);
    cg_free(x);
    cg_free(xs);
    cg_free(dl);
    cg_free(lab);
    return 0;
}

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

/* ---- the classifier file ------------------------------------------------------------- */

static int h5_fail(cg_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int h5_fail(cg_error *e, const char *fmt, ...)
{
    char head[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    H5Eclear2(H5E_DEFAULT);
    return cg_fail(e, "%s", head);
}

/* Attribute with the same type in memory and in the file (as format_version 1 has it). */
static int put_attr(hid_t obj, const char *name, hid_t type, const void *val, const char *path,
                    cg_error *e)
{
    return cg_h5_attr_put(obj, name, type, type, val, path, e);
}

/* Dataset with a Fletcher-32 checksum, one chunk, in group gpath. */
static int put_dset(hid_t loc, const char *gpath, const char *name, hid_t ftype, hid_t mtype,
                    int ndim, const hsize_t *dims, const void *data, const char *path,
                    cg_error *e)
{
    return cg_h5_dset_put(loc, name, ftype, mtype, ndim, dims, dims, data, path, gpath, e);
}

static hid_t new_group(hid_t f, const char *name, const char *path, cg_error *e)
{
    hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        h5_fail(e, "%s: cannot create group /%s", path, name);
    return g;
}

static int fill_file(hid_t f, const cg_classifier *c, int epochs, uint64_t seed,
                     const char *path, cg_error *e)
{
    const cg_net *net = &c->net;
    int rc = 0;
    hid_t g = new_group(f, "weights", path, e);
    if (g < 0)
        return -1;
    for (int t = 0; t < net->n_tensors && !rc; t++) {
        const cg_tensor *T = &net->tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = put_dset(g, "/weights", T->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, T->ndim, dims,
                      net->param + T->offset, path, e);
    }
    H5Gclose(g);
    if (rc)
        return -1;
    if (c->has_stats) {
        g = new_group(f, "stats", path, e);
        if (g < 0)
            return -1;
        hsize_t d1[1] = {FEAT}, d2[2] = {FEAT, FEAT}, dk[1] = {(hsize_t)c->n_classes};
        int64_t counts[CG_MAX_CLASSES];
        for (int k = 0; k < c->n_classes; k++)
            counts[k] = c->class_counts[k];
        int64_t nfit[2] = {c->heldout.n, c->train.n};
        const hid_t f64 = H5T_IEEE_F64LE, dbl = H5T_NATIVE_DOUBLE;
        const char *gp = "/stats";
        rc = put_dset(g, gp, "heldout_mean", f64, dbl, 1, d1, c->heldout.mean, path, e) ||
             put_dset(g, gp, "heldout_cov", f64, dbl, 2, d2, c->heldout.cov, path, e) ||
             put_dset(g, gp, "train_mean", f64, dbl, 1, d1, c->train.mean, path, e) ||
             put_dset(g, gp, "train_cov", f64, dbl, 2, d2, c->train.cov, path, e) ||
             put_dset(g, gp, "heldout_class_counts", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dk,
                      counts, path, e) ||
             put_attr(g, "heldout_fit_images", H5T_NATIVE_INT64, &nfit[0], path, e) ||
             put_attr(g, "train_fit_images", H5T_NATIVE_INT64, &nfit[1], path, e);
        H5Gclose(g);
        if (rc)
            return -1;
    }
    char classes[CG_MAX_CLASSES + 1] = {0}, created[32];
    memcpy(classes, c->chars, (size_t)c->n_classes);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const int32_t version = CG_CLF_FORMAT_VERSION, nk = c->n_classes, fd = FEAT,
                  ep = epochs;
    const int64_t nh = c->heldout_images, nt = c->train_images;
    char rule[160];
    snprintf(rule, sizeof rule,
             "image i is held out when splitmix64(i ^ 0x%016llX) %% 5 == 0 (about 20%%)",
             (unsigned long long)CG_HELDOUT_SALT);
    rc = cg_h5_attr_put_str(f, "format", CG_CLF_FORMAT, path, e) ||
         put_attr(f, "format_version", H5T_NATIVE_INT32, &version, path, e) ||
         cg_h5_attr_put_str(f, "classes", classes, path, e) ||
         put_attr(f, "n_classes", H5T_NATIVE_INT32, &nk, path, e) ||
         put_attr(f, "feature_dim", H5T_NATIVE_INT32, &fd, path, e) ||
         put_attr(f, "heldout_accuracy", H5T_NATIVE_DOUBLE, &c->heldout_accuracy, path, e) ||
         put_attr(f, "train_accuracy", H5T_NATIVE_DOUBLE, &c->train_accuracy, path, e) ||
         put_attr(f, "heldout_images", H5T_NATIVE_INT64, &nh, path, e) ||
         put_attr(f, "train_images", H5T_NATIVE_INT64, &nt, path, e) ||
         put_attr(f, "epochs", H5T_NATIVE_INT32, &ep, path, e) ||
         put_attr(f, "seed", H5T_NATIVE_UINT64, &seed, path, e) ||
         cg_h5_attr_put_str(f, "data", c->source, path, e) ||
         cg_h5_attr_put_str(f, "split_rule", rule, path, e) ||
         cg_h5_attr_put_str(f, "architecture",
                            "conv 1->32 k3 s2 p1 relu; conv 32->64 k3 s2 p1 relu; flatten; "
                            "dense 3136->128 relu (features); dropout 0.3; dense 128->K",
                            path, e) ||
         cg_h5_attr_put_str(f, "created", created, path, e);
    return rc ? -1 : 0;
}

/* Written like a checkpoint (cg_h5_begin / cg_h5_commit), but into an existing directory. */
int cg_classifier_save(const char *path, const cg_classifier *c, int epochs, uint64_t seed,
                       cg_error *e)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char dir[4096];
    cg_path_dir(path, dir, sizeof dir);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return cg_fail(e, "cannot write classifier %s: directory %s does not exist", path, dir);
    const size_t stats = c->has_stats ? sizeof(double) * 2 * (FEAT + FEAT * FEAT) : 0;
    hid_t f = cg_h5_begin(path, "classifier", sizeof(float) * c->net.n_params + stats, e);
    if (f < 0)
        return -1;
    cg_error sub = {{0}};
    if (fill_file(f, c, epochs, seed, path, &sub)) {
        cg_h5_discard(f);
        return cg_fail(e, "cannot write classifier %s: %s", path, sub.msg);
    }
    return cg_h5_commit(f, path, "classifier", e);
}

static int get_attr(hid_t obj, const char *name, hid_t mtype, void *out)
{
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return -1;
    int rc = H5Aread(a, mtype, out) < 0 ? -1 : 0;
    H5Aclose(a);
    return rc;
}

/* A string attribute (variable or fixed length) into buf; -1 when absent or not a string. */
static int get_attr_str(hid_t obj, const char *name, char *buf, size_t len)
{
    buf[0] = 0;
    if (H5Aexists(obj, name) <= 0)
        return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING) {
        if (H5Tis_variable_str(t) > 0) {
            char *s = NULL;
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(t));
            if (H5Aread(a, mt, &s) >= 0) {
                snprintf(buf, len, "%s", s ? s : "");
                H5free_memory(s);
                rc = 0;
            }
            H5Tclose(mt);
        } else {
            size_t n = H5Tget_size(t);
            char *s = calloc(n + 1, 1);
            hid_t mt = H5Tcopy(t);
            if (s && H5Aread(a, mt, s) >= 0) {
                snprintf(buf, len, "%s", s);
                rc = 0;
            }
            free(s);
            H5Tclose(mt);
        }
    }
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    return rc;
}

/* Reads dataset `name` of group g, which must have exactly `count` elements of the given
 * class (shape checked by element count and rank). */
static int get_dset(hid_t g, const char *name, int ndim, const hsize_t *dims, hid_t mtype,
                    void *out, const char *path, cg_error *e)
{
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0)
        return cg_fail(e, "%s: not a valid classifier file: dataset '%s' is missing", path,
                       name);
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0)
        return h5_fail(e, "%s: cannot open dataset '%s'", path, name);
    hid_t sp = H5Dget_space(d);
    hsize_t have[8] = {0};
    int nd = H5Sget_simple_extent_ndims(sp);
    int same = nd == ndim;
    if (same) {
        H5Sget_simple_extent_dims(sp, have, NULL);
        for (int i = 0; i < nd; i++)
            same &= have[i] == dims[i];
    }
    int rc = 0;
    if (!same)
        rc = cg_fail(e, "%s: dataset '%s' has another shape than this classifier needs", path,
                     name);
    else if (H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = h5_fail(e, "%s: cannot read dataset '%s' (corrupt data?)", path, name);
    H5Sclose(sp);
    H5Dclose(d);
    return rc;
}

int cg_classifier_load(const char *path, cg_classifier *c, int max_batch, cg_error *e)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    memset(c, 0, sizeof *c);
    struct stat st;
    if (stat(path, &st))
        return cg_fail(e, "%s: %s", path, strerror(errno));
    if (H5Fis_hdf5(path) <= 0)
        return h5_fail(e, "%s: not an HDF5 file (or damaged)", path);
    hid_t fapl = cg_h5_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return h5_fail(e, "%s: cannot open (truncated or damaged HDF5 file?)", path);
    char fmt[64], classes[256], source[512];
    int32_t version = 0, nk = 0, fd = 0;
    int rc = 0;
    if (get_attr_str(f, "format", fmt, sizeof fmt) || strcmp(fmt, CG_CLF_FORMAT)) {
        rc = cg_fail(e, "%s: not a chargan classifier file (format attribute '%s', expected "
                        "'%s'; make one with `chargan classifier train`)",
                     path, fmt, CG_CLF_FORMAT);
    } else if (get_attr(f, "format_version", H5T_NATIVE_INT32, &version) ||
               version != CG_CLF_FORMAT_VERSION) {
        rc = cg_fail(e, "%s: classifier format_version %d, this build reads %d", path,
                     (int)version, CG_CLF_FORMAT_VERSION);
    } else if (get_attr(f, "n_classes", H5T_NATIVE_INT32, &nk) ||
               get_attr(f, "feature_dim", H5T_NATIVE_INT32, &fd) || fd != FEAT ||
               get_attr_str(f, "classes", classes, sizeof classes) ||
               (int)strlen(classes) != nk) {
        rc = cg_fail(e, "%s: not a valid classifier file: n_classes, feature_dim or classes "
                        "missing or inconsistent", path);
    } else if (cg_classifier_init(c, nk, classes, max_batch, 0, e)) {
        rc = -1;
    }
    if (rc) {
        H5Fclose(f);
        return -1;
    }
    get_attr(f, "heldout_accuracy", H5T_NATIVE_DOUBLE, &c->heldout_accuracy);
    get_attr(f, "train_accuracy", H5T_NATIVE_DOUBLE, &c->train_accuracy);
    int64_t v;
    if (!get_attr(f, "heldout_images", H5T_NATIVE_INT64, &v))
        c->heldout_images = (long)v;
    if (!get_attr(f, "train_images", H5T_NATIVE_INT64, &v))
        c->train_images = (long)v;
    if (!get_attr_str(f, "data", source, sizeof source))
        snprintf(c->source, sizeof c->source, "%s", source);
    hid_t g = H5Lexists(f, "weights", H5P_DEFAULT) > 0 ? H5Gopen2(f, "weights", H5P_DEFAULT)
                                                        : -1;
    if (g < 0)
        rc = cg_fail(e, "%s: not a valid classifier file: group /weights is missing", path);
    for (int t = 0; !rc && t < c->net.n_tensors; t++) {
        const cg_tensor *T = &c->net.tensors[t];
        hsize_t dims[4];
        for (int i = 0; i < T->ndim; i++)
            dims[i] = (hsize_t)T->dims[i];
        rc = get_dset(g, T->name, T->ndim, dims, H5T_NATIVE_FLOAT, c->net.param + T->offset,
                      path, e);
    }
    if (g >= 0)
        H5Gclose(g);
    if (!rc && H5Lexists(f, "stats", H5P_DEFAULT) > 0) {
        g = H5Gopen2(f, "stats", H5P_DEFAULT);
        cg_gauss_init(&c->heldout, FEAT);
        cg_gauss_init(&c->train, FEAT);
        hsize_t d1[1] = {FEAT}, d2[2] = {FEAT, FEAT}, dk[1] = {(hsize_t)nk};
        int64_t counts[CG_MAX_CLASSES], nfit[2] = {0, 0};
        rc = get_dset(g, "heldout_mean", 1, d1, H5T_NATIVE_DOUBLE, c->heldout.mean, path, e) ||
             get_dset(g, "heldout_cov", 2, d2, H5T_NATIVE_DOUBLE, c->heldout.cov, path, e) ||
             get_dset(g, "train_mean", 1, d1, H5T_NATIVE_DOUBLE, c->train.mean, path, e) ||
             get_dset(g, "train_cov", 2, d2, H5T_NATIVE_DOUBLE, c->train.cov, path, e) ||
             get_dset(g, "heldout_class_counts", 1, dk, H5T_NATIVE_INT64, counts, path, e);
        if (!rc) {
            get_attr(g, "heldout_fit_images", H5T_NATIVE_INT64, &nfit[0]);
            get_attr(g, "train_fit_images", H5T_NATIVE_INT64, &nfit[1]);
            c->heldout.n = (long)nfit[0];
            c->train.n = (long)nfit[1];
            for (int k = 0; k < nk; k++)
                c->class_counts[k] = (long)counts[k];
            c->has_stats = 1;
        }
        H5Gclose(g);
    }
    H5Fclose(f);
    if (rc) {
        cg_classifier_free(c);
        return -1;
    }
    return 0;
}

/* ---- the quality score --------------------------------------------------------------- */

int cg_eval_setup(cg_evaluator *ev, cg_classifier *clf, const cg_gauss *ref, int batch,
                  int noise_dim, cg_error *e)
{
    memset(ev, 0, sizeof *ev);
    if (batch < 1 || batch > clf->max_batch)
        return cg_fail(e, "eval: batch %d not in 1..%d (the classifier's)", batch,
                       clf->max_batch);
    if (!ref || !ref->mean || ref->d != FEAT)
        return cg_fail(e, "eval: the classifier has no reference feature statistics");
    ev->clf = clf;
    ev->batch = batch;
    ev->temperature = 1.0f;
    ev->noise_dim = noise_dim;
    if (cg_fid_setup(&ev->ref, ref)) {
        cg_fid_free(&ev->ref);
        return cg_fail(e, "eval: eigen-decomposition of the reference covariance failed");
    }
    const int K = clf->n_classes;
    ev->z = cg_alloc(sizeof(float) * (size_t)batch * (noise_dim > 0 ? noise_dim : 1));
    ev->imgs = cg_alloc(sizeof(float) * (size_t)batch * PIX);
    ev->feats = cg_alloc(sizeof(float) * (size_t)batch * FEAT);
    ev->probs = cg_alloc(sizeof(float) * (size_t)batch * K);
    ev->labels = cg_alloc(sizeof(int32_t) * (size_t)batch);
    ev->idx = cg_alloc(sizeof(int64_t) * (size_t)batch);
    cg_moments_init(&ev->mom, FEAT);
    cg_gauss_init(&ev->fit, FEAT);
    /* Class mix of the held-out part (uniform without statistics). */
    double total = 0.0, acc = 0.0;
    for (int k = 0; k < K; k++)
        total += clf->has_stats ? (double)clf->class_counts[k] : 1.0;
    for (int k = 0; k < K; k++) {
        acc += clf->has_stats ? (double)clf->class_counts[k] : 1.0;
        ev->class_cdf[k] = total > 0 ? acc / total : (double)(k + 1) / K;
    }
    ev->class_cdf[K - 1] = 1.0;
    return 0;
}

void cg_eval_free(cg_evaluator *ev)
{
    cg_fid_free(&ev->ref);
    cg_free(ev->z);
    cg_free(ev->imgs);
    cg_free(ev->feats);
    cg_free(ev->probs);
    cg_free(ev->labels);
    cg_free(ev->idx);
    cg_moments_free(&ev->mom);
    cg_gauss_free(&ev->fit);
    memset(ev, 0, sizeof *ev);
}

/* Scores one batch of images in ev->imgs; want[i] (may be NULL) the classifier class each
 * should be (-1: counts as a miss). */
static void score_batch(cg_evaluator *ev, int m, const int32_t *want, double *conf,
                        long *match, cg_eval_result *r)
{
    const int K = ev->clf->n_classes;
    cg_classifier_forward(ev->clf, ev->imgs, m, ev->feats, ev->probs);
    cg_moments_add(&ev->mom, ev->feats, m);
    for (int i = 0; i < m; i++) {
        const float *p = ev->probs + (size_t)i * K;
        const int best = argmax(p, K);
        *conf += p[best];
        r->class_hist[best]++;
        if (want)
            *match += best == want[i];
    }
}

static int finish(cg_evaluator *ev, cg_eval_result *r, double conf, long match, int has_match,
                  double t0, cg_error *e)
{
    const int K = ev->clf->n_classes;
    if (cg_gauss_from_moments(&ev->mom, &ev->fit))
        return cg_fail(e, "eval: at least 2 images are needed (got %ld)", r->n);
    r->fid = cg_fid_to(&ev->ref, &ev->fit);
    r->confidence = conf / (double)r->n;
    r->classes_covered = 0;
    double total = 0.0;
    for (int k = 0; k < K; k++)
        total += (double)ev->clf->class_counts[k];
    r->classes_covered_rel = 0;
    for (int k = 0; k < K; k++) {
        const double share = (double)r->class_hist[k] / (double)r->n;
        r->classes_covered += share >= 0.005;
        const double real = total > 0 ? (double)ev->clf->class_counts[k] / total : 1.0 / K;
        r->classes_covered_rel += share >= 0.5 * real;
    }
    r->class_match = has_match ? (double)match / (double)r->n : NAN;
    r->seconds = cg_now() - t0;
    return 0;
}

int cg_eval_gan(cg_evaluator *ev, cg_gan *gan, const char *gan_class_chars, long n,
                cg_eval_result *r, cg_error *e)
{
    const double t0 = cg_now();
    memset(r, 0, sizeof *r);
    r->n = n;
    const int nz = gan->preset.noise_dim, Kg = gan->preset.n_classes, K = ev->clf->n_classes;
    if (nz > ev->noise_dim)
        return cg_fail(e, "eval: noise dimension %d exceeds the evaluator's %d", nz,
                       ev->noise_dim);
    if (n < 2)
        return cg_fail(e, "eval: at least 2 samples are needed (got %ld)", n);
    if (Kg > CG_MAX_CLASSES)
        return cg_fail(e, "eval: the model has %d classes (at most %d supported)", Kg,
                       CG_MAX_CLASSES);
    /* Conditional models: GAN class <-> classifier class by character. */
    int to_clf[CG_MAX_CLASSES], to_gan[CG_MAX_CLASSES], all_mapped = Kg > 0;
    for (int k = 0; k < CG_MAX_CLASSES; k++)
        to_clf[k] = to_gan[k] = -1;
    for (int g = 0; g < Kg; g++) {
        if (!gan_class_chars) {
            to_clf[g] = g < K ? g : -1;
        } else {
            for (int k = 0; k < K; k++)
                if (gan_class_chars[g] && ev->clf->chars[k] == gan_class_chars[g])
                    to_clf[g] = k;
        }
        if (to_clf[g] >= 0)
            to_gan[to_clf[g]] = g;
    }
    for (int k = 0; k < K && Kg > 0; k++)
        if (to_gan[k] < 0 && (!ev->clf->has_stats || ev->clf->class_counts[k] > 0))
            all_mapped = 0;
    const int chunk = ev->batch < gan->cfg.local_batch ? ev->batch : gan->cfg.local_batch;
    const uint64_t seed = gan->cfg.seed;
    cg_moments_reset(&ev->mom);
    int32_t want[1024];
    const int wchunk = chunk < 1024 ? chunk : 1024;
    double conf = 0.0;
    long match = 0;
    for (long first = 0; first < n; first += wchunk) {
        const int m = n - first < wchunk ? (int)(n - first) : wchunk;
        if (Kg > 0)
            for (int i = 0; i < m; i++) {
                if (all_mapped && !ev->uniform_classes) {
                    const double u =
                        cg_rng_uniform(seed, cg_stream(CG_RNG_SAMPLE, 2), (uint64_t)(first + i));
                    int k = 0;
                    while (k < K - 1 && (ev->class_cdf[k] <= u || to_gan[k] < 0))
                        k++;
                    if (to_gan[k] < 0) /* u fell past the last mapped class */
                        while (to_gan[k] < 0)
                            k--;
                    ev->labels[i] = to_gan[k];
                } else {
                    ev->labels[i] = (int32_t)((first + i) % Kg);
                }
                want[i] = to_clf[ev->labels[i]];
            }
        cg_generate(gan, seed, first, m, Kg > 0 ? ev->labels : NULL, ev->temperature, ev->imgs,
                    ev->z);
        score_batch(ev, m, Kg > 0 ? want : NULL, &conf, &match, r);
    }
    return finish(ev, r, conf, match, Kg > 0, t0, e);
}

int cg_eval_images(cg_evaluator *ev, const cg_dataset *ds, const int64_t *idx, long n,
                   cg_eval_result *r, cg_error *e)
{
    const double t0 = cg_now();
    memset(r, 0, sizeof *r);
    r->n = n;
    if (n < 2)
        return cg_fail(e, "eval: at least 2 images are needed (got %ld)", n);
    cg_moments_reset(&ev->mom);
    double conf = 0.0;
    long match = 0;
    for (long s = 0; s < n; s += ev->batch) {
        const int m = n - s < ev->batch ? (int)(n - s) : ev->batch;
        cg_data_batch(ds, idx + s, m, 0.0f, 1.0f, ev->imgs, ev->labels);
        score_batch(ev, m, ev->labels, &conf, &match, r);
    }
    return finish(ev, r, conf, match, 1, t0, e);
}

long cg_split_indices(long total, int held_out, long n, int64_t *out)
{
    int64_t *all = cg_alloc(sizeof(int64_t) * (size_t)(total ? total : 1));
    long m = 0;
    for (long i = 0; i < total; i++)
        if (cg_heldout(i) == !!held_out)
            all[m++] = i;
    /* Fisher-Yates with seed 0, so "the first n" is a fixed random subset of the part. */
    const uint64_t stream = cg_stream(CG_RNG_SAMPLE, 3);
    for (long i = m - 1; i > 0; i--) {
        const uint64_t u = cg_rng_u64(0, stream, (uint64_t)i);
        const long j = (long)(((unsigned __int128)u * (uint64_t)(i + 1)) >> 64);
        const int64_t t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    const long k = m < n ? m : n;
    memcpy(out, all, sizeof(int64_t) * (size_t)k);
    cg_free(all);
    return k;
}

void cg_eval_result_json(const cg_eval_result *r, char *buf, size_t len)
{
    char cm[32];
    if (isnan(r->class_match))
        snprintf(cm, sizeof cm, "null");
    else
        snprintf(cm, sizeof cm, "%.4f", r->class_match);
    snprintf(buf, len,
             "{\"n\": %ld, \"fid\": %.4f, \"confidence\": %.4f, \"classes_covered\": %d, "
             "\"classes_covered_rel\": %d, \"class_match\": %s, \"seconds\": %.2f}",
             r->n, r->fid, r->confidence, r->classes_covered, r->classes_covered_rel, cm,
             r->seconds);
}
