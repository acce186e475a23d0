/* Compiled-in modules (STYLE.md "The module interface").
 *
 * A module owns one YAML section. conf_parse builds its private, immutable
 * conf (allocates and validates; opens no socket, starts no timer). init
 * runs once per worker after the first snapshot is published, reload when a
 * worker adopts a new snapshot (it must not fail halfway), stop in reverse
 * table order at shutdown. Every hook is optional. */
#ifndef KL_CORE_MODULE_H
#define KL_CORE_MODULE_H

#include "core/conf-t.h"

#include <yaml.h>

struct kl_worker;
struct kl_cfg_ctx;

typedef struct kl_module {
    const char *name; /* YAML section key and log tag */
    /* <node> is the section's node, or NULL when the section is absent (build
     * the defaults). Returns KL_OK and sets *<conf>, or KL_EINVAL having
     * added errors through kl_cfg_error(<ctx>, ...). */
    int (*conf_parse)(struct kl_cfg_ctx *ctx, yaml_node_t *node, void **conf);
    void (*conf_free)(void *conf);
    int (*init)(struct kl_worker *w, const void *conf);
    void (*reload)(struct kl_worker *w, const void *old_conf, const void *new_conf);
    void (*stop)(struct kl_worker *w);
} kl_module_t;

/* The table, in init order, NULL-terminated (core/modules.c). */
extern const kl_module_t *const kl_modules[];

/* Index of the module named <name> in kl_modules[], or -1. */
int kl_module_index(const char *name);

#endif
