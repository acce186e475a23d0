/* The table-driven YAML walker (see cfg.h). */
#include "core/cfg.h"

#include "core/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CFG_MAX_KEYS 64 /* keys in one table */

int kl_cfg_error(kl_cfg_ctx_t *ctx, const yaml_node_t *node, const char *suffix, const char *fmt,
                 ...)
{
    kl_cfg_err_t *e;
    va_list ap;

    if (ctx->errs->n++ >= KL_CFG_MAX_ERRS)
        return KL_EINVAL;
    e = &ctx->errs->e[ctx->errs->n - 1];
    memset(e, 0, sizeof(*e));
    snprintf(e->file, sizeof(e->file), "%s", ctx->file != NULL ? ctx->file : "");
    if (node != NULL) {
        e->line = (int)node->start_mark.line + 1;
        e->col = (int)node->start_mark.column + 1;
    }
    if (suffix == NULL)
        suffix = "";
    if (ctx->path[0] == '\0' && suffix[0] == '.')
        suffix++;
    snprintf(e->key, sizeof(e->key), "%s%s", ctx->path, suffix);
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return KL_EINVAL;
}

/* Appends ".name" (or "name" at the top) or "[idx]" to the path; returns
 * the length to restore with path_pop(). */
static size_t path_push(kl_cfg_ctx_t *ctx, const char *name, size_t idx)
{
    size_t n = strlen(ctx->path);

    if (name != NULL)
        snprintf(ctx->path + n, sizeof(ctx->path) - n, "%s%s", n == 0 ? "" : ".", name);
    else
        snprintf(ctx->path + n, sizeof(ctx->path) - n, "[%zu]", idx);
    return n;
}

static void path_pop(kl_cfg_ctx_t *ctx, size_t n)
{
    ctx->path[n] = '\0';
}

size_t kl_cfg_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), d[64][64];

    if (la >= 64 || lb >= 64)
        return 99;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t v = d[i - 1][j] + 1;

            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v)
                v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

void kl_cfg_fmt_ms(uint64_t ms, char *out, size_t outlen)
{
    if (ms != 0 && ms % 3600000 == 0)
        snprintf(out, outlen, "%lluh", (unsigned long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(out, outlen, "%llum", (unsigned long long)(ms / 60000));
    else if (ms != 0 && ms % 1000 == 0)
        snprintf(out, outlen, "%llus", (unsigned long long)(ms / 1000));
    else
        snprintf(out, outlen, "%llums", (unsigned long long)ms);
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool plain(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

/* A plain empty, ~ or null scalar: YAML's null. */
static bool is_null(const yaml_node_t *n)
{
    const char *s;

    if (n->type != YAML_SCALAR_NODE || !plain(n))
        return false;
    s = scalar(n);
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
           strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0;
}

/* "a list", "a map", "nothing (null)", "a quoted string '...'" or "'...'",
 * for "got ..." in messages. */
static const char *describe(const yaml_node_t *n, char *buf, size_t len)
{
    switch (n->type) {
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a map";
    case YAML_SCALAR_NODE:
        if (is_null(n))
            return "nothing (an empty or null value)";
        snprintf(buf, len, "%s'%.64s%s'", plain(n) ? "" : "a quoted string ", scalar(n),
                 strlen(scalar(n)) > 64 ? "..." : "");
        return buf;
    default:
        return "nothing";
    }
}

yaml_node_t *kl_cfg_map_get(kl_cfg_ctx_t *ctx, yaml_node_t *node, const char *key)
{
    if (node == NULL || node->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, p->key);

        if (k != NULL && k->type == YAML_SCALAR_NODE && strcmp(scalar(k), key) == 0)
            return yaml_document_get_node(ctx->doc, p->value);
    }
    return NULL;
}

yaml_node_t *kl_cfg_seq_item(kl_cfg_ctx_t *ctx, yaml_node_t *node, size_t i)
{
    if (node == NULL || node->type != YAML_SEQUENCE_NODE ||
        i >= (size_t)(node->data.sequence.items.top - node->data.sequence.items.start))
        return NULL;
    return yaml_document_get_node(ctx->doc, node->data.sequence.items.start[i]);
}

int kl_cfg_duration(const char *s, uint32_t *ms)
{
    unsigned long long v = 0, mul;
    const char *p = s;
    size_t digits = 0;

    while (*p >= '0' && *p <= '9') {
        if (++digits > 12)
            return KL_ERANGE;
        v = v * 10 + (unsigned long long)(*p++ - '0');
    }
    if (digits == 0)
        return KL_EINVAL;
    if (strcmp(p, "ms") == 0)
        mul = 1;
    else if (strcmp(p, "s") == 0)
        mul = 1000;
    else if (strcmp(p, "m") == 0)
        mul = 60000;
    else if (strcmp(p, "h") == 0)
        mul = 3600000;
    else
        return KL_EINVAL;
    if (v * mul > 0xffffffffull)
        return KL_ERANGE;
    *ms = (uint32_t)(v * mul);
    return KL_OK;
}

/* Counts one node against the alias-bomb budget. */
static int visit(kl_cfg_ctx_t *ctx, const yaml_node_t *n)
{
    if (++ctx->visits == KL_CFG_MAX_VISITS + 1)
        return kl_cfg_error(ctx, n, NULL,
                            "the document expands to more than %d nodes (an alias bomb?)",
                            KL_CFG_MAX_VISITS);
    return ctx->visits > KL_CFG_MAX_VISITS ? KL_EINVAL : KL_OK;
}

static char *copy_str(kl_cfg_ctx_t *ctx, const yaml_node_t *n)
{
    size_t len = n->data.scalar.length;
    char *s;

    if (ctx->bytes + len > KL_CFG_MAX_BYTES) {
        if (ctx->bytes <= KL_CFG_MAX_BYTES)
            kl_cfg_error(ctx, n, NULL, "the document expands to more than %u bytes of strings",
                         KL_CFG_MAX_BYTES);
        ctx->bytes = KL_CFG_MAX_BYTES + 1;
        return NULL;
    }
    ctx->bytes += len;
    s = strdup(scalar(n));
    if (s == NULL)
        kl_cfg_error(ctx, n, NULL, "out of memory");
    return s;
}

/* A whole number in [min, max]: digits only, '-' only when min < 0. */
static int parse_integer(kl_cfg_ctx_t *ctx, yaml_node_t *n, long long min, long long max,
                         long long *out)
{
    char got[96];
    const char *s, *p;
    unsigned long long v = 0;
    bool neg = false;
    size_t digits = 0;

    if (n->type != YAML_SCALAR_NODE || !plain(n) || is_null(n))
        return kl_cfg_error(ctx, n, NULL, "expected a whole number in %lld..%lld, got %s", min, max,
                            describe(n, got, sizeof(got)));
    s = p = scalar(n);
    if (*p == '-' && min < 0) {
        neg = true;
        p++;
    }
    for (; *p >= '0' && *p <= '9'; p++) {
        if (++digits <= 18)
            v = v * 10 + (unsigned long long)(*p - '0');
    }
    if (*p != '\0' || digits == 0)
        return kl_cfg_error(ctx, n, NULL,
                            "expected a whole number in %lld..%lld (digits only: no sign, "
                            "spaces, hex or decimals), got %s",
                            min, max, describe(n, got, sizeof(got)));
    if (digits > 1 && p[-(long)digits] == '0')
        return kl_cfg_error(ctx, n, NULL,
                            "expected a whole number in %lld..%lld without leading zeros "
                            "(YAML reads 0755 as octal), got '%s'",
                            min, max, s);
    if (digits > 18 || (neg ? -(long long)v : (long long)v) < min ||
        (neg ? -(long long)v : (long long)v) > max)
        return kl_cfg_error(ctx, n, NULL, "%.40s is out of range: expected %lld..%lld", s, min,
                            max);
    *out = neg ? -(long long)v : (long long)v;
    return KL_OK;
}

/* Decimal notation only: -?digits[.digits]; no exponent, inf or nan. */
static int parse_double(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, double *out)
{
    char got[96];
    const char *p;
    size_t ip = 0, fp = 0;
    double d;

    if (n->type != YAML_SCALAR_NODE || !plain(n) || is_null(n))
        goto bad;
    p = scalar(n);
    if (*p == '-')
        p++;
    while (p[ip] >= '0' && p[ip] <= '9')
        ip++;
    if (p[ip] == '.') {
        while (p[ip + 1 + fp] >= '0' && p[ip + 1 + fp] <= '9')
            fp++;
        if (fp == 0 || p[ip + 1 + fp] != '\0')
            goto bad;
    } else if (p[ip] != '\0') {
        goto bad;
    }
    if (ip == 0 || ip + fp > 30)
        goto bad;
    d = strtod(scalar(n), NULL);
    if (!(d > k->dmin) || !(d <= k->dmax))
        return kl_cfg_error(ctx, n, NULL,
                            "%s is out of range: expected a number above %g and at most %g",
                            scalar(n), k->dmin, k->dmax);
    *out = d;
    return KL_OK;
bad:
    return kl_cfg_error(ctx, n, NULL,
                        "expected a decimal number above %g and at most %g (like 1.5), got %s",
                        k->dmin, k->dmax, describe(n, got, sizeof(got)));
}

static int parse_duration(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, uint32_t *out)
{
    char got[96], lo[32], hi[32];
    uint32_t ms = 0;
    int rc;

    kl_cfg_fmt_ms((uint64_t)k->min, lo, sizeof(lo));
    kl_cfg_fmt_ms((uint64_t)k->max, hi, sizeof(hi));
    if (n->type != YAML_SCALAR_NODE || is_null(n))
        return kl_cfg_error(ctx, n, NULL,
                            "expected a duration like 250ms, 5s, 2m or 1h (%s..%s), got %s", lo, hi,
                            describe(n, got, sizeof(got)));
    rc = kl_cfg_duration(scalar(n), &ms);
    if (rc == KL_EINVAL) {
        const char *s = scalar(n);
        bool digits = s[0] != '\0' && strspn(s, "0123456789") == strlen(s);

        if (digits)
            return kl_cfg_error(ctx, n, NULL,
                                "'%s' has no unit: a duration needs one of ms, s, m, h "
                                "(like 250ms, 5s, 2m, 1h)",
                                s);
        return kl_cfg_error(ctx, n, NULL,
                            "expected a duration: digits and a unit ms, s, m or h (like 250ms, "
                            "5s, 2m, 1h), got %s",
                            describe(n, got, sizeof(got)));
    }
    if (rc != KL_OK || (long long)ms < k->min || (long long)ms > k->max)
        return kl_cfg_error(ctx, n, NULL, "%.40s is out of range: expected %s..%s", scalar(n), lo,
                            hi);
    *out = ms;
    return KL_OK;
}

static void free_key(const kl_cfg_key_t *k, void *base);

static int parse_seq(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, void *base)
{
    size_t count, *countp = (size_t *)((char *)base + k->count_off);
    char got[96];
    char *arr;
    int rc = KL_OK;
    size_t esize = k->type == KL_CFG_SEQ       ? k->elem_size
                   : k->type == KL_CFG_INTLIST ? sizeof(int)
                                               : sizeof(char *);

    if (n->type != YAML_SEQUENCE_NODE)
        return kl_cfg_error(ctx, n, NULL, "expected a list ([a, b] or - items), got %s",
                            describe(n, got, sizeof(got)));
    free_key(k, base); /* a default list is replaced */
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > KL_CFG_MAX_ITEMS)
        return kl_cfg_error(ctx, n, NULL, "too many entries (%zu, at most %d)", count,
                            KL_CFG_MAX_ITEMS);
    if (count == 0 && k->nonempty)
        return kl_cfg_error(ctx, n, NULL, "expected at least one entry, got an empty list");
    if (count == 0)
        return KL_OK;
    arr = calloc(count, esize);
    if (arr == NULL)
        return kl_cfg_error(ctx, n, NULL, "out of memory");
    *(void **)((char *)base + k->off) = arr;
    *countp = 0;
    ctx->depth++;
    for (size_t i = 0; i < count; i++) {
        yaml_node_t *e = yaml_document_get_node(ctx->doc, n->data.sequence.items.start[i]);
        size_t mark = path_push(ctx, NULL, i);
        long long v;

        if (e == NULL || visit(ctx, e) != KL_OK) {
            rc = KL_EINVAL;
            path_pop(ctx, mark);
            break;
        }
        if (k->type == KL_CFG_STRLIST) {
            if (e->type != YAML_SCALAR_NODE || is_null(e)) {
                rc = kl_cfg_error(ctx, e, NULL, "expected a string, got %s",
                                  describe(e, got, sizeof(got)));
            } else {
                /* packed at the count, so a bad entry before leaves no hole */
                char *s = copy_str(ctx, e);

                if (s != NULL)
                    ((char **)arr)[(*countp)++] = s;
                else
                    rc = KL_EINVAL;
            }
        } else if (k->type == KL_CFG_INTLIST) {
            if (parse_integer(ctx, e, k->min, k->max, &v) == KL_OK)
                ((int *)arr)[(*countp)++] = (int)v;
            else
                rc = KL_EINVAL;
        } else {
            void *elem = arr + i * k->elem_size;

            if (k->init != NULL)
                k->init(elem);
            (*countp)++;
            if (e->type != YAML_MAPPING_NODE) {
                rc = kl_cfg_error(ctx, e, NULL, "expected a map ({ key: value }), got %s",
                                  describe(e, got, sizeof(got)));
            } else {
                if (kl_cfg_parse_map(ctx, e, k->sub, elem) != KL_OK)
                    rc = KL_EINVAL;
                if (k->custom != NULL && k->custom(ctx, e, elem) != KL_OK)
                    rc = KL_EINVAL;
            }
        }
        path_pop(ctx, mark);
    }
    ctx->depth--;
    /* cross-entry checks run even when an entry had errors: all errors at once */
    if (k->seq_post != NULL && k->seq_post(ctx, n, arr, *countp) != KL_OK)
        rc = KL_EINVAL;
    return rc;
}

static int parse_enum(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, int *out)
{
    char list[256] = "", got[96];

    if (n->type == YAML_SCALAR_NODE) {
        for (int i = 0; k->enums[i] != NULL; i++) {
            if (strcmp(k->enums[i], scalar(n)) == 0) {
                *out = i;
                return KL_OK;
            }
        }
    }
    for (int i = 0; k->enums[i] != NULL; i++) {
        strncat(list, i ? " | " : "", sizeof(list) - strlen(list) - 1);
        strncat(list, k->enums[i], sizeof(list) - strlen(list) - 1);
    }
    return kl_cfg_error(ctx, n, NULL, "expected one of %s, got %s", list,
                        describe(n, got, sizeof(got)));
}

static int parse_value(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, void *base)
{
    void *field = (char *)base + k->off;
    char got[96];
    long long v;

    switch (k->type) {
    case KL_CFG_STR: {
        char *s;

        if (n->type != YAML_SCALAR_NODE || is_null(n))
            return kl_cfg_error(ctx, n, NULL, "expected a string, got %s",
                                describe(n, got, sizeof(got)));
        s = copy_str(ctx, n);
        if (s == NULL)
            return KL_EINVAL;
        free(*(char **)field);
        *(char **)field = s;
        return KL_OK;
    }
    case KL_CFG_BOOL:
        if (n->type == YAML_SCALAR_NODE && plain(n) && strcmp(scalar(n), "true") == 0)
            *(bool *)field = true;
        else if (n->type == YAML_SCALAR_NODE && plain(n) && strcmp(scalar(n), "false") == 0)
            *(bool *)field = false;
        else
            return kl_cfg_error(ctx, n, NULL,
                                "expected true or false (yes, no, on, off, 1 and 0 are not "
                                "accepted), got %s",
                                describe(n, got, sizeof(got)));
        return KL_OK;
    case KL_CFG_UINT:
        if (parse_integer(ctx, n, k->min < 0 ? 0 : k->min, k->max, &v) != KL_OK)
            return KL_EINVAL;
        if (k->width == sizeof(uint16_t))
            *(uint16_t *)field = (uint16_t)v;
        else if (k->width == sizeof(uint64_t))
            *(uint64_t *)field = (uint64_t)v;
        else
            *(unsigned *)field = (unsigned)v;
        return KL_OK;
    case KL_CFG_INT:
        if (parse_integer(ctx, n, k->min, k->max, &v) != KL_OK)
            return KL_EINVAL;
        *(int *)field = (int)v;
        return KL_OK;
    case KL_CFG_DURATION:
        return parse_duration(ctx, n, k, (uint32_t *)field);
    case KL_CFG_DOUBLE:
        return parse_double(ctx, n, k, (double *)field);
    case KL_CFG_ENUM:
        return parse_enum(ctx, n, k, (int *)field);
    case KL_CFG_STRLIST:
    case KL_CFG_INTLIST:
    case KL_CFG_SEQ:
        return parse_seq(ctx, n, k, base);
    case KL_CFG_MAP:
        if (n->type != YAML_MAPPING_NODE)
            return kl_cfg_error(ctx, n, NULL, "expected a map ({ key: value }), got %s",
                                describe(n, got, sizeof(got)));
        return kl_cfg_parse_map(ctx, n, k->sub, field);
    case KL_CFG_CUSTOM:
        return k->custom(ctx, n, field);
    case KL_CFG_ELSEWHERE:
    case KL_CFG_END:
        return KL_OK;
    }
    return KL_OK;
}

/* "unknown key 'weigth'; did you mean 'weight'?" */
static int unknown_key(kl_cfg_ctx_t *ctx, yaml_node_t *kn, const char *name,
                       const kl_cfg_key_t *table)
{
    const char *best = NULL;
    size_t bd = 3, len = strlen(name);
    char list[200] = "";

    for (const kl_cfg_key_t *t = table; t->name != NULL; t++) {
        size_t d = strcasecmp(name, t->name) == 0 ? 0 : kl_cfg_distance(name, t->name);

        if (d < bd && d < len) {
            bd = d;
            best = t->name;
        }
        if (strlen(list) + strlen(t->name) + 8 < sizeof(list)) {
            strcat(list, t == table ? "" : ", ");
            strcat(list, t->name);
        } else if (strstr(list, ", ...") == NULL) {
            strcat(list, ", ...");
        }
    }
    if (best != NULL)
        return kl_cfg_error(ctx, kn, NULL, "unknown key '%.64s'; did you mean '%s'?", name, best);
    return kl_cfg_error(ctx, kn, NULL, "unknown key '%.64s' (expected one of: %s)", name, list);
}

int kl_cfg_parse_map(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *table, void *base)
{
    bool seen[CFG_MAX_KEYS] = {false};
    char got[96];
    size_t npairs, ntable = 0;
    yaml_node_pair_t *pairs;
    int rc = KL_OK;

    if (node == NULL)
        return KL_OK;
    if (node->type != YAML_MAPPING_NODE)
        return kl_cfg_error(ctx, node, NULL, "expected a map ({ key: value }), got %s",
                            describe(node, got, sizeof(got)));
    if (ctx->depth >= KL_CFG_MAX_DEPTH)
        return kl_cfg_error(ctx, node, NULL, "nested more than %d levels deep", KL_CFG_MAX_DEPTH);
    while (table[ntable].name != NULL)
        ntable++;
    pairs = node->data.mapping.pairs.start;
    npairs = (size_t)(node->data.mapping.pairs.top - pairs);
    if (npairs > KL_CFG_MAX_ITEMS)
        return kl_cfg_error(ctx, node, NULL, "too many keys (%zu, at most %d)", npairs,
                            KL_CFG_MAX_ITEMS);
    ctx->depth++;
    for (size_t i = 0; i < npairs; i++) {
        yaml_node_t *kn = yaml_document_get_node(ctx->doc, pairs[i].key);
        yaml_node_t *vn = yaml_document_get_node(ctx->doc, pairs[i].value);
        const kl_cfg_key_t *k = NULL;
        const char *name;
        size_t mark;

        if (kn == NULL || vn == NULL || visit(ctx, kn) != KL_OK) {
            rc = KL_EINVAL;
            break;
        }
        if (kn->type != YAML_SCALAR_NODE) {
            rc = kl_cfg_error(ctx, kn, NULL, "expected a key name, got %s",
                              describe(kn, got, sizeof(got)));
            continue;
        }
        name = scalar(kn);
        mark = path_push(ctx, name, 0);
        for (size_t j = 0; j < i; j++) {
            yaml_node_t *pk = yaml_document_get_node(ctx->doc, pairs[j].key);

            if (pk != NULL && pk->type == YAML_SCALAR_NODE && strcmp(scalar(pk), name) == 0) {
                rc = kl_cfg_error(ctx, kn, NULL, "duplicate key '%.64s' (first at line %d)", name,
                                  (int)pk->start_mark.line + 1);
                name = NULL;
                break;
            }
        }
        for (size_t t = 0; name != NULL && t < ntable; t++) {
            if (strcmp(table[t].name, name) == 0) {
                k = &table[t];
                if (t < CFG_MAX_KEYS)
                    seen[t] = true;
                break;
            }
        }
        if (name != NULL && k == NULL)
            rc = unknown_key(ctx, kn, name, table);
        else if (k != NULL && parse_value(ctx, vn, k, base) != KL_OK)
            rc = KL_EINVAL;
        path_pop(ctx, mark);
    }
    ctx->depth--;
    for (size_t t = 0; t < ntable && t < CFG_MAX_KEYS; t++) {
        if (table[t].required && !seen[t]) {
            char sfx[80];

            snprintf(sfx, sizeof(sfx), ".%s", table[t].name);
            rc = kl_cfg_error(ctx, node, sfx, "missing required key '%s'", table[t].name);
        }
    }
    return rc;
}

static void free_key(const kl_cfg_key_t *k, void *base)
{
    void *field = (char *)base + k->off;
    size_t *countp = (size_t *)((char *)base + k->count_off);

    switch (k->type) {
    case KL_CFG_STR:
        free(*(char **)field);
        *(char **)field = NULL;
        break;
    case KL_CFG_STRLIST: {
        char **l = *(char ***)field;

        for (size_t i = 0; l != NULL && i < *countp; i++)
            free(l[i]);
        free(l);
        *(char ***)field = NULL;
        *countp = 0;
        break;
    }
    case KL_CFG_INTLIST:
        free(*(int **)field);
        *(int **)field = NULL;
        *countp = 0;
        break;
    case KL_CFG_SEQ: {
        char *arr = *(char **)field;

        for (size_t i = 0; arr != NULL && i < *countp; i++) {
            if (k->elem_free != NULL)
                k->elem_free(arr + i * k->elem_size);
            kl_cfg_free(k->sub, arr + i * k->elem_size);
        }
        free(arr);
        *(char **)field = NULL;
        *countp = 0;
        break;
    }
    case KL_CFG_MAP:
        kl_cfg_free(k->sub, field);
        break;
    default:
        break;
    }
}

void kl_cfg_free(const kl_cfg_key_t *table, void *base)
{
    if (base == NULL)
        return;
    for (const kl_cfg_key_t *k = table; k->name != NULL; k++)
        free_key(k, base);
}

int kl_cfg_parse_list(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *key, void *base)
{
    return parse_seq(ctx, node, key, base);
}
