/* A declarative, strict YAML walker (the nginx command-table idea).
 *
 * Each section is a table of kl_cfg_key_t: a key name, a type, where the
 * value goes (an offset from the base of the struct being filled) and its
 * bounds. kl_cfg_parse_map() walks one YAML mapping against a table:
 *
 *   - an unknown key is an error, with "did you mean 'x'?" for a near miss
 *     (Damerau-Levenshtein distance <= 2 against the table's keys);
 *   - a duplicate key in one map is an error;
 *   - a wrong node kind (scalar / list / map) is an error;
 *   - numbers are digits only: no sign (unless the range allows negatives),
 *     no spaces, no hex, no decimals where a whole number is expected, no
 *     leading zeros (YAML 1.1 would read 0755 as octal), no quotes;
 *   - values are range checked, the allowed range is in the message;
 *   - booleans are true or false (yes/no/on/off are refused);
 *   - durations need a unit: 250ms, 5s, 2m, 1h;
 *   - a key marked .required that is absent is an error.
 *
 * Every error carries file:line:column (1-based, from the node's start mark)
 * and the full key path (clusters[0].zones[1].weight). All errors are
 * collected (up to KL_CFG_MAX_ERRS are kept, errs->n counts them all): the
 * walker never stops at the first.
 *
 * Aliases are resolved by libyaml's document API; the walker guards against
 * alias bombs with a budget of visited nodes and copied bytes, and against
 * deep nesting with a depth limit.
 *
 * Defaults are whatever the base struct holds before the walk: a key that is
 * absent leaves its field alone. A list key that is present replaces the
 * default list (which must then be heap memory that kl_cfg_free may free).
 *
 * Single-threaded per load (one ctx per load); never exits, never logs. */
#ifndef KL_CORE_CFG_H
#define KL_CORE_CFG_H

#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <yaml.h>

#define KL_CFG_MAX_DEPTH  32          /* nested maps/lists */
#define KL_CFG_MAX_VISITS 100000      /* nodes visited in one load */
#define KL_CFG_MAX_BYTES  (16u << 20) /* bytes copied out of the document */
#define KL_CFG_MAX_ITEMS  4096        /* entries in one list or map */

/* The state of one load, handed to every parser (and to modules' conf_parse). */
typedef struct kl_cfg_ctx {
    const char *file;     /* the file name used in errors */
    yaml_document_t *doc; /* borrowed */
    kl_cfg_errs_t *errs;  /* borrowed, filled */
    char path[256];       /* the key path being parsed */
    unsigned visits;      /* nodes visited: alias bomb guard */
    unsigned depth;       /* current nesting */
    size_t bytes;         /* bytes copied (strings): alias bomb guard */
} kl_cfg_ctx_t;

typedef enum {
    KL_CFG_END = 0,
    KL_CFG_STR,      /* char * (a scalar; null, ~ and an empty plain value are refused) */
    KL_CFG_BOOL,     /* bool: true | false */
    KL_CFG_UINT,     /* unsigned (or uint16_t / uint32_t / uint64_t by .width) in [min, max] */
    KL_CFG_INT,      /* int in [min, max] (a leading '-' allowed when min < 0) */
    KL_CFG_DURATION, /* uint32_t ms: 250ms, 5s, 2m, 1h; in [min, max] ms */
    KL_CFG_DOUBLE,   /* double, decimal notation, in (dmin, dmax] */
    KL_CFG_ENUM,     /* int: index into .enums (NULL-terminated) */
    KL_CFG_STRLIST,  /* char ** + size_t count at .count_off */
    KL_CFG_INTLIST,  /* int * + size_t count at .count_off, each in [min, max] */
    KL_CFG_MAP,      /* nested table .sub, fields at base + off */
    KL_CFG_SEQ,      /* array of .elem_size structs parsed with .sub; count at .count_off */
    KL_CFG_CUSTOM,   /* .custom(ctx, value node, base + off) parses the value */
    KL_CFG_ELSEWHERE /* accepted here, parsed by someone else (a module section) */
} kl_cfg_type_t;

typedef struct kl_cfg_key kl_cfg_key_t;
struct kl_cfg_key {
    const char *name;
    kl_cfg_type_t type;
    size_t off;
    long long min, max; /* UINT, INT, DURATION (ms), INTLIST bounds, inclusive */
    double dmin, dmax;  /* DOUBLE: dmin < v <= dmax */
    size_t width;       /* UINT: sizeof the field (0 = unsigned) */
    bool required;      /* absent: "missing required key" at the map */
    const char *const *enums;
    const kl_cfg_key_t *sub;  /* MAP, SEQ: the element's table */
    size_t elem_size;         /* SEQ */
    size_t count_off;         /* STRLIST, INTLIST, SEQ: where the size_t count goes */
    void (*init)(void *elem); /* SEQ: defaults of one element, before its map is parsed */
    /* SEQ: called after each element's map (even when it had errors: check
     * for NULLs); CUSTOM: the parser itself. Return KL_OK or KL_EINVAL
     * having added errors. */
    int (*custom)(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *field);
    /* SEQ: after the whole sequence (cross-element checks); <node> is the
     * sequence, <n> the number of elements in <array>. */
    int (*seq_post)(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *array, size_t n);
    /* SEQ: frees what .custom allocated into one element beyond the table's
     * own fields (called before the table's fields are freed) */
    void (*elem_free)(void *elem);
    /* SEQ, STRLIST, INTLIST: refuse an empty list */
    bool nonempty;
};

/* Adds an error at <node> (NULL: no place) for the current path plus
 * <suffix> (NULL or "" for none; ".x" or "[2].x" style; a leading '.' is
 * dropped at the top level). Returns KL_EINVAL, so parsers can
 * `return kl_cfg_error(...)`. */
int kl_cfg_error(kl_cfg_ctx_t *ctx, const yaml_node_t *node, const char *suffix, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* Parses mapping <node> with <table> into <base>. <node> NULL (section
 * absent) is fine: returns KL_OK and leaves the defaults. Returns KL_OK or
 * KL_EINVAL (errors added; every key is still looked at, so all errors are
 * found). Allocations land in <base> even on error: free with kl_cfg_free. */
int kl_cfg_parse_map(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *table, void *base);

/* Parses list <node> for one list key (KL_CFG_STRLIST, KL_CFG_INTLIST,
 * KL_CFG_SEQ) into <base>, as the walker would. */
int kl_cfg_parse_list(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *key, void *base);

/* Frees what parsing <table> allocated into <base> (strings, lists,
 * sequences, recursively) and NULLs the pointers. Accepts NULL <base>. */
void kl_cfg_free(const kl_cfg_key_t *table, void *base);

/* The value node of <key> in mapping <node>, or NULL. Borrowed. */
yaml_node_t *kl_cfg_map_get(kl_cfg_ctx_t *ctx, yaml_node_t *node, const char *key);

/* Item <i> of sequence <node>, or NULL. Borrowed. */
yaml_node_t *kl_cfg_seq_item(kl_cfg_ctx_t *ctx, yaml_node_t *node, size_t i);

/* Parses a duration with a unit ("250ms", "5s", "2m", "1h") into *<ms>.
 * Returns KL_OK, KL_EINVAL (not a duration; a bare number has no unit) or
 * KL_ERANGE (above 2^32-1 ms). */
int kl_cfg_duration(const char *s, uint32_t *ms);

/* Writes <ms> as the largest whole unit ("2s", "1500ms", "1h"). */
void kl_cfg_fmt_ms(uint64_t ms, char *out, size_t outlen);

/* Damerau-Levenshtein distance between <a> and <b> (99 when either is
 * longer than 63 bytes). */
size_t kl_cfg_distance(const char *a, const char *b);

#endif
