/* A cluster's retry budget (DESIGN.md "Resilience semantics"): two limits
 * on failover attempts (every attempt after a transaction's first), and
 * both bind.
 *
 *  - Rate (Finagle's RetryBudget): failovers started over the last 10 s <=
 *    percent% of the new requests seen in that window + min per second x
 *    10 s. A flood of fast 503s cannot slip past it, as it could past a
 *    concurrency cap alone. The window is a ring of ten 1-second buckets
 *    (the current, partial second and the nine before it), so every event
 *    costs O(1).
 *  - Concurrency (Envoy's retry_budget): failovers in flight <=
 *    max(min, percent% of the transactions in flight).
 *
 * With the defaults (20, 3) and every destination failing, a cluster sends
 * about 1.2 upstream attempts per request plus 3 per second.
 *
 * Time is a parameter, the conf (the cluster's kl_conf_retry_budget_t of the
 * current snapshot) is passed to each call. A kl_budget_t belongs to one
 * worker; none of these functions is thread-safe. */
#ifndef KL_UPSTREAM_BUDGET_H
#define KL_UPSTREAM_BUDGET_H

#include "core/conf-t.h"

#include <stdbool.h>
#include <stdint.h>

#define KL_BUDGET_BUCKETS   10   /* seconds in the rate window */
#define KL_BUDGET_BUCKET_MS 1000 /* one bucket */

typedef struct kl_budget {
    uint64_t sec; /* the second the newest bucket counts (now_ms / 1000) */
    uint32_t requests[KL_BUDGET_BUCKETS];
    uint32_t retries[KL_BUDGET_BUCKETS];
    uint64_t win_requests; /* sums over the ring */
    uint64_t win_retries;
    unsigned active;          /* failovers in flight */
    uint64_t retries_total;   /* for metrics */
    uint64_t denied_rate;     /* refused by the rate limit */
    uint64_t denied_inflight; /* refused by the concurrency limit */
} kl_budget_t;

/* Starts <b> empty at <now_ms>. */
void kl_budget_init(kl_budget_t *b, uint64_t now_ms);

/* Counts a new request (a transaction's first attempt; failovers are not
 * new requests). */
void kl_budget_on_request(kl_budget_t *b, uint64_t now_ms);

/* Asks for one failover attempt while <in_flight_transactions> are in
 * flight on the cluster. Returns true when both limits allow it: it is then
 * counted as started, and the caller must call kl_budget_retry_done() when
 * it ends (answered, timed out, cancelled). Returns false past the budget:
 * the request keeps the best answer it has. */
bool kl_budget_try_retry(kl_budget_t *b, const kl_conf_retry_budget_t *conf,
                         unsigned in_flight_transactions, uint64_t now_ms);

/* Ends a failover attempt that kl_budget_try_retry() allowed. */
void kl_budget_retry_done(kl_budget_t *b);

/* The number of failovers the rate limit would still allow now. */
uint64_t kl_budget_rate_left(kl_budget_t *b, const kl_conf_retry_budget_t *conf, uint64_t now_ms);

#endif
