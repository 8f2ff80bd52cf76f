/* The software stack a result was produced on: chargan's version, the MPI, BLAS and HDF5
 * libraries actually loaded. Printed by `chargan --version`, recorded as attributes of every
 * checkpoint and sample file and in the first metrics line of every run. */
#ifndef CHARGAN_VERSION_H
#define CHARGAN_VERSION_H
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

typedef struct {
    char chargan[96]; /* "0.5.0 (git bb8a22f)": the project version and `git describe` */
    char mpi[256];    /* MPI_Get_library_version's first line (MPICH: plus its device) */
    char blas[512];   /* cg_blas_describe */
    char hdf5[32];    /* the loaded HDF5 library's version */
} cg_stack;

/* Fills s; callable before MPI_Init and after MPI_Finalize. */
void cg_stack_get(cg_stack *s);

/* The --version text: "chargan VERSION" then one line per library. */
void cg_stack_print(FILE *f, const cg_stack *s);

/* Adds the four to a JSON object: chargan_version, mpi_library, blas_library, hdf5_version. */
void cg_stack_json(const cg_stack *s, json_t *obj);

/* The attribute names of the four, in the order of the struct. */
extern const char *const cg_stack_attr[4];

#endif
