/* A stand-in for a BLAS whose threads chargan cannot control and whose results depend on them:
 * LD_PRELOADed in front of the real library, its cblas_sgemm splits the K dimension in two when
 * it is called from an OpenMP team of more than one thread, as a library that threads on its
 * own would, and so rounds differently than at one thread. tests/test_selfcheck.sh uses it to
 * check that chargan's start-up self-check catches such a library. */
#define _GNU_SOURCE
#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include <stddef.h>

typedef void (*sgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int,
                         int, float, const float *, int, const float *, int, float, float *, int);

void cblas_sgemm(enum CBLAS_ORDER order, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int M,
                 int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
                 float beta, float *C, int ldc)
{
    sgemm_fn real;
    *(void **)&real = dlsym(RTLD_NEXT, "cblas_sgemm");
    const int k1 = K / 2;
    if (omp_get_num_threads() < 2 || k1 < 1 || order != CblasRowMajor) {
        real(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    /* Row-major: op(A) is M x K, op(B) is K x N. The second half starts k1 columns into op(A)
     * and k1 rows into op(B). */
    const float *A2 = ta == CblasNoTrans ? A + k1 : A + (size_t)k1 * lda;
    const float *B2 = tb == CblasNoTrans ? B + (size_t)k1 * ldb : B + k1;
    real(order, ta, tb, M, N, k1, alpha, A, lda, B, ldb, beta, C, ldc);
    real(order, ta, tb, M, N, K - k1, alpha, A2, lda, B2, ldb, 1.0f, C, ldc);
}
