/* Helpers shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c): a private scratch
 * directory for the files an input becomes, and gzip compression of a buffer. */
#ifndef CHARGAN_FUZZ_UTIL_H
#define CHARGAN_FUZZ_UTIL_H
#include <stddef.h>
#include <stdint.h>

#include "chargan/data.h"

/* The scratch directory, created on first use (under /dev/shm when it is writable, else
 * $TMPDIR or /tmp) and removed with everything in it when the process exits normally. */
const char *fz_dir(void);

/* fz_dir()/name into out (cap bytes); aborts if it does not fit (a harness bug). */
void fz_path(char *out, size_t cap, const char *name);

/* Writes len bytes to path (replacing it); aborts on failure: the harness cannot go on. */
void fz_write(const char *path, const void *data, size_t len);

/* Writes data as a gzip stream (one member, default level) to path; aborts on failure. */
void fz_write_gz(const char *path, const void *data, size_t len);

/* Removes every file in the scratch directory (between inputs, so that no file of one input
 * is found by the next). */
void fz_clean(void);

/* Big-endian 32-bit store and load, as IDX headers use. */
void fz_put_be32(uint8_t *p, uint32_t v);
uint32_t fz_get_be32(const uint8_t *p);

/* Up to cap bytes of what `data` holds: inflated when it is a gzip stream, else as
 * is (as gzread would give). Returns the number of bytes produced. */
size_t fz_peek(const uint8_t *data, size_t len, uint8_t *out, size_t cap);

/* With CHARGAN_FUZZ_VERBOSE=1 in the environment, prints what an input came to ("ok" or
 * the error message) to stderr, to see how far the seeds get; otherwise nothing. */
void fz_report(const char *harness, int rc, const cg_error *e);

/* What the data loader does with o (src/data.c, cg_data_load_local): cg_reader_open, then
 * cg_reader_fill into buffers of the size open reported, then describe and close. Returns
 * the status of the first step that failed, else 0. Everything is freed. */
int fz_read_data(const cg_data_opts *o);

#endif
