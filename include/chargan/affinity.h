/* Where each rank may run. A rank's CPU affinity (sched_getaffinity) is what `mpirun
 * --bind-to`, `srun --cpu-bind` or a Slurm cgroup cpuset allowed it; online cores are the
 * node's. chargan sizes its threads by both, and says when a node's ranks were bound to the
 * same cores or ask for more threads than the node has: either makes every step slower by
 * the overlap, and neither is an error. */
#ifndef CHARGAN_AFFINITY_H
#define CHARGAN_AFFINITY_H
#include <stddef.h>
#include <stdio.h>

#include "chargan/dist.h"

/* CPUs this process may run on (0 when the call fails: then nothing is known). */
int cg_affinity_count(void);

/* This process's CPUs as a list, "0-3,8,10-11" (empty when unknown). */
void cg_affinity_list(char *buf, size_t size);

/* Collective over the world. Each node's first rank gathers its ranks' CPUs and threads and
 * writes one line of them, "cpus: node NAME: rank R 0-3 (T threads), ...", then a warning
 * for every pair of ranks bound (fewer CPUs than the node's) to overlapping CPUs and one when
 * the ranks' threads add up to more than the node's cores. Rank 0 prints every node's text
 * to `out`, node after node. Returns the number of warnings about this rank's node on the
 * node's first rank, 0 on the others. */
int cg_affinity_report(const cg_ctx *c, FILE *out);

#endif
