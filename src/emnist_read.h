/* Reading EMNIST files (IDX gzip or raw, Kaggle CSV, mapping files), private to the data
 * module. Reading has two phases so that a shared window can be sized before it exists:
 * cg_reader_open() resolves the files, reads the mapping, the headers and (IDX) the labels,
 * and knows how many image slots to allocate; cg_reader_fill() then decodes straight into
 * the memory it is given. The slot count is what the files were found to hold (file sizes,
 * a counting pass over gzip data, CSV rows counted), never just what a header claims, so
 * nothing is allocated that the data does not back. */
#ifndef CHARGAN_EMNIST_READ_H
#define CHARGAN_EMNIST_READ_H
#include <stdint.h>
#include <zlib.h>

#include "chargan/data.h"

#define CG_PATH 4096

enum { FMT_IDX = 1, FMT_CSV = 2 };

typedef struct {
    char images[CG_PATH];   /* IDX images or CSV */
    char labels[CG_PATH];   /* IDX labels ("" for CSV) */
    char mapping[CG_PATH];  /* mapping file, "" = built in */
    char split[256];        /* split name when known from the file names, else "" */
    char family[64];        /* first part of the split: "bymerge", "letters", ... */
    int format;
    gzFile img;
    int img_gz;             /* images file is gzip-compressed */
    long n_file;            /* images in the file (IDX header; CSV rows counted) */
    long cap;               /* image slots to allocate: min(n_file, limit), all found in
                             * the file (CSV: at least 1, even with no row) */
    long n;                 /* images decoded (set by reader_fill) */
    long limit;
    uint8_t *lab;           /* IDX: the first cap labels */
    int n_classes;
    char chars[CG_MAX_CLASSES];
    uint64_t present;       /* bit k: class k is in the mapping */
    char map_desc[160];     /* where the mapping came from, for messages */
} reader;

int cg_reader_open(reader *r, const cg_data_opts *o, cg_error *e);
int cg_reader_fill(reader *r, uint8_t *pixels, uint8_t *labels, cg_error *e);
void cg_reader_close(reader *r);
/* What was loaded: path, format, split, mapping. */
void cg_reader_describe(const reader *r, char *out, size_t cap);
/* Size of a file in bytes, 0 when unknown. */
long cg_file_size(const char *path);

#endif
