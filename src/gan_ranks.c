#include "chargan/gan_ranks.h"

#include "chargan/trace.h"
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

/* The gradient to sum: int64 fixed point in exact mode, else float. */
static cg_reduction gradient_of(const cg_net *net)
{
    if (net->gsum)
        return (cg_reduction){(char *)net->gsum, net->n_params + 1, 0, sizeof(int64_t),
                              MPI_INT64_T};
    return (cg_reduction){(char *)net->grad, net->n_params, 0, sizeof(float), MPI_FLOAT};
}

/* The length of the next chunk of x, in elements. */
static int next_chunk(const cg_reduction *x)
{
    const size_t per = CG_REDUCE_CHUNK / x->elem, left = x->n - x->next;
    return (int)(left < per ? left : per);
}

/* Posts D's next chunk, if any. */
static void post_d_chunk(cg_reducer *r)
{
    cg_reduction *x = &r->d;
    if (x->next == x->n)
        return;
    const int len = next_chunk(x);
    r->posted = cg_trace_start(r->trace);
    r->chunk = x->next ? r->chunk + 1 : 0;
    MPI_Iallreduce(MPI_IN_PLACE, x->buf + x->next * x->elem, len, x->type, MPI_SUM, r->comm,
                   &r->req);
    x->next += (size_t)len;
}

/* Between G's layers: if D's chunk in flight is summed, posts the next. */
static void poke_d_reduction(void *user)
{
    cg_reducer *r = user;
    int done = 0;
    if (r->req == MPI_REQUEST_NULL)
        return;
    MPI_Test(&r->req, &done, MPI_STATUS_IGNORE);
    if (done) {
        cg_trace_add(r->trace, CG_SPAN_REDUCE_D, r->posted, r->chunk);
        post_d_chunk(r);
    }
}

static void start_d_reduction(void *user, cg_gan *gan)
{
    cg_reducer *r = user;
    if (r->comm == MPI_COMM_NULL)
        return;
    r->d = gradient_of(&gan->d);
    post_d_chunk(r);
}

void cg_reducer_attach(cg_reducer *r, cg_ctx *c, cg_gan *gan)
{
    *r = (cg_reducer){.gan = gan, .comm = MPI_COMM_NULL, .req = MPI_REQUEST_NULL};
    if (c->size > 1)
        MPI_Comm_dup(c->world, &r->comm);
    gan->g.progress = (cg_progress){poke_d_reduction, r};
}

void cg_reducer_free(cg_reducer *r)
{
    if (r->comm != MPI_COMM_NULL)
        MPI_Comm_free(&r->comm);
    r->gan->g.progress = (cg_progress){NULL, NULL};
}

cg_gan_hooks cg_reducer_hooks(cg_reducer *r) { return (cg_gan_hooks){start_d_reduction, r}; }

void cg_reducer_finish(cg_reducer *r)
{
    if (r->comm == MPI_COMM_NULL)
        return;
    const double t0 = cg_trace_start(r->trace);
    while (r->req != MPI_REQUEST_NULL) {
        MPI_Wait(&r->req, MPI_STATUS_IGNORE);
        cg_trace_add(r->trace, CG_SPAN_REDUCE_D, r->posted, r->chunk);
        post_d_chunk(r);
    }
    cg_trace_add(r->trace, CG_SPAN_WAIT, t0, 0);
    cg_reduction g = gradient_of(&r->gan->g);
    for (int k = 0; g.next < g.n; k++) {
        const int len = next_chunk(&g);
        const double t1 = cg_trace_start(r->trace);
        MPI_Allreduce(MPI_IN_PLACE, g.buf + g.next * g.elem, len, g.type, MPI_SUM, r->comm);
        cg_trace_add(r->trace, CG_SPAN_REDUCE_G, t1, k);
        g.next += (size_t)len;
    }
}
