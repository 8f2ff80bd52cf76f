#define _GNU_SOURCE
#include "chargan/affinity.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

int cg_affinity_count(void)
{
    cpu_set_t s;
    return sched_getaffinity(0, sizeof s, &s) == 0 ? CPU_COUNT(&s) : 0;
}

/* The set as ranges, "0-3,8". */
static void set_list(const cpu_set_t *s, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < CPU_SETSIZE && len + 1 < size; i++) {
        if (!CPU_ISSET(i, s) || (i > 0 && CPU_ISSET(i - 1, s)))
            continue;
        int j = i;
        while (j + 1 < CPU_SETSIZE && CPU_ISSET(j + 1, s))
            j++;
        int n = j > i ? snprintf(buf + len, size - len, "%s%d-%d", len ? "," : "", i, j)
                      : snprintf(buf + len, size - len, "%s%d", len ? "," : "", i);
        len += n > 0 ? (size_t)n : 0;
    }
    if (len >= size && size > 4)
        memcpy(buf + size - 4, "...", 4);
}

void cg_affinity_list(char *buf, size_t size)
{
    cpu_set_t s;
    if (sched_getaffinity(0, sizeof s, &s) == 0)
        set_list(&s, buf, size);
    else if (size)
        buf[0] = '\0';
}

/* What one rank tells its node's first rank. */
typedef struct {
    cpu_set_t set;
    int known, threads, rank;
} rank_cpus;

/* Warnings of one node from its ranks' records; returns how many. */
static int node_warnings(const cg_ctx *c, const rank_cpus *r, const char *node, FILE *out)
{
    int warned = 0, threads = 0;
    char list[256];
    for (int i = 0; i < c->node_size; i++) {
        threads += r[i].threads;
        if (r[i].known && r[i].threads > CPU_COUNT(&r[i].set)) {
            fprintf(out, "chargan: warning: node %s: rank %d runs %d threads on %d cpu%s\n",
                    node, r[i].rank, r[i].threads, CPU_COUNT(&r[i].set),
                    CPU_COUNT(&r[i].set) > 1 ? "s" : "");
            warned++;
        }
        for (int j = i + 1; j < c->node_size; j++) {
            cpu_set_t both;
            CPU_AND(&both, &r[i].set, &r[j].set);
            const int bound = r[i].known && r[j].known && CPU_COUNT(&r[i].set) < c->cores &&
                              CPU_COUNT(&r[j].set) < c->cores;
            if (!bound || CPU_COUNT(&both) == 0)
                continue;
            set_list(&both, list, sizeof list);
            fprintf(out, "chargan: warning: node %s: ranks %d and %d are bound to the same "
                         "cpus %s and slow each other down; give each its own (mpirun "
                         "--map-by slot:PE=N --bind-to core, srun --cpu-bind=cores)\n",
                    node, r[i].rank, r[j].rank, list);
            warned++;
        }
    }
    if (threads > c->cores) {
        fprintf(out, "chargan: warning: node %s: %d ranks use %d threads in all on %d cores; "
                     "use --threads %d or fewer ranks per node\n",
                node, c->node_size, threads, c->cores,
                c->cores / c->node_size > 0 ? c->cores / c->node_size : 1);
        warned++;
    }
    return warned;
}

/* The node's first rank: one line of every rank's CPUs. */
static void node_line(const cg_ctx *c, const rank_cpus *r, const char *node, FILE *out)
{
    char list[256];
    fprintf(out, "cpus: node %s (%d cores):", node, c->cores);
    for (int i = 0; i < c->node_size; i++) {
        if (r[i].known)
            set_list(&r[i].set, list, sizeof list);
        fprintf(out, "%s rank %d %s (%d thread%s)", i ? "," : "", r[i].rank,
                r[i].known ? list : "?", r[i].threads, r[i].threads > 1 ? "s" : "");
    }
    fputc('\n', out);
}

/* The text of every node, gathered from the node's first ranks, printed by rank 0 alone:
 * lines printed by several ranks at once reach mpirun's output interleaved mid-line. */
static void print_nodes(const cg_ctx *c, const char *text, FILE *out)
{
    int len = (int)strlen(text), *lens = NULL, *offs = NULL;
    char *all = NULL;
    int nl = 0, me = 0;
    MPI_Comm_size(c->leaders, &nl);
    MPI_Comm_rank(c->leaders, &me);
    if (me == 0)
        lens = calloc((size_t)nl, sizeof *lens), offs = calloc((size_t)nl, sizeof *offs);
    MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, c->leaders);
    int total = 0;
    for (int i = 0; me == 0 && i < nl; i++)
        offs[i] = total, total += lens[i];
    if (me == 0)
        all = malloc((size_t)total + 1);
    MPI_Gatherv(text, len, MPI_CHAR, all, lens, offs, MPI_CHAR, 0, c->leaders);
    if (me == 0) {
        all[total] = '\0';
        fputs(all, out);
        fflush(out);
    }
    free(all), free(lens), free(offs);
}

int cg_affinity_report(const cg_ctx *c, FILE *out)
{
    rank_cpus mine;
    memset(&mine, 0, sizeof mine);
    mine.known = sched_getaffinity(0, sizeof mine.set, &mine.set) == 0;
    mine.threads = c->threads, mine.rank = c->rank;
    rank_cpus *all = c->node_rank == 0 ? calloc((size_t)c->node_size, sizeof *all) : NULL;
    MPI_Gather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, 0, c->node);
    int warned = 0;
    if (all) {
        char node[MPI_MAX_PROCESSOR_NAME], *text = NULL;
        size_t size = 0;
        int len = 0;
        MPI_Get_processor_name(node, &len);
        FILE *mem = open_memstream(&text, &size);
        if (mem) {
            node_line(c, all, node, mem);
            warned = node_warnings(c, all, node, mem);
            fclose(mem);
        }
        print_nodes(c, text ? text : "", out);
        free(text);
        free(all);
    }
    MPI_Barrier(c->world); /* the lines come before anything the run prints next */
    return warned;
}
