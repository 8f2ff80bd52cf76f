/* Which BLAS is loaded, its threads, chargan's thread-count independent sgemm and the
 * start-up self-check. See chargan/blas.h. */
#define _GNU_SOURCE /* dladdr, RTLD_DEFAULT */
#include "chargan/blas.h"

#include <cblas.h>
#include <dlfcn.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "chargan/rng.h"
#include "chargan/util.h"

/* The libraries' own entry points are looked up by name at run time: a binary built against
 * one library may run on another (see blas.h), and a symbol the loaded library lacks must
 * read as "absent", not fail to link. */
static void *sym(const char *name) { return dlsym(RTLD_DEFAULT, name); }

typedef char *(*str_fn)(void);
typedef int (*int_fn)(void);
typedef void (*set_int_fn)(int);
typedef int64_t (*blis_bool_fn)(void);
typedef int (*blis_arch_fn)(void);
typedef const char *(*blis_arch_str_fn)(int);
typedef void (*blis_set_fn)(int64_t);

static void openblas_info(cg_blas_info *b)
{
    str_fn config, corename;
    int_fn parallel;
    *(void **)&config = sym("openblas_get_config");
    *(void **)&corename = sym("openblas_get_corename");
    *(void **)&parallel = sym("openblas_get_parallel");
    /* openblas_get_config(): "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell MAX_THREADS=64" */
    const char *cfg = config ? config() : "OpenBLAS";
    int words = 0;
    size_t n = 0;
    while (cfg[n] && !(cfg[n] == ' ' && ++words == 2))
        n++;
    snprintf(b->name, sizeof b->name, "%.*s", (int)n, cfg);
    static const char *const par[] = {"serial", "pthread", "openmp"};
    const int p = parallel ? parallel() : -1;
    snprintf(b->variant, sizeof b->variant, "%s", p >= 0 && p <= 2 ? par[p] : "unknown");
    if (corename)
        snprintf(b->core, sizeof b->core, "%s", corename());
}

static void blis_info(cg_blas_info *b)
{
    str_fn version;
    blis_bool_fn omp, pth;
    blis_arch_fn arch;
    blis_arch_str_fn arch_str;
    *(void **)&version = sym("bli_info_get_version_str");
    *(void **)&omp = sym("bli_info_get_enable_openmp");
    *(void **)&pth = sym("bli_info_get_enable_pthreads");
    *(void **)&arch = sym("bli_arch_query_id");
    *(void **)&arch_str = sym("bli_arch_string");
    snprintf(b->name, sizeof b->name, "BLIS %s", version ? version() : "");
    const char *v = omp && omp() ? "openmp" : pth && pth() ? "pthread" : omp ? "serial" : "";
    snprintf(b->variant, sizeof b->variant, "%s", v[0] ? v : "unknown");
    if (arch && arch_str)
        snprintf(b->core, sizeof b->core, "%s", arch_str(arch()));
}

void cg_blas_info_get(cg_blas_info *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "CBLAS");
    snprintf(b->variant, sizeof b->variant, "unknown");
    snprintf(b->core, sizeof b->core, "unknown");
    if (sym("openblas_get_config"))
        openblas_info(b);
    else if (sym("bli_info_get_version_str"))
        blis_info(b);
    Dl_info dl;
    if (dladdr((void *)(uintptr_t)&cblas_sgemm, &dl) && dl.dli_fname && dl.dli_fname[0])
        snprintf(b->path, sizeof b->path, "%s", dl.dli_fname);
    else
        snprintf(b->path, sizeof b->path, "static");
}

void cg_blas_describe(const cg_blas_info *b, char *buf, size_t len)
{
    snprintf(buf, len, "%s (%s build, core %s, %s)", b->name, b->variant, b->core, b->path);
}

void cg_blas_set_threads(int n)
{
    set_int_fn openblas;
    blis_set_fn blis;
    *(void **)&openblas = sym("openblas_set_num_threads");
    *(void **)&blis = sym("bli_thread_set_num_threads");
    if (openblas)
        openblas(n); /* the OpenMP build also sets OpenMP's count: callers set theirs after */
    if (blis)
        blis(n);
}

/* Blocks of C fixed by the shape alone, spread over the OpenMP threads, each one a BLAS call
 * that runs single-threaded (cg_blas_set_threads(1); OpenMP builds also run single-threaded
 * inside a parallel region). */
void cg_sgemm(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
              int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    const int split_n = N >= M, D = split_n ? N : M;
    int nb = 1;
    if (2.0 * M * N * K >= 4e6)
        nb = D / 64 < 1 ? 1 : (D / 64 > 16 ? 16 : D / 64);
    const int S = (D + nb - 1) / nb;
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
    const enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
#pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < nb; b++) {
        const int o = b * S, n = D - o < S ? D - o : S;
        if (n <= 0)
            continue;
        if (split_n)
            cblas_sgemm(CblasRowMajor, ta, tb, M, n, K, alpha, A, lda,
                        trans_b ? B + (size_t)o * ldb : B + o, ldb, beta, C + o, ldc);
        else
            cblas_sgemm(CblasRowMajor, ta, tb, n, N, K, alpha,
                        trans_a ? A + o : A + (size_t)o * lda, lda, B, ldb, beta,
                        C + (size_t)o * ldc, ldc);
    }
}

/* Probe shapes (M, N, K, trans_a, trans_b): an unsplit product, products split along N and
 * along M, and a transposed one, with odd edges; the first three are layer shapes on which a
 * library's own threading was seen to change bits. */
static const int probes[][5] = {
    {64, 1568, 9, 0, 0}, {700, 96, 40, 0, 0}, {37, 1031, 129, 0, 0}, {128, 200, 300, 1, 1}};
enum { N_PROBES = sizeof probes / sizeof probes[0] };

static float *probe_run(int p, int threads)
{
    const int M = probes[p][0], N = probes[p][1], K = probes[p][2];
    const int ta = probes[p][3], tb = probes[p][4];
    float *A = cg_alloc(sizeof(float) * (size_t)M * K);
    float *B = cg_alloc(sizeof(float) * (size_t)K * N);
    float *C = cg_alloc(sizeof(float) * (size_t)M * N);
    for (size_t i = 0; i < (size_t)M * K; i++)
        A[i] = cg_rng_uniform(7, 1, i) - 0.5f;
    for (size_t i = 0; i < (size_t)K * N; i++)
        B[i] = cg_rng_uniform(7, 2, i) - 0.5f;
    omp_set_num_threads(threads);
    cg_sgemm(ta, tb, M, N, K, 1.0f, A, ta ? M : K, B, tb ? K : N, 0.0f, C, N);
    cg_free(A), cg_free(B);
    return C;
}

int cg_blas_selfcheck(int threads, double *ms, char *msg, size_t len)
{
    const double t0 = cg_now();
    int bad = -1;
    for (int p = 0; p < N_PROBES && threads > 1 && bad < 0; p++) {
        float *one = probe_run(p, 1), *many = probe_run(p, threads);
        if (memcmp(one, many, sizeof(float) * (size_t)probes[p][0] * probes[p][1]))
            bad = p;
        cg_free(one), cg_free(many);
    }
    omp_set_num_threads(threads);
    *ms = 1e3 * (cg_now() - t0);
    if (bad < 0)
        return 0;
    cg_blas_info b;
    cg_blas_info_get(&b);
    char lib[512];
    cg_blas_describe(&b, lib, sizeof lib);
    snprintf(msg, len,
             "BLAS self-check: %s gives different bits at 1 and %d threads (sgemm %dx%dx%d), "
             "so runs would not be bit-identical across thread and rank counts; link another "
             "build (cmake -DCHARGAN_BLAS=openblas|blis|generic), or run with --threads 1, or "
             "train with --float-sums",
             lib, threads, probes[bad][0], probes[bad][1], probes[bad][2]);
    return -1;
}
