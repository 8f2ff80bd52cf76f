/* The BLAS module: the loaded library is identified as the one the build chose (ctest passes
 * CHARGAN_BLAS_CHOICE) with a variant that matches the file it was loaded from; the self-check
 * passes on it at 2 and 3 threads and leaves OpenMP's thread count as asked; the stack record
 * (chargan/version.h) names it. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/blas.h"
#include "chargan/version.h"
#include "testutil.h"

static void test_identify(void)
{
    cg_blas_info b;
    cg_blas_info_get(&b);
    char line[1024];
    cg_blas_describe(&b, line, sizeof line);
    printf("BLAS: %s\n", line);
    const char *choice = getenv("CHARGAN_BLAS_CHOICE");
    if (choice && !strcmp(choice, "openblas"))
        CHECKF(!strncmp(b.name, "OpenBLAS ", 9), "built for OpenBLAS, found '%s'", b.name);
    if (choice && !strcmp(choice, "blis"))
        CHECKF(!strncmp(b.name, "BLIS ", 5), "built for BLIS, found '%s'", b.name);
    CHECKF(b.path[0] == '/', "no shared object found for cblas_sgemm: '%s'", b.path);
    /* Debian installs each build in a directory named after it: the variant must agree. */
    static const char *const variants[] = {"openmp", "pthread", "serial"};
    for (int i = 0; i < 3; i++) {
        char dir[32];
        snprintf(dir, sizeof dir, "-%s/", variants[i]);
        if (strstr(b.path, dir))
            CHECKF(!strcmp(b.variant, variants[i]), "%s reports variant %s", b.path, b.variant);
    }
    cg_stack s;
    cg_stack_get(&s);
    CHECKF(!strcmp(s.blas, line), "stack records '%s', not '%s'", s.blas, line);
    CHECK(s.chargan[0] && s.mpi[0] && s.hdf5[0]);
}

static void test_selfcheck(void)
{
    cg_blas_set_threads(1);
    for (int t = 1; t <= 3; t++) {
        char msg[1024] = "";
        double ms = -1.0;
        const int rc = cg_blas_selfcheck(t, &ms, msg, sizeof msg);
        CHECKF(rc == 0, "self-check at %d threads: %s", t, msg);
        CHECKF(ms >= 0.0, "self-check at %d threads: cost %g ms", t, ms);
        CHECKF(omp_get_max_threads() == t, "after the check: %d OpenMP threads, asked %d",
               omp_get_max_threads(), t);
        printf("self-check at %d threads: %s, %.2f ms\n", t, rc ? "FAILED" : "passed", ms);
    }
}

int main(void)
{
    test_identify();
    test_selfcheck();
    return tu_finish("test_blas");
}
