/* Table-driven option parsing shared by the commands and the run settings (settings.h). */
#ifndef CHARGAN_OPTIONS_H
#define CHARGAN_OPTIONS_H
#include <stdio.h>

#include "chargan/util.h"

/* "--name VALUE" pairs, numbers checked strictly (the whole word must parse, within range). */
typedef enum {
    CG_OPT_INT,
    CG_OPT_LONG,
    CG_OPT_FLOAT,
    CG_OPT_DOUBLE,
    CG_OPT_U64,
    CG_OPT_STR,
    CG_OPT_FLAG,     /* no value: sets the int to 1 */
    CG_OPT_FLAG_OFF, /* no value: sets the int to 0 (the "--no-..." side of a setting) */
} cg_opt_type;
typedef struct {
    const char *name; /* without the leading "--" */
    cg_opt_type type;
    void *dst;        /* int*, long*, float*, double*, uint64_t*, const char**, int* (flags) */
    const char *help;
} cg_opt;

/* Returns 0 when parsed, 1 when --help was asked, -1 with e set on a bad option or value.
 * Positional arguments (not starting with "--") go to *positional (at most one) when it is
 * not NULL; otherwise they are an error. */
int cg_parse_opts(const cg_opt *opts, int n, int argc, char **argv, const char **positional,
                  cg_error *e);
/* The value of option `name` as the parser would take it (the last one given; values of other
 * options are skipped, not mistaken for options), or NULL. Stops at --help or a bad option,
 * which cg_parse_opts then reports. */
const char *cg_opt_value(const cg_opt *opts, int n, int argc, char **argv, const char *name);
void cg_print_opts(FILE *f, const cg_opt *opts, int n);
/* Parses one value of option o from text v into o->dst (not for flags). 0, or -1 with e set. */
int cg_parse_value(const cg_opt *o, const char *v, cg_error *e);

#endif
