/* Sub-commands of the chargan executable. Each takes the MPI context and the arguments
 * after its own name, and returns the process exit code. */
#ifndef CHARGAN_CLI_H
#define CHARGAN_CLI_H
#include <stdio.h>

#include "chargan/dist.h"

/* Table-driven option parsing shared by the commands: "--name VALUE" pairs, numbers checked
 * strictly (the whole word must parse, within range). */
typedef enum { CG_OPT_INT, CG_OPT_LONG, CG_OPT_FLOAT, CG_OPT_U64, CG_OPT_STR, CG_OPT_FLAG } cg_opt_type;
typedef struct {
    const char *name; /* without the leading "--" */
    cg_opt_type type;
    void *dst;        /* int*, long*, float*, uint64_t*, const char**, int* (flag: set to 1) */
    const char *help;
} cg_opt;

/* Returns 0 when parsed, 1 when --help was asked, -1 with e set on a bad option or value.
 * Positional arguments (not starting with "--") go to *positional (at most one) when it is
 * not NULL; otherwise they are an error. */
int cg_parse_opts(const cg_opt *opts, int n, int argc, char **argv, const char **positional,
                  cg_error *e);
void cg_print_opts(FILE *f, const cg_opt *opts, int n);

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

#endif
