/* The routing policy of one worker (DESIGN.md "Resilience semantics"):
 * routes to clusters, zone order (prefer_local or smooth weighted
 * round-robin by zone weight, standby zones last), destinations by smooth
 * weighted round-robin, serial failover preferring another zone. Destination
 * state lives in a registry keyed by zone + URI, outside the snapshot, so it
 * survives reloads. Implements sip/route.h's kl_router_ops_t. Worker thread
 * only. */
#ifndef KL_UPSTREAM_ROUTER_H
#define KL_UPSTREAM_ROUTER_H

#include "sip/route.h"
#include "core/conf-t.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct kl_router kl_router_t;

/* A destination's state as the admin API and metrics see it. */
typedef struct kl_dest_info {
    const char *zone;
    const char *uri;
    bool up;
    bool in_config; /* false: removed by a reload, kept for its dialogs */
    unsigned in_flight;
    unsigned dialogs;
    uint64_t attempts, successes, failures, timeouts;
    uint64_t slow_start_at; /* ms; 0 when not ramping */
} kl_dest_info_t;

/* Returns a new router for <conf> (keeps a ref), or NULL. */
kl_router_t *kl_router_new(const kl_conf_t *conf);
void kl_router_free(kl_router_t *r);

/* Adopts <conf>: destinations that stay keep their state; new ones start
 * in slow-start (when their cluster has a slow_start window). */
void kl_router_reload(kl_router_t *r, const kl_conf_t *conf);

/* Calls <fn> for every known destination. */
void kl_router_each(const kl_router_t *r, void (*fn)(void *arg, const kl_dest_info_t *d),
                    void *arg);

extern const kl_router_ops_t kl_router_ops;

#endif
