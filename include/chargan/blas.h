/* The BLAS chargan runs on, and who owns the threads.
 *
 * Training is bit-identical on any rank and thread count only if every GEMM's result depends on
 * its shape alone. Optimized BLAS libraries cut a product by their own thread count and round
 * differently at the cuts, so chargan owns the threading: cg_sgemm splits C into blocks fixed
 * by the shape, spreads the blocks over its OpenMP threads, and every BLAS call runs
 * single-threaded. The library is identified at run time, not at build time, because Debian's
 * alternatives (and LD_LIBRARY_PATH, and cluster modules) can swap libblas.so.3 under a built
 * binary. */
#ifndef CHARGAN_BLAS_H
#define CHARGAN_BLAS_H
#include <stddef.h>

typedef struct {
    char name[96];    /* "OpenBLAS 0.3.21", "BLIS 0.9.0", or "CBLAS" when not recognized */
    char variant[16]; /* threading of the build: "openmp", "pthread", "serial" or "unknown" */
    char core[32];    /* the kernel set chosen for this CPU ("Haswell", "zen3"), or "unknown" */
    char path[256];   /* the shared object that provides cblas_sgemm (or "static") */
} cg_blas_info;

/* Identifies the loaded BLAS. */
void cg_blas_info_get(cg_blas_info *b);

/* One line: "OpenBLAS 0.3.21 (pthread build, core Haswell, /usr/lib/.../libopenblas.so.0)". */
void cg_blas_describe(const cg_blas_info *b, char *buf, size_t len);

/* Sets the library's own thread count where it has one (OpenBLAS, BLIS). chargan calls it with
 * 1 for all training work; `bench --sgemm` raises it to time the library's own threading. */
void cg_blas_set_threads(int n);

/* C = alpha op(A) op(B) + beta C (row-major; trans_a/trans_b 0 or 1), with a result that does
 * not depend on the number of OpenMP threads. Every GEMM of the layers goes through it. */
void cg_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The start-up self-check of exact mode: a few probe GEMMs of the shapes training uses, run by
 * cg_sgemm at 1 thread and at `threads`, must give the same bits. Leaves the OpenMP thread
 * count at `threads`. Returns 0 when they agree (or threads <= 1: nothing to compare); -1 with
 * a one-line explanation in msg (the library, what differs and what to do) otherwise.
 * *ms gets the check's cost. */
int cg_blas_selfcheck(int threads, double *ms, char *msg, size_t len);

#endif
