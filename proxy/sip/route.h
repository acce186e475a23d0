/* What the proxy asks of the routing policy (DESIGN.md: upstream/ decides and
 * keeps state, sip/ sends). upstream/router.c implements these operations;
 * sip/ only ever sees them through kl_router_ops_t, so it never includes
 * upstream/. Worker thread only; time is a parameter. */
#ifndef KL_SIP_ROUTE_H
#define KL_SIP_ROUTE_H

#include "core/conf-t.h"
#include "transport/transport.h"

#include <stdbool.h>
#include <stdint.h>

/* Traffic class, decided once per request and carried with it. */
typedef enum {
    KL_CLASS_CALL = 0, /* INVITE and the requests of a call's dialog */
    KL_CLASS_CHAT,     /* MESSAGE */
    KL_CLASS_OTHER,    /* everything else */
    KL_CLASS_EMERGENCY,
    KL_CLASS_COUNT
} kl_class_t;

const char *kl_class_name(kl_class_t c); /* "call", "chat", "other", "emergency" */

/* Game-day fault injection (DESIGN.md "Observability", /v1/faults): what the
 * policy asks the proxy to do to one attempt instead of sending it. */
typedef enum {
    KL_FAULT_NONE = 0,
    KL_FAULT_ABORT,     /* not sent: the destination is taken to have answered 503 */
    KL_FAULT_DELAY,     /* sent after fault_delay_ms */
    KL_FAULT_BLACKHOLE, /* never sent: the attempt times out */
} kl_fault_kind_t;

const char *kl_fault_kind_name(kl_fault_kind_t k); /* "abort", "delay", "blackhole" */

/* What the policy needs to know of a new request. */
typedef struct kl_route_req {
    const char *method;    /* request-line method */
    const char *ruri_user; /* NULL when absent */
    const char *ruri_host; /* NULL when absent (tel:, urn:) */
    kl_class_t cls;
    const kl_addr_t *source;
    uint64_t now_ms; /* monotonic ms at arrival (kl_now_ms()); 0: the policy reads the clock */
} kl_route_req_t;

/* One destination chosen for one attempt. The policy keeps the destination
 * alive (a ref on its state) until release(). */
typedef struct kl_target {
    void *dest;       /* the policy's handle */
    const char *zone; /* zone name; valid until release */
    const char *uri;  /* destination identity (its URI as configured); valid until release */
    kl_tp_kind_t transport;
    kl_addr_t addr;
    kl_class_t cls;          /* the request's class, for the bulkheads */
    bool call;               /* an initial INVITE: counts as a call of its zone until released */
    kl_fault_kind_t fault;   /* an injected fault for this attempt */
    uint32_t fault_delay_ms; /* KL_FAULT_DELAY */
    bool trial;              /* the half-open trial of an ejected destination */
    void *cluster_state;     /* the policy's per-cluster state (retry budget) */
    bool retry;              /* a failover attempt: counted in the retry budget */
} kl_target_t;

/* A health probe (SIP OPTIONS) the policy asks the proxy to send. */
typedef struct kl_probe_req {
    char zone[64];
    char uri[256];
    kl_tp_kind_t transport;
    kl_addr_t addr;
    uint64_t deadline_ms; /* no answer by then: the policy counts a timeout itself */
} kl_probe_req_t;

#define KL_TICK_MAX 64

/* What a tick of the policy asks of the proxy. */
typedef struct kl_tick_out {
    kl_probe_req_t probes[KL_TICK_MAX];
    size_t nprobes;
    void *dead[KL_TICK_MAX]; /* destinations declared dead at this tick (handles) */
    size_t ndead;
} kl_tick_out_t;

typedef enum {
    KL_OUTCOME_OK = 0, /* a final response that says nothing bad of the server (2xx, 486, 404...) */
    KL_OUTCOME_FAILURE,   /* 408, 500, 503, 504 (the failover codes) from the destination */
    KL_OUTCOME_TIMEOUT,   /* no response within attempt_timeout / Timer B / F */
    KL_OUTCOME_TRANSPORT, /* refused, reset, unreachable */
    KL_OUTCOME_PROGRESS,  /* a provisional (1xx) response: the server is alive */
    KL_OUTCOME_ABANDONED, /* given up by keel (its destination was declared dead): no evidence */
} kl_outcome_t;

typedef struct kl_plan kl_plan_t; /* a request's route: cluster, zone order, what was tried */

typedef struct kl_router_ops {
    /* A plan for a new request, or NULL when no route matches (the proxy
     * answers 404) or memory ran out. Returns a new plan that keeps the
     * snapshot it was made with; the caller frees it with plan_free. */
    kl_plan_t *(*plan_new)(void *router, const kl_route_req_t *req);
    /* The cluster the plan routes to (failover settings, names). */
    const kl_conf_cluster_t *(*plan_cluster)(const kl_plan_t *plan);
    /* The next destination to try: never one already tried by this plan,
     * another zone preferred after a failure. A plan only moves on after a
     * failure, so every earlier attempt of <plan> counts as failed. KL_OK
     * with <out> filled (the caller owns the target: release it), or
     * KL_ENOENT when nothing is left (KL_EBUSY: everything is full). */
    int (*plan_next)(void *router, kl_plan_t *plan, kl_target_t *out);
    /* The next plan_next moves the request off a destination the policy
     * declared dead: not a retry of a failure, so no retry budget applies. */
    void (*plan_moved)(void *router, kl_plan_t *plan);
    /* Frees <plan> (accepts NULL). Targets it handed out stay valid. */
    void (*plan_free)(void *router, kl_plan_t *plan);

    /* In-dialog: the destination named by a cookie (zone + identity), even
     * one a reload removed, or one this process never knew when the identity
     * is a sip: URI with an IP host (the cookie is signed). KL_OK with <out>
     * filled (release it), or KL_ENOENT. */
    int (*lookup)(void *router, const char *zone, const char *uri, kl_target_t *out);

    /* An attempt's outcome (data path: recorded, evaluated on a tick).
     * Returns true when it made the policy declare the destination dead
     * (ejected, or down on a transport error): the proxy then moves calls
     * ringing there elsewhere. */
    bool (*report)(void *router, const kl_target_t *t, kl_outcome_t o, int code, uint64_t now_ms);
    /* RFC 7339: destination <t> asked for <percent>% fewer requests for
     * <validity_ms> (0: lifted). */
    void (*overload)(void *router, const kl_target_t *t, unsigned percent, uint32_t validity_ms,
                     uint64_t now_ms);
    /* The periodic work of the policy (health check timeouts, ejection
     * evaluation, probes due): called about every 100 ms; fills <out>. */
    void (*tick)(void *router, uint64_t now_ms, kl_tick_out_t *out);
    /* The final answer to a probe (<code>), or 0 for a transport error.
     * Returns the destination's handle when it was declared dead by it, else
     * NULL. */
    void *(*probe_result)(void *router, const char *zone, const char *uri, int code,
                          uint64_t now_ms);
    /* Dialog accounting for bulkheads: a 2xx to an initial INVITE through
     * <t> starts a call there. Returns a handle (it keeps the destination's
     * state alive) for dialog_end, or NULL. */
    void *(*dialog_begin)(void *router, const kl_target_t *t);
    /* The call of <handle> is over (BYE, or forgotten): one call less in its
     * zone and destination. Accepts NULL. */
    void (*dialog_end)(void *router, void *handle);
    /* Drops the ref a target holds and zeroes <t>. Accepts a zeroed target. */
    void (*release)(void *router, kl_target_t *t);
} kl_router_ops_t;

#endif
