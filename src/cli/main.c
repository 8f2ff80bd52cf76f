/* chargan: a handwritten-character GAN trained data-parallel over MPI. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "chargan/version.h"

typedef struct {
    const char *name;
    int (*run)(cg_ctx *c, int argc, char **argv);
    const char *help;
} command;

static const command commands[] = {
    {"bench", cg_cmd_bench, "time training steps on random input (or MPI collectives)"},
    {"train", cg_cmd_train, "train the GAN (under mpirun for several ranks)"},
    {"sample", cg_cmd_sample, "generate samples from a checkpoint (HDF5 + PNG)"},
    {"write", cg_cmd_write, "write a line of text in generated handwriting"},
    {"interpolate", cg_cmd_interpolate, "draw a walk from one style to another (HDF5 + PNG)"},
    {"compare", cg_cmd_compare, "compare the parameters of two checkpoints"},
    {"data", cg_cmd_data, "inspect an EMNIST data set and draw its first images"},
    {"info", cg_cmd_info, "show what a checkpoint or sample file (HDF5) holds"},
    {"classifier", cg_cmd_classifier, "train (or test) the EMNIST classifier used by eval"},
    {"eval", cg_cmd_eval, "score a checkpoint: FID, confidence, classes covered (JSON)"},
    {"export", cg_cmd_export, "write a checkpoint's generator as an ONNX model (and JSON)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: chargan COMMAND [options]   (chargan COMMAND --help for its options)\n"
               "       chargan --version            (chargan's version and the MPI, BLAS and "
               "HDF5 libraries)\n\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-11s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        cg_stack s; /* no MPI_Init: the versions are readable without it */
        cg_stack_get(&s);
        cg_stack_print(stdout, &s);
        return 0;
    }
    const command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            cmd = &commands[i];
    if (!cmd) {
        fprintf(stderr, "chargan: error: unknown command '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    cg_ctx ctx;
    cg_ctx_init(&ctx, &argc, &argv);
    int rc = cmd->run(&ctx, argc - 2, argv + 2);
    cg_ctx_finalize(&ctx);
    return rc;
}
