/* Small shared helpers: error reporting, timing, aligned allocation, directories. */
#ifndef CHARGAN_UTIL_H
#define CHARGAN_UTIL_H
#include <stddef.h>

/* Library functions report failure by filling one of these and returning -1, so the caller
 * (often a single reading rank) can broadcast the message before every rank exits. */
typedef struct {
    char msg[512];
} cg_error;

/* Formats into e->msg (when e is not NULL) and returns -1. */
int cg_fail(cg_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints "chargan: error: ..." to stderr and ends the program with exit code 1; when MPI
 * runs with more than one rank it calls MPI_Abort so that no other rank hangs. Use only where
 * the other ranks cannot learn of the error collectively. */
void cg_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Monotonic wall clock in seconds. */
double cg_now(void);

/* 64-byte aligned, zero-filled allocation; aborts with a clear message when memory runs out. */
void *cg_alloc(size_t bytes);
void cg_free(void *p);

/* mkdir -p PATH (mode 0777 before the umask): creates every missing level and fsyncs the
 * parent of each directory it creates, so the new entries survive a crash. Returns 0, or -1
 * with e = "DIR: cannot create directory: reason" (also when a level exists but is not a
 * directory), "empty directory name" or "PATH: path too long". */
int cg_make_dirs(const char *path, cg_error *e);

/* fsync of directory DIR, so a rename or a new entry in it is durable. File systems that
 * cannot sync directories (EINVAL, ENOTSUP, EROFS) count as success. 0, or -1 with errno. */
int cg_fsync_dir(const char *dir);

/* Writes len bytes to PATH crash-safely: into PATH.tmp (created, written, fsync'ed, closed),
 * then renamed onto PATH, so PATH is either untouched or complete; the temporary is removed
 * on failure. Returns 0, or -1 with e = "FILE: cannot create / write error / cannot
 * rename: reason". */
int cg_write_file(const char *path, const void *data, size_t len, cg_error *e);
/* Median of v[0..n) (sorts v). */
double cg_median(double *v, int n);

/* Peak resident set size of this process in MB (from getrusage). */
double cg_peak_rss_mb(void);

#endif
