/* Destination state that outlives configuration snapshots (DESIGN.md
 * "Threads and state"): one kl_dest_state_t per identity, zone name + the
 * destination's URI as configured, so health, counters, in-flight work and
 * the slow-start clock survive a reload for destinations that stay.
 *
 * A state is reference counted: every configuration entry of the router's
 * generations (upstream/router.c) and every target handed out holds one.
 * The last unref frees it, so a destination a reload removed stays findable
 * (in-dialog requests, attempts in progress) until nothing uses it.
 *
 * One registry per worker; not thread-safe. Lookups by identity go through a
 * hash table and are meant for reloads and in-dialog requests, not for the
 * per-attempt path (the router keeps arrays of state pointers). */
#ifndef KL_UPSTREAM_REGISTRY_H
#define KL_UPSTREAM_REGISTRY_H

#include "core/conf-t.h"
#include "core/htab.h"
#include "upstream/breaker.h"
#include "upstream/health.h"
#include "transport/transport.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_dest_state {
    kl_hnode_t hn;                     /* registry index by identity */
    struct kl_dest_state *prev, *next; /* registry list, for iteration */
    char *zone;                        /* zone name (own copy) */
    char *uri;                         /* identity as configured (own copy) */
    unsigned refs;                     /* generations' entries + targets */

    kl_addr_t addr;
    kl_tp_kind_t transport;
    bool routable;  /* an address literal; names wait for DNS (not yet) */
    bool in_config; /* in the router's current snapshot */

    unsigned in_flight; /* attempts handed out and not released */
    unsigned dialogs;   /* current dialogs (bulkheads, later) */
    uint64_t attempts, successes, failures, timeouts;

    /* Resilience hooks. A destination starts up at full weight (DESIGN:
     * no slow-start at process start); one added by a reload ramps. */
    bool up;
    bool drained;
    uint64_t slow_start_at; /* ms; 0: not ramping */

    void *zone_state; /* the router's per-zone bulkhead counters (router.c) */

    kl_health_t health;          /* active checks (health.h); drives <up> */
    bool health_started;         /* health initialised (on first sight in a checked cluster) */
    kl_breaker_t breaker;        /* outlier ejection (breaker.h) */
    uint64_t went_down, went_up; /* health transitions, for metrics */
    uint64_t tick_seen;          /* the router tick that last looked at it */
    /* A destination given by a DNS name (RFC 3263) is a group: the targets
     * the dns module resolved it to, each a state of its own (health,
     * breaker, slow-start), one ref each. Empty until resolved. */
    struct kl_dest_state **children;
    uint16_t *child_prio, *child_weight;
    size_t nchildren;
    bool is_name;                /* needs DNS */
    bool dns_resolved;           /* an answer arrived (children may still be empty: NXDOMAIN) */
    bool dns_stale;              /* every resolver failed: children are a stale answer */
    uint64_t dns_stale_used;     /* targets handed out from a stale answer */
    struct kl_dest_state *group; /* a child: its group (borrowed; NULL otherwise) */

    unsigned oc_percent;  /* RFC 7339 reduction asked by the destination */
    uint64_t oc_until_ms; /* ... until then */
    uint64_t oc_feedback; /* times it asked, for metrics */
} kl_dest_state_t;

typedef struct kl_registry {
    kl_htab_t index;
    kl_dest_state_t *head;
    size_t count;
} kl_registry_t;

/* Returns KL_OK or KL_ENOMEM. */
int kl_registry_init(kl_registry_t *reg);

/* Frees every state still there, referenced or not: call it after every
 * plan and target was released. Accepts a zeroed registry. */
void kl_registry_free(kl_registry_t *reg);

/* Returns the state of <zone> + <uri> (borrowed, no ref taken) or NULL. */
kl_dest_state_t *kl_registry_find(const kl_registry_t *reg, const char *zone, const char *uri);

/* Finds or creates the state of a configured destination <d> of <zone> and
 * takes a ref on it; its address and transport are refreshed from <d>.
 * Returns KL_OK with <out> set, or KL_ENOMEM. Borrows <zone> and <d>. */
int kl_registry_get(kl_registry_t *reg, const char *zone, const kl_conf_dest_t *d,
                    kl_dest_state_t **out);

/* Same for an identity known only by its URI (a signed cookie naming a
 * destination this process never configured, e.g. after a restart): only
 * sip:/sips: URIs with an IP literal host are accepted. Returns KL_OK with
 * <out> set (one ref taken), KL_EINVAL for any other URI, or KL_ENOMEM. */
int kl_registry_get_uri(kl_registry_t *reg, const char *zone, const char *uri,
                        kl_dest_state_t **out);

/* Replaces group <g>'s children with <c> (n entries, a ref each, taken by
 * the caller; <c>, <prio> and <weight> become <g>'s), dropping the refs of
 * the previous ones. */
void kl_registry_set_children(kl_registry_t *reg, kl_dest_state_t *g, kl_dest_state_t **c,
                              uint16_t *prio, uint16_t *weight, size_t n);

/* Takes one more ref on <s>. */
void kl_dest_state_ref(kl_dest_state_t *s);

/* Drops a ref; the last one removes <s> from <reg> and frees it. Accepts
 * NULL. */
void kl_registry_unref(kl_registry_t *reg, kl_dest_state_t *s);

/* Calls <fn> for every state, in no particular order. <fn> must not add or
 * remove states. */
void kl_registry_each(const kl_registry_t *reg, void (*fn)(void *arg, kl_dest_state_t *s),
                      void *arg);

/* Parses "sip:" / "sips:" host [":" port] *(";" param), host an IP literal
 * (IPv6 in brackets), into an address (port 5060, or 5061 for TLS, when
 * absent) and transport (;transport=, else UDP, TLS for sips:). Returns
 * KL_OK with <addr> and <tp> set, or KL_EINVAL. */
int kl_registry_parse_uri(const char *uri, kl_addr_t *addr, kl_tp_kind_t *tp);

#endif
