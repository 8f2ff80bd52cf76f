#include "chargan/util.h"

#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

int cg_fail(cg_error *e, const char *fmt, ...)
{
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void cg_die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int inited = 0, finalized = 0, size = 1, rank = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) {
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    }
    if (size > 1)
        fprintf(stderr, "chargan: error: rank %d: %s\n", rank, msg);
    else
        fprintf(stderr, "chargan: error: %s\n", msg);
    fflush(stderr);
    if (size > 1)
        MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

double cg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *cg_alloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        cg_die("out of memory allocating %zu MB", bytes >> 20);
    memset(p, 0, rounded);
    return p;
}

void cg_free(void *p) { free(p); }

double cg_peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double cg_median(double *v, int n)
{
    if (n < 1)
        return 0.0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

size_t cg_json_quote(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    if (cap < 3) {
        if (cap)
            dst[0] = 0;
        return 0;
    }
    dst[n++] = '"';
    for (; *s; s++) {
        const unsigned char ch = (unsigned char)*s;
        char esc[8];
        int k = ch == '"' || ch == '\\' ? snprintf(esc, sizeof esc, "\\%c", ch)
                : ch < 0x20              ? snprintf(esc, sizeof esc, "\\u%04x", ch)
                                         : snprintf(esc, sizeof esc, "%c", ch);
        if (n + (size_t)k + 2 > cap)
            break;
        memcpy(dst + n, esc, (size_t)k);
        n += (size_t)k;
    }
    dst[n++] = '"';
    dst[n] = 0;
    return n;
}
