#include "core/cfg.h"

#include "core/errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_VISITS 100000
#define CFG_MAX_ITEMS  10000

int kl_cfg_error(kl_cfg_ctx_t *ctx, const yaml_node_t *node, const char *suffix, const char *fmt,
                 ...)
{
    kl_cfg_err_t *e;
    va_list ap;

    if (ctx->errs->n++ >= KL_CFG_MAX_ERRS)
        return KL_EINVAL;
    e = &ctx->errs->e[ctx->errs->n - 1];
    memset(e, 0, sizeof(*e));
    snprintf(e->file, sizeof(e->file), "%s", ctx->file);
    if (node != NULL) {
        e->line = (int)node->start_mark.line + 1;
        e->col = (int)node->start_mark.column + 1;
    }
    snprintf(e->key, sizeof(e->key), "%s%s", ctx->path, suffix != NULL ? suffix : "");
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return KL_EINVAL;
}

/* path push/pop */
static size_t path_push(kl_cfg_ctx_t *ctx, const char *fmt, const char *s, size_t idx)
{
    size_t n = strlen(ctx->path);

    if (s != NULL)
        snprintf(ctx->path + n, sizeof(ctx->path) - n, fmt, n == 0 ? "" : ".", s);
    else
        snprintf(ctx->path + n, sizeof(ctx->path) - n, "[%zu]", idx);
    return n;
}

static void path_pop(kl_cfg_ctx_t *ctx, size_t n)
{
    ctx->path[n] = '\0';
}

static size_t dl_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), d[40][40];

    if (la >= 40 || lb >= 40)
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

static const char *node_type_name(const yaml_node_t *n)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a map";
    default:
        return "nothing";
    }
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool plain(const yaml_node_t *n)
{
    return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
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

int kl_cfg_duration(const char *s, uint32_t *ms)
{
    unsigned long long v = 0, mul;
    const char *p = s;
    size_t digits = 0;

    while (*p >= '0' && *p <= '9' && digits < 12) {
        v = v * 10 + (unsigned long long)(*p++ - '0');
        digits++;
    }
    if (digits == 0 || digits >= 12)
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

static int parse_uint(kl_cfg_ctx_t *ctx, yaml_node_t *n, long long min, long long max,
                      unsigned long long *out)
{
    const char *s;
    unsigned long long v = 0;
    size_t i = 0;

    if (n->type != YAML_SCALAR_NODE || !plain(n))
        return kl_cfg_error(ctx, n, NULL, "expected a whole number in %lld..%lld, got %s", min, max,
                            n->type == YAML_SCALAR_NODE ? "a quoted string" : node_type_name(n));
    s = scalar(n);
    for (; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 19)
            return kl_cfg_error(ctx, n, NULL, "expected a whole number in %lld..%lld, got '%s'",
                                min, max, s);
        v = v * 10 + (unsigned long long)(s[i] - '0');
    }
    if (i == 0 || (long long)v < min || (long long)v > max)
        return kl_cfg_error(ctx, n, NULL, "%s is out of range: expected %lld..%lld", s, min, max);
    *out = v;
    return KL_OK;
}

static int parse_value(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, void *base);
static void free_key(const kl_cfg_key_t *k, void *base);

static int parse_seq(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, void *base)
{
    size_t count, *countp = (size_t *)((char *)base + k->count_off);
    yaml_node_item_t *it;
    char *arr;
    int rc = KL_OK;

    if (n->type != YAML_SEQUENCE_NODE)
        return kl_cfg_error(ctx, n, NULL, "expected a list, got %s", node_type_name(n));
    free_key(k, base); /* a default list is replaced */
    count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > CFG_MAX_ITEMS)
        return kl_cfg_error(ctx, n, NULL, "too many entries (%zu, at most %d)", count,
                            CFG_MAX_ITEMS);
    arr = calloc(count ? count : 1, k->type == KL_CFG_SEQ       ? k->elem_size
                                    : k->type == KL_CFG_INTLIST ? sizeof(int)
                                                                : sizeof(char *));
    if (arr == NULL)
        return kl_cfg_error(ctx, n, NULL, "out of memory");
    *(void **)((char *)base + k->off) = arr;
    *countp = 0;
    it = n->data.sequence.items.start;
    for (size_t i = 0; i < count; i++, it++) {
        yaml_node_t *e = yaml_document_get_node(ctx->doc, *it);
        size_t mark = path_push(ctx, NULL, NULL, i);

        if (e == NULL || ++ctx->visits > CFG_MAX_VISITS) {
            rc = kl_cfg_error(ctx, n, NULL, "document too large or recursive");
            path_pop(ctx, mark);
            break;
        }
        if (k->type == KL_CFG_STRLIST) {
            if (e->type != YAML_SCALAR_NODE) {
                rc = kl_cfg_error(ctx, e, NULL, "expected a string, got %s", node_type_name(e));
            } else {
                /* packed at the count, so a bad entry before leaves no hole */
                ((char **)arr)[*countp] = strdup(scalar(e));
                if (((char **)arr)[*countp] != NULL)
                    (*countp)++;
            }
        } else if (k->type == KL_CFG_INTLIST) {
            unsigned long long v;

            if (parse_uint(ctx, e, k->min, k->max, &v) == KL_OK) {
                ((int *)arr)[*countp] = (int)v;
                (*countp)++;
            } else {
                rc = KL_EINVAL;
            }
        } else {
            void *elem = arr + i * k->elem_size;

            if (k->init != NULL)
                k->init(elem);
            (*countp)++;
            if (e->type != YAML_MAPPING_NODE) {
                rc = kl_cfg_error(ctx, e, NULL, "expected a map, got %s", node_type_name(e));
            } else if (kl_cfg_parse_map(ctx, e, k->sub, elem) != KL_OK) {
                rc = KL_EINVAL;
            } else if (k->custom != NULL && k->custom(ctx, e, elem) != KL_OK) {
                rc = KL_EINVAL;
            }
        }
        path_pop(ctx, mark);
    }
    /* cross-entry checks run even when an entry had errors: all errors at once */
    if (k->seq_post != NULL && k->seq_post(ctx, n, arr, *countp) != KL_OK)
        rc = KL_EINVAL;
    return rc;
}

static int parse_value(kl_cfg_ctx_t *ctx, yaml_node_t *n, const kl_cfg_key_t *k, void *base)
{
    void *field = (char *)base + k->off;
    unsigned long long v;

    switch (k->type) {
    case KL_CFG_STR:
        if (n->type != YAML_SCALAR_NODE)
            return kl_cfg_error(ctx, n, NULL, "expected a string, got %s", node_type_name(n));
        free(*(char **)field);
        *(char **)field = strdup(scalar(n));
        return *(char **)field != NULL ? KL_OK : kl_cfg_error(ctx, n, NULL, "out of memory");
    case KL_CFG_BOOL:
        if (n->type != YAML_SCALAR_NODE || !plain(n) ||
            (strcmp(scalar(n), "true") != 0 && strcmp(scalar(n), "false") != 0))
            return kl_cfg_error(ctx, n, NULL, "expected true or false, got %s%s%s",
                                n->type == YAML_SCALAR_NODE ? "'" : "",
                                n->type == YAML_SCALAR_NODE ? scalar(n) : node_type_name(n),
                                n->type == YAML_SCALAR_NODE ? "'" : "");
        *(bool *)field = strcmp(scalar(n), "true") == 0;
        return KL_OK;
    case KL_CFG_UINT:
        if (parse_uint(ctx, n, k->min, k->max, &v) != KL_OK)
            return KL_EINVAL;
        if (k->width == sizeof(uint16_t))
            *(uint16_t *)field = (uint16_t)v;
        else if (k->width == sizeof(uint32_t) || k->width == 0)
            *(unsigned *)field = (unsigned)v;
        return KL_OK;
    case KL_CFG_DURATION: {
        uint32_t ms;
        int rc;

        if (n->type != YAML_SCALAR_NODE)
            return kl_cfg_error(ctx, n, NULL, "expected a duration (250ms, 5s, 2m, 1h), got %s",
                                node_type_name(n));
        rc = kl_cfg_duration(scalar(n), &ms);
        if (rc != KL_OK || (long long)ms < k->min || (long long)ms > k->max)
            return kl_cfg_error(ctx, n, NULL,
                                "expected a duration with a unit (ms, s, m, h) from %lldms to "
                                "%lldms, got '%s'",
                                k->min, k->max, scalar(n));
        *(uint32_t *)field = ms;
        return KL_OK;
    }
    case KL_CFG_DOUBLE: {
        char *end;
        double d;

        if (n->type != YAML_SCALAR_NODE || !plain(n))
            return kl_cfg_error(ctx, n, NULL, "expected a number, got %s", node_type_name(n));
        d = strtod(scalar(n), &end);
        if (*end != '\0' || end == scalar(n) || d * 1000 <= (double)k->min ||
            d * 1000 > (double)k->max)
            return kl_cfg_error(ctx, n, NULL, "expected a number above %g and up to %g, got '%s'",
                                k->min / 1000.0, k->max / 1000.0, scalar(n));
        *(double *)field = d;
        return KL_OK;
    }
    case KL_CFG_ENUM:
        if (n->type == YAML_SCALAR_NODE) {
            for (int i = 0; k->enums[i] != NULL; i++) {
                if (strcmp(k->enums[i], scalar(n)) == 0) {
                    *(int *)field = i;
                    return KL_OK;
                }
            }
        }
        {
            char list[256] = "";

            for (int i = 0; k->enums[i] != NULL; i++) {
                strncat(list, i ? " | " : "", sizeof(list) - strlen(list) - 1);
                strncat(list, k->enums[i], sizeof(list) - strlen(list) - 1);
            }
            return kl_cfg_error(ctx, n, NULL, "expected one of %s, got %s%s%s", list,
                                n->type == YAML_SCALAR_NODE ? "'" : "",
                                n->type == YAML_SCALAR_NODE ? scalar(n) : node_type_name(n),
                                n->type == YAML_SCALAR_NODE ? "'" : "");
        }
    case KL_CFG_STRLIST:
    case KL_CFG_INTLIST:
    case KL_CFG_SEQ:
        return parse_seq(ctx, n, k, base);
    case KL_CFG_MAP:
        if (n->type != YAML_MAPPING_NODE)
            return kl_cfg_error(ctx, n, NULL, "expected a map, got %s", node_type_name(n));
        return kl_cfg_parse_map(ctx, n, k->sub, field);
    case KL_CFG_CUSTOM:
        return k->custom(ctx, n, field);
    case KL_CFG_ELSEWHERE:
    case KL_CFG_END:
        return KL_OK;
    }
    return KL_OK;
}

int kl_cfg_parse_map(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *table, void *base)
{
    int rc = KL_OK;
    size_t npairs;
    yaml_node_pair_t *pairs;

    if (node == NULL)
        return KL_OK;
    if (node->type != YAML_MAPPING_NODE)
        return kl_cfg_error(ctx, node, NULL, "expected a map, got %s", node_type_name(node));
    pairs = node->data.mapping.pairs.start;
    npairs = (size_t)(node->data.mapping.pairs.top - pairs);
    for (size_t i = 0; i < npairs; i++) {
        yaml_node_t *kn = yaml_document_get_node(ctx->doc, pairs[i].key);
        yaml_node_t *vn = yaml_document_get_node(ctx->doc, pairs[i].value);
        const kl_cfg_key_t *k = NULL;
        const char *name;
        size_t mark;

        if (kn == NULL || vn == NULL || ++ctx->visits > CFG_MAX_VISITS)
            return kl_cfg_error(ctx, node, NULL, "document too large or recursive");
        if (kn->type != YAML_SCALAR_NODE) {
            rc = kl_cfg_error(ctx, kn, NULL, "expected a key name, got %s", node_type_name(kn));
            continue;
        }
        name = scalar(kn);
        mark = path_push(ctx, "%s%s", name, 0);
        for (size_t j = 0; j < i; j++) {
            yaml_node_t *pk = yaml_document_get_node(ctx->doc, pairs[j].key);

            if (pk != NULL && pk->type == YAML_SCALAR_NODE && strcmp(scalar(pk), name) == 0) {
                rc = kl_cfg_error(ctx, kn, NULL, "duplicate key '%s' (first at line %d)", name,
                                  (int)pk->start_mark.line + 1);
                name = NULL;
                break;
            }
        }
        if (name == NULL) {
            path_pop(ctx, mark);
            continue;
        }
        for (const kl_cfg_key_t *t = table; t->name != NULL; t++) {
            if (strcmp(t->name, name) == 0) {
                k = t;
                break;
            }
        }
        if (k == NULL) {
            const char *best = NULL;
            size_t bd = 3;

            for (const kl_cfg_key_t *t = table; t->name != NULL; t++) {
                size_t d = dl_distance(name, t->name);

                if (d < bd) {
                    bd = d;
                    best = t->name;
                }
            }
            if (best != NULL)
                rc =
                    kl_cfg_error(ctx, kn, NULL, "unknown key '%s'; did you mean '%s'?", name, best);
            else
                rc = kl_cfg_error(ctx, kn, NULL, "unknown key '%s'", name);
            path_pop(ctx, mark);
            continue;
        }
        if (parse_value(ctx, vn, k, base) != KL_OK)
            rc = KL_EINVAL;
        path_pop(ctx, mark);
    }
    return rc;
}

static void free_key(const kl_cfg_key_t *k, void *base)
{
    void *field = (char *)base + k->off;

    switch (k->type) {
    case KL_CFG_STR:
        free(*(char **)field);
        *(char **)field = NULL;
        break;
    case KL_CFG_STRLIST: {
        char **l = *(char ***)field;
        size_t n = *(size_t *)((char *)base + k->count_off);

        for (size_t i = 0; l != NULL && i < n; i++)
            free(l[i]);
        free(l);
        *(char ***)field = NULL;
        *(size_t *)((char *)base + k->count_off) = 0;
        break;
    }
    case KL_CFG_INTLIST:
        free(*(int **)field);
        *(int **)field = NULL;
        *(size_t *)((char *)base + k->count_off) = 0;
        break;
    case KL_CFG_SEQ: {
        char *arr = *(char **)field;
        size_t n = *(size_t *)((char *)base + k->count_off);

        for (size_t i = 0; arr != NULL && i < n; i++)
            kl_cfg_free(k->sub, arr + i * k->elem_size);
        free(arr);
        *(char **)field = NULL;
        *(size_t *)((char *)base + k->count_off) = 0;
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
