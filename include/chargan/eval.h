/* The GAN quality score: a generator (or a set of real images) scored with the EMNIST
 * classifier (chargan/classifier.h).
 *   fid                  Fréchet distance between the classifier's 128 features of the images
 *                        and a reference fit (the held-out part's, chargan/data.h)
 *   confidence           mean of the largest softmax probability
 *   classes_covered      classes receiving >= 0.5% of the argmax predictions
 *   classes_covered_rel  classes receiving at least half of their share among the real
 *                        held-out images
 *   class_match          fraction classified as the class asked for (conditional models) or
 *                        as their label (real images)
 * Used by `chargan eval` and by the trainer's --eval-every. */
#ifndef CHARGAN_EVAL_H
#define CHARGAN_EVAL_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "chargan/classifier.h"
#include "chargan/data.h"
#include "chargan/fid.h"
#include "chargan/gan.h"
#include "chargan/util.h"

/* Scores of one set of images (generated or real). */
typedef struct {
    long n;
    double fid;            /* Fréchet distance of its features to the reference fit */
    double confidence;     /* mean over images of the largest softmax probability */
    int classes_covered;   /* classes that receive >= 0.5% of the argmax predictions */
    /* Classes that receive at least half of their share among the real held-out images
     * (argmax predictions). On bymerge's natural class mix several classes (G, H, Q, f, g, q)
     * hold less than 0.5% of the real images, so classes_covered of real data is ~41 of 47;
     * this count measures coverage against the data's own mix instead (real data: ~46). */
    int classes_covered_rel;
    double class_match;    /* fraction whose argmax is the class asked for / the label;
                              NAN when the set has no classes (unconditional model) */
    long class_hist[CG_MAX_CLASSES]; /* argmax predictions per class */
    double seconds;        /* wall time of the evaluation (generation included) */
} cg_eval_result;

/* One-time setup for repeated evaluations: the classifier, the reference fit (prepared for
 * FID), and buffers for batches of `batch` images. Everything cg_eval_gan and cg_eval_images
 * need is allocated here, so the trainer can call them every N steps without allocating. */
typedef struct {
    cg_classifier *clf;
    cg_fid_ref ref;
    int batch, noise_dim;
    float *z, *imgs, *feats, *probs;
    int32_t *labels;
    int64_t *idx;
    cg_moments mom;
    cg_gauss fit;
    /* Cumulative class distribution for conditional generation (the held-out part's class
     * mix, so a conditional model is compared with data of the same mix). */
    double class_cdf[CG_MAX_CLASSES];
    /* Set to ask a conditional model for every class equally often (sample i: class
     * i mod classes) instead of the held-out mix: then classes_covered counts the classes the
     * model can draw recognizably, not the rare classes' share of the natural mix. */
    int uniform_classes;
    float temperature; /* noise scale of the generated samples (cg_generate); 1 by default */
} cg_evaluator;

/* ref: reference fit (usually &clf->heldout). noise_dim: the largest noise dimension of the
 * GANs that will be evaluated (0 when only real images are). Returns 0 or -1 with e set. */
int cg_eval_setup(cg_evaluator *ev, cg_classifier *clf, const cg_gauss *ref, int batch,
                  int noise_dim, cg_error *e);
void cg_eval_free(cg_evaluator *ev);

/* Generates n samples of gan (rank 0 is enough: generation runs in inference mode and
 * synchronizes nothing) in chunks of min(ev->batch, gan->cfg.local_batch) and scores them.
 * Noise of sample i: ev->temperature * cg_rng_normal_fill(z, noise_dim, seed,
 * cg_stream(CG_RNG_SAMPLE, 1), i*noise_dim), seed = gan->cfg.seed, so a given checkpoint
 * always gets the same samples (cg_eval_setup sets the temperature to 1; set it after).
 * Conditional models (gan->preset.n_classes > 0) are asked for classes drawn from the held-out
 * class mix (uniform u = cg_rng_uniform(seed, cg_stream(CG_RNG_SAMPLE, 2), i)), or for class
 * i mod n_classes with ev->uniform_classes; gan_class_chars (may be NULL: the classifier's
 * classes) maps the GAN's class k to a character, which is matched to the classifier's class
 * of that character for class_match. No allocation. */
int cg_eval_gan(cg_evaluator *ev, cg_gan *gan, const char *gan_class_chars, long n,
                cg_eval_result *r, cg_error *e);
/* The same for any kind of model (chargan/kind.h): its generating network, seed, classes. */
struct cg_kind;
int cg_eval_model(cg_evaluator *ev, struct cg_kind *k, const char *gan_class_chars, long n,
                  cg_eval_result *r, cg_error *e);

/* Scores n real images idx[0..n) of ds (their labels give class_match = accuracy). */
int cg_eval_images(cg_evaluator *ev, const cg_dataset *ds, const int64_t *idx, long n,
                   cg_eval_result *r, cg_error *e);

/* A result as a JSON object (a new reference; cg_json_text prints it on one line), keys in
 * this order: n, fid (rounded to 4 decimals), confidence (4), classes_covered,
 * classes_covered_rel, class_match (4; null for NAN: no classes), seconds (2). Non-finite
 * numbers are null. */
json_t *cg_eval_result_json(const cg_eval_result *r);

#endif
