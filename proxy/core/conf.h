/* Loading, validating and sharing configuration snapshots.
 *
 * kl_conf_load() reads one YAML file with libyaml's document API, checks it
 * strictly against the key tables (core/cfg.h) and each module's conf_parse,
 * and returns a new frozen snapshot with one reference. It never exits the
 * process and never logs: every problem lands in <errs> with
 * file:line:column, the key path and what was expected. */
#ifndef KL_CORE_CONF_H
#define KL_CORE_CONF_H

#include "core/conf-t.h"

#include <stdio.h>

/* Returns a new snapshot (refs = 1), or NULL with errs->n > 0. Any thread. */
kl_conf_t *kl_conf_load(const char *path, kl_cfg_errs_t *errs);

/* Same, from a buffer; <name> is used as the file name in errors. */
kl_conf_t *kl_conf_load_buf(const char *name, const char *buf, size_t len, kl_cfg_errs_t *errs);

/* Takes one more reference. Returns <conf>. Any thread. */
const kl_conf_t *kl_conf_ref(const kl_conf_t *conf);

/* Drops a reference; the last one frees the snapshot (and each module's conf
 * through its conf_free). Accepts NULL. Any thread. */
void kl_conf_unref(const kl_conf_t *conf);

/* Writes "file:line:col: key: msg" for one error (no newline). */
int kl_cfg_err_format(const kl_cfg_err_t *e, char *out, size_t outlen);

/* Prints every error in <errs>, one per line, to <fp>. */
void kl_cfg_errs_print(const kl_cfg_errs_t *errs, FILE *fp);

/* Lookups by name; NULL when absent. */
const kl_conf_cluster_t *kl_conf_cluster(const kl_conf_t *conf, const char *name);
const kl_conf_zone_t *kl_conf_zone(const kl_conf_cluster_t *cl, const char *name);

#endif
