#include "chargan/options.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int cg_parse_value(const cg_opt *o, const char *v, cg_error *e)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CG_OPT_INT:
    case CG_OPT_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end)
            return cg_fail(e, "--%s: '%s' is not a whole number", o->name, v);
        if (o->type == CG_OPT_INT) {
            if (x < INT_MIN || x > INT_MAX)
                return cg_fail(e, "--%s: %s is out of range", o->name, v);
            *(int *)o->dst = (int)x;
        } else {
            *(long *)o->dst = x;
        }
        return 0;
    }
    case CG_OPT_U64: {
        if (v[0] == '-')
            return cg_fail(e, "--%s: '%s' must not be negative", o->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end)
            return cg_fail(e, "--%s: '%s' is not a whole number", o->name, v);
        *(uint64_t *)o->dst = (uint64_t)x;
        return 0;
    }
    case CG_OPT_FLOAT: {
        float x = strtof(v, &end);
        /* strtof also takes "inf" and "nan": no option means them (out-of-range values are
         * refused through errno), and no saved configuration (JSON) could hold them */
        if (errno || end == v || *end || !isfinite(x))
            return cg_fail(e, "--%s: '%s' is not a finite number", o->name, v);
        *(float *)o->dst = x;
        return 0;
    }
    case CG_OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x))
            return cg_fail(e, "--%s: '%s' is not a finite number", o->name, v);
        *(double *)o->dst = x;
        return 0;
    }
    case CG_OPT_STR:
        *(const char **)o->dst = v;
        return 0;
    case CG_OPT_FLAG:
    case CG_OPT_FLAG_OFF:
        break;
    }
    return 0;
}

/* One step of the walk over argv shared by the parser and cg_opt_value: the option at argv[*i]
 * and its value (NULL for flags), *i moved past both. Returns 0, 1 for --help, 2 for a
 * positional argument (*v = it), or -1 with e set. */
static int next_opt(const cg_opt *opts, int n, int argc, char **argv, int *i, const cg_opt **o,
                    const char **v, cg_error *e)
{
    const char *a = argv[(*i)++];
    *o = NULL;
    *v = NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h"))
        return 1;
    if (strncmp(a, "--", 2) != 0) {
        *v = a;
        return 2;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (int k = 0; k < n; k++)
        if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len))
            *o = &opts[k];
    if (!*o)
        return cg_fail(e, "unknown option '%s' (see --help)", a);
    if ((*o)->type == CG_OPT_FLAG || (*o)->type == CG_OPT_FLAG_OFF)
        return eq ? cg_fail(e, "--%s takes no value", (*o)->name) : 0;
    *v = eq ? eq + 1 : (*i < argc ? argv[(*i)++] : NULL);
    return *v ? 0 : cg_fail(e, "--%s needs a value", (*o)->name);
}

int cg_parse_opts(const cg_opt *opts, int n, int argc, char **argv, const char **positional,
                  cg_error *e)
{
    for (int i = 0; i < argc;) {
        const cg_opt *o;
        const char *v;
        int rc = next_opt(opts, n, argc, argv, &i, &o, &v, e);
        if (rc == 2 && positional && !*positional)
            *positional = v;
        else if (rc == 2)
            return cg_fail(e, "unexpected argument '%s'", v);
        else if (rc)
            return rc;
        else if (!v)
            *(int *)o->dst = o->type == CG_OPT_FLAG;
        else if (cg_parse_value(o, v, e))
            return -1;
    }
    return 0;
}

const char *cg_opt_value(const cg_opt *opts, int n, int argc, char **argv, const char *name)
{
    const char *last = NULL;
    cg_error ignored;
    for (int i = 0; i < argc;) {
        const cg_opt *o;
        const char *v;
        int rc = next_opt(opts, n, argc, argv, &i, &o, &v, &ignored);
        if (rc == 1 || rc < 0)
            break;
        if (!rc && v && !strcmp(o->name, name))
            last = v;
    }
    return last;
}

void cg_print_opts(FILE *f, const cg_opt *opts, int n)
{
    static const char *meta[] = {"N", "N", "X", "X", "N", "S", "", ""};
    for (int k = 0; k < n; k++) {
        char left[64];
        snprintf(left, sizeof left, "--%s %s", opts[k].name, meta[opts[k].type]);
        fprintf(f, "  %-22s %s\n", left, opts[k].help);
    }
}
