#include "chargan/version.h"

#include <hdf5.h>
#include <mpi.h>
#include <string.h>

#include "chargan/blas.h"
#include "chargan/json.h"
#include "chargan/util.h"
#include "chargan_version.h" /* generated at build time: CHARGAN_VERSION_STRING */

const char *const cg_stack_attr[4] = {"chargan_version", "mpi_library", "blas_library",
                                      "hdf5_version"};

/* Open MPI's string is one line; MPICH's is a page (version, date, ABI, device, configure
 * flags): keep its first line and its device. */
static void mpi_library(char *out, size_t len)
{
    char s[MPI_MAX_LIBRARY_VERSION_STRING] = "";
    int n = 0;
    MPI_Get_library_version(s, &n);
    s[sizeof s - 1] = 0;
    const char *dev = strstr(s, "MPICH Device:");
    size_t first = strcspn(s, "\n");
    while (first > 0 && (s[first - 1] == ' ' || s[first - 1] == '\t'))
        first--;
    for (size_t i = 0; i < first; i++) /* MPICH: "MPICH Version:<TAB>4.0.2" */
        if (s[i] == '\t')
            s[i] = ' ';
    if (dev) {
        dev += strlen("MPICH Device:");
        dev += strspn(dev, " \t");
        snprintf(out, len, "%.*s, device %.*s", (int)first, s, (int)strcspn(dev, "\n"), dev);
    } else {
        snprintf(out, len, "%.*s", (int)first, s);
    }
}

void cg_stack_get(cg_stack *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->chargan, sizeof s->chargan, "%s", CHARGAN_VERSION_STRING);
    mpi_library(s->mpi, sizeof s->mpi);
    cg_blas_info b;
    cg_blas_info_get(&b);
    cg_blas_describe(&b, s->blas, sizeof s->blas);
    unsigned maj = 0, min = 0, rel = 0;
    H5get_libversion(&maj, &min, &rel);
    snprintf(s->hdf5, sizeof s->hdf5, "%u.%u.%u", maj, min, rel);
}

void cg_stack_print(FILE *f, const cg_stack *s)
{
    fprintf(f, "chargan %s\nMPI:  %s\nBLAS: %s\nHDF5: %s\n", s->chargan, s->mpi, s->blas,
            s->hdf5);
}

void cg_stack_json(const cg_stack *s, json_t *obj)
{
    const char *v[4] = {s->chargan, s->mpi, s->blas, s->hdf5};
    for (int i = 0; i < 4; i++)
        json_object_set_new(obj, cg_stack_attr[i], cg_json_str(v[i]));
}
