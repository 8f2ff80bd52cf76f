/* libFuzzer harness: the command line of `chargan train`, parsed as src/cli/cmd_train.c does:
 * cg_settings_parse, then cg_settings_resolve (and --help's text when asked). The input is
 * split at NUL bytes into the arguments after "train" (at most MAX_ARGS).
 *
 * --config is the one option that opens a file. Its value is replaced by the path of a
 * valid saved configuration written once at start-up (fuzz_config covers the file's content),
 * so that no input makes the parser read an arbitrary file of this machine (a FIFO or
 * /dev/stdin would block the fuzzer); the rest of the command line still overrides it.
 *
 * Checked besides memory safety: parsing returns (never exits) and prints nothing but
 * --help; and a command line that parses and resolves gives settings that the saved
 * configuration reproduces (cg_settings_json, then cg_settings_from_json), unless a string
 * is not UTF-8 (JSON cannot hold it; the saved text marks such bytes '?'). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chargan/json.h"
#include "chargan/settings.h"
#include "fuzz_util.h"

#define MAX_ARGS 64

static char config_path[1024], config_eq[1040];
static FILE *devnull;

/* A saved configuration of a default run, as --config would find it in a checkpoint. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    cg_train_opts o;
    cg_train_default_opts(&o);
    cg_error e;
    if (cg_settings_resolve(&o, &e))
        abort();
    fz_path(config_path, sizeof config_path, "keep-config.json");
    snprintf(config_eq, sizeof config_eq, "--config=%s", config_path);
    json_t *cfg = cg_settings_json(&o);
    char *text = cg_json_text(cfg);
    fz_write(config_path, text, strlen(text));
    free(text);
    json_decref(cfg);
    devnull = fopen("/dev/null", "w");
    return devnull ? 0 : -1;
}

/* Splits data at NULs into argv (pointers into buf, a NUL-terminated copy); returns argc.
 * Every value of --config becomes config_path. */
static int split_args(const uint8_t *data, size_t size, char **argv, char *buf)
{
    memcpy(buf, data, size);
    buf[size] = 0;
    int argc = 0; /* an empty input: no arguments; otherwise NUL separates them */
    for (char *p = buf; size && p <= buf + size && argc < MAX_ARGS; p += strlen(p) + 1)
        argv[argc++] = p;
    for (int i = 0; i < argc; i++) {
        if (!strncmp(argv[i], "--config=", 9))
            argv[i] = config_eq;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc)
            argv[++i] = config_path;
    }
    argv[argc] = NULL;
    return argc;
}

/* Whether the saved configuration can hold o's strings exactly: JSON strings are UTF-8,
 * and the saved text marks other bytes '?'. */
static int representable(const cg_train_opts *o)
{
    int n;
    const cg_setting *t = cg_settings(&n);
    for (int i = 0; i < n; i++) {
        const char *const *v = (const char *const *)((const char *)o + t[i].offset);
        if (!(t[i].rules & CG_SET_SAVED) || t[i].type != CG_OPT_STR || !*v)
            continue;
        json_t *s = json_string(*v);
        json_decref(s);
        if (!s)
            return 0;
    }
    return 1;
}

/* The saved configuration of o, read back into fresh defaults, saves the same text. */
static void check_round_trip(const cg_train_opts *o)
{
    json_t *cfg = cg_settings_json(o);
    cg_train_opts back;
    cg_train_default_opts(&back);
    cg_error e = {{0}};
    if (cg_settings_from_json(&back, cfg, "saved", &e))
        abort(); /* a run whose saved configuration --config refuses */
    json_t *again = cg_settings_json(&back);
    if (!json_equal(cfg, again))
        abort(); /* a setting that does not survive the round trip */
    json_decref(again);
    json_decref(cfg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (!buf)
        abort();
    char *argv[MAX_ARGS + 1];
    const int argc = split_args(data, size, argv, buf);
    cg_train_opts o;
    cg_train_default_opts(&o);
    json_t *saved = NULL;
    cg_error e = {{0}};
    int rc = cg_settings_parse(&o, argc, argv, &saved, &e);
    if (rc == 1)
        cg_settings_help(devnull); /* what train prints for --help */
    if (rc == 0)
        rc = cg_settings_resolve(&o, &e);
    fz_report("train_args", rc, &e);
    if (rc == 0 && representable(&o))
        check_round_trip(&o);
    json_decref(saved);
    free(buf);
    return 0;
}
