/* A declarative, strict YAML walker (the nginx command-table idea): each
 * section is a table of keys with a type, where the value goes, and its
 * bounds. Unknown keys, wrong types, numbers with junk, out-of-range values
 * and duplicate keys are errors with file:line:column and the key path;
 * a near-miss key gets "did you mean". Modules use it for their sections.
 * Single-threaded per load; never exits, never logs. */
#ifndef KL_CORE_CFG_H
#define KL_CORE_CFG_H

#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <yaml.h>

typedef struct kl_cfg_ctx {
    const char *file;
    yaml_document_t *doc;
    kl_cfg_errs_t *errs;
    char path[256];  /* the key path being parsed */
    unsigned visits; /* nodes visited: a guard against alias bombs */
} kl_cfg_ctx_t;

typedef enum {
    KL_CFG_END = 0,
    KL_CFG_STR,      /* char * */
    KL_CFG_BOOL,     /* bool */
    KL_CFG_UINT,     /* unsigned (or uint16_t / uint32_t with .width) in [min, max] */
    KL_CFG_DURATION, /* uint32_t ms: 250ms, 5s, 2m, 1h; in [min, max] ms */
    KL_CFG_DOUBLE,   /* double in (min/1000, max/1000] */
    KL_CFG_ENUM,     /* int: index into .enums */
    KL_CFG_STRLIST,  /* char ** + size_t count at .count_off */
    KL_CFG_INTLIST,  /* int * + size_t count at .count_off, each in [min, max] */
    KL_CFG_MAP,      /* nested table .sub, fields at base + off */
    KL_CFG_SEQ,      /* array of .elem_size structs parsed with .sub; count at .count_off */
    KL_CFG_CUSTOM,   /* .custom parses the node into base + off */
    KL_CFG_ELSEWHERE /* accepted here, parsed by someone else (a module section) */
} kl_cfg_type_t;

typedef struct kl_cfg_key kl_cfg_key_t;
struct kl_cfg_key {
    const char *name;
    kl_cfg_type_t type;
    size_t off;
    long long min, max;
    size_t width; /* KL_CFG_UINT: sizeof the field (0 = unsigned) */
    const char *const *enums;
    const kl_cfg_key_t *sub;
    size_t elem_size;
    size_t count_off;
    void (*init)(void *elem); /* KL_CFG_SEQ: defaults of one element */
    /* KL_CFG_SEQ: after each element; KL_CFG_CUSTOM: the parser itself */
    int (*custom)(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *field);
    /* KL_CFG_SEQ: after the whole sequence (cross-element checks) */
    int (*seq_post)(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *array, size_t n);
};

/* Adds an error at <node> (NULL: no place) for the current path plus
 * <suffix> (NULL or "" for none; ".x" or "[2]" style). Returns KL_EINVAL. */
int kl_cfg_error(kl_cfg_ctx_t *ctx, const yaml_node_t *node, const char *suffix, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* Parses mapping <node> with <table> into <base>. Returns KL_OK or KL_EINVAL
 * (errors added; every key is still looked at, so all errors are found). */
int kl_cfg_parse_map(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *table, void *base);

/* Parses list <node> for one list key (KL_CFG_STRLIST, KL_CFG_INTLIST,
 * KL_CFG_SEQ) into <base>, as the walker would. */
int kl_cfg_parse_list(kl_cfg_ctx_t *ctx, yaml_node_t *node, const kl_cfg_key_t *key, void *base);

/* Frees what parsing <table> allocated into <base> (strings, lists,
 * sequences, recursively). */
void kl_cfg_free(const kl_cfg_key_t *table, void *base);

/* The value node of <key> in mapping <node>, or NULL. */
yaml_node_t *kl_cfg_map_get(kl_cfg_ctx_t *ctx, yaml_node_t *node, const char *key);

/* Scalar helpers for custom parsers. */
int kl_cfg_duration(const char *s, uint32_t *ms);

#endif
