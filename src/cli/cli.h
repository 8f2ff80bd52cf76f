/* Sub-commands of the chargan executable. Each takes the MPI context and the arguments
 * after its own name, and returns the process exit code. */
#ifndef CHARGAN_CLI_H
#define CHARGAN_CLI_H
#include <stdio.h>

#include "chargan/ckpt.h"
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
int cg_cmd_interpolate(cg_ctx *c, int argc, char **argv);

/* ---- shared by the commands that draw from a checkpoint (infer.c) ---- */

#define CG_CLI_TEMPERATURE_HELP                                                               \
    "noise scale (1: the training noise; > 1 more varied, < 1 more uniform samples)"
#define CG_CLI_NO_EMA_HELP                                                                    \
    "draw from the raw generator weights, not their EMA (when the checkpoint has one)"

/* Parses a command's options; prints usage ("what" under it) and the options for --help.
 * Returns 0 to go on, else the exit code + 1 (so 1 means "exit 0", 3 means "exit 2"). */
int cg_cli_parse(const char *cmd, const char *what, const cg_opt *opts, int n, int argc,
                 char **argv, const char **positional);
/* cg_temperature_valid, else a one-line error and 0. */
int cg_cli_temperature_ok(const char *cmd, float t);
/* cg_model_open (a checkpoint of any kind of model), printing its error. 0 or -1. */
struct cg_kind;
int cg_cli_open_model(const char *path, int batch, int use_ema, struct cg_kind *k,
                      cg_ckpt_meta *m, char *classes);
/* The class of each character of chars (cls: strlen(chars) entries) for a model of K classes
 * named by classes. Refuses an unconditional model (K = 0) and a character without a class:
 * one line naming the checkpoint, -1. */
int cg_cli_char_classes(const char *ckpt, int K, const char *classes, const char *chars,
                        int32_t *cls);

#endif
