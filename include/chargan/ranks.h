/* A model (chargan/kind.h: a GAN, a VAE) trained over the MPI ranks: what `train` and `bench`
 * share so that the benchmark times the step that training runs. Below, "first" is the
 * network whose gradient is final first (D, the decoder: k->nets[k->first_ready]) and "last"
 * the other one (G, the encoder), whose backward pass advances the reduction. */
#ifndef CHARGAN_RANKS_H
#define CHARGAN_RANKS_H
#include "chargan/dist.h"
#include "chargan/kind.h"

/* Makes model k (built for this rank's share, global_batch / c->size) one of c's ranks:
 * batch-norm statistics summed over all ranks and, unless float_sums, exact gradient sums
 * over the groups of cg_sum_groups(global batch, ranks, requested) with this rank's groups.
 * Returns the number of groups (0 with float_sums), or -1 with e set. */
int cg_join_ranks(cg_kind *k, cg_ctx *c, int requested, int float_sums, cg_error *e);

/* Gradients are summed over the ranks in chunks of CG_REDUCE_CHUNK bytes on a communicator of
 * their own: MPI's temporary buffers stay at a chunk instead of the size of the gradient
 * (about 12 MB less per rank for `deep`), and D's chunks can be posted one after the other
 * between G's layers while G's batch-norm sums run on c->world. Integer sums are exact and
 * float sums element-wise, so the chunking changes no result.
 *
 * D's gradient is final before G's backward pass starts: cg_gan_grads starts its reduction
 * through the hooks, and G's backward pass advances it between layers (Open MPI's
 * shared-memory and TCP transports progress only inside MPI calls). G's gradient follows in
 * the order the backward pass finishes it: after layer i, the gradients of layers i and up
 * are final, and so is the part of G's buffer from layer i's first tensor to the conditional
 * batch norms' tensors (which come last in the buffer, cg_net_build, and are final only at
 * the end); its chunks are posted from the back as they become final. cg_reducer_finish
 * completes what is left, the conditional tensors and the count of unusable values. One
 * non-blocking chunk at a time: with two in flight, Open MPI 4.1's libnbc made the step of
 * `deep` twice as slow. */
#define CG_REDUCE_CHUNK ((size_t)2 << 20)

/* A gradient being summed: n elements of `elem` bytes. The first network's are posted from
 * the front (the first `next` posted), the last one's from the back (from `next` to `end`
 * posted; `ready` and up final). */
typedef struct {
    char *buf;
    size_t n, next, elem;
    size_t end, ready; /* G: the part posted early is [ready.., end) */
    MPI_Datatype type;
} cg_reduction;

typedef struct {
    cg_net *first, *last; /* D and G, the decoder and the encoder */
    MPI_Comm comm;   /* a duplicate of the world's; MPI_COMM_NULL on one rank */
    cg_reduction d;  /* the first network's gradient */
    cg_reduction g;  /* the last network's gradient */
    int active;      /* between the first gradient being ready and cg_reducer_finish */
    MPI_Request req; /* the chunk in flight */
    int span;        /* its kind (cg_span: D's or G's) */
    struct cg_trace *trace; /* each chunk a span on the MPI track; NULL: none */
    double posted;   /* when the chunk in flight was posted (while tracing) */
    int chunk, chunks_d, chunks_g; /* its index; chunks posted of D and of G this step */
} cg_reducer;

/* Sets r up for k's ranks (collective over c->world) and makes the last network's backward
 * pass advance the first one's reduction. */
void cg_reducer_attach(cg_reducer *r, cg_ctx *c, cg_kind *k);
/* Frees the communicator and detaches r from its model. */
void cg_reducer_free(cg_reducer *r);
/* The hooks to pass to the kind's grads. */
cg_kind_hooks cg_reducer_hooks(cg_reducer *r);
/* Completes both sums (blocking); nothing to do on one rank. */
void cg_reducer_finish(cg_reducer *r);

#endif
