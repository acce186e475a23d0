/* Circuit breaker of one destination: Envoy-style outlier detection
 * (DESIGN.md "Resilience semantics").
 *
 *   CLOSED --(5 failures in a row, or failure share >= 50% of >= 20
 *             requests over an interval; zone share permitting)--> EJECTED
 *   EJECTED --(base_ejection x multiplier has passed, at a tick)--> HALF_OPEN
 *   HALF_OPEN --(the one trial request succeeds)--> CLOSED (caller: slow-start)
 *   HALF_OPEN --(the trial fails)--> EJECTED, multiplier + 1
 *   EJECTED / HALF_OPEN --(a passing health probe: kl_breaker_uneject)--> CLOSED
 *
 * What counts as a failure is the caller's decision, and it must follow
 * DESIGN.md: 408, 500, 503, 504, no response in time, a transport error
 * (refused, reset, TLS failure) are failures; every other answer (2xx, 3xx,
 * 404, 480, 486, 487, 603, any other 4xx/6xx) is a success, because it is
 * an answer about the call, not about the server. 1xx are not outcomes.
 *
 * Recording (data path) and evaluating (interval tick) are separate, as in
 * Envoy's putResult() vs Detector. The one exception is the consecutive
 * rule, which Envoy also applies at once: kl_breaker_record() returns true
 * when the result completed a run of conf->consecutive_failures, and the
 * caller then calls kl_breaker_try_eject() with its zone's counts to eject
 * right away. A caller that does not still gets the ejection at the next
 * interval evaluation in kl_breaker_tick(), because the run is kept until a
 * success breaks it.
 *
 * The multiplier ("times ejected") grows by one per ejection, never beyond
 * max_ejection / base_ejection (rounded up), and decays by one for each
 * healthy interval: a whole interval spent closed with neither rule met
 * (one kept in only by its zone's share is not healthy). An ejection lasts
 * min(base_ejection x multiplier, max_ejection).
 *
 * A zone never has more than conf->max_ejected_percent of its destinations
 * ejected, except that one destination may always be: an ejection is
 * allowed when the zone has none ejected, or when (ejected + 1) stays
 * within the share. EJECTED and HALF_OPEN both count as ejected
 * (kl_breaker_is_ejected()). The caller passes the zone's counts as they are
 * before the call, and updates them between destinations of one tick.
 *
 * Time is a parameter; nothing allocates or logs (the caller logs and counts
 * the changes these functions return). The conf is the cluster's
 * `kl_conf_outlier_t` of the current snapshot, passed to each call, since the
 * state outlives reloads. A kl_breaker_t belongs to one worker; none of these
 * functions is thread-safe. */
#ifndef KL_UPSTREAM_BREAKER_H
#define KL_UPSTREAM_BREAKER_H

#include "core/conf-t.h"

#include <stdbool.h>
#include <stdint.h>

/* A breaker's state, and what the transition functions return: the state
 * they moved to, or KL_BREAKER_NONE when nothing changed. */
typedef enum {
    KL_BREAKER_NONE = 0, /* no change (never a state) */
    KL_BREAKER_CLOSED,   /* taking traffic */
    KL_BREAKER_EJECTED,  /* taking none until until_ms */
    KL_BREAKER_HALF_OPEN /* taking exactly one trial request */
} kl_breaker_state_t;

/* Why the last ejection happened, for logs and /v1/state. */
typedef enum {
    KL_BREAKER_WHY_NONE = 0,
    KL_BREAKER_WHY_CONSECUTIVE,   /* consecutive_failures in a row */
    KL_BREAKER_WHY_FAILURE_SHARE, /* failure_percent over an interval */
    KL_BREAKER_WHY_TRIAL,         /* the half-open trial failed */
} kl_breaker_why_t;

typedef struct kl_breaker {
    kl_breaker_state_t state;
    kl_breaker_why_t why;
    bool trial_in_flight;  /* HALF_OPEN: the trial was admitted */
    unsigned consecutive;  /* failures in a row while closed */
    unsigned multiplier;   /* times ejected, decaying */
    uint32_t win_requests; /* results recorded since win_start_ms */
    uint32_t win_failures;
    uint64_t win_start_ms; /* start of the interval being measured */
    uint64_t closed_ms;    /* when it last became CLOSED */
    uint64_t ejected_ms;   /* when it last became EJECTED */
    uint64_t until_ms;     /* EJECTED: when the ejection ends */
    uint64_t trial_ms;     /* HALF_OPEN: when the trial was admitted */
    uint64_t ejections;    /* total ever, for metrics */
} kl_breaker_t;

/* Starts <b> closed with no history. */
void kl_breaker_init(kl_breaker_t *b, uint64_t now_ms);

/* Records the outcome of one request sent while CLOSED (data path). Results
 * arriving in the other states (late answers to requests sent before the
 * ejection) are ignored; the half-open trial's outcome goes to
 * kl_breaker_on_trial_result() instead. Returns true when the consecutive
 * rule is met: call kl_breaker_try_eject() now. */
bool kl_breaker_record(kl_breaker_t *b, const kl_conf_outlier_t *conf, bool failure,
                       uint64_t now_ms);

/* Ejects a CLOSED breaker if its zone's share allows (<zone_ejected> of
 * <zone_total> destinations are ejected now, this one not included).
 * Returns KL_BREAKER_EJECTED, or KL_BREAKER_NONE when it was not closed or
 * the zone is at its share (the breaker then stays closed and keeps its
 * failure run, so the next failure or tick tries again). */
kl_breaker_state_t kl_breaker_try_eject(kl_breaker_t *b, const kl_conf_outlier_t *conf,
                                        uint64_t now_ms, unsigned zone_ejected,
                                        unsigned zone_total);

/* The periodic evaluation. Call it often (every second, or at
 * kl_breaker_next_ms()): it ends an ejection whose time is up (-> HALF_OPEN)
 * and, once per conf->interval measured from the last evaluation, applies
 * the failure-share rule (>= min_requests results, at least one, and
 * failures x 100 >= failure_percent x results) to a CLOSED breaker, decays
 * the multiplier by the number of whole healthy intervals elapsed, and
 * starts a new interval. The consecutive rule is checked at every call.
 * Returns the change it made. */
kl_breaker_state_t kl_breaker_tick(kl_breaker_t *b, const kl_conf_outlier_t *conf, uint64_t now_ms,
                                   unsigned zone_ejected, unsigned zone_total);

/* May a request go to this destination now? CLOSED: yes. EJECTED: no.
 * HALF_OPEN: yes exactly once (that request is the trial, and the caller
 * must report its outcome with kl_breaker_on_trial_result(), a timeout
 * being a failure), then no until the trial's outcome is in. Only the
 * HALF_OPEN answer changes <b>. */
bool kl_breaker_allow(kl_breaker_t *b, uint64_t now_ms);

/* The outcome of the half-open trial. Success returns KL_BREAKER_CLOSED
 * (the caller starts the destination's slow-start); failure ejects it again
 * with the grown multiplier and returns KL_BREAKER_EJECTED (no zone check:
 * it was already counted as ejected). KL_BREAKER_NONE when no trial was in
 * flight. */
kl_breaker_state_t kl_breaker_on_trial_result(kl_breaker_t *b, const kl_conf_outlier_t *conf,
                                              bool failure, uint64_t now_ms);

/* A passing health probe ends an ejection (EJECTED or HALF_OPEN ->
 * CLOSED, into slow-start). The multiplier is kept and decays as usual.
 * Returns KL_BREAKER_CLOSED, or KL_BREAKER_NONE if it was closed. */
kl_breaker_state_t kl_breaker_uneject(kl_breaker_t *b, uint64_t now_ms);

/* EJECTED: milliseconds left of the ejection; 0 otherwise. */
uint64_t kl_breaker_remaining_ms(const kl_breaker_t *b, uint64_t now_ms);

/* When kl_breaker_tick() next has something to do: the end of the ejection
 * or of the current interval, whichever is first. */
uint64_t kl_breaker_next_ms(const kl_breaker_t *b, const kl_conf_outlier_t *conf);

/* The duration the next ejection would have, given the multiplier now. */
uint64_t kl_breaker_next_ejection_ms(const kl_breaker_t *b, const kl_conf_outlier_t *conf);

/* Counts toward its zone's ejected share: EJECTED or HALF_OPEN. */
static inline bool kl_breaker_is_ejected(const kl_breaker_t *b)
{
    return b->state != KL_BREAKER_CLOSED;
}

#endif
