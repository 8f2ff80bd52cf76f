/* What the commands that draw from a checkpoint share (sample, write, compare, interpolate):
 * option parsing with --help, the temperature check, opening the checkpoint, the classes of
 * --char. Each prints its own one-line error. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "chargan/generate.h"
#include "chargan/kind.h"

int cg_cli_parse(const char *cmd, const char *what, const cg_opt *opts, int n, int argc,
                 char **argv, const char **positional)
{
    cg_error e;
    int r = cg_parse_opts(opts, n, argc, argv, positional, &e);
    if (r == 1) {
        printf("usage: chargan %s [options]\n%s\n\noptions:\n", cmd, what);
        cg_print_opts(stdout, opts, n);
        return 1;
    }
    if (r) {
        fprintf(stderr, "chargan: error: %s: %s\n", cmd, e.msg);
        return 3;
    }
    return 0;
}

int cg_cli_temperature_ok(const char *cmd, float t)
{
    if (cg_temperature_valid(t))
        return 1;
    fprintf(stderr, "chargan: error: %s: --temperature %g is not in (0, 10]\n", cmd, (double)t);
    return 0;
}

int cg_cli_open_model(const char *path, int batch, int use_ema, cg_kind *k, cg_ckpt_meta *m,
                      char *classes)
{
    cg_error e;
    if (cg_model_open(path, batch, use_ema, k, m, classes, &e) == 0)
        return 0;
    fprintf(stderr, "chargan: error: %s\n", e.msg);
    return -1;
}

int cg_cli_char_classes(const char *ckpt, int K, const char *classes, const char *chars,
                        int32_t *cls)
{
    if (K == 0) {
        fprintf(stderr, "chargan: error: %s: --char needs a conditional model (train with "
                        "--conditional)\n", ckpt);
        return -1;
    }
    for (int i = 0; chars[i]; i++) {
        cls[i] = cg_class_of_char(classes, chars[i]);
        if (cls[i] < 0) {
            fprintf(stderr, "chargan: error: %s: the model has no class for '%c' (classes: "
                            "%s)\n", ckpt, chars[i], classes);
            return -1;
        }
    }
    return 0;
}
