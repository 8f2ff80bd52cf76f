/* chargan sample / write / compare: inference from checkpoints, no mpirun needed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "chargan/ckpt.h"
#include "chargan/ema.h"
#include "chargan/generate.h"
#include "chargan/png.h"
#include "chargan/rng.h"

#define IMAGE_PIXELS 784

/* Parses a command's options; prints usage for --help. Returns 0 to go on, else the exit
 * code + 1 (so 1 means "exit 0", 3 means "exit 2"). */
static int parse(const char *cmd, const char *what, const cg_opt *opts, int n, int argc,
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

#define TEMPERATURE_HELP                                                                      \
    "noise scale (1: the training noise; > 1 more varied, < 1 more uniform samples)"

/* cg_temperature_valid, else a one-line error. */
static int temperature_ok(const char *cmd, float t)
{
    if (cg_temperature_valid(t))
        return 1;
    fprintf(stderr, "chargan: error: %s: --temperature %g is not in (0, 10]\n", cmd, (double)t);
    return 0;
}

/* cg_gan_open, printing its error. */
static int open_checkpoint(const char *path, int batch, int use_ema, cg_gan *gan,
                           cg_ckpt_meta *m, char *classes)
{
    cg_error e;
    if (cg_gan_open(path, batch, use_ema, gan, m, classes, &e) == 0)
        return 0;
    fprintf(stderr, "chargan: error: %s\n", e.msg);
    return -1;
}

int cg_cmd_sample(cg_ctx *c, int argc, char **argv)
{
    const char *ckpt = NULL, *out = "samples.h5", *png = NULL, *chr = NULL;
    int n = 10000, batch = 256, no_ema = 0;
    long seed = 1;
    float temperature = 1.0f;
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &ckpt, "checkpoint file (required)"},
        {"n", CG_OPT_INT, &n, "number of samples (10000)"},
        {"seed", CG_OPT_LONG, &seed, "noise seed (1)"},
        {"out", CG_OPT_STR, &out, "sample file to write (samples.h5)"},
        {"png", CG_OPT_STR, &png, "also draw the first 81 samples (9x9) into this PNG"},
        {"char", CG_OPT_STR, &chr, "conditional models: draw only this character"},
        {"batch", CG_OPT_INT, &batch, "images per forward pass (256)"},
        {"no-ema", CG_OPT_FLAG, &no_ema,
         "draw from the raw generator weights, not their EMA (when the checkpoint has one)"},
        {"temperature", CG_OPT_FLOAT, &temperature, TEMPERATURE_HELP},
    };
    int r = parse("sample", "Generates samples from a checkpoint into an HDF5 sample file.",
                  opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (r)
        return r - 1;
    if (c->rank != 0)
        return 0;
    if (!ckpt || n < 1 || batch < 1 || seed < 0 || (chr && strlen(chr) != 1)) {
        fprintf(stderr, "chargan: error: sample: needs --checkpoint FILE, positive --n and "
                        "--batch, a non-negative --seed and --char of one character\n");
        return 2;
    }
    if (!temperature_ok("sample", temperature))
        return 2;
    cg_gan gan;
    cg_ckpt_meta m;
    cg_error e;
    char classes[CG_GEN_MAX_CLASSES + 1];
    if (open_checkpoint(ckpt, batch, !no_ema, &gan, &m, classes))
        return 1;
    int rc = 0;
    int32_t *labels = NULL;
    const int K = m.n_classes;
    if (K > 0) {
        labels = malloc(sizeof(int32_t) * (size_t)n);
        int cls = chr ? cg_class_of_char(classes, chr[0]) : -1;
        if (chr && cls < 0) {
            fprintf(stderr, "chargan: error: %s: the model has no class for '%s' (classes: %s)\n",
                    ckpt, chr, classes);
            rc = 1;
        }
        for (int i = 0; i < n; i++)
            labels[i] = chr ? cls : i % K;
    } else if (chr) {
        fprintf(stderr, "chargan: error: %s: --char needs a conditional model (train with "
                        "--conditional)\n", ckpt);
        rc = 1;
    }
    float *img = rc ? NULL : malloc(sizeof(float) * (size_t)n * IMAGE_PIXELS);
    float *z = rc ? NULL : malloc(sizeof(float) * (size_t)batch * (size_t)gan.preset.noise_dim);
    if (!rc) {
        cg_generate(&gan, (uint64_t)seed, 0, n, labels, temperature, img, z);
        if (cg_samples_write(out, img, n, m.step, m.model, (uint64_t)seed, labels, &e)) {
            fprintf(stderr, "chargan: error: %s\n", e.msg);
            rc = 1;
        }
    }
    if (!rc && png) {
        char captions[82] = {0};
        for (int i = 0; i < 81 && i < n && labels; i++)
            captions[i] = classes[labels[i]] ? classes[labels[i]] : '?';
        if (cg_png_grid(png, img, n < 81 ? n : 81, 9, 3, labels ? captions : NULL, &e)) {
            fprintf(stderr, "chargan: error: %s\n", e.msg);
            rc = 1;
        }
    }
    if (!rc)
        printf("wrote %d samples of %s (step %ld, %s generator, temperature %g) to %s%s%s\n",
               n, ckpt, m.step, m.has_ema && !no_ema ? "EMA" : "raw", (double)temperature,
               out, png ? " and " : "", png ? png : "");
    free(labels), free(img), free(z);
    cg_ckpt_meta_free(&m);
    cg_gan_free(&gan);
    return rc;
}

int cg_cmd_write(cg_ctx *c, int argc, char **argv)
{
    const char *ckpt = NULL, *text = NULL, *out = NULL;
    long seed = 1;
    int scale = 2, no_ema = 0;
    float temperature = 1.0f;
    const cg_opt opts[] = {
        {"checkpoint", CG_OPT_STR, &ckpt, "checkpoint of a conditional model (required)"},
        {"text", CG_OPT_STR, &text, "the line to write (required)"},
        {"out", CG_OPT_STR, &out, "PNG file to write (required)"},
        {"seed", CG_OPT_LONG, &seed, "style: one noise vector for the whole line (1)"},
        {"scale", CG_OPT_INT, &scale, "pixels per glyph pixel (2)"},
        {"no-ema", CG_OPT_FLAG, &no_ema,
         "draw from the raw generator weights, not their EMA (when the checkpoint has one)"},
        {"temperature", CG_OPT_FLOAT, &temperature, TEMPERATURE_HELP},
    };
    int r = parse("write", "Renders a line of text as generated handwriting, every glyph drawn "
                           "from the same noise vector (one style).",
                  opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (r)
        return r - 1;
    if (c->rank != 0)
        return 0;
    if (!ckpt || !text || !*text || !out || scale < 1 || scale > 16 || seed < 0) {
        fprintf(stderr, "chargan: error: write: needs --checkpoint FILE --text TEXT --out "
                        "FILE.png (and --scale 1..16)\n");
        return 2;
    }
    if (!temperature_ok("write", temperature))
        return 2;
    const int len = (int)strlen(text);
    cg_gan gan;
    cg_ckpt_meta m;
    cg_error e;
    char classes[CG_GEN_MAX_CLASSES + 1];
    if (open_checkpoint(ckpt, len, !no_ema, &gan, &m, classes))
        return 1;
    int rc = 0;
    if (m.n_classes == 0) {
        fprintf(stderr, "chargan: error: %s: not a conditional model; train one with "
                        "--conditional to write text\n", ckpt);
        rc = 1;
    }
    int32_t *labels = calloc((size_t)len, sizeof(int32_t));
    char bad[128] = {0};
    int nbad = 0, glyphs = 0;
    for (int i = 0; i < len && !rc; i++) {
        if (text[i] == ' ')
            continue;
        int k = cg_class_of_char(classes, text[i]);
        if (k < 0 && nbad < (int)sizeof bad - 1 && !strchr(bad, text[i]))
            bad[nbad++] = text[i];
        labels[glyphs++] = k;
    }
    if (!rc && nbad) {
        fprintf(stderr, "chargan: error: write: no class for \"%s\" in %s (it writes: %s; "
                        "space is a gap)\n", bad, ckpt, classes);
        rc = 1;
    }
    float *img = NULL, *z = NULL;
    if (!rc) {
        /* One style for the line: every glyph gets the same noise vector. */
        const int nz = gan.preset.noise_dim;
        z = malloc(sizeof(float) * (size_t)len * nz);
        for (int i = 0; i < glyphs; i++)
            cg_sample_noise(z + (size_t)i * nz, nz, (uint64_t)seed, cg_stream(CG_RNG_SAMPLE, 2),
                            0, temperature);
        img = malloc(sizeof(float) * (size_t)len * IMAGE_PIXELS);
        if (glyphs)
            cg_gan_generate(&gan, z, labels, glyphs, img);
        /* Glyphs sit 20 px apart (EMNIST centres characters in 28 px with wide margins);
         * a space advances 14 px. Dark ink on white paper. */
        const int adv = 20, gap = 14, margin = 4;
        int width = 2 * margin + 8;
        for (int i = 0; i < len; i++)
            width += text[i] == ' ' ? gap : adv;
        const int W = width * scale, H = (28 + 2 * margin) * scale;
        float *ink = calloc((size_t)width * (28 + 2 * margin), sizeof(float));
        int x = margin, g = 0;
        for (int i = 0; i < len; i++) {
            if (text[i] == ' ') {
                x += gap;
                continue;
            }
            const float *gl = img + (size_t)g++ * IMAGE_PIXELS;
            for (int yy = 0; yy < 28; yy++)
                for (int xx = 0; xx < 28; xx++) {
                    float *p = ink + (size_t)(yy + margin) * width + x + xx;
                    if (gl[yy * 28 + xx] > *p)
                        *p = gl[yy * 28 + xx];
                }
            x += adv;
        }
        uint8_t *pix = malloc((size_t)W * H);
        for (int yy = 0; yy < H; yy++)
            for (int xx = 0; xx < W; xx++) {
                float v = ink[(size_t)(yy / scale) * width + xx / scale];
                v = v < 0 ? 0 : v > 1 ? 1 : v;
                pix[(size_t)yy * W + xx] = (uint8_t)(255.0f - 255.0f * v + 0.5f);
            }
        if (cg_png_write_gray(out, W, H, pix, &e)) {
            fprintf(stderr, "chargan: error: %s\n", e.msg);
            rc = 1;
        } else {
            printf("wrote \"%s\" (%d glyphs, one style, seed %ld) to %s\n", text, glyphs, seed,
                   out);
        }
        free(ink), free(pix);
    }
    free(labels), free(img), free(z);
    cg_ckpt_meta_free(&m);
    cg_gan_free(&gan);
    return rc;
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

int cg_cmd_compare(cg_ctx *c, int argc, char **argv)
{
    float tol = 1e-4f, floor = 0.0f;
    int verbose = 0, l2 = 0;
    const char *files[2] = {NULL, NULL};
    const cg_opt opts[] = {
        {"tol", CG_OPT_FLOAT, &tol, "largest relative difference allowed (1e-4)"},
        {"floor", CG_OPT_FLOAT, &floor,
         "smallest tensor scale to divide by (0): zero-initialized biases are tiny after a "
         "few Adam steps, so their plain relative difference measures rounding noise"},
        {"l2", CG_OPT_FLAG, &l2,
         "judge by ||a-b|| / ||b|| over each network instead of the per-tensor maximum"},
        {"verbose", CG_OPT_FLAG, &verbose, "print every tensor"},
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
    int r = parse("compare", "compare A.h5 B.h5: compares the parameters of two checkpoints of "
                             "the same model, tensor by tensor (max|a-b| / max|b|), and their "
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
    cg_gan a, b;
    cg_ckpt_meta ma, mb;
    if (open_checkpoint(files[0], 1, 0, &a, &ma, NULL))
        return 1;
    if (open_checkpoint(files[1], 1, 0, &b, &mb, NULL)) {
        cg_gan_free(&a), cg_ckpt_meta_free(&ma);
        return 1;
    }
    int rc = 0;
    if (strcmp(ma.model, mb.model) || ma.n_classes != mb.n_classes ||
        a.g.n_params != b.g.n_params || a.d.n_params != b.d.n_params) {
        fprintf(stderr, "chargan: error: compare: %s (%s) and %s (%s) are different models\n",
                files[0], ma.model, files[1], mb.model);
        rc = 1;
    } else {
        double g = max_rel_diff(&a.g, &b.g, "generator", floor, verbose);
        double d = max_rel_diff(&a.d, &b.d, "discriminator", floor, verbose);
        double lg = l2_rel_diff(&a.g, &b.g), ld = l2_rel_diff(&a.d, &b.d);
        double w = l2 ? (lg > ld ? lg : ld) : (g > d ? g : d);
        int same = !memcmp(a.g.param, b.g.param, sizeof(float) * a.g.n_params) &&
                   !memcmp(a.d.param, b.d.param, sizeof(float) * a.d.n_params);
        /* The generators' EMA, when both files have one, is compared the same way (and
         * counts for bit_identical and within_tol). */
        const int both_ema = a.ema_g && b.ema_g;
        char ema[160];
        if (both_ema) {
            cg_gan_ema_swap(&a), cg_gan_ema_swap(&b);
            double ge = max_rel_diff(&a.g, &b.g, "ema/generator", floor, verbose);
            double le = l2_rel_diff(&a.g, &b.g);
            int se = !memcmp(a.g.param, b.g.param, sizeof(float) * a.g.n_params);
            cg_gan_ema_swap(&a), cg_gan_ema_swap(&b);
            snprintf(ema, sizeof ema, "\"both\", \"max_rel_diff_ema\": %.3e, "
                                      "\"l2_rel_diff_ema\": %.3e, \"ema_bit_identical\": %s",
                     ge, le, se ? "true" : "false");
            same = same && se;
            w = l2 ? (le > w ? le : w) : (ge > w ? ge : w);
        } else {
            snprintf(ema, sizeof ema, "\"%s\"",
                     a.ema_g ? "only in a" : b.ema_g ? "only in b" : "neither");
        }
        printf("{\"a\": \"%s\", \"b\": \"%s\", \"step_a\": %ld, \"step_b\": %ld, "
               "\"max_rel_diff_g\": %.3e, \"max_rel_diff_d\": %.3e, \"l2_rel_diff_g\": %.3e, "
               "\"l2_rel_diff_d\": %.3e, \"ema\": %s, \"bit_identical\": %s, "
               "\"tol\": %g, \"floor\": %g, \"within_tol\": %s}\n",
               files[0], files[1], ma.step, mb.step, g, d, lg, ld, ema, same ? "true" : "false",
               (double)tol,
               (double)floor,
               w <= tol ? "true" : "false");
        rc = w <= tol ? 0 : 1;
    }
    cg_gan_free(&a), cg_gan_free(&b);
    cg_ckpt_meta_free(&ma), cg_ckpt_meta_free(&mb);
    return rc;
}
