/* The run settings table (chargan/settings.h). */
#include "chargan/settings.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chargan/ckpt.h"
#include "chargan/json.h"
#include "chargan/optim.h"
#include "chargan/preset.h"

#define AT(field) offsetof(cg_train_opts, field)
#define SAVED CG_SET_SAVED
#define SAME (CG_SET_SAVED | CG_SET_SAME)
#define FACT (CG_SET_SAVED | CG_SET_FACT)
/* The 1 MiB cap that checkpoints apply to their stored strings, config included. */
#define CONFIG_JSON_MAX (1 << 20)

/* In the order of the saved configuration (older checkpoints have the same keys in the same
 * order, up to lr_decay_start), then the options that are not saved. */
static const cg_setting table[] = {
    {"model", "model", CG_OPT_STR, AT(model), SAME,
     "preset: a GAN or a VAE (see below; default " CG_DEFAULT_PRESET ")"},
    {"conditional", "conditional", CG_OPT_FLAG, AT(conditional), SAVED,
     "class-conditional G and D (the label joins G's noise and D's features; cdcgan, deep: "
     "also every batch norm of G)"},
    {"unconditional", NULL, CG_OPT_FLAG_OFF, AT(conditional), 0,
     "not conditional (for presets that are)"},
    {NULL, "n_classes", CG_OPT_INT, AT(n_classes), FACT, NULL},
    {NULL, "classes", CG_OPT_STR, AT(classes), FACT, NULL},
    {"noise-dim", "noise_dim", CG_OPT_INT, AT(gan.noise_dim), SAVED, "noise dimension (150)"},
    {"batch", "global_batch", CG_OPT_INT, AT(gan.global_batch), SAME,
     "global batch, divisible by the ranks (the preset's)"},
    {"lr-g", "lr_g", CG_OPT_FLOAT, AT(gan.lr_g), SAVED, "generator learning rate (the preset's)"},
    {"lr-d", "lr_d", CG_OPT_FLOAT, AT(gan.lr_d), SAVED,
     "discriminator learning rate (the preset's)"},
    {"beta1", "beta1", CG_OPT_FLOAT, AT(gan.beta1), SAVED, "Adam beta1 (0.5)"},
    {"beta2", "beta2", CG_OPT_FLOAT, AT(gan.beta2), SAVED, "Adam beta2 (0.999)"},
    {"eps", "eps", CG_OPT_FLOAT, AT(gan.eps), SAVED, "Adam epsilon (1e-7)"},
    {"seed", "seed", CG_OPT_LONG, AT(seed), SAME, "random seed: weights, noise, data order (1)"},
    {"steps", "steps", CG_OPT_LONG, AT(steps), SAVED,
     "steps to train (overrides --epochs; the preset's)"},
    {"epochs", "epochs", CG_OPT_LONG, AT(epochs), SAVED, "epochs to train (with --steps 0)"},
    {"data", "data", CG_OPT_STR, AT(data.data), SAVED,
     "EMNIST images file, CSV or directory (default: $EMNIST_DIR, then ./data/emnist)"},
    {"limit", "limit", CG_OPT_LONG, AT(data.limit), SAME,
     "use the first N images (0 = all; the preset's)"},
    {NULL, "images", CG_OPT_LONG, AT(images), FACT, NULL},
    {"ckpt-every", "ckpt_every", CG_OPT_LONG, AT(ckpt_every), SAVED,
     "checkpoint every N steps (always at the end and on SIGTERM/SIGINT/SIGUSR1)"},
    {"sample-every", "sample_every", CG_OPT_LONG, AT(sample_every), SAVED,
     "write OUT/samples/step-N.h5 and .png every N steps (and at the end)"},
    {"sum-groups", "sum_groups", CG_OPT_INT, AT(sum_groups), SAVED,
     "gradients are summed exactly over G fixed groups of the batch: bit-identical results "
     "on every rank count dividing G (default: 8, or the rank count if larger)"},
    {"ema", "ema", CG_OPT_DOUBLE, AT(ema), SAVED,
     "decay of an exponential moving average of G's weights, saved in checkpoints and used "
     "by samples and scores (with a warm-up; 0 = none; the preset's)"},
    {"exclude-heldout", "exclude_heldout", CG_OPT_FLAG, AT(exclude_heldout), SAME,
     "train only on the classifier's training part of the data, never on the held-out "
     "images that `chargan eval` uses as FID reference"},
    {NULL, "images_used", CG_OPT_LONG, AT(images_used), FACT, NULL},
    {"loss", "loss", CG_OPT_STR, AT(loss), SAVED,
     "bce (the notebook's: non-saturating cross-entropy) | hinge"},
    {"lr-decay-start", "lr_decay_start", CG_OPT_LONG, AT(gan.lr_decay_start), SAVED,
     "from this step on both learning rates fall linearly to 0 at the last step (-1: "
     "constant; the preset's)"},
    {"split", "split", CG_OPT_STR, AT(data.split), SAME,
     "split in a directory (the preset's: bymerge-test, or balanced-train for seed, small)"},
    {"labels", "labels", CG_OPT_STR, AT(data.labels), SAVED, "labels file for an images file"},
    {"float-sums", "float_sums", CG_OPT_FLAG, AT(float_sums), SAVED,
     "sum gradients in float32: half the allreduce bytes, results then depend on the rank "
     "count in the last bits (summation order)"},
    {"eval-every", "eval_every", CG_OPT_LONG, AT(eval_every), SAVED,
     "quality score (FID etc., see chargan eval) on rank 0 every N steps, to metrics.jsonl"},
    {"classifier", "classifier", CG_OPT_STR, AT(classifier), SAVED,
     "classifier file for --eval-every"},
    {"eval-n", "eval_n", CG_OPT_LONG, AT(eval_n), SAVED, "samples per score (2000)"},
    {"optimizer", "optimizer", CG_OPT_STR, AT(optimizer), SAME,
     "VAEs: rmsprop (the book's) | adam (with --beta1, --beta2; the preset's)"},
    {"lr", "lr", CG_OPT_FLOAT, AT(lr), SAVED, "VAEs: learning rate (the preset's: 1e-3)"},
    {"coding-dim", "coding_dim", CG_OPT_INT, AT(coding_dim), SAME,
     "VAEs: size of the coding (the preset's: 10)"},
    {NULL, "source", CG_OPT_STR, AT(source), FACT, NULL},
    {"config", NULL, CG_OPT_STR, AT(config), 0,
     "start from the settings of a JSON file or of a checkpoint; other flags override them"},
    {"out", NULL, CG_OPT_STR, AT(out), 0, "output directory (chargan-out)"},
    {"resume", NULL, CG_OPT_STR, AT(resume), 0,
     "auto (newest valid checkpoint in OUT/checkpoints) or a checkpoint file"},
    {"keep", NULL, CG_OPT_INT, AT(keep), 0, "keep the newest K checkpoints (3; 0 = all)"},
    {"time-limit", NULL, CG_OPT_DOUBLE, AT(time_limit), 0,
     "stop after this many seconds of training: checkpoint, exit 0 (0 = none)"},
    {"threads", NULL, CG_OPT_INT, AT(threads), 0, "BLAS threads per rank (cores / ranks per node, at most the CPUs the rank is bound to)"},
    {"trace", NULL, CG_OPT_STR, AT(trace), 0,
     "write a per-rank timeline of --trace-steps to this file (Chrome trace JSON: Perfetto, "
     "chrome://tracing; jobs/trace_plot draws it)"},
    {"trace-steps", NULL, CG_OPT_STR, AT(trace_steps), 0,
     "steps A:B (from 1, inclusive) that --trace records (" CG_TRACE_STEPS ")"},
    {"log-every", NULL, CG_OPT_INT, AT(log_every), 0, "progress line every N steps (50; 0 = quiet)"},
    {"check-every", NULL, CG_OPT_INT, AT(check_every), 0,
     "debug: verify every N steps that all ranks hold bit-identical parameters"},
};
enum { N_SETTINGS = sizeof table / sizeof table[0] };

const cg_setting *cg_settings(int *n)
{
    *n = N_SETTINGS;
    return table;
}

void cg_train_default_opts(cg_train_opts *o)
{
    memset(o, 0, sizeof *o);
    cg_gan_default_config(&o->gan);
    o->conditional = -1;
    o->gan.global_batch = 0;
    o->gan.lr_decay_start = CG_DECAY_PRESET;
    o->seed = 1;
    o->loss = "bce";
    o->data.limit = -1;
    o->ema = NAN; /* the preset's */
    o->eval_n = 2000;
    o->out = "chargan-out";
    o->log_every = 50;
    o->keep = 3;
}

static void *field(const cg_train_opts *o, const cg_setting *s)
{
    return (char *)o + s->offset;
}

/* The option table over o, for the generic parser; returns its length. */
static int bind_options(cg_train_opts *o, cg_opt *opts)
{
    int n = 0;
    for (int i = 0; i < N_SETTINGS; i++)
        if (table[i].flag) {
            opts[n++] = (cg_opt){table[i].flag, table[i].type, field(o, &table[i]),
                                 table[i].help};
        }
    return n;
}

/* The VAE presets (cg_vae_preset_names), for --help. */
static const char *const vae_names[] = {"vae", "cvae", NULL};

void cg_settings_help(FILE *f)
{
    cg_train_opts o;
    cg_opt opts[N_SETTINGS];
    cg_train_default_opts(&o);
    fprintf(f, "usage: [mpirun -np P] chargan train [options]\n"
               "Trains a GAN or a VAE data-parallel over the MPI ranks. Every step the global\n"
               "batch is split over the ranks; the result does not depend on the number of\n"
               "ranks.\n"
               "Without options it runs the " CG_DEFAULT_PRESET " preset's recipe.\n\n"
               "options:\n");
    cg_print_opts(f, opts, bind_options(&o, opts));
    int n;
    const cg_preset_row *rows = cg_preset_rows(&n);
    fprintf(f, "\npresets (--model) and their recipes (Adam beta1 0.5, beta2 0.999):\n");
    for (int i = 0; i < n; i++) {
        const cg_preset_row *r = &rows[i];
        char len[48], decay[48] = "", data[64] = "all images";
        if (r->steps)
            snprintf(len, sizeof len, "%ld steps", r->steps);
        else
            snprintf(len, sizeof len, "%ld epochs", r->epochs);
        if (r->lr_decay_pct)
            snprintf(decay, sizeof decay, ", decay from %d%%", r->lr_decay_pct);
        if (r->limit)
            snprintf(data, sizeof data, "the first %ld images", r->limit);
        fprintf(f, "  %-7s %s%s\n          %sbatch %d, lr %g / %g%s, %s, EMA %g, %s, %s\n",
                r->name, r->help, strcmp(r->name, CG_DEFAULT_PRESET) ? "" : " (the default)",
                r->conditional ? "conditional, " : "", r->batch,
                (double)r->lr_g, (double)r->lr_d, decay, len, r->ema, r->split, data);
    }
    fprintf(f, "\nvariational autoencoders (--model; conditional with --conditional):\n");
    for (int i = 0; vae_names[i]; i++) {
        cg_vae_preset p;
        cg_vae_preset_get(vae_names[i], 0, 0, &p);
        fprintf(f, "  %-7s %s\n          batch %d, %s lr %g, coding %d, %ld steps, %s\n",
                p.name, p.help, p.batch, p.optimizer == CG_OPT_ADAM ? "Adam" : "RMSprop",
                (double)p.lr, p.coding_dim, p.steps, p.split);
    }
}

/* A value of o as JSON. */
static json_t *value_json(const cg_train_opts *o, const cg_setting *s)
{
    const void *v = field(o, s);
    switch (s->type) {
    case CG_OPT_INT:
        return json_integer(*(const int *)v);
    case CG_OPT_LONG:
        return json_integer(*(const long *)v);
    case CG_OPT_U64:
        return json_integer((json_int_t) * (const uint64_t *)v);
    case CG_OPT_FLOAT:
        return cg_json_float(*(const float *)v);
    case CG_OPT_DOUBLE:
        return cg_json_num(*(const double *)v, -1);
    case CG_OPT_STR:
        return cg_json_str(*(const char *const *)v);
    case CG_OPT_FLAG:
    case CG_OPT_FLAG_OFF:
        break;
    }
    return json_boolean(*(const int *)v);
}

json_t *cg_settings_json(const cg_train_opts *o)
{
    json_t *cfg = json_object();
    for (int i = 0; i < N_SETTINGS; i++)
        if (table[i].rules & CG_SET_SAVED)
            json_object_set_new(cfg, table[i].key, value_json(o, &table[i]));
    return cfg;
}

/* Sets one setting from a JSON value; strings point into the JSON value. */
static int value_from_json(cg_train_opts *o, const cg_setting *s, const json_t *j,
                           const char *what, cg_error *e)
{
    void *v = field(o, s);
    const char *want = NULL;
    if (s->type == CG_OPT_INT || s->type == CG_OPT_LONG || s->type == CG_OPT_U64) {
        json_int_t x = json_integer_value(j);
        if (!json_is_integer(j) || (s->type == CG_OPT_INT && (x < INT_MIN || x > INT_MAX)) ||
            (s->type == CG_OPT_U64 && x < 0))
            want = "a whole number in range";
        else if (s->type == CG_OPT_INT)
            *(int *)v = (int)x;
        else if (s->type == CG_OPT_LONG)
            *(long *)v = (long)x;
        else
            *(uint64_t *)v = (uint64_t)x;
    } else if (s->type == CG_OPT_FLOAT || s->type == CG_OPT_DOUBLE) {
        if (!json_is_number(j))
            want = "a number";
        else if (s->type == CG_OPT_FLOAT && !(fabs(json_number_value(j)) <= FLT_MAX))
            want = "a number within float range"; /* else inf, which JSON cannot hold */
        else if (s->type == CG_OPT_FLOAT)
            *(float *)v = (float)json_number_value(j);
        else
            *(double *)v = json_number_value(j);
    } else if (s->type == CG_OPT_STR) {
        if (!json_is_string(j) && !json_is_null(j))
            want = "a string or null";
        else
            *(const char **)v = json_is_string(j) ? json_string_value(j) : NULL;
    } else if (!json_is_boolean(j)) {
        want = "true or false";
    } else {
        *(int *)v = json_is_true(j);
    }
    if (want)
        return cg_fail(e, "%s: setting \"%s\" must be %s", what, s->key, want);
    return 0;
}

int cg_settings_from_json(cg_train_opts *o, const json_t *cfg, const char *what, cg_error *e)
{
    if (!json_is_object(cfg))
        return cg_fail(e, "%s: the configuration is not a JSON object", what);
    /* Configurations saved before "source" was recorded used "data" for the description of
     * what was loaded, not for --data: such a "data" is not a path to read. */
    const int data_is_path = json_object_get(cfg, "source") != NULL;
    for (int i = 0; i < N_SETTINGS; i++) {
        const cg_setting *s = &table[i];
        const json_t *j = s->key && s->flag ? json_object_get(cfg, s->key) : NULL;
        if (s->offset == AT(data.data) && !data_is_path)
            continue;
        if (j && value_from_json(o, s, j, what, e))
            return -1;
    }
    return 0;
}

/* The configuration saved in a checkpoint, or a JSON file. */
static json_t *load_config(const char *path, cg_error *e)
{
    /* A FIFO or device would block the read or never end; a JSON file of settings is small. */
    struct stat st;
    if (stat(path, &st)) {
        cg_fail(e, "--config %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        cg_fail(e, "--config %s: not a regular file", path);
        return NULL;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        cg_fail(e, "--config %s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char magic[8] = {0};
    const int hdf5 = fread(magic, 1, 8, f) == 8 && !memcmp(magic, "\211HDF\r\n\032\n", 8);
    fclose(f);
    json_error_t je;
    json_t *cfg = NULL;
    if (hdf5) {
        cg_ckpt_meta m;
        if (cg_ckpt_read_meta(path, &m, e))
            return NULL;
        cfg = json_loads(m.config_json, 0, &je);
        cg_ckpt_meta_free(&m);
    } else if (st.st_size > CONFIG_JSON_MAX) {
        cg_fail(e, "--config %s: %lld bytes, more than a settings file can hold (%d)", path,
                (long long)st.st_size, CONFIG_JSON_MAX);
        return NULL;
    } else {
        cfg = json_load_file(path, 0, &je);
    }
    if (!cfg)
        cg_fail(e, "--config %s: not JSON: line %d, column %d: %s", path, je.line, je.column,
                je.text);
    return cfg;
}

/* --ema's value, checked as written (so the error quotes it): a number in [0, 1). */
static int check_ema(const char *v, cg_error *e)
{
    char *end = NULL;
    const double x = v ? strtod(v, &end) : 0.0;
    if (v && (end == v || *end || !(x >= 0.0 && x < 1.0)))
        return cg_fail(e, "--ema '%s' must be a number in [0, 1) (0: no EMA)", v);
    return 0;
}

int cg_settings_parse(cg_train_opts *o, int argc, char **argv, json_t **cfg_json, cg_error *e)
{
    cg_opt opts[N_SETTINGS];
    const int n = bind_options(o, opts);
    /* --config is read first, so that the flags given with it override what it holds. */
    const char *path = cg_opt_value(opts, n, argc, argv, "config");
    *cfg_json = NULL;
    if (path) {
        if (!(*cfg_json = load_config(path, e)))
            return -1;
        if (cg_settings_from_json(o, *cfg_json, path, e))
            return -1;
    }
    if (check_ema(cg_opt_value(opts, n, argc, argv, "ema"), e))
        return -1;
    return cg_parse_opts(opts, n, argc, argv, NULL, e);
}

/* A VAE's recipe: its preset's batch, length and split; no EMA (--ema is refused), all
 * images, unconditional unless asked. */
static void resolve_vae(cg_train_opts *o, const cg_vae_preset *p)
{
    if (o->conditional < 0)
        o->conditional = 0;
    if (!o->gan.global_batch)
        o->gan.global_batch = p->batch;
    if (!o->steps && !o->epochs)
        o->steps = p->steps;
    if (isnan(o->ema))
        o->ema = 0.0;
    if (!o->data.split)
        o->data.split = p->split;
    if (o->data.limit < 0)
        o->data.limit = 0;
}

int cg_settings_resolve(cg_train_opts *o, cg_error *e)
{
    if (!o->model)
        o->model = CG_DEFAULT_PRESET;
    cg_vae_preset vp;
    if (!cg_preset_find(o->model) && cg_vae_preset_get(o->model, 0, 0, &vp) == 0) {
        resolve_vae(o, &vp);
        return 0;
    }
    const cg_preset_row *r = cg_preset_find(o->model);
    if (!r)
        return cg_fail(e, "--model '%s' is unknown (known: %s, %s)", o->model, cg_preset_names(),
                       cg_vae_preset_names());
    if (o->conditional < 0)
        o->conditional = r->conditional;
    if (!o->gan.global_batch)
        o->gan.global_batch = r->batch;
    if (o->gan.lr_g == 0.0f)
        o->gan.lr_g = r->lr_g;
    if (o->gan.lr_d == 0.0f)
        o->gan.lr_d = r->lr_d;
    if (!o->steps && !o->epochs)
        o->steps = r->steps, o->epochs = r->epochs;
    if (isnan(o->ema))
        o->ema = r->ema;
    if (!o->data.split)
        o->data.split = r->split;
    if (o->data.limit < 0)
        o->data.limit = r->limit;
    return 0;
}

int cg_settings_check_resume(const cg_train_opts *o, const char *saved, const char *path,
                             cg_error *e)
{
    json_error_t je;
    json_t *ck = json_loads(saved ? saved : "{}", 0, &je);
    if (!json_is_object(ck)) {
        json_decref(ck);
        return cg_fail(e, "%s: its configuration is not a JSON object", path);
    }
    int st = 0;
    for (int i = 0; i < N_SETTINGS && !st; i++) {
        const cg_setting *s = &table[i];
        const json_t *was = (s->rules & CG_SET_SAME) ? json_object_get(ck, s->key) : NULL;
        json_t *now = was ? value_json(o, s) : NULL;
        if (now && !json_equal(was, now)) {
            char *a = cg_json_text(was), *b = cg_json_text(now);
            if (s->type == CG_OPT_FLAG)
                st = cg_fail(e, "%s: trained %s --%s, but this run asks for the opposite; a "
                                "resumed run must use the same data and settings",
                             path, json_is_true(was) ? "with" : "without", s->flag);
            else
                st = cg_fail(e, "%s: trained with --%s %s, but this run asks for --%s %s; a "
                                "resumed run must use the same value",
                             path, s->flag, a, s->flag, b);
            free(a);
            free(b);
        }
        json_decref(now);
    }
    json_decref(ck);
    return st;
}
