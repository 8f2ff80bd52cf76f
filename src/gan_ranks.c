#include "chargan/gan_ranks.h"

#include "chargan/train.h"

/* Batch-norm statistics are sums over the global batch. */
static void sum_over_ranks(void *user, double *buf, int n)
{
    cg_ctx *c = user;
    if (c->size > 1)
        MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, c->world);
}

int cg_gan_join_ranks(cg_gan *gan, cg_ctx *c, int requested, int float_sums, cg_error *e)
{
    const int P = c->size;
    const int groups = float_sums ? 0 : cg_sum_groups(gan->cfg.global_batch, P, requested, e);
    if (groups < 0)
        return -1;
    if (groups > 0 && cg_gan_set_groups(gan, groups, c->rank * (groups / P), groups / P, e))
        return -1;
    gan->g.sync.sum = gan->d.sync.sum = sum_over_ranks;
    gan->g.sync.user = gan->d.sync.user = c;
    return groups;
}

void cg_net_reduce_grads(cg_ctx *c, cg_net *net, MPI_Request *req)
{
    void *buf = net->gsum ? (void *)net->gsum : (void *)net->grad;
    const int n = (int)net->n_params + (net->gsum ? 1 : 0);
    const MPI_Datatype type = net->gsum ? MPI_INT64_T : MPI_FLOAT;
    if (req)
        MPI_Iallreduce(MPI_IN_PLACE, buf, n, type, MPI_SUM, c->world, req);
    else
        MPI_Allreduce(MPI_IN_PLACE, buf, n, type, MPI_SUM, c->world);
}

static void poke_d_reduction(void *user)
{
    cg_reducer *r = user;
    int done = 0;
    if (r->req_d != MPI_REQUEST_NULL)
        MPI_Test(&r->req_d, &done, MPI_STATUS_IGNORE);
}

static void start_d_reduction(void *user, cg_gan *gan)
{
    cg_reducer *r = user;
    r->req_d = MPI_REQUEST_NULL;
    if (r->c->size > 1)
        cg_net_reduce_grads(r->c, &gan->d, &r->req_d);
}

void cg_reducer_attach(cg_reducer *r, cg_ctx *c, cg_gan *gan)
{
    *r = (cg_reducer){c, MPI_REQUEST_NULL};
    gan->g.progress = (cg_progress){poke_d_reduction, r};
}

cg_gan_hooks cg_reducer_hooks(cg_reducer *r) { return (cg_gan_hooks){start_d_reduction, r}; }

void cg_reducer_wait_d(cg_reducer *r)
{
    if (r->req_d != MPI_REQUEST_NULL)
        MPI_Wait(&r->req_d, MPI_STATUS_IGNORE);
}
