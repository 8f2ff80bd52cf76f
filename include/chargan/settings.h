/* The run settings table: one row per setting of `chargan train`, read by option parsing and
 * --help, by the configuration saved in every checkpoint, by reading a configuration back
 * (--config), and by the resume check. */
#ifndef CHARGAN_SETTINGS_H
#define CHARGAN_SETTINGS_H
#include <jansson.h>
#include <stddef.h>

#include "chargan/options.h"
#include "chargan/train.h"

enum {
    CG_SET_SAVED = 1, /* written into the saved configuration and read back by --config */
    CG_SET_SAME = 2,  /* a resumed run must keep the checkpoint's value */
    CG_SET_FACT = 4,  /* a fact of the run, recorded only: no option */
};

typedef struct {
    const char *flag;   /* option name without "--"; NULL for facts */
    const char *key;    /* key in the saved configuration; NULL: not saved */
    cg_opt_type type;
    size_t offset;      /* of the value in cg_train_opts */
    int rules;          /* CG_SET_* */
    const char *help;
} cg_setting;

/* The table; *n gets its length. */
const cg_setting *cg_settings(int *n);

/* Defaults before the preset is known (preset-dependent fields marked unset). */
void cg_train_default_opts(cg_train_opts *o);
/* Parses train's arguments into o (after --config, when given, loaded the saved settings:
 * flags override them). *cfg_json keeps strings of a loaded configuration alive; release it
 * with json_decref after the run. Returns 0, 1 for --help (printed), -1 with e set. */
int cg_settings_parse(cg_train_opts *o, int argc, char **argv, json_t **cfg_json,
                      cg_error *e);
void cg_settings_help(FILE *f);
/* Fills what the preset decides and o leaves unset: model, conditional, batch, rates, length,
 * EMA, split, limit. Returns 0, or -1 for an unknown model (e set). */
int cg_settings_resolve(cg_train_opts *o, cg_error *e);
/* The saved configuration: every CG_SET_SAVED setting of o, in table order. */
json_t *cg_settings_json(const cg_train_opts *o);
/* Sets o's saved settings from a configuration object (unknown keys are ignored: they are
 * facts or from another version). `what` names the source in errors. */
int cg_settings_from_json(cg_train_opts *o, const json_t *cfg, const char *what, cg_error *e);
/* Checks that o keeps every CG_SET_SAME setting of the configuration text `saved` (a
 * checkpoint's); settings the checkpoint does not record are not checked. */
int cg_settings_check_resume(const cg_train_opts *o, const char *saved, const char *path,
                             cg_error *e);

#endif
