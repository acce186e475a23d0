/* Internals shared by upstream/router.c (routing: plans, choosing, outcomes,
 * health and ejection on the data path) and upstream/control.c (operator
 * control, introspection, fault bookkeeping, DNS targets). Not an API:
 * nothing outside upstream/ includes it. Worker thread only. */
#ifndef KL_UPSTREAM_ROUTER_INT_H
#define KL_UPSTREAM_ROUTER_INT_H

#include "upstream/router.h"

#include "upstream/balancer.h"
#include "upstream/budget.h"
#include "upstream/registry.h"
#include "core/htab.h"
#include "core/log.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define PLAN_MAX_TRIED 10
/* SWRR weights are integers: scaled so slow-start fractions keep their share */
#define WEIGHT_SCALE 100u
#define WEIGHT_MAX   (UINT_MAX / WEIGHT_SCALE)

/* Per-snapshot structures, built at reload so the per-call path only walks
 * arrays of state pointers. Plans keep the generation they started with. */
typedef struct zone_rt {
    const kl_conf_zone_t *conf;
    kl_dest_state_t **dests; /* one per conf->dests[], a ref each */
    kl_swrr_t swrr;          /* destinations */
    struct zone_state *zs;   /* bulkhead counters */
} zone_rt_t;

typedef struct cluster_rt {
    const kl_conf_cluster_t *conf;
    zone_rt_t *zones;
    size_t nzones;
    kl_swrr_t order;    /* first zone of new plans, by zone weight */
    kl_swrr_t failover; /* next zone after a failure: its own state, so failovers do not bend
                           the split of new requests */
    int local;          /* node.zone when prefer_local and the cluster has it, else -1 */
    struct cluster_state *cs;
} cluster_rt_t;

typedef struct gen {
    unsigned refs; /* the router's current pointer + plans */
    const kl_conf_t *conf;
    cluster_rt_t *clusters;
    size_t nclusters;
} gen_t;

#define ROUTER_MAX_DRAINED_ZONES 64

/* Per-cluster state outside the snapshot, by name: the retry budget and the
 * transactions in flight it is measured against. Never freed before the
 * router (a bounded set of names). */
typedef struct cluster_state {
    kl_hnode_t hn;
    struct cluster_state *next;
    const kl_conf_cluster_t *conf; /* in the current snapshot; NULL once removed */
    kl_budget_t budget;
    unsigned in_flight;
    uint64_t budget_denied; /* failovers refused by the budget */
    uint64_t panics;        /* plans routed ignoring health (nothing healthy) */
    char name[];
} cluster_state_t;

/* Bulkhead counters of one zone (by name, shared by the clusters that name
 * it), outside the snapshot: they count work in progress, which a reload
 * does not end. */
typedef struct zone_state {
    kl_hnode_t hn;
    struct zone_state *next;
    unsigned calls;                /* initial INVITEs in progress + established calls */
    unsigned dialogs;              /* established calls */
    unsigned txns[KL_CLASS_COUNT]; /* transactions in progress by class */
    unsigned txns_total;
    char name[];
} zone_state_t;

struct kl_router {
    kl_registry_t reg;
    gen_t *gen;
    /* zones drained by the operator: a set of names that outlives snapshots,
     * so a destination a reload adds to a drained zone is drained too */
    char *drained_zones[ROUTER_MAX_DRAINED_ZONES];
    size_t ndrained_zones;
    kl_htab_t zones; /* zone_state_t by name */
    zone_state_t *zone_list;
    kl_fault_t faults[KL_ROUTER_MAX_FAULTS];
    size_t nfaults;
    kl_htab_t clusters; /* cluster_state_t by name */
    cluster_state_t *cluster_list;
    const kl_log_ctx_t *log; /* the worker's, for state changes */
    uint64_t tick_no;
    uint64_t rnd;    /* xorshift state for probe jitter */
    bool not_prober; /* kl_router_set_prober(false): another worker probes */
    bool sync_now;   /* this tick tells the other workers every state */
    uint64_t last_sync_ms;
    kl_router_health_fn health_fn; /* kl_router_set_health_hook */
    void *health_arg;
};

typedef struct tried {
    uint32_t zone, dest;
    const kl_dest_state_t *state; /* the one tried: the destination, or a DNS target of it */
} tried_t;

struct kl_plan {
    gen_t *gen;
    cluster_rt_t *cl;
    kl_class_t cls; /* carried for bulkheads */
    bool invite;    /* an initial INVITE: a new call */
    bool full;      /* a zone was skipped because a bulkhead was full */
    bool panic;     /* nothing healthy: health and ejections ignored */
    bool moved;     /* the next attempt leaves a dead destination: budget-exempt */
    uint64_t now_ms;
    unsigned max; /* min(max_attempts, PLAN_MAX_TRIED) */
    unsigned ntried;
    tried_t tried[PLAN_MAX_TRIED]; /* in order; every one failed once the plan moves on */
};

/* RFC 7339: an overload reduction the destination asked for is in force. */
static inline bool kl__oc_active(const kl_dest_state_t *s, uint64_t now_ms)
{
    return s->oc_percent > 0 && now_ms < s->oc_until_ms;
}

/* RFC 7339 loss algorithm: the share a destination asked to keep. */
static inline double kl__oc_factor(const kl_dest_state_t *s, uint64_t now_ms)
{
    return kl__oc_active(s, now_ms) ? (100.0 - s->oc_percent) / 100.0 : 1.0;
}

/* router.c */
bool kl__router_zone_is_drained(const kl_router_t *r, const char *zone);
/* The first cluster of the current snapshot with destination <s> (or its
 * DNS group), and its zone in *<zout> when not NULL; NULL when none. */
cluster_rt_t *kl__router_cluster_with(const kl_router_t *r, const kl_dest_state_t *s,
                                      zone_rt_t **zout);

/* control.c */
bool kl__router_zone_known(const kl_router_t *r, const char *zone);
/* Drops the faults that ended by <now_ms>. */
void kl__router_faults_expire(kl_router_t *r, uint64_t now_ms);

#endif
