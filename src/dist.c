#include "chargan/dist.h"

#include "chargan/affinity.h"
#include "chargan/blas.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void cg_ctx_set_threads(cg_ctx *c, int threads)
{
    if (threads <= 0) {
        /* A fair share of the node, and no more CPUs than the rank may run on (a binding or
         * a Slurm cpuset can allow fewer than the node's online cores). */
        const int allowed = cg_affinity_count();
        threads = c->cores / c->node_size;
        if (allowed > 0 && allowed < threads)
            threads = allowed;
        if (threads < 1)
            threads = 1;
    }
    c->threads = threads;
    /* chargan owns the threads (chargan/blas.h): the library's calls run single-threaded,
     * cg_sgemm's blocks and the layers' loops spread over OpenMP's. In this order, because
     * OpenBLAS's OpenMP build sets OpenMP's count too. */
    cg_blas_set_threads(1);
    omp_set_num_threads(threads);
}

void cg_ctx_init(cg_ctx *c, int *argc, char ***argv)
{
    memset(c, 0, sizeof *c);
    MPI_Init(argc, argv);
    c->world = MPI_COMM_WORLD;
    MPI_Comm_rank(c->world, &c->rank);
    MPI_Comm_size(c->world, &c->size);
    MPI_Comm_split_type(c->world, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &c->node);
    MPI_Comm_rank(c->node, &c->node_rank);
    MPI_Comm_size(c->node, &c->node_size);
    MPI_Comm_split(c->world, c->node_rank == 0 ? 0 : MPI_UNDEFINED, c->rank, &c->leaders);
    int leader = c->node_rank == 0;
    MPI_Allreduce(&leader, &c->n_nodes, 1, MPI_INT, MPI_SUM, c->world);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->cores = cores > 0 ? (int)cores : 1;
    cg_ctx_set_threads(c, 0);
}

void cg_ctx_finalize(cg_ctx *c)
{
    if (c->leaders != MPI_COMM_NULL)
        MPI_Comm_free(&c->leaders);
    MPI_Comm_free(&c->node);
    MPI_Finalize();
}

int cg_bcast_status(cg_ctx *c, int root, int status, cg_error *e)
{
    int st = status;
    MPI_Bcast(&st, 1, MPI_INT, root, c->world);
    if (st != 0 && e)
        MPI_Bcast(e->msg, (int)sizeof e->msg, MPI_CHAR, root, c->world);
    return st;
}

int cg_agree(cg_ctx *c, int status, const cg_error *e)
{
    /* The lowest failing rank reports: a MIN over (failed ? rank : size). */
    int mine = status != 0 ? c->rank : c->size, first = c->size;
    MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, c->world);
    if (first == c->size)
        return 0;
    char msg[sizeof e->msg];
    memset(msg, 0, sizeof msg);
    if (c->rank == first && e)
        memcpy(msg, e->msg, sizeof msg);
    MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, c->world);
    if (c->rank == 0) {
        if (c->size > 1)
            fprintf(stderr, "chargan: error: rank %d: %s\n", first, msg);
        else
            fprintf(stderr, "chargan: error: %s\n", msg);
        fflush(stderr);
    }
    return -1;
}
