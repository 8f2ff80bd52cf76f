/* Helpers shared by the harnesses: see fuzz_util.h. */
#include "fuzz_util.h"

#include "emnist_read.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char scratch[512];

static void remove_scratch(void)
{
    fz_clean();
    rmdir(scratch);
}

const char *fz_dir(void)
{
    if (scratch[0])
        return scratch;
    const char *tmp = getenv("TMPDIR");
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : tmp && *tmp ? tmp : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/chargan-fuzz-XXXXXX", base);
    if (!mkdtemp(scratch)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

void fz_path(char *out, size_t cap, const char *name)
{
    int k = snprintf(out, cap, "%s/%s", fz_dir(), name);
    if (k < 0 || (size_t)k >= cap)
        abort();
}

void fz_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f)) {
        perror(path);
        abort();
    }
}

void fz_write_gz(const char *path, const void *data, size_t len)
{
    /* deflate with a gzip wrapper (windowBits 16 + 15), in memory, then one write */
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    size_t cap = deflateBound(&z, (uLong)len) + 32;
    uint8_t *out = malloc(cap);
    if (!out)
        abort();
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END)
        abort();
    fz_write(path, out, z.total_out);
    deflateEnd(&z);
    free(out);
}

void fz_clean(void)
{
    if (!scratch[0])
        return;
    DIR *d = opendir(scratch);
    if (!d)
        return;
    struct dirent *de;
    char path[1024];
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            snprintf(path, sizeof path, "%s/%s", scratch, de->d_name);
            unlink(path);
        }
    closedir(d);
}

void fz_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

uint32_t fz_get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

size_t fz_peek(const uint8_t *data, size_t len, uint8_t *out, size_t cap)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    /* windowBits 16 + 15: gzip only, the one compressed format gzread recognizes */
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        abort();
    z.next_in = (Bytef *)(uintptr_t)data;
    z.avail_in = (uInt)len;
    z.next_out = out;
    z.avail_out = (uInt)cap;
    int rc = inflate(&z, Z_SYNC_FLUSH);
    size_t got = z.total_out;
    inflateEnd(&z);
    if (rc == Z_OK || rc == Z_STREAM_END || (rc == Z_BUF_ERROR && got))
        return got;
    size_t n = len < cap ? len : cap; /* not compressed: gzread passes it through */
    memcpy(out, data, n);
    return n;
}

void fz_report(const char *harness, int rc, const cg_error *e)
{
    static int verbose = -1;
    if (verbose < 0) {
        const char *v = getenv("CHARGAN_FUZZ_VERBOSE");
        verbose = v && *v && strcmp(v, "0");
    }
    if (verbose)
        fprintf(stderr, "%s: %s\n", harness, rc == 0 ? "ok" : rc == 1 ? "help" : e->msg);
}

/* What data.h promises of a loaded set: 1..cap images, every label a class of the mapping. */
static void check_loaded(const reader *r, const uint8_t *labels)
{
    if (r->n < 1 || r->n > r->cap)
        abort();
    for (long i = 0; i < r->n; i++)
        if (labels[i] >= CG_MAX_CLASSES || !(r->present >> labels[i] & 1) ||
            labels[i] >= r->n_classes || !r->chars[labels[i]])
            abort();
}

int fz_read_data(const cg_data_opts *o)
{
    reader *r = malloc(sizeof *r); /* 12 KB of paths: not on the stack */
    if (!r)
        abort();
    cg_error e = {{0}};
    int rc = cg_reader_open(r, o, &e);
    if (!rc) {
        /* the sizes data.c allocates: cap images and cap labels */
        uint8_t *pixels = malloc((size_t)r->cap * CG_IMG_PIXELS);
        uint8_t *labels = malloc((size_t)r->cap);
        if (!pixels || !labels)
            abort();
        rc = cg_reader_fill(r, pixels, labels, &e);
        if (!rc)
            check_loaded(r, labels);
        char desc[512];
        cg_reader_describe(r, desc, sizeof desc);
        free(pixels);
        free(labels);
    }
    fz_report("reader", rc, &e);
    cg_reader_close(r);
    free(r);
    return rc;
}
