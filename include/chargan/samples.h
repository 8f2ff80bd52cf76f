/* Sample files: generated images in HDF5 (what `chargan sample` and `train --sample-every`
 * write).
 *
 * Sample file (format "chargan-samples", format_version 1):
 *   /samples float32 [N,28,28], values in [0,1], upright (row 0 = top), chunks of 256 images
 *   /labels  int32 [N] (optional)
 *   attributes on /: format (string "chargan-samples"), format_version (int32, 1), step
 *     (int64), model (string), seed (uint64), created (string, ISO 8601 UTC), and the stack it
 *     was written on (chargan_version, mpi_library, blas_library, hdf5_version; strings).
 * Storage and crash safety are those of every chargan HDF5 file (see ckpt.h): Fletcher-32
 * checksums, written in memory and renamed into place, so a file under its final name is
 * always complete. Files with the /samples layout but without a format attribute (written by
 * other tools) are read too.
 *
 * All functions are serial and report failure as -1 with e->msg a one-line message naming
 * the file. */
#ifndef CHARGAN_SAMPLES_H
#define CHARGAN_SAMPLES_H
#include <stdint.h>

#include "chargan/util.h"
#include "chargan/version.h"

#define CG_SAMPLES_FORMAT "chargan-samples"
#define CG_SAMPLES_FORMAT_VERSION 1

/* Writes PATH crash-safely (its directory is created when missing). imgs: n images [28][28],
 * every value in [0,1] (anything else is refused). labels may be NULL. */
int cg_samples_write(const char *path, const float *imgs, int n, long step, const char *model,
                     uint64_t seed, const int32_t *labels, cg_error *e);

/* Reads /samples (float32 [N,28,28]) and /labels (int32 [N], optional: *labels = NULL when
 * absent; pass labels = NULL to skip them). *imgs and *labels are malloc'd (free()). Refuses
 * checkpoints and files without a valid /samples. Values are returned as stored. */
int cg_samples_read(const char *path, float **imgs, int *n, int32_t **labels, cg_error *e);

typedef struct {
    char model[16];
    long step;
    uint64_t seed;
    int n, has_labels, format_version; /* format_version 0: written without a format attr */
    char created[32];
    cg_stack stack; /* the stack it was written on (empty strings in older files) */
} cg_samples_meta;

/* Attributes and shape of a sample file, without reading the images. */
int cg_samples_read_meta(const char *path, cg_samples_meta *m, cg_error *e);

#endif
