/* Small shared helpers: error reporting, timing, aligned allocation. */
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

/* Writes s as a quoted JSON string (quotes, backslashes and control characters escaped) into
 * dst[0..cap), always NUL-terminated; returns the characters written (short of the whole string
 * when cap is too small, never a cut escape). */
size_t cg_json_quote(char *dst, size_t cap, const char *s);

/* Median of v[0..n) (sorts v). */
double cg_median(double *v, int n);

/* Peak resident set size of this process in MB (from getrusage). */
double cg_peak_rss_mb(void);

#endif
