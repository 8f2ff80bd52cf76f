/* The run settings table and the preset rows: parsing with a preset's recipe filled in,
 * flags over --config, the saved configuration read back to the same settings, the resume
 * rules, and the preset names. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chargan/json.h"
#include "chargan/preset.h"
#include "chargan/settings.h"
#include "testutil.h"

/* Parses a NULL-terminated argument list and resolves the preset's recipe. */
static int parse(cg_train_opts *o, json_t **keep, const char **args, cg_error *e)
{
    int argc = 0;
    char *argv[64];
    while (args[argc]) {
        argv[argc] = (char *)args[argc];
        argc++;
    }
    json_decref(*keep);
    *keep = NULL;
    cg_train_default_opts(o);
    int r = cg_settings_parse(o, argc, argv, keep, e);
    return r ? r : cg_settings_resolve(o, e);
}

static void test_defaults_are_the_recipe(void)
{
    cg_train_opts o;
    json_t *keep = NULL;
    cg_error e = {{0}};
    const char *none[] = {NULL};
    CHECKF(parse(&o, &keep, none, &e) == 0, "%s", e.msg);
    const cg_preset_row *r = cg_preset_find(CG_DEFAULT_PRESET);
    CHECK(r && !strcmp(o.model, r->name) && o.conditional == r->conditional);
    CHECK(o.gan.global_batch == r->batch && o.gan.lr_g == r->lr_g && o.gan.lr_d == r->lr_d);
    CHECK(o.steps == r->steps && o.ema == r->ema && !strcmp(o.data.split, r->split));
    CHECK(o.gan.lr_decay_start == CG_DECAY_PRESET && r->lr_decay_pct > 0);
    /* seed: the notebook's settings; flags win over the preset. */
    const char *seed[] = {"--model", "seed", "--batch", "128", "--unconditional", NULL};
    CHECKF(parse(&o, &keep, seed, &e) == 0, "%s", e.msg);
    CHECK(o.gan.global_batch == 128 && o.conditional == 0 && o.epochs == 50 && !o.steps);
    CHECK(o.data.limit == 60000 && o.ema == 0.0 && o.gan.lr_g == 1e-5f);
    const char *bad[] = {"--model", "huge", NULL};
    CHECK(parse(&o, &keep, bad, &e) < 0 && strstr(e.msg, "seed, small"));
    const char *ema[] = {"--ema", "x", NULL};
    CHECK(parse(&o, &keep, ema, &e) < 0 && strstr(e.msg, "--ema 'x' must be a number in"));
}

/* Every preset row is named in cg_preset_names and builds. */
static void test_preset_rows(void)
{
    int n;
    const cg_preset_row *rows = cg_preset_rows(&n);
    char joined[256] = "";
    for (int i = 0; i < n; i++) {
        cg_preset p;
        snprintf(joined + strlen(joined), sizeof joined - strlen(joined), "%s%s",
                 i ? ", " : "", rows[i].name);
        CHECK(cg_preset_get(rows[i].name, 0, 0, &p) == 0 && p.n_g > 0 && p.n_d > 0);
        CHECK(rows[i].batch > 0 && rows[i].lr_g > 0 && (rows[i].steps || rows[i].epochs));
    }
    CHECKF(!strcmp(joined, cg_preset_names()), "rows '%s' vs names '%s'", joined,
           cg_preset_names());
    CHECK(cg_preset_find(CG_DEFAULT_PRESET) != NULL);
}

/* The saved configuration reads back to the same settings, and flags override it. */
static void test_round_trip(void)
{
    cg_train_opts o, back;
    json_t *keep = NULL, *keep2 = NULL;
    cg_error e = {{0}};
    const char *args[] = {"--model", "small", "--lr-g", "6e-4", "--seed", "4242424242",
                          "--data", "a \"quoted\" \\ path", "--exclude-heldout", "--ema",
                          "0.999", "--loss", "hinge", NULL};
    CHECKF(parse(&o, &keep, args, &e) == 0, "%s", e.msg);
    o.classes = "0123";
    json_t *cfg = cg_settings_json(&o);
    char *text = cg_json_text(cfg);
    CHECK(text && strstr(text, "\"lr_g\": 0.0006,") && strstr(text, "\"seed\": 4242424242"));
    CHECK(text && strstr(text, "\"exclude_heldout\": true, \"images_used\": 0"));
    char path[] = "/tmp/chargan-test-settings-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    const char *again[] = {"--config", path, "--steps", "7", NULL};
    CHECKF(parse(&back, &keep2, again, &e) == 0, "%s", e.msg);
    CHECK(back.gan.lr_g == o.gan.lr_g && back.seed == o.seed && back.steps == 7);
    CHECK(!strcmp(back.data.data, o.data.data) && back.exclude_heldout == 1);
    CHECK(back.ema == 0.999 && !strcmp(back.loss, "hinge") && !strcmp(back.model, "small"));
    /* The resume rules: a setting marked "same" must match, others may change. */
    CHECKF(cg_settings_check_resume(&back, text, "ck.h5", &e) == 0, "%s", e.msg);
    back.exclude_heldout = 0;
    CHECK(cg_settings_check_resume(&back, text, "ck.h5", &e) < 0 &&
          strstr(e.msg, "trained with --exclude-heldout"));
    back.exclude_heldout = 1, back.seed = 5;
    CHECK(cg_settings_check_resume(&back, text, "ck.h5", &e) < 0 &&
          strstr(e.msg, "--seed 4242424242") && strstr(e.msg, "--seed 5"));
    back.seed = o.seed, back.gan.lr_g = 1e-3f;
    CHECK(cg_settings_check_resume(&back, text, "ck.h5", &e) == 0);
    CHECK(cg_settings_check_resume(&back, "{\"seed\": 4242424242}", "old.h5", &e) == 0);
    /* A file that is not JSON, and a setting of the wrong type. */
    FILE *f = fopen(path, "w");
    fputs("{\"seed\": \"one\"}", f);
    fclose(f);
    CHECK(parse(&back, &keep2, again, &e) < 0 && strstr(e.msg, "\"seed\" must be"));
    f = fopen(path, "w");
    fputs("{\"seed\": 1,", f);
    fclose(f);
    CHECK(parse(&back, &keep2, again, &e) < 0 && strstr(e.msg, "not JSON: line 1"));
    unlink(path);
    free(text);
    json_decref(cfg);
    json_decref(keep);
    json_decref(keep2);
}

/* A configuration saved before "source" was recorded: its "data" described what was loaded
 * and is not taken as --data; everything else is. */
static void test_older_configuration(void)
{
    cg_train_opts o;
    cg_error e = {{0}};
    json_t *old = json_loads("{\"data\": \"x.gz (IDX, gzip)\", \"seed\": 3}", 0, NULL);
    json_t *now = json_loads("{\"data\": \"/d\", \"seed\": 3, \"source\": \"x\"}", 0, NULL);
    cg_train_default_opts(&o);
    CHECKF(cg_settings_from_json(&o, old, "old.h5", &e) == 0, "%s", e.msg);
    CHECK(o.data.data == NULL && o.seed == 3);
    CHECKF(cg_settings_from_json(&o, now, "new.h5", &e) == 0, "%s", e.msg);
    CHECK(o.data.data && !strcmp(o.data.data, "/d"));
    json_decref(old);
    json_decref(now);
}

/* The values of other options are skipped when --config and --ema are looked for first, as the
 * parser itself skips them: "--data --config" names a data path, not a configuration. */
static void test_values_are_not_options(void)
{
    cg_train_opts o;
    json_t *keep = NULL;
    cg_error e = {0};
    const char *data[] = {"--data", "--config", "--steps", "3", NULL};
    CHECKF(parse(&o, &keep, data, &e) == 0, "%s", e.msg);
    CHECK(keep == NULL && !strcmp(o.data.data, "--config") && o.steps == 3);
    const char *out[] = {"--out", "--ema", "--seed", "1", NULL};
    CHECKF(parse(&o, &keep, out, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(o.out, "--ema") && o.seed == 1);
    const char *last[] = {"--ema", "0.5", "--ema", "2", NULL};
    CHECK(parse(&o, &keep, last, &e) < 0 && strstr(e.msg, "--ema '2'"));
    json_decref(keep);
}

/* --config names a file of settings: a FIFO (which would block the read), a directory and a file
 * far larger than any settings are refused by name, before anything is read. */
static void test_config_not_a_settings_file(void)
{
    cg_train_opts o;
    json_t *keep = NULL;
    cg_error e = {0};
    char dir[] = "/tmp/chargan-test-config-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char fifo[256], big[256];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    snprintf(big, sizeof big, "%s/big.json", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    alarm(60); /* a blocked read turns into a failure, not a stuck test */
    const char *a[] = {"--config", fifo, NULL};
    CHECK(parse(&o, &keep, a, &e) < 0 && strstr(e.msg, "fifo: not a regular file"));
    const char *b[] = {"--config", dir, NULL};
    CHECK(parse(&o, &keep, b, &e) < 0 && strstr(e.msg, "not a regular file"));
    FILE *f = fopen(big, "w");
    fputs("{\"seed\": 1", f);
    for (int i = 0; i < (1 << 20); i++)
        fputc(' ', f);
    fputs("}", f);
    fclose(f);
    const char *c[] = {"--config", big, NULL};
    CHECK(parse(&o, &keep, c, &e) < 0 && strstr(e.msg, "more than a settings file can hold"));
    alarm(0);
    unlink(fifo);
    unlink(big);
    rmdir(dir);
    json_decref(keep);
}

int main(void)
{
    test_older_configuration();
    test_values_are_not_options();
    test_config_not_a_settings_file();
    test_defaults_are_the_recipe();
    test_preset_rows();
    test_round_trip();
    return tu_finish("test_settings");
}
