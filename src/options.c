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

int cg_parse_opts(const cg_opt *opts, int n, int argc, char **argv, const char **positional,
                  cg_error *e)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h"))
            return 1;
        if (strncmp(a, "--", 2) != 0) {
            if (positional && !*positional) {
                *positional = a;
                continue;
            }
            return cg_fail(e, "unexpected argument '%s'", a);
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t len = eq ? (size_t)(eq - name) : strlen(name);
        const cg_opt *o = NULL;
        for (int k = 0; k < n; k++)
            if (strlen(opts[k].name) == len && !strncmp(opts[k].name, name, len))
                o = &opts[k];
        if (!o)
            return cg_fail(e, "unknown option '%s' (see --help)", a);
        if (o->type == CG_OPT_FLAG || o->type == CG_OPT_FLAG_OFF) {
            if (eq)
                return cg_fail(e, "--%s takes no value", o->name);
            *(int *)o->dst = o->type == CG_OPT_FLAG;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return cg_fail(e, "--%s needs a value", o->name);
        if (cg_parse_value(o, v, e))
            return -1;
    }
    return 0;
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
