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

/* The flat gradient of net summed over the ranks: int64 fixed point in exact mode, else
 * float. Non-blocking when req is given. */
void cg_net_reduce_grads(cg_ctx *c, cg_net *net, MPI_Request *req);

/* D's gradient is summed over the ranks while G's backward pass runs: cg_gan_grads starts the
 * non-blocking reduction through the hooks, G's backward pass lets it progress between layers
 * (Open MPI's shared-memory and TCP transports advance only inside MPI calls), and
 * cg_reducer_wait_d completes it. */
typedef struct {
    cg_ctx *c;
    MPI_Request req_d;
} cg_reducer;

/* Sets r up for gan and makes G's backward pass poke D's reduction. */
void cg_reducer_attach(cg_reducer *r, cg_ctx *c, cg_gan *gan);
/* The hooks to pass to cg_gan_grads. */
cg_gan_hooks cg_reducer_hooks(cg_reducer *r);
/* Waits for D's reduction (nothing to wait for on one rank). */
void cg_reducer_wait_d(cg_reducer *r);

#endif
