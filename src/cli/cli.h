/* Sub-commands of the chargan executable. Each takes the MPI context and the arguments
 * after its own name, and returns the process exit code. */
#ifndef CHARGAN_CLI_H
#define CHARGAN_CLI_H
#include <stdio.h>

#include "chargan/dist.h"
#include "chargan/options.h"


int cg_cmd_bench(cg_ctx *c, int argc, char **argv);
int cg_bench_allreduce(cg_ctx *c, int argc, char **argv); /* bench --allreduce */
int cg_cmd_data(cg_ctx *c, int argc, char **argv);
int cg_cmd_train(cg_ctx *c, int argc, char **argv);
int cg_cmd_sample(cg_ctx *c, int argc, char **argv);
int cg_cmd_write(cg_ctx *c, int argc, char **argv);
int cg_cmd_compare(cg_ctx *c, int argc, char **argv);
int cg_cmd_info(cg_ctx *c, int argc, char **argv);
int cg_cmd_classifier(cg_ctx *c, int argc, char **argv);
int cg_cmd_eval(cg_ctx *c, int argc, char **argv);
int cg_cmd_export(cg_ctx *c, int argc, char **argv);

#endif
