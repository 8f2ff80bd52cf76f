#include "chargan/ranks.h"

#include <stdint.h>
#include <string.h>

#include "chargan/trace.h"
#include "chargan/train.h"

/* Batch-norm statistics are sums over the global batch. */
static void sum_over_ranks(void *user, double *buf, int n)
{
    cg_ctx *c = user;
    if (c->size > 1)
        MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, c->world);
}

int cg_join_ranks(cg_kind *k, cg_ctx *c, int requested, int float_sums, cg_error *e)
{
    const int P = c->size;
    const int groups = float_sums ? 0 : cg_sum_groups(k->global_batch, P, requested, e);
    if (groups < 0)
        return -1;
    if (groups > 0 && k->ops->set_groups(k, groups, c->rank * (groups / P), groups / P, e))
        return -1;
    for (int i = 0; i < k->n_nets; i++) {
        k->nets[i].net->sync.sum = sum_over_ranks;
        k->nets[i].net->sync.user = c;
    }
    return groups;
}

/* The gradient to sum: int64 fixed point in exact mode, else float. */
static cg_reduction gradient_of(const cg_net *net)
{
    if (net->gsum)
        return (cg_reduction){(char *)net->gsum, net->n_params + 1, 0, sizeof(int64_t), 0, 0,
                              MPI_INT64_T};
    return (cg_reduction){(char *)net->grad, net->n_params, 0, sizeof(float), 0, 0, MPI_FLOAT};
}

/* Where the last network's conditional batch-norm tensors start (they come last): the end of
 * the part that the backward pass finishes layer by layer. */
static size_t layered_end(const cg_net *net)
{
    for (int t = 0; t < net->n_tensors; t++)
        if (!strncmp(net->tensors[t].name, "cbn", 3))
            return net->tensors[t].offset;
    return net->n_params;
}

/* The first element of layer i's own tensors (SIZE_MAX: it has none). */
static size_t layer_start(const cg_net *net, int i)
{
    int ts[CG_LAYER_TENSORS];
    const int n = cg_layer_tensors(&net->layers[i], ts);
    size_t at = SIZE_MAX;
    for (int k = 0; k < n; k++)
        if (ts[k] >= 0 && net->tensors[ts[k]].offset < at)
            at = net->tensors[ts[k]].offset;
    return at;
}

static size_t chunk_elems(const cg_reduction *x) { return CG_REDUCE_CHUNK / x->elem; }

static void post(cg_reducer *r, cg_reduction *x, size_t at, size_t len, int span)
{
    r->posted = cg_trace_start(r->trace);
    r->span = span;
    r->chunk = span == CG_SPAN_REDUCE_D ? r->chunks_d++ : r->chunks_g++;
    MPI_Iallreduce(MPI_IN_PLACE, x->buf + at * x->elem, (int)len, x->type, MPI_SUM, r->comm,
                   &r->req);
}

/* Posts the next chunk: D's, front to back, then G's final part from the back; a partial
 * chunk of G only once the whole layered part is final. Returns 0 when nothing is ready. */
static int post_next(cg_reducer *r)
{
    cg_reduction *d = &r->d, *g = &r->g;
    if (d->next < d->n) {
        const size_t len = d->n - d->next < chunk_elems(d) ? d->n - d->next : chunk_elems(d);
        post(r, d, d->next, len, CG_SPAN_REDUCE_D);
        d->next += len;
        return 1;
    }
    const size_t per = chunk_elems(g);
    if (g->next > g->ready && (g->next - g->ready >= per || g->ready == 0)) {
        const size_t len = g->next - g->ready < per ? g->next - g->ready : per;
        g->next -= len;
        post(r, g, g->next, len, CG_SPAN_REDUCE_G);
        return 1;
    }
    return 0;
}

/* If the chunk in flight is summed (or none is), posts the next one that is ready. */
static void advance(cg_reducer *r)
{
    int done = 1;
    if (r->req != MPI_REQUEST_NULL)
        MPI_Test(&r->req, &done, MPI_STATUS_IGNORE);
    if (!done)
        return;
    if (r->chunk >= 0)
        cg_trace_add(r->trace, (cg_span)r->span, r->posted, r->chunk);
    r->chunk = -1;
    post_next(r);
}

/* After each layer of the last network's backward pass: that layer's gradient is final. */
static void poke(void *user, int layer)
{
    cg_reducer *r = user;
    if (!r->active)
        return;
    const size_t at = layer < 0 ? SIZE_MAX : layer_start(r->last, layer);
    if (at < r->g.ready)
        r->g.ready = at;
    advance(r);
}

static void start_reduction(void *user)
{
    cg_reducer *r = user;
    if (r->comm == MPI_COMM_NULL)
        return;
    r->d = gradient_of(r->first);
    r->g = gradient_of(r->last);
    r->g.end = r->g.next = r->g.ready = layered_end(r->last);
    r->chunk = -1, r->chunks_d = r->chunks_g = 0;
    r->active = 1;
    advance(r);
}

void cg_reducer_attach(cg_reducer *r, cg_ctx *c, cg_kind *k)
{
    *r = (cg_reducer){.first = k->nets[k->first_ready].net,
                      .last = k->nets[1 - k->first_ready].net,
                      .comm = MPI_COMM_NULL,
                      .req = MPI_REQUEST_NULL};
    if (c->size > 1)
        MPI_Comm_dup(c->world, &r->comm);
    r->last->progress = (cg_progress){poke, r};
}

void cg_reducer_free(cg_reducer *r)
{
    if (r->comm != MPI_COMM_NULL)
        MPI_Comm_free(&r->comm);
    r->last->progress = (cg_progress){NULL, NULL};
}

cg_kind_hooks cg_reducer_hooks(cg_reducer *r) { return (cg_kind_hooks){start_reduction, r}; }

/* Sums elements [from, to) of x in blocking chunks. */
static void blocking(cg_reducer *r, cg_reduction *x, size_t from, size_t to)
{
    for (size_t at = from; at < to; at += chunk_elems(x)) {
        const size_t len = to - at < chunk_elems(x) ? to - at : chunk_elems(x);
        const double t0 = cg_trace_start(r->trace);
        MPI_Allreduce(MPI_IN_PLACE, x->buf + at * x->elem, (int)len, x->type, MPI_SUM, r->comm);
        cg_trace_add(r->trace, CG_SPAN_REDUCE_G, t0, r->chunks_g++);
    }
}

void cg_reducer_finish(cg_reducer *r)
{
    if (r->comm == MPI_COMM_NULL)
        return;
    /* Every rank posts the same chunks in the same order whatever its timing: D's, then G's
     * layered part in whole chunks from its back and one partial chunk last (MPI matches
     * collectives by order, and a non-blocking one never matches a blocking one). */
    const double t0 = cg_trace_start(r->trace);
    r->g.ready = 0;
    do {
        if (r->req != MPI_REQUEST_NULL)
            MPI_Wait(&r->req, MPI_STATUS_IGNORE);
        if (r->chunk >= 0)
            cg_trace_add(r->trace, (cg_span)r->span, r->posted, r->chunk);
        r->chunk = -1;
    } while (post_next(r));
    cg_trace_add(r->trace, CG_SPAN_WAIT, t0, 0);
    r->active = 0;
    blocking(r, &r->g, r->g.end, r->g.n); /* the conditional tensors and the count */
}
