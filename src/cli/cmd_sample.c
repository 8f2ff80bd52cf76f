/* chargan sample / write / compare: inference from checkpoints, no mpirun needed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/ckpt.h"
#include "chargan/data.h"
#include "chargan/ema.h"
#include "chargan/generate.h"
#include "chargan/json.h"
#include "chargan/kind.h"
#include "chargan/png.h"
#include "chargan/style_source.h"
#include "chargan/style_stats.h"
#include "chargan/vae.h"

/* The classes to draw: every class in turn, or only --char's. NULL for an unconditional
 * model; sets *rc on an error (printed). */
static int32_t *sample_labels(const char *ckpt, int K, const char *classes, const char *chr,
                              int n, int *rc)
{
    int32_t cls = -1;
    if (chr && cg_cli_char_classes(ckpt, K, classes, chr, &cls)) {
        *rc = 1;
        return NULL;
    }
    if (K == 0)
        return NULL;
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
    for (int i = 0; i < n; i++)
        labels[i] = chr ? cls : i % K;
    return labels;
}

/* The first 81 samples as a 9x9 PNG, captioned with their classes. */
static int sample_png(const char *png, const float *img, int n, const int32_t *labels,
                      const char *classes)
{
    cg_error e;
    char captions[82] = {0};
    for (int i = 0; i < 81 && i < n && labels; i++)
        captions[i] = classes[labels[i]] ? classes[labels[i]] : '?';
    if (!cg_png_grid(png, img, n < 81 ? n : 81, 9, 3, labels ? captions : NULL, &e))
        return 0;
    fprintf(stderr, "chargan: error: %s\n", e.msg);
    return 1;
}

typedef struct {
    const char *ckpt, *out, *png, *chr;
    int n, batch, no_ema;
    long seed;
    float temperature;
} sample_opts;

/* Generates and writes the samples; returns the exit code. */
static int sample_run(const sample_opts *o)
{
    cg_kind k;
    cg_ckpt_meta m;
    cg_error e;
    char classes[CG_GEN_MAX_CLASSES + 1];
    if (cg_cli_open_model(o->ckpt, o->batch, !o->no_ema, &k, &m, classes))
        return 1;
    int rc = 0;
    int32_t *labels = sample_labels(o->ckpt, m.n_classes, classes, o->chr, o->n, &rc);
    float *img = rc ? NULL : malloc(sizeof(float) * (size_t)o->n * CG_IMG_PIXELS);
    float *z = rc ? NULL : malloc(sizeof(float) * (size_t)o->batch * k.latent_dim);
    if (!rc) {
        cg_kind_generate(&k, (uint64_t)o->seed, 0, o->n, labels, o->temperature, img, z);
        if (cg_samples_write(o->out, img, o->n, m.step, m.model, (uint64_t)o->seed, labels,
                             &e)) {
            fprintf(stderr, "chargan: error: %s\n", e.msg);
            rc = 1;
        }
    }
    if (!rc && o->png)
        rc = sample_png(o->png, img, o->n, labels, classes);
    if (!rc)
        printf("wrote %d samples of %s (step %ld, %s generator, temperature %g) to %s%s%s\n",
               o->n, o->ckpt, m.step, m.has_ema && !o->no_ema ? "EMA" : "raw",
               (double)o->temperature, o->out, o->png ? " and " : "", o->png ? o->png : "");
    free(labels), free(img), free(z);
    cg_ckpt_meta_free(&m);
    cg_kind_free(&k);
    return rc;
}

int cg_cmd_sample(cg_ctx *c, int argc, char **argv)
{
    sample_opts o = {NULL, "samples.h5", NULL, NULL, 10000, 256, 0, 1, 1.0f};
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &o.ckpt, "checkpoint file (required)"},
        {"n", CG_OPT_INT, &o.n, "number of samples (10000)"},
        {"seed", CG_OPT_LONG, &o.seed, "noise seed (1)"},
        {"out", CG_OPT_STR, &o.out, "sample file to write (samples.h5)"},
        {"png", CG_OPT_STR, &o.png, "also draw the first 81 samples (9x9) into this PNG"},
        {"char", CG_OPT_STR, &o.chr, "conditional models: draw only this character"},
        {"batch", CG_OPT_INT, &o.batch, "images per forward pass (256)"},
        {"no-ema", CG_OPT_FLAG, &o.no_ema, CG_CLI_NO_EMA_HELP},
        {"temperature", CG_OPT_FLOAT, &o.temperature, CG_CLI_TEMPERATURE_HELP},
    };
    int r = cg_cli_parse("sample", "Generates samples from a checkpoint into an HDF5 sample file.",
                         opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (r)
        return r - 1;
    if (c->rank != 0)
        return 0;
    if (!o.ckpt || o.n < 1 || o.batch < 1 || o.seed < 0 || (o.chr && strlen(o.chr) != 1)) {
        fprintf(stderr, "chargan: error: sample: needs --checkpoint FILE, positive --n and "
                        "--batch, a non-negative --seed and --char of one character\n");
        return 2;
    }
    if (!cg_cli_temperature_ok("sample", o.temperature))
        return 2;
    return sample_run(&o);
}

/* The class of every glyph of the line (spaces are gaps, not glyphs); *glyphs gets their
 * number. Returns 0, or 1 (printed) when a character has no class. */
static int line_labels(const char *ckpt, const char *text, const char *classes,
                       int32_t *labels, int *glyphs)
{
    char bad[128] = {0};
    int nbad = 0;
    *glyphs = 0;
    for (int i = 0; text[i]; i++) {
        if (text[i] == ' ')
            continue;
        const int k = cg_class_of_char(classes, text[i]);
        if (k < 0 && nbad < (int)sizeof bad - 1 && !strchr(bad, text[i]))
            bad[nbad++] = text[i];
        labels[(*glyphs)++] = k;
    }
    if (!nbad)
        return 0;
    fprintf(stderr, "chargan: error: write: no class for \"%s\" in %s (it writes: %s; space is "
                    "a gap)\n", bad, ckpt, classes);
    return 1;
}

/* The line's layout is cg_line_layout (chargan/generate.h); the last glyph overhangs its
 * advance by glyph - advance pixels. */
static int line_png(const char *out, const char *text, const float *img, int scale,
                    cg_error *e)
{
    const cg_text_layout *lay = &cg_line_layout;
    const int G = lay->glyph;
    int width = 2 * lay->margin + G - lay->advance;
    for (int i = 0; text[i]; i++)
        width += text[i] == ' ' ? lay->gap : lay->advance;
    const int rows = G + 2 * lay->margin, W = width * scale, H = rows * scale;
    float *ink = calloc((size_t)width * rows, sizeof(float));
    for (int i = 0, x = lay->margin, g = 0; text[i]; i++) {
        if (text[i] == ' ') {
            x += lay->gap;
            continue;
        }
        const float *gl = img + (size_t)g++ * CG_IMG_PIXELS;
        for (int yy = 0; yy < G; yy++)
            for (int xx = 0; xx < G; xx++) {
                float *p = ink + (size_t)(yy + lay->margin) * width + x + xx;
                if (gl[yy * G + xx] > *p)
                    *p = gl[yy * G + xx];
            }
        x += lay->advance;
    }
    uint8_t *pix = malloc((size_t)W * H);
    for (int yy = 0; yy < H; yy++)
        for (int xx = 0; xx < W; xx++) {
            float v = ink[(size_t)(yy / scale) * width + xx / scale];
            v = v < 0 ? 0 : v > 1 ? 1 : v;
            pix[(size_t)yy * W + xx] = (uint8_t)(255.0f - 255.0f * v + 0.5f);
        }
    const int rc = cg_png_write_gray(out, W, H, pix, e);
    free(ink), free(pix);
    return rc;
}

typedef struct {
    const char *ckpt, *text, *out;
    long seed;
    int scale, no_ema;
    float temperature;
    /* --style-from: the sample, its character when given, how to read it and to classify it */
    const char *style_from, *style_char, *style_png, *classifier;
    cg_data_opts data;
} write_opts;

/* The style sample's class: the data set's label, --style-char, or the classifier's guess. */
static int style_class(const write_opts *o, cg_style_source *s, const char *classes, int K,
                       char *how, size_t len, cg_error *e)
{
    if (o->style_char) {
        const int k = strlen(o->style_char) == 1 ? cg_class_of_char(classes, o->style_char[0]) : -1;
        if (k < 0)
            return cg_fail(e, "--style-char '%s': not one character of %s", o->style_char, classes);
        s->label = k, s->ch = classes[k];
        snprintf(how, len, "--style-char");
        return 0;
    }
    if (s->label >= 0) {
        snprintf(how, len, "the data set's label");
        return 0;
    }
    double p;
    if (cg_style_source_classify(s, o->classifier, K, classes, &p, e))
        return -1;
    snprintf(how, len, "classified by %s, p = %.2f", o->classifier, p);
    return 0;
}

/* --style-from: every glyph's code is the mean coding of the sample, encoded with its class by
 * the conditional VAE of the checkpoint. Prints the sample's class and style statistics. */
static int style_codes(const write_opts *o, cg_kind *k, const char *classes, int glyphs,
                       float *z, cg_style_stats *src)
{
    cg_error e = {{0}};
    cg_style_source s;
    char how[600];
    int rc = strcmp(k->ops->name, "vae") || !k->n_classes
                 ? cg_fail(&e, "%s: --style-from needs a conditional VAE (it encodes the "
                               "sample); this is a %s", o->ckpt, k->ops->name)
                 : 0;
    if (!rc)
        rc = cg_style_source_load(o->style_from, &o->data, &s, &e);
    if (!rc)
        rc = style_class(o, &s, classes, k->n_classes, how, sizeof how, &e);
    if (!rc && o->style_png)
        rc = cg_png_grid(o->style_png, s.img, 1, 1, 4, NULL, &e);
    if (rc) {
        fprintf(stderr, "chargan: error: write: %s\n", e.msg);
        return 1;
    }
    const int nz = k->latent_dim;
    float *logvar = malloc(sizeof(float) * (size_t)nz);
    const int32_t label = s.label;
    cg_vae_encode((cg_vae *)k->impl, s.img, &label, 1, z, logvar);
    for (int i = 1; i < glyphs; i++)
        memcpy(z + (size_t)i * nz, z, sizeof(float) * (size_t)nz);
    free(logvar);
    *src = cg_style_stats_of(s.img);
    printf("style: %s, '%c' (%s): stroke %.2f px, slant %.1f degrees\n", o->style_from, s.ch,
           how, src->thickness, src->slant);
    return 0;
}

/* The glyphs' mean style statistics, beside the sample's. */
static void print_glyph_style(const float *img, int glyphs, const cg_style_stats *src)
{
    double t = 0, sl = 0;
    for (int i = 0; i < glyphs; i++) {
        const cg_style_stats g = cg_style_stats_of(img + (size_t)i * CG_IMG_PIXELS);
        t += g.thickness / glyphs, sl += g.slant / glyphs;
    }
    printf("style: the %d glyphs: stroke %.2f px, slant %.1f degrees (mean; sample %.2f px, "
           "%.1f degrees)\n", glyphs, t, sl, src->thickness, src->slant);
}

/* Draws the line's glyphs, one style (every glyph the same noise vector), into the PNG. */
static int write_run(const write_opts *o)
{
    const int len = (int)strlen(o->text);
    cg_kind k;
    cg_ckpt_meta m;
    cg_error e;
    char classes[CG_GEN_MAX_CLASSES + 1];
    if (cg_cli_open_model(o->ckpt, len, !o->no_ema, &k, &m, classes))
        return 1;
    int rc = 0, glyphs = 0;
    int32_t *labels = calloc((size_t)len, sizeof(int32_t));
    if (m.n_classes == 0) {
        fprintf(stderr, "chargan: error: %s: not a conditional model; train one with "
                        "--conditional to write text\n", o->ckpt);
        rc = 1;
    }
    if (!rc)
        rc = line_labels(o->ckpt, o->text, classes, labels, &glyphs);
    const int nz = k.latent_dim;
    cg_decoder d;
    k.ops->decoder(&k, &d);
    float *z = rc ? NULL : malloc(sizeof(float) * (size_t)len * nz);
    float *img = rc ? NULL : malloc(sizeof(float) * (size_t)len * CG_IMG_PIXELS);
    cg_style_stats src = {0, 0};
    if (!rc && o->style_from)
        rc = style_codes(o, &k, classes, glyphs, z, &src);
    for (int i = 0; i < glyphs && !rc && !o->style_from; i++)
        cg_style_noise(z + (size_t)i * nz, nz, (uint64_t)o->seed, o->temperature);
    if (!rc && glyphs)
        d.decode(d.model, z, labels, glyphs, img);
    if (!rc && o->style_from)
        print_glyph_style(img, glyphs, &src);
    if (!rc && line_png(o->out, o->text, img, o->scale, &e)) {
        fprintf(stderr, "chargan: error: %s\n", e.msg);
        rc = 1;
    } else if (!rc) {
        char style[600];
        if (o->style_from)
            snprintf(style, sizeof style, "the style of %s", o->style_from);
        else
            snprintf(style, sizeof style, "one style, seed %ld", o->seed);
        printf("wrote \"%s\" (%d glyphs, %s) to %s\n", o->text, glyphs, style, o->out);
    }
    free(labels), free(img), free(z);
    cg_ckpt_meta_free(&m);
    cg_kind_free(&k);
    return rc;
}

int cg_cmd_write(cg_ctx *c, int argc, char **argv)
{
    write_opts o = {NULL, NULL, NULL, 1, cg_line_layout.scale, 0, 1.0f, NULL, NULL, NULL, NULL,
                    {0}};
    const char *env_clf = getenv("CHARGAN_CLASSIFIER");
    o.classifier = env_clf && env_clf[0] ? env_clf : "classifier.h5";
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &o.ckpt, "checkpoint of a conditional model (required)"},
        {"text", CG_OPT_STR, &o.text, "the line to write (required)"},
        {"out", CG_OPT_STR, &o.out, "PNG file to write (required)"},
        {"seed", CG_OPT_LONG, &o.seed, "style: one noise vector for the whole line (1)"},
        {"scale", CG_OPT_INT, &o.scale, "pixels per glyph pixel (2)"},
        {"no-ema", CG_OPT_FLAG, &o.no_ema, CG_CLI_NO_EMA_HELP},
        {"temperature", CG_OPT_FLOAT, &o.temperature, CG_CLI_TEMPERATURE_HELP},
        {"style-from", CG_OPT_STR, &o.style_from,
         "conditional VAEs: write in the style of this sample: a PNG of one character (any "
         "size, colours, polarity) or data:INDEX, an image of --data"},
        {"style-char", CG_OPT_STR, &o.style_char,
         "the character the --style-from PNG shows (else --classifier decides)"},
        {"classifier", CG_OPT_STR, &o.classifier,
         "classifier file that names the sample's character ($CHARGAN_CLASSIFIER, else "
         "classifier.h5)"},
        {"style-png", CG_OPT_STR, &o.style_png, "also draw the sample as the model saw it"},
        {"data", CG_OPT_STR, &o.data.data, "data set of data:INDEX ($EMNIST_DIR)"},
        {"split", CG_OPT_STR, &o.data.split, "its split (balanced-train)"},
    };
    int r = cg_cli_parse("write",
                         "Renders a line of text as generated handwriting, every glyph drawn "
                         "from the same noise vector (one style).",
                         opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (r)
        return r - 1;
    if (c->rank != 0)
        return 0;
    if (!o.ckpt || !o.text || !*o.text || !o.out || o.scale < 1 || o.scale > 16 || o.seed < 0) {
        fprintf(stderr, "chargan: error: write: needs --checkpoint FILE --text TEXT --out "
                        "FILE.png (and --scale 1..16)\n");
        return 2;
    }
    if (!cg_cli_temperature_ok("write", o.temperature))
        return 2;
    return write_run(&o);
}

/* ||a - b|| / ||b|| over a whole network (L2). */
static double l2_rel_diff(const cg_net *a, const cg_net *b)
{
    double d = 0.0, n = 0.0;
    for (size_t i = 0; i < a->n_params; i++) {
        double x = (double)a->param[i] - (double)b->param[i];
        d += x * x;
        n += (double)b->param[i] * b->param[i];
    }
    return n > 0 ? sqrt(d / n) : sqrt(d);
}

/* Largest |a - b| / max(max |b|, floor) over each tensor of a network. */
static double max_rel_diff(const cg_net *a, const cg_net *b, const char *net, double floor,
                           int verbose)
{
    double worst = 0.0;
    for (int t = 0; t < a->n_tensors; t++) {
        const cg_tensor *T = &a->tensors[t];
        const float *x = a->param + T->offset, *y = b->param + T->offset;
        double dmax = 0.0, ymax = 0.0;
        for (size_t i = 0; i < T->count; i++) {
            double d = x[i] > y[i] ? x[i] - y[i] : y[i] - x[i];
            double v = y[i] > 0 ? y[i] : -y[i];
            dmax = d > dmax ? d : dmax;
            ymax = v > ymax ? v : ymax;
        }
        double den = ymax > floor ? ymax : floor;
        double rel = den > 0 ? dmax / den : dmax;
        if (verbose)
            printf("  %s/%-24s max|diff| %.3e  relative %.3e\n", net, T->name, dmax, rel);
        worst = rel > worst ? rel : worst;
    }
    return worst;
}

typedef struct {
    float tol, floor;
    int verbose, l2;
} compare_opts;

/* The generators' EMA, when both files have one, is compared like the weights and counts for
 * bit_identical and within_tol (*worst, *same). */
static void compare_ema(cg_kind *a, cg_kind *b, const compare_opts *o, json_t *js,
                        double *worst, int *same)
{
    if (!a->ema || !b->ema) {
        json_object_set_new(js, "ema", json_string(a->ema   ? "only in a"
                                                   : b->ema ? "only in b"
                                                            : "neither"));
        return;
    }
    const cg_net *ga = a->nets[a->gen].net, *gb = b->nets[b->gen].net;
    char name[64];
    snprintf(name, sizeof name, "ema/%s", a->nets[a->gen].name);
    a->ops->ema_swap(a), b->ops->ema_swap(b);
    const double ge = max_rel_diff(ga, gb, name, o->floor, o->verbose);
    const double le = l2_rel_diff(ga, gb);
    const int se = !memcmp(ga->param, gb->param, sizeof(float) * ga->n_params);
    a->ops->ema_swap(a), b->ops->ema_swap(b);
    json_object_set_new(js, "ema", json_string("both"));
    json_object_set_new(js, "max_rel_diff_ema", cg_json_sig(ge, 4));
    json_object_set_new(js, "l2_rel_diff_ema", cg_json_sig(le, 4));
    json_object_set_new(js, "ema_bit_identical", json_boolean(se));
    *same = *same && se;
    *worst = o->l2 ? (le > *worst ? le : *worst) : (ge > *worst ? ge : *worst);
}

/* Compares two checkpoints of the same model, prints the JSON line; returns the exit code.
 * Each network's differences are keyed by its name's initial (g and d, e and d). */
static int compare_models(cg_kind *a, cg_kind *b, const char *const files[2], long step_a,
                          long step_b, const compare_opts *o)
{
    double mx[CG_KIND_NETS], l2[CG_KIND_NETS], w = 0.0;
    int same = 1;
    json_t *js = json_pack("{sososIsI}", "a", cg_json_str(files[0]), "b",
                           cg_json_str(files[1]), "step_a", (json_int_t)step_a, "step_b",
                           (json_int_t)step_b);
    for (int i = 0; i < a->n_nets; i++) {
        const cg_net *na = a->nets[i].net, *nb = b->nets[i].net;
        mx[i] = max_rel_diff(na, nb, a->nets[i].name, o->floor, o->verbose);
        l2[i] = l2_rel_diff(na, nb);
        const double v = o->l2 ? l2[i] : mx[i];
        w = v > w ? v : w;
        same = same && !memcmp(na->param, nb->param, sizeof(float) * na->n_params);
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < a->n_nets; i++) {
            char key[32];
            snprintf(key, sizeof key, "%s_rel_diff_%c", k ? "l2" : "max", a->nets[i].name[0]);
            json_object_set_new(js, key, cg_json_sig(k ? l2[i] : mx[i], 4));
        }
    compare_ema(a, b, o, js, &w, &same);
    json_object_set_new(js, "bit_identical", json_boolean(same));
    json_object_set_new(js, "tol", cg_json_float(o->tol));
    json_object_set_new(js, "floor", cg_json_float(o->floor));
    json_object_set_new(js, "within_tol", json_boolean(w <= o->tol));
    cg_json_print(stdout, js);
    return w <= o->tol ? 0 : 1;
}

/* Two models of the same preset, classes and sizes. */
static int same_model(const cg_kind *a, const cg_kind *b, const cg_ckpt_meta *ma,
                      const cg_ckpt_meta *mb)
{
    int same = !strcmp(ma->model, mb->model) && ma->n_classes == mb->n_classes &&
               a->n_nets == b->n_nets;
    for (int i = 0; same && i < a->n_nets; i++)
        same = a->nets[i].net->n_params == b->nets[i].net->n_params;
    return same;
}

int cg_cmd_compare(cg_ctx *c, int argc, char **argv)
{
    compare_opts o = {1e-4f, 0.0f, 0, 0};
    const char *files[2] = {NULL, NULL};
    const cg_opt opts[] = {
        {"tol", CG_OPT_FLOAT, &o.tol, "largest relative difference allowed (1e-4)"},
        {"floor", CG_OPT_FLOAT, &o.floor,
         "smallest tensor scale to divide by (0): zero-initialized biases are tiny after a "
         "few Adam steps, so their plain relative difference measures rounding noise"},
        {"l2", CG_OPT_FLAG, &o.l2,
         "judge by ||a-b|| / ||b|| over each network instead of the per-tensor maximum"},
        {"verbose", CG_OPT_FLAG, &o.verbose, "print every tensor"},
    };
    /* Two positional arguments: set them aside, parse the options that remain. */
    char *rest[64];
    int nrest = 0, nfiles = 0;
    for (int i = 0; i < argc && nrest < 64; i++) {
        if (argv[i][0] != '-' && nfiles < 2 &&
            !(i > 0 && (!strcmp(argv[i - 1], "--tol") || !strcmp(argv[i - 1], "--floor"))))
            files[nfiles++] = argv[i];
        else
            rest[nrest++] = argv[i];
    }
    int r = cg_cli_parse("compare",
                         "compare A.h5 B.h5: compares the parameters of two checkpoints of the "
                         "same model, tensor by tensor (max|a-b| / max|b|), and their "
                         "generators' EMA when both have one; exit 0 when all are within "
                         "--tol, 1 otherwise.",
                         opts, 4, nrest, rest, NULL);
    if (r)
        return r - 1;
    if (c->rank != 0)
        return 0;
    if (!files[0] || !files[1]) {
        fprintf(stderr, "chargan: error: compare: needs two checkpoint files\n");
        return 2;
    }
    cg_kind a, b;
    cg_ckpt_meta ma, mb;
    if (cg_cli_open_model(files[0], 1, 0, &a, &ma, NULL))
        return 1;
    if (cg_cli_open_model(files[1], 1, 0, &b, &mb, NULL)) {
        cg_kind_free(&a), cg_ckpt_meta_free(&ma);
        return 1;
    }
    int rc = 1;
    if (!same_model(&a, &b, &ma, &mb))
        fprintf(stderr, "chargan: error: compare: %s (%s) and %s (%s) are different models\n",
                files[0], ma.model, files[1], mb.model);
    else
        rc = compare_models(&a, &b, files, ma.step, mb.step, &o);
    cg_kind_free(&a), cg_kind_free(&b);
    cg_ckpt_meta_free(&ma), cg_ckpt_meta_free(&mb);
    return rc;
}
