/* A GAN trained over the MPI ranks: what `train` and `bench` share so that the benchmark times
 * the step that training runs. */
#ifndef CHARGAN_GAN_RANKS_H
#define CHARGAN_GAN_RANKS_H
#include "chargan/dist.h"
#include "chargan/gan.h"

/* Makes gan (built for this rank's share, global_batch / c->size) one of c's ranks: batch-norm
 * statistics summed over all ranks and, unless float_sums, exact gradient sums over the
 * groups of cg_sum_groups(global batch, ranks, requested) with this rank's groups. Returns the
 * number of groups (0 with float_sums), or -1 with e set. */
int cg_gan_join_ranks(cg_gan *gan, cg_ctx *c, int requested, int float_sums, cg_error *e);

/* Gradients are summed over the ranks in chunks of CG_REDUCE_CHUNK bytes on a communicator of
 * their own: MPI's temporary buffers stay at a chunk instead of the size of the gradient
 * (about 12 MB less per rank for `deep`), and D's chunks can be posted one after the other
 * between G's layers while G's batch-norm sums run on c->world. Integer sums are exact and
 * float sums element-wise, so the chunking changes no result.
 *
 * D's gradient is final before G's backward pass starts: cg_gan_grads starts its reduction
 * through the hooks, G's backward pass advances it between layers (Open MPI's shared-memory
 * and TCP transports progress only inside MPI calls), and cg_reducer_finish completes it and
 * then sums G's with blocking calls. One non-blocking chunk at a time: with two in flight,
 * Open MPI 4.1's libnbc made the step of `deep` twice as slow. */
#define CG_REDUCE_CHUNK ((size_t)2 << 20)

/* A gradient being summed: n elements of `elem` bytes, the first `next` of them posted. */
typedef struct {
    char *buf;
    size_t n, next, elem;
    MPI_Datatype type;
} cg_reduction;

typedef struct {
    cg_gan *gan;
    MPI_Comm comm;   /* a duplicate of the world's; MPI_COMM_NULL on one rank */
    cg_reduction d;  /* D's gradient */
    MPI_Request req; /* D's chunk in flight */
    struct cg_trace *trace; /* each chunk a span on the MPI track; NULL: none */
    double posted;   /* when the chunk in flight was posted (while tracing) */
    int chunk;       /* its index */
} cg_reducer;

/* Sets r up for gan's ranks (collective over c->world) and makes G's backward pass advance
 * D's reduction. */
void cg_reducer_attach(cg_reducer *r, cg_ctx *c, cg_gan *gan);
/* Frees the communicator and detaches r from its GAN. */
void cg_reducer_free(cg_reducer *r);
/* The hooks to pass to cg_gan_grads. */
cg_gan_hooks cg_reducer_hooks(cg_reducer *r);
/* Completes D's sum, then sums G's gradient (blocking); nothing to do on one rank. */
void cg_reducer_finish(cg_reducer *r);

#endif
