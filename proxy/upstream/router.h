/* The routing policy of one worker (DESIGN.md "Resilience semantics"):
 * routes to clusters (first match wins), zone order (prefer_local, else
 * smooth weighted round-robin by zone weight, weight-0 zones standby),
 * destinations by smooth weighted round-robin (x slow-start factor while a
 * destination ramps), serial failover preferring a zone that has not failed
 * in this plan. Destination state lives in a registry (upstream/registry.h)
 * keyed by zone + URI, outside the snapshot, so it survives reloads.
 *
 * Implements sip/route.h's kl_router_ops_t; the ops' `router` argument is a
 * kl_router_t *. One router per worker, worker thread only, no locks. */
#ifndef KL_UPSTREAM_ROUTER_H
#define KL_UPSTREAM_ROUTER_H

#include "sip/route.h"
#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_router kl_router_t;

/* A destination's state as the admin API and metrics see it. The strings
 * are borrowed: valid during the callback only. */
typedef struct kl_dest_info {
    const char *zone;
    const char *uri;
    bool up;
    bool drained;
    bool routable;  /* an address literal (DNS names: not yet) */
    bool in_config; /* false: removed by a reload (or learnt from a cookie), kept while used */
    unsigned in_flight;
    unsigned dialogs;
    uint64_t attempts, successes, failures, timeouts;
    uint64_t slow_start_at; /* ms; 0 when not ramping */
} kl_dest_info_t;

/* Returns a new router for <conf> (keeps a ref on it), or NULL when memory
 * ran out. Every destination starts up, at full weight. */
kl_router_t *kl_router_new(const kl_conf_t *conf);

/* Frees <r> and every destination state; plans and targets must have been
 * released before. Accepts NULL. */
void kl_router_free(kl_router_t *r);

/* Adopts <conf> (keeps a ref, drops the one on the previous snapshot):
 * destinations that stay keep their state, ones it adds start in slow-start
 * at <now_ms> (when their cluster has a slow_start window), ones it removes
 * stay findable by lookup while plans or targets use them. Plans made
 * before keep routing on their own snapshot. If building fails (memory),
 * the router keeps the old snapshot and returns KL_ENOMEM; else KL_OK. */
int kl_router_reload_at(kl_router_t *r, const kl_conf_t *conf, uint64_t now_ms);

/* kl_router_reload_at() at kl_now_ms(). */
void kl_router_reload(kl_router_t *r, const kl_conf_t *conf);

/* The number of destination states: the current snapshot's plus removed or
 * cookie-learnt ones still in use. */
size_t kl_router_dest_count(const kl_router_t *r);

/* Calls <fn> for every destination state, in no particular order. <fn>
 * must not call into the router. */
void kl_router_each(const kl_router_t *r, void (*fn)(void *arg, const kl_dest_info_t *d),
                    void *arg);

/* Drains (<on>) or undrains a zone (<uri> NULL) or one destination of it:
 * a drained destination takes no new dialogs; in-dialog requests still
 * reach it and its health checks go on. A zone's drain outlives reloads and
 * covers destinations added to it later. Returns KL_OK, KL_ENOENT (no such
 * zone or destination in the current snapshot) or KL_ENOMEM/KL_ETOOBIG. */
int kl_router_drain(kl_router_t *r, const char *zone, const char *uri, bool on);
bool kl_router_zone_drained(const kl_router_t *r, const char *zone);

struct kl_stats;
/* Adds the destination and zone gauges (up, weight in force, in flight,
 * drained) of the current snapshot into <into>. */
void kl_router_collect(const kl_router_t *r, struct kl_stats *into, uint64_t now_ms);

struct json_t;
/* A new JSON array of the current snapshot's clusters, their zones and
 * destinations with this worker's state. NULL when memory ran out. */
struct json_t *kl_router_state_json(const kl_router_t *r, uint64_t now_ms);

/* An injected fault on a zone (uri "") or one destination, until until_ms
 * (monotonic). It touches new requests only unless in_dialog. */
typedef struct kl_fault {
    unsigned id;
    kl_fault_kind_t kind;
    char zone[64];
    char uri[256];
    uint32_t delay_ms;
    uint64_t until_ms;
    bool in_dialog;
} kl_fault_t;

#define KL_ROUTER_MAX_FAULTS 32

/* Adds <f> (copied). Returns KL_OK, KL_ENOENT (no such zone or destination
 * in the current snapshot) or KL_ETOOBIG (KL_ROUTER_MAX_FAULTS active). */
int kl_router_fault_add(kl_router_t *r, const kl_fault_t *f, uint64_t now_ms);

/* Lifts fault <id>. KL_OK or KL_ENOENT. */
int kl_router_fault_del(kl_router_t *r, unsigned id);

/* Copies the faults still active at <now_ms> into <out> (at most <cap>) and
 * returns how many; expired ones are dropped. */
size_t kl_router_faults(kl_router_t *r, uint64_t now_ms, kl_fault_t *out, size_t cap);

struct kl_log_ctx;
/* State changes (down, up, ejected, panic) are logged with <log> (the
 * worker's; borrowed). */
void kl_router_set_log(kl_router_t *r, const struct kl_log_ctx *log);

/* ---- several workers: one health state (DESIGN.md "Threads and state") ----
 * Each worker keeps its own copy of destination state, but only one worker,
 * the prober, sends health probes and decides up and down; the others take
 * its decisions and pass it the evidence they see themselves (a refused or
 * reset connection on a real request). The daemon carries the messages
 * between workers; the router only says what changed.
 *
 * <fn>(<arg>, zone, uri, up, news) says what the other workers should
 * hear: */
typedef enum {
    KL_HEALTH_NEWS_CHANGE,     /* this router changed the destination's state itself */
    KL_HEALTH_NEWS_EVIDENCE,   /* not the prober: a transport error on a request, for it */
    KL_HEALTH_NEWS_PROBE_PASS, /* the prober: a probe passed (it ends an ejection) */
    KL_HEALTH_NEWS_SYNC,       /* the prober, once a second per checked destination: its state,
                                  so a worker that missed a change (a destination it did not
                                  know yet, one a reload brought back) catches up */
} kl_health_news_t;
/* Changes applied from the prober (kl_router_health_apply) are not news. */
typedef void (*kl_router_health_fn)(void *arg, const char *zone, const char *uri, bool up,
                                    kl_health_news_t news);
void kl_router_set_health_hook(kl_router_t *r, kl_router_health_fn fn, void *arg);

/* false: this router sends no probes and waits for the prober's decisions
 * (kl_router_health_apply). Default true (one worker). */
void kl_router_set_prober(kl_router_t *r, bool prober);

/* The prober's state of <zone>/<uri>, applied here when it differs;
 * <probe_passed>: a probe just passed, which ends an ejection as the
 * prober's own probe would. Returns the destination (for the proxy to move
 * its calls, kl_proxy_dest_dead) when it went down here, else NULL; unknown
 * destinations are ignored. */
void *kl_router_health_apply(kl_router_t *r, const char *zone, const char *uri, bool up,
                             bool probe_passed, uint64_t now_ms);

/* Another worker's transport error on a real request to <zone>/<uri>, for
 * the prober: marks it down as its own would. Same return. */
void *kl_router_health_evidence(kl_router_t *r, const char *zone, const char *uri, uint64_t now_ms);

/* One target a DNS name resolved to: its identity is a sip: URI with an IP
 * literal host, port and transport ("sip:10.0.0.5:5060;transport=tcp"). */
typedef struct kl_dns_target {
    char uri[128];
    uint16_t priority, weight; /* RFC 2782 */
} kl_dns_target_t;

/* Sets the targets of destination <uri> of <zone> (a DNS name of the current
 * snapshot) to <t> (<n> entries; 0: the name does not resolve, so it is not
 * eligible and requests fail over). <stale>: served from an expired answer
 * because no resolver answered (RFC 8767). Targets that stay keep their
 * state; new ones of a later answer ramp up. KL_OK, KL_ENOENT or KL_ENOMEM. */
int kl_router_set_targets(kl_router_t *r, const char *zone, const char *uri,
                          const kl_dns_target_t *t, size_t n, bool stale, uint64_t now_ms);

extern const kl_router_ops_t kl_router_ops;

#endif
