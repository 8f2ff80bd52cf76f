/* Sub-commands of the chargan executable. Each takes the MPI context and the arguments
 * after its own name, and returns the process exit code. */
#ifndef CHARGAN_CLI_H
#define CHARGAN_CLI_H
#include "chargan/dist.h"

int cg_cmd_bench(cg_ctx *c, int argc, char **argv);
int cg_cmd_data(cg_ctx *c, int argc, char **argv);

#endif
