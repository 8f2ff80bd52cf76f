/* An EMNIST classifier built with the engine: the network, its training and its file. The GAN
 * quality score computed with it is in chargan/eval.h.
 *
 * Network (a layer table, cg_classifier_layers), input [B][28][28] in [0, 1] (upright, the
 * layout of cg_data_batch(..., 0, 1, ...) and of cg_gan_generate):
 *     conv0   1 -> 32, 3x3 stride 2 pad 1, ReLU          28x28 -> 14x14
 *     conv1  32 -> 64, 3x3 stride 2 pad 1, ReLU          14x14 -> 7x7
 *     flatten 3136
 *     dense0 3136 -> 128, ReLU                           the FEATURES (FID, 128-d)
 *     dropout 0.3 (training only)
 *     dense1  128 -> K logits                            K = 47 for bymerge/balanced
 * Strided convolutions take the place of max-pooling. Trained with softmax cross-entropy
 * (cg_softmax_xent) and Adam.
 *
 * Held-out protocol. The only large EMNIST set here is bymerge-test (116,323 images). It is
 * split by index into a HELD-OUT part (about 20%) and a CLASSIFIER-TRAIN part (about 80%) by
 * the rule of chargan/data.h (cg_heldout). The classifier never trains on held-out images;
 * its reported accuracy is on the held-out part.
 *
 * Classifier file (HDF5, written crash-safely: PATH's directory/.NAME.tmp, flush, fsync,
 * rename, fsync of the directory):
 *   /weights/<tensor>   float32, the tensor table's names and natural shapes
 *                       (e.g. "dense0.kernel" [3136,128])
 *   /stats/heldout_mean, /stats/heldout_cov     float64 [128], [128,128]: Gaussian fit of the
 *   /stats/train_mean,   /stats/train_cov       features of the held-out / classifier-train part
 *   /stats/heldout_class_counts                 int64 [K] images per class in the held-out part
 *   attributes on /: format "chargan-classifier", format_version 1 (int32), classes (string,
 *     character of each class), n_classes (int32), feature_dim (int32), heldout_accuracy
 *     (float64), train_accuracy (float64), heldout_images, train_images (int64), epochs (int32),
 *     seed (uint64), data (string), split_rule (string), architecture (string), created
 *     (ISO 8601 UTC).
 * All functions that read or write files are serial and report -1 with a one-line message. */
#ifndef CHARGAN_CLASSIFIER_H
#define CHARGAN_CLASSIFIER_H
#include <stdint.h>
#include <stdio.h>

#include "chargan/data.h"
#include "chargan/fid.h"
#include "chargan/model.h"
#include "chargan/util.h"

#define CG_CLF_FORMAT "chargan-classifier"
#define CG_CLF_FORMAT_VERSION 1
#define CG_CLF_FEATURES 128

/* Softmax cross-entropy on logits[B][K] with integer labels: returns
 *     scale * sum_i ( logsumexp(logits_i) - logits_i[label_i] )
 * and, when dlogits is not NULL, dlogits = scale * (softmax(logits) - onehot(label)).
 * probs (may be NULL) receives softmax(logits) [B][K]. dlogits may alias neither input. Stable
 * for any logits (max subtracted; sums in double). */
double cg_softmax_xent(int B, int K, const float *logits, const int32_t *labels, float scale,
                       float *dlogits, float *probs);

/* Row-wise softmax of logits[B][K] into probs (may be the same array). */
void cg_softmax(int B, int K, const float *logits, float *probs);

/* Index of the largest of v[0..K) (the first one on ties): the predicted class. */
int cg_argmax(const float *v, int K);

/* The layer table above for K classes; returns the number of layers (<= CG_MAX_LAYERS). */
int cg_classifier_layers(int n_classes, cg_layer_spec *out);

typedef struct {
    cg_net net;
    cg_tape tape;
    int n_classes;
    char chars[CG_MAX_CLASSES]; /* character of each class */
    int feat_layer;             /* layer whose output is the 128 features */
    int max_batch;
    /* From a classifier file (zero / unset for a fresh network): */
    double heldout_accuracy, train_accuracy;
    long heldout_images, train_images;
    int has_stats;              /* the two fits and the class counts below are valid */
    cg_gauss heldout, train;    /* feature fits of the held-out / classifier-train part */
    long class_counts[CG_MAX_CLASSES]; /* held-out images per class */
    char source[512];           /* data the classifier was trained on */
} cg_classifier;

/* Builds the network for n_classes classes and batches up to max_batch (weights Glorot from
 * seed). chars may be NULL. */
int cg_classifier_init(cg_classifier *c, int n_classes, const char *chars, int max_batch,
                       uint64_t seed, cg_error *e);
void cg_classifier_free(cg_classifier *c);

/* Inference on n <= max_batch images [n][28][28] in [0, 1]: features [n][128] and
 * probabilities [n][K] (either may be NULL). Dropout off. No allocation. */
void cg_classifier_forward(cg_classifier *c, const float *imgs, int n, float *feats,
                           float *probs);

/* Training (single process): Adam (beta1 0.9, beta2 0.999) on the mean softmax
 * cross-entropy of batches drawn from train_idx in a new random order each epoch (seed,
 * CG_RNG_SHUFFLE, epoch), every image moved by a random translation of up to `shift` pixels
 * each way (0: none), learning rate decaying from lr to lr * lr_final along a cosine. */
typedef struct {
    int epochs, batch;
    float lr, lr_final;
    uint64_t seed;
    int shift;
    int eval_every_epoch; /* held-out accuracy after every epoch, not only the last */
} cg_clf_train_opts;
void cg_clf_default_train_opts(cg_clf_train_opts *o); /* 6 epochs, batch 128, lr 2e-3,
                                                         lr_final 0.02, seed 1, shift 1 */
/* Trains c on images train_idx of ds; val_idx (may be NULL) gives c->heldout_accuracy at the
 * end. Prints one line per epoch to log (may be NULL). Sets train/heldout counts. */
int cg_classifier_train(cg_classifier *c, const cg_dataset *ds, const int64_t *train_idx,
                        long n_train, const int64_t *val_idx, long n_val,
                        const cg_clf_train_opts *o, FILE *log, cg_error *e);
/* Fraction of images idx[0..n) whose argmax is their label. */
double cg_classifier_accuracy(cg_classifier *c, const cg_dataset *ds, const int64_t *idx,
                              long n);
/* Fits c->heldout and c->train to the features of the two parts and counts the held-out
 * classes; sets has_stats. */
int cg_classifier_compute_stats(cg_classifier *c, const cg_dataset *ds, const int64_t *held,
                                long n_held, const int64_t *train, long n_train, cg_error *e);

/* Writes / reads a classifier file (format above). save writes the stats only when
 * c->has_stats. load builds c (max_batch as for init) and fills everything the file holds. */
int cg_classifier_save(const char *path, const cg_classifier *c, int epochs, uint64_t seed,
                       cg_error *e);
int cg_classifier_load(const char *path, cg_classifier *c, int max_batch, cg_error *e);

#endif
