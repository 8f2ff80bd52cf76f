/* The MPI context passed around instead of global state, and collective error handling. */
#ifndef CHARGAN_DIST_H
#define CHARGAN_DIST_H
#include <mpi.h>
#include "chargan/util.h"

typedef struct cg_ctx {
    MPI_Comm world; /* MPI_COMM_WORLD */
    MPI_Comm node;  /* ranks sharing this node (MPI_COMM_TYPE_SHARED) */
    MPI_Comm leaders; /* node_rank == 0 ranks (one per node); MPI_COMM_NULL elsewhere */
    int rank, size;
    int node_rank, node_size;
    int n_nodes;
    int cores;      /* online cores of this node */
    int threads;    /* BLAS threads this rank uses */
} cg_ctx;

/* MPI_Init plus the communicators above. Sets BLAS threads to max(1, min(cores / node_size,
 * the CPUs the rank may run on)) unless threads > 0. */
void cg_ctx_init(cg_ctx *c, int *argc, char ***argv);
void cg_ctx_set_threads(cg_ctx *c, int threads);
void cg_ctx_finalize(cg_ctx *c);

/* Collective status: every rank passes its own status (0 ok, -1 failed, with e set).
 * Returns 0 on every rank when all succeeded; otherwise -1 on every rank, and rank 0 prints
 * the message of the lowest failing rank as "chargan: error: ...". No rank is left waiting. */
int cg_agree(cg_ctx *c, int status, const cg_error *e);

/* Status decided by one rank (root), e.g. the one that read a file: broadcasts the status
 * and the message so every rank returns the same. Does not print. */
int cg_bcast_status(cg_ctx *c, int root, int status, cg_error *e);

#endif
