/* EMNIST data: readers for the official IDX files (gzip or not) and the Kaggle CSV, one
 * decoded copy per node in an MPI-3 shared-memory window, per-batch conversion to float, and
 * a distributed sampler whose global batches do not depend on the number of ranks.
 *
 * Finding the data (cg_data_opts.data):
 *   - a directory: files of split o->split (default "balanced-train"), tried in this order:
 *       emnist-SPLIT-images-idx3-ubyte.gz + emnist-SPLIT-labels-idx1-ubyte.gz
 *       emnist-SPLIT-images-idx3-ubyte    + emnist-SPLIT-labels-idx1-ubyte
 *       emnist-SPLIT.csv (Kaggle)
 *     When the split is missing, the error lists the splits present and suggests --split.
 *   - an IDX images file: labels from o->labels, else the same name with "images-idx3"
 *     replaced by "labels-idx1" (with or without ".gz"). o->split is ignored for files.
 *   - a file whose name ends in ".csv" or ".csv.gz": Kaggle CSV, no header, one image per
 *     line: label then 784 pixels 0..255; CRLF accepted.
 *   - NULL: $EMNIST_DIR if set, then ./data/emnist (the first that is a directory).
 * Mapping (label -> character): o->mapping, else emnist-FAMILY-mapping.txt next to the data,
 * FAMILY being the first '-'-separated part of the split ("bymerge" for "bymerge-test"). If
 * that file is absent the mapping EMNIST defines for FAMILY is used (built in for byclass,
 * bymerge, balanced, letters, digits, mnist); files not named emnist-FAMILY-... fall back to
 * the balanced mapping (47 classes, what the project's seed used). Labels not in the mapping
 * are an error.
 *
 * Images are returned UPRIGHT (row 0 = top): both formats store them transposed and the
 * loader undoes it once, at load time. */
#ifndef CHARGAN_DATA_H
#define CHARGAN_DATA_H
#include <stdint.h>

#include "chargan/util.h"

typedef struct cg_ctx cg_ctx; /* the MPI context, chargan/dist.h */

#define CG_IMG_SIDE 28
#define CG_IMG_PIXELS 784
#define CG_MAX_CLASSES 64

typedef struct {
    long n;                 /* images */
    const uint8_t *pixels;  /* n*784, upright, 0..255 (255 = ink); one copy per node */
    const uint8_t *labels;  /* n, each a class present in the mapping */
    int n_classes;          /* largest class index + 1 (47 balanced/bymerge, 27 letters) */
    /* chars[k] = ASCII character of class k; 0 marks an index the mapping does not use
     * (class 0 of the letters split, whose classes are 1..26). */
    char chars[CG_MAX_CLASSES];
    char source[512];       /* what was loaded: path, format, split, mapping */
    long file_bytes;        /* size on disk of the images (or CSV) file, for throughput */
    /* private */
    struct cg_data_shm *shm_; /* shared window and its communicator (cg_data_load) */
    uint8_t *mem_;          /* private copy (cg_data_load_local), else NULL */
    int kind_;              /* 0 nothing loaded, 1 shared window, 2 private memory */
} cg_dataset;

typedef struct {
    const char *data;    /* file or directory; NULL: $EMNIST_DIR, then ./data/emnist */
    const char *labels;  /* IDX labels file; NULL: derived from the images file name */
    const char *split;   /* for directories; NULL: "balanced-train" */
    long limit;          /* keep the first `limit` images; 0 = all */
    const char *mapping; /* mapping file; NULL: found by name, else built in (see above) */
} cg_data_opts;

/* COLLECTIVE over c->world (o may be NULL: all defaults). Rank 0 of each node reads and
 * decodes into a shared-memory window of that node; the other ranks of the node map the same
 * memory. Every rank returns the same status: 0, or -1 with the same one-line message
 * "FILE: problem" in e on every rank. Nothing is printed: the caller prints e->msg (once, on
 * rank 0). While the node's reader works, the other ranks wait in a sleeping poll, so the
 * reader gets the cores. */
int cg_data_load(cg_ctx *c, const cg_data_opts *o, cg_dataset *ds, cg_error *e);

/* The same without MPI calls, into private memory of this process (tools, tests). */
int cg_data_load_local(const cg_data_opts *o, cg_dataset *ds, cg_error *e);

/* Releases what either loader made; collective over the node when it came from cg_data_load.
 * Safe on a zeroed or already freed dataset. */
void cg_data_free(cg_dataset *ds);

/* Converts samples idx[0..n) to floats lo + (hi - lo) * pixel / 255, layout [n][28][28]
 * (upright); labels_out (may be NULL) gets their labels. No allocation. */
void cg_data_batch(const cg_dataset *ds, const int64_t *idx, int n, float lo, float hi,
                   float *out, int32_t *labels_out);

/* Distributed sampler. Epoch e is a permutation of 0..n-1: Fisher-Yates from the top,
 *     for i = n-1 .. 1:  j = floor(u * (i + 1) / 2^64),  u = cg_rng_u64(seed,
 *                        cg_stream(CG_RNG_SHUFFLE, e), i);  swap(perm[i], perm[j])
 * starting from the identity, so it is the same on every rank for any number of ranks.
 * Global batch `step` (counted from 0 over all epochs) is epoch step / batches_per_epoch,
 * slice [kB, (k+1)B) of that epoch's permutation with k = step % batches_per_epoch; the
 * n % B images left over at the end of an epoch are not used in that epoch (the next epoch
 * is a new permutation, so no image is excluded for good). Rank r of P takes the contiguous
 * part [floor(rB/P), floor((r+1)B/P)) of the slice: B/P indices when P divides B (what the
 * trainer guarantees); otherwise the parts differ by at most one index
 * (cg_sampler_count tells how many) and their union is still exactly the global batch. */
typedef struct {
    long n;
    int global_batch;
    uint64_t seed;
    long batches_per_epoch;
    long cached_epoch;      /* epoch whose permutation is in perm; -1 = none yet */
    int64_t *perm;          /* n */
    int64_t *subset;        /* n data set indices (cg_sampler_init_subset), or NULL */
} cg_sampler;

/* Fails (one-line message) when global_batch < 1 or n < global_batch. */
int cg_sampler_init(cg_sampler *s, long n, int global_batch, uint64_t seed, cg_error *e);
/* A sampler over part of a data set: everything above applies to positions 0..n-1 of
 * subset[] (copied), and the indices handed out are subset[position]. So the part's batches
 * are as rank-count invariant as the whole set's, and a function of (seed, step) alone. */
int cg_sampler_init_subset(cg_sampler *s, const int64_t *subset, long n, int global_batch,
                           uint64_t seed, cg_error *e);
void cg_sampler_free(cg_sampler *s);

/* Indices rank `rank` of `size` gets from each global batch. */
int cg_sampler_count(const cg_sampler *s, int rank, int size);

/* Writes this rank's cg_sampler_count() indices of global batch `step` (>= 0) to idx_out and
 * returns its epoch. Recomputes the permutation only when the epoch changes; no allocation. */
long cg_sampler_batch(cg_sampler *s, long step, int rank, int size, int64_t *idx_out);

/* ---- the held-out split ---------------------------------------------------------------
 *
 * Image i of a data set belongs to the HELD-OUT part when cg_heldout(i) (a fixed hash of the
 * index: about 20%), else to the CLASSIFIER-TRAIN part (about 80%):
 *     cg_heldout(i) = cg_mix64(i ^ 0x43484152474E4556) % 5 == 0
 * The split depends only on the index, so it is the same for every run, tool and rank, and a
 * --limit N keeps the split of the first N images. The classifier (chargan/classifier.h)
 * trains on the classifier-train part and reports its accuracy on the held-out part; the
 * evaluator (chargan/eval.h) scores against the held-out part's features; `chargan train
 * --exclude-heldout` trains the GAN on the classifier-train part only. */
#define CG_HELDOUT_SALT 0x43484152474E4556ull /* "CHARGENV" */

/* 1 when image `index` of a data set is in the held-out part. */
int cg_heldout(long index);
/* The indices i < total of one part (held_out: cg_heldout(i), else the classifier-train part)
 * in increasing order into out (room for total); returns how many. */
long cg_part_indices(long total, int held_out, int64_t *out);
/* The same part in a fixed pseudo-random order (seed 0): its first n indices into out[0..n);
 * returns how many there are (< n when the part is smaller). Used for the real-image floors of
 * `chargan eval`. Allocates a temporary of total. */
long cg_split_indices(long total, int held_out, long n, int64_t *out);

#endif
