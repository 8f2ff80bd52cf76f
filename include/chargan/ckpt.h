/* HDF5 checkpoints: layout, crash-safe writing, validation, loading, checkpoint directories.
 *
 * Checkpoint file DIR/step-NNNNNNNN.h5 (format "chargan-checkpoint", format_version 1):
 *   /generator/<tensor>, /discriminator/<tensor>       float32, natural shapes (tensor table
 *                                                       names, e.g. "dense0.kernel" [150,12544])
 *   attribute layers on /generator                     string, JSON: the generator's layer
 *                                                       table as built (cg_net_layers_json:
 *                                                       each layer's op, sizes, activation,
 *                                                       batch norm, shapes and tensor names;
 *                                                       applied as op, bn, cbn, activation),
 *                                                       then {"op": "image", "map": "y" or
 *                                                       "0.5 * (y + 1)"}, the mapping to [0, 1].
 *                                                       For other programs (tools/
 *                                                       chargan_torch.py); chargan never reads
 *                                                       it. Absent in older files.
 *   /optimizer/generator/m/<tensor>, .../v/<tensor>    Adam moments, same shapes
 *   /optimizer/discriminator/m/<tensor>, .../v/<tensor>
 *   attribute adam_t (int64) on /optimizer/generator and /optimizer/discriminator
 *   /ema/generator/<tensor>                            optional: the EMA of G's parameters
 *                                                       (chargan/ema.h), same tensors and
 *                                                       shapes as /generator; attribute decay
 *                                                       (float64) on /ema/generator. Absent in
 *                                                       runs without EMA and older files.
 *   attributes on /: format (string "chargan-checkpoint"), format_version (int32, 1),
 *     model (string), step (int64, steps completed), epoch (int64), seed (uint64),
 *     world_size, global_batch, noise_dim, n_classes (int32; 0 = unconditional; an absent
 *     n_classes reads as 0), config (string, JSON of the run's configuration), created
 *     (string, ISO 8601 UTC, e.g. "2024-05-01T12:00:00Z"), and the stack it was written on
 *     (chargan_version, mpi_library, blas_library, hdf5_version; strings, chargan/version.h).
 * Training is counter-based: noise, dropout and data order are functions of (seed, step), so
 * `step` (with seed and global_batch, both stored) is the whole sampler/RNG position.
 *
 * Sample files (format "chargan-samples") follow the same conventions; their layout and API
 * are in chargan/samples.h (included here).
 *
 * Storage details (transparent to h5py/h5dump): strings are variable-length UTF-8 scalars
 * (h5py reads them as str); every dataset is chunked with HDF5's Fletcher-32 checksum filter
 * so a flipped bit in stored data is an error on read rather than silently wrong weights
 * (parameter tensors are one chunk each; samples chunks of 256 images); groups track link
 * creation order (tensors iterate in model order); file format bounds are earliest..1.8
 * (superblock version 0 like h5py's default, readable by any HDF5 >= 1.8, no SWMR "file open
 * for write" flags that could outlive a crash).
 *
 * Crash safety: a file is built in memory (HDF5 core driver), its image written to
 * DIR/.NAME.tmp in the same directory with write(2), fsync'ed, closed, renamed onto DIR/NAME,
 * and DIR is fsync'ed (so every I/O error is seen with its errno; see src/h5io.h). The
 * writing rank holds about twice the file size in memory while writing. A kill at any moment
 * leaves at worst a stale *.tmp (ignored by readers, removed by cg_ckpt_prune and overwritten
 * by the next write of the same step); a file under a final name is always complete.
 *
 * File locking: these functions open files with HDF5 file locking disabled
 * (H5Pset_file_locking(fapl, 0, 1)). A file is written by exactly one process under a private
 * temporary name and never modified after the rename, so locks protect nothing here, while on
 * file systems without flock() (some Lustre/NFS/GPFS mounts) HDF5 1.10's locking makes opens
 * fail with "unable to lock file". HDF5 lets the environment override this: setting
 * HDF5_USE_FILE_LOCKING=TRUE turns locking back on.
 *
 * All functions are serial (call them on one rank) and report failure as -1 with e->msg a
 * one-line message naming the file; HDF5's own error-stack printing is turned off. */
#ifndef CHARGAN_CKPT_H
#define CHARGAN_CKPT_H
#include <stddef.h>
#include <stdint.h>

#include "chargan/gan.h"
#include "chargan/samples.h"
#include "chargan/util.h"
#include "chargan/version.h"

#define CG_CKPT_FORMAT "chargan-checkpoint"
#define CG_CKPT_FORMAT_VERSION 1

typedef struct {
    char model[16];
    char kind[8];            /* "gan" or "vae" (chargan/kind.h); absent in older files: gan */
    long step, epoch;
    uint64_t seed;
    int world_size, global_batch, noise_dim, format_version;
    int n_classes;           /* 0: unconditional model */
    long adam_t_g, adam_t_d; /* the update counters of the first and second network (from
                                /optimizer/NAME: generator and discriminator, encoder and
                                decoder) */
    int has_ema;             /* /ema/generator present */
    double ema_decay;        /* its decay attribute (0 when absent) */
    char created[32];
    cg_stack stack;    /* the stack it was written on (empty strings in older files) */
    char *config_json; /* malloc'd on read; release with cg_ckpt_meta_free */
} cg_ckpt_meta;

void cg_ckpt_meta_free(cg_ckpt_meta *m);

/* Writes DIR/step-NNNNNNNN.h5 (step with at least 8 digits) crash-safely, creating DIR and
 * its parents when missing. seed, global_batch, noise_dim and the model name come from gan;
 * config_json may be NULL ("{}"). On success fills path_out (when not NULL) with the final
 * path. On failure removes the temporary file, leaves any existing checkpoint untouched and
 * returns -1 with e naming the file and the problem. */
int cg_ckpt_write(const char *dir, const cg_gan *gan, long step, long epoch, int world_size,
                  const char *config_json, char *path_out, size_t path_len, cg_error *e);
/* The same for any kind of model: its networks under their names (/encoder, /decoder, ...)
 * and /optimizer/NAME, the attribute kind, the latent size as noise_dim. */
struct cg_kind;
int cg_ckpt_write_model(const char *dir, const struct cg_kind *k, long step, long epoch,
                        int world_size, const char *config_json, char *path_out,
                        size_t path_len, cg_error *e);

/* Reads the attributes only. Refuses files that are missing, not HDF5, truncated/damaged,
 * not chargan checkpoints (format attribute) or of another format_version. m is filled only
 * on success (free it with cg_ckpt_meta_free). */
int cg_ckpt_read_meta(const char *path, cg_ckpt_meta *m, cg_error *e);

/* Full check without a gan: meta as above, the model (when model is not NULL) equal to
 * `model`, and every dataset present with the preset's shape, float32 and readable (which
 * verifies its checksum). Reads all data (a few tens of MB for "seed") and builds the
 * preset's tensor tables (transient memory ~4x the parameter size). m may be NULL. */
int cg_ckpt_validate(const char *path, const char *model, cg_ckpt_meta *m, cg_error *e);

/* Loads parameters (including non-trainable state such as batch-norm running averages, which
 * live in the same buffer), Adam moments and Adam counters into an already built gan. When
 * gan->ema_g is allocated it receives /ema/generator, or G's parameters when the file has no
 * EMA (older files, runs without EMA); gan->ema_decay is not changed. An /ema group is read
 * (checksums) even when gan->ema_g is NULL. Refuses a checkpoint of another model preset,
 * noise_dim or n_classes, or with any tensor missing, of another type or shape (the message
 * names the tensor and both shapes), or unreadable. Everything is
 * read into a staging copy first, so a refused file leaves gan untouched. Only parameters,
 * moments and adam_g.t / adam_d.t change (not cfg: the caller decides about seed etc. from
 * m). m (may be NULL) receives the meta data on success. */
int cg_ckpt_load(const char *path, cg_gan *gan, cg_ckpt_meta *m, cg_error *e);
/* The same for any kind of model; its update counters (adam_t) set for each network. */
int cg_ckpt_load_model(const char *path, struct cg_kind *k, cg_ckpt_meta *m, cg_error *e);

/* The newest checkpoint DIR/step-N.h5 (largest N) that passes cg_ckpt_validate; files that do
 * not (corrupt, truncated, foreign) are skipped with "chargan: warning: skipping FILE: reason"
 * on stderr. *.tmp files and other names are ignored. When model is not NULL and the newest
 * checkpoint whose attributes are readable is of another model, that is an error (-1), not a
 * skip: resuming from an older checkpoint or from scratch would silently mix two runs in one
 * directory. Returns 1 (path filled), 0 (none; also when DIR does not exist) or -1 (e set).
 * Each candidate is fully read (checksums), ~0.1 s per "seed" checkpoint. */
int cg_ckpt_find_latest(const char *dir, const char *model, char *path, size_t len,
                        cg_error *e);

/* Keeps the newest `keep` DIR/step-N.h5 and deletes the older ones (keep <= 0: keeps all).
 * Also removes stale DIR/.step-N.h5.tmp left by killed writers for N below the newest
 * checkpoint. Returns the number of checkpoints deleted, or -1. */
int cg_ckpt_prune(const char *dir, int keep, cg_error *e);

/* What kind of file PATH is: CG_FILE_CHECKPOINT, CG_FILE_SAMPLES, or -1 with e set (missing,
 * not HDF5, damaged, or an HDF5 file that is neither). */
enum { CG_FILE_CHECKPOINT = 1, CG_FILE_SAMPLES = 2 };
int cg_h5_file_kind(const char *path, cg_error *e);

/* Opening a trained GAN for inference (`chargan sample`, `write`, `eval`): builds the
 * checkpoint's model for batches of up to `batch` images and loads its weights. When the
 * checkpoint holds an EMA of the generator (m->has_ema), gan->ema_g receives it, and with
 * use_ema G's parameters are replaced by it (what sample/write/eval draw from unless
 * --no-ema); without use_ema G keeps the raw weights. classes (CG_GEN_MAX_CLASSES + 1 bytes,
 * may be NULL) receives the character of each class of a conditional model, from the run's
 * configuration. m receives the meta data (free with cg_ckpt_meta_free). Returns 0, or -1
 * with e set; on failure nothing needs freeing. */
#define CG_GEN_MAX_CLASSES 64
int cg_gan_open(const char *path, int batch, int use_ema, cg_gan *gan, cg_ckpt_meta *m,
                char *classes, cg_error *e);
/* The same for a checkpoint of any kind of model (a VAE: encoder and decoder, no EMA). */
int cg_model_open(const char *path, int batch, int use_ema, struct cg_kind *k,
                  cg_ckpt_meta *m, char *classes, cg_error *e);

#endif
