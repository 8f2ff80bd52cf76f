/* chargan interpolate: a walk from one style to another for fixed characters. The ends are
 * the styles of `chargan write --seed A` and `--seed B`; the model's own path joins them
 * (chargan/interp.h: slerp for a GAN's noise, lerp for a VAE's codings). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/data.h"
#include "chargan/generate.h"
#include "chargan/interp.h"
#include "chargan/kind.h"
#include "chargan/png.h"

/* Bounds that keep the picture a picture (and every size an int). */
enum { MAX_STEPS = 100, MAX_ROWS = 32, MAX_SCALE = 16 };

typedef struct {
    const char *ckpt, *chars, *out;
    long from, to;
    int steps, scale, no_ema;
    float temperature;
} interp_opts;

/* Writes PREFIX.h5 (a sample file: every image with its class) and PREFIX.png (one row per
 * class, captioned with its character). cls: the rows' classes, NULL for one row without.
 * The sample file's seed attribute is the walk's first seed. 0, or -1 (printed). */
static int write_outputs(const interp_opts *o, const cg_ckpt_meta *m, const char *classes,
                         const float *img, const int32_t *cls, int rows)
{
    const int n = rows * o->steps;
    int32_t *labels = cls ? malloc(sizeof(int32_t) * (size_t)n) : NULL;
    char *captions = cls ? calloc((size_t)n + 1, 1) : NULL;
    for (int i = 0; cls && i < n; i++) {
        labels[i] = cls[i / o->steps];
        captions[i] = classes[labels[i]];
    }
    char h5[4096], png[4096];
    cg_error e;
    int rc = 0;
    if (snprintf(h5, sizeof h5, "%s.h5", o->out) >= (int)sizeof h5 ||
        snprintf(png, sizeof png, "%s.png", o->out) >= (int)sizeof png)
        rc = cg_fail(&e, "interpolate: --out %s: path too long", o->out);
    else if (cg_samples_write(h5, img, n, m->step, m->model, (uint64_t)o->from, labels, &e) ||
             cg_png_grid(png, img, n, o->steps, o->scale, captions, &e))
        rc = -1;
    if (rc)
        fprintf(stderr, "chargan: error: %s\n", e.msg);
    else
        printf("wrote %d x %d images (seed %ld to %ld, temperature %g) of %s (step %ld, %s "
               "generator) to %s and %s\n",
               rows, o->steps, o->from, o->to, (double)o->temperature, o->ckpt, m->step,
               m->has_ema && !o->no_ema ? "EMA" : "raw", h5, png);
    free(labels), free(captions);
    return rc;
}

/* The rows' classes: --char's characters for a conditional model, NULL (one row) for an
 * unconditional one; sets *rc on an error (printed). */
static int32_t *row_classes(const interp_opts *o, int K, const char *classes, int *rc)
{
    if (!o->chars && K > 0) {
        fprintf(stderr, "chargan: error: %s: a conditional model: --char names the "
                        "characters to draw (classes: %s)\n", o->ckpt, classes);
        *rc = 1;
    }
    if (!o->chars || *rc)
        return NULL;
    int32_t *cls = malloc(sizeof(int32_t) * strlen(o->chars));
    if (cg_cli_char_classes(o->ckpt, K, classes, o->chars, cls)) {
        *rc = 1;
        free(cls);
        return NULL;
    }
    return cls;
}

/* Opens the checkpoint, draws the walk, writes it; returns the exit code. */
static int interp_run(const interp_opts *o)
{
    const int rows = o->chars ? (int)strlen(o->chars) : 1, n = rows * o->steps;
    cg_kind k;
    cg_ckpt_meta m;
    char classes[CG_GEN_MAX_CLASSES + 1];
    if (cg_cli_open_model(o->ckpt, n < 256 ? n : 256, !o->no_ema, &k, &m, classes))
        return 1;
    int rc = 0;
    int32_t *cls = row_classes(o, m.n_classes, classes, &rc);
    cg_decoder d;
    k.ops->decoder(&k, &d);
    float *ends = rc ? NULL : malloc(sizeof(float) * 2 * (size_t)d.code_dim);
    float *img = rc ? NULL : malloc(sizeof(float) * (size_t)n * CG_IMG_PIXELS);
    if (!rc) {
        cg_style_noise(ends, d.code_dim, (uint64_t)o->from, o->temperature);
        cg_style_noise(ends + d.code_dim, d.code_dim, (uint64_t)o->to, o->temperature);
        cg_interp_images(&d, ends, ends + d.code_dim, o->steps, cls, rows, img);
        rc = write_outputs(o, &m, classes, img, cls, rows) ? 1 : 0;
    }
    free(cls), free(ends), free(img);
    cg_ckpt_meta_free(&m);
    cg_kind_free(&k);
    return rc;
}

/* lo <= v <= hi, else a one-line error naming the flag and 0. */
static int in_range(const char *flag, long v, long lo, long hi)
{
    if (v >= lo && v <= hi)
        return 1;
    if (hi == LONG_MAX)
        fprintf(stderr, "chargan: error: interpolate: %s %ld is below %ld\n", flag, v, lo);
    else
        fprintf(stderr, "chargan: error: interpolate: %s %ld is not in %ld..%ld\n", flag, v, lo,
                hi);
    return 0;
}

#define INTERP_HELP                                                                           \
    "Draws a walk from one style to another: the images along the path between the noise "   \
    "vectors of `chargan write --seed FROM` and `--seed TO` (slerp), --steps of them: the "  \
    "first and last are write's glyphs of those styles. A conditional model draws one "      \
    "row per character of --char, every row the same walk. Writes PREFIX.h5 (a sample file "  \
    "as `chargan sample` writes, rows one after the other) and PREFIX.png."

int cg_cmd_interpolate(cg_ctx *c, int argc, char **argv)
{
    interp_opts o = {NULL, NULL, NULL, 1, 2, 10, 3, 0, 1.0f};
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &o.ckpt, "checkpoint file (required)"},
        {"char", CG_OPT_STR, &o.chars,
         "conditional models (required there): the character to draw; several characters "
         "draw one row each"},
        {"from", CG_OPT_LONG, &o.from, "style at the start: write's --seed (1)"},
        {"to", CG_OPT_LONG, &o.to, "style at the end: write's --seed (2)"},
        {"steps", CG_OPT_INT, &o.steps, "images along the walk, both ends included (10; 2..100)"},
        {"out", CG_OPT_STR, &o.out, "PREFIX: writes PREFIX.h5 and PREFIX.png (required)"},
        {"scale", CG_OPT_INT, &o.scale, "pixels per image pixel in the PNG (3; 1..16)"},
        {"no-ema", CG_OPT_FLAG, &o.no_ema, CG_CLI_NO_EMA_HELP},
        {"temperature", CG_OPT_FLOAT, &o.temperature, CG_CLI_TEMPERATURE_HELP},
    };
    int r = cg_cli_parse("interpolate", INTERP_HELP, opts, (int)(sizeof opts / sizeof opts[0]),
                         argc, argv, NULL);
    if (r)
        return r - 1;
    if (c->rank != 0)
        return 0;
    if (!o.ckpt || !o.out || !*o.out) {
        fprintf(stderr, "chargan: error: interpolate: needs --checkpoint FILE and --out PREFIX\n");
        return 2;
    }
    const long nch = o.chars ? (long)strlen(o.chars) : 1;
    if (!in_range("--steps", o.steps, 2, MAX_STEPS) ||
        !in_range("--scale", o.scale, 1, MAX_SCALE) || !in_range("--from", o.from, 0, LONG_MAX) ||
        !in_range("--to", o.to, 0, LONG_MAX) || !in_range("--char's length", nch, 1, MAX_ROWS))
        return 2;
    if (o.chars && strchr(o.chars, ' ')) {
        fprintf(stderr, "chargan: error: interpolate: --char '%s': no spaces (one row per "
                        "character)\n", o.chars);
        return 2;
    }
    if (!cg_cli_temperature_ok("interpolate", o.temperature))
        return 2;
    return interp_run(&o);
}
