/* chargan export: a checkpoint's generator as a standard ONNX model, and the JSON that lets
 * another program (the browser page) draw from it as chargan does (chargan/export.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/export.h"

typedef struct {
    const char *ckpt, *out, *meta;
    int no_ema;
} export_opts;

/* The description as one JSON line into FILE, crash-safely. */
static int write_meta(const char *file, const json_t *desc, cg_error *e)
{
    char *text = cg_json_text(desc);
    const size_t n = strlen(text);
    char *line = malloc(n + 2);
    if (!line) {
        free(text);
        return cg_fail(e, "%s: out of memory", file);
    }
    memcpy(line, text, n);
    line[n] = '\n', line[n + 1] = 0;
    const int rc = cg_write_file(file, line, n + 1, e);
    free(text), free(line);
    return rc;
}

/* Opens the checkpoint, writes the model (and the JSON); returns the exit code. */
static int export_run(const export_opts *o)
{
    const double t0 = cg_now();
    cg_gan gan;
    cg_ckpt_meta m;
    cg_error e;
    char classes[CG_GEN_MAX_CLASSES + 1];
    if (cg_gan_open(o->ckpt, 1, !o->no_ema, &gan, &m, classes, &e)) {
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        return 1;
    }
    const int ema = m.has_ema && !o->no_ema;
    json_t *desc = cg_export_json(&gan, &m, classes, ema);
    long bytes = 0;
    int rc = cg_onnx_write_generator(o->out, &gan, desc, &bytes, &e);
    if (!rc && o->meta)
        rc = write_meta(o->meta, desc, &e);
    if (rc)
        fprintf(stderr, "chargan: error: %s\n", e.msg);
    else
        printf("exported %s (%s, step %ld, %s generator) to %s: %ld bytes in %.2f s%s%s\n",
               o->ckpt, gan.preset.name, m.step, ema ? "EMA" : "raw", o->out, bytes,
               cg_now() - t0, o->meta ? ", description in " : "", o->meta ? o->meta : "");
    json_decref(desc);
    cg_ckpt_meta_free(&m);
    cg_gan_free(&gan);
    return rc ? 1 : 0;
}

int cg_cmd_export(cg_ctx *c, int argc, char **argv)
{
    export_opts o = {NULL, NULL, NULL, 0};
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &o.ckpt, "checkpoint file (required)"},
        {"out", CG_OPT_STR, &o.out, "ONNX model to write (required)"},
        {"no-ema", CG_OPT_FLAG, &o.no_ema,
         "export the raw generator weights, not their EMA (when the checkpoint has one)"},
        {"meta", CG_OPT_STR, &o.meta,
         "also write the model's description (classes, noise streams, line layout) as JSON"},
    };
    const int n = (int)(sizeof opts / sizeof opts[0]);
    cg_error e;
    const int r = cg_parse_opts(opts, n, argc, argv, NULL, &e);
    if (r == 1) {
        printf("usage: chargan export --checkpoint FILE --out FILE.onnx [options]\n"
               "Writes the generator of a checkpoint as an ONNX model (opset %d; input z and, "
               "when conditional, label; output image [N,1,28,28] in [0,1]).\n\noptions:\n",
               CG_ONNX_OPSET);
        cg_print_opts(stdout, opts, n);
        return 0;
    }
    if (r) {
        fprintf(stderr, "chargan: error: export: %s\n", e.msg);
        return 2;
    }
    if (c->rank != 0)
        return 0;
    if (!o.ckpt || !o.out) {
        fprintf(stderr, "chargan: error: export: needs --checkpoint FILE and --out FILE.onnx\n");
        return 2;
    }
    const char *why;
    if (!cg_onnx_available(&why)) {
        fprintf(stderr, "chargan: error: export: this build has no ONNX export (%s)\n", why);
        return 1;
    }
    return export_run(&o);
}
