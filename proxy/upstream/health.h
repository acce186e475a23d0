/* Active health checks of one destination: probe scheduling and rise/fall
 * hysteresis (DESIGN.md "Resilience semantics", HAProxy check.c).
 *
 * Pure policy: this file never sends. The OPTIONS prober in sip/ asks
 * kl_health_due(), sends, calls kl_health_probe_sent(), and reports the
 * reply (or the lack of one) here. Time is a parameter, randomness too (the
 * caller draws it, so tests are deterministic), nothing allocates.
 *
 * The hysteresis is HAProxy's single counter, not two independent streaks:
 * `health` runs from 0 to rise + fall - 1; the destination is up while it is
 * at least `rise`. While up, a failed probe takes one off and a passing one
 * adds one back (up to the top); dropping below `rise` marks it down. While
 * down, a failed probe starts the count again from 0 and `rise` passing
 * probes in a row mark it up (the counter then jumps to the top). So from a
 * steady up state it takes `fall` failures in a row to go down, a check that
 * answers every other probe never changes state either way, and a check that
 * fails two probes out of three still goes down (net failures accumulate).
 *
 * Every function takes the cluster's `kl_conf_health_t` of the current
 * snapshot instead of keeping a pointer to it: the state outlives reloads,
 * and a reload that changes rise or fall is absorbed at the next result.
 *
 * A kl_health_t belongs to the worker that probes the destination; none of
 * these functions is thread-safe. */
#ifndef KL_UPSTREAM_HEALTH_H
#define KL_UPSTREAM_HEALTH_H

#include "core/conf-t.h"

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    KL_HEALTH_NONE = 0,  /* no change */
    KL_HEALTH_WENT_DOWN, /* up -> down */
    KL_HEALTH_WENT_UP,   /* down -> up */
} kl_health_change_t;

typedef struct kl_health {
    bool up;
    unsigned health;      /* HAProxy's counter, see above */
    unsigned consec_ok;   /* passing probes in a row (for /v1/state) */
    unsigned consec_fail; /* failed probes in a row, timeouts included */
    bool in_flight;       /* a probe is out and unanswered */
    uint64_t sent_ms;     /* when the probe in flight was sent */
    uint64_t deadline_ms; /* when it times out */
    uint64_t next_ms;     /* when the next probe is due */
    uint64_t changed_ms;  /* last up/down change (or init) */
    int last_code;        /* last reply code, 0 for a timeout or transport loss */
    uint64_t probes;      /* probes whose outcome was counted */
    uint64_t failures;    /* of which failed */
} kl_health_t;

/* Starts <h> up, at full health (DESIGN.md: destinations start up and only
 * evidence marks them down), with the first probe due one jittered interval
 * after <now_ms>. <rand32> is any uniformly drawn 32-bit number. */
void kl_health_init(kl_health_t *h, const kl_conf_health_t *conf, uint64_t now_ms, uint32_t rand32);

/* Returns true when a probe should be sent now: none is in flight and the
 * next one is due. Down destinations are due like up ones. Whether checks
 * are enabled at all (conf->enabled) is the caller's decision. */
bool kl_health_due(const kl_health_t *h, uint64_t now_ms);

/* Records that a probe went out at <now_ms>: it times out at now +
 * conf->timeout, and the next one is due one jittered interval
 * (conf->interval ± 10%, from <rand32>) after this one was sent, so
 * detection takes about fall × interval + timeout. */
void kl_health_probe_sent(kl_health_t *h, const kl_conf_health_t *conf, uint64_t now_ms,
                          uint32_t rand32);

/* Reports the final reply to the probe in flight: a <code> in conf->accept
 * passes, any other code, or 0 (no reply, transport error), fails. A reply
 * later than the probe's deadline counts as a timeout. Returns the change
 * it caused; KL_HEALTH_NONE too when no probe was in flight (a late reply
 * to a probe already timed out is ignored). */
kl_health_change_t kl_health_result(kl_health_t *h, const kl_conf_health_t *conf, int code,
                                    uint64_t now_ms);

/* Times out the probe in flight once its deadline has passed: that counts
 * as a failure. Returns the change it caused (KL_HEALTH_NONE when no probe
 * is in flight or it is not late yet). Call it from the prober's timer, at
 * kl_health_next_ms(). */
kl_health_change_t kl_health_check_timeout(kl_health_t *h, const kl_conf_health_t *conf,
                                           uint64_t now_ms);

/* Declares the destination dead from passive evidence (its connection was
 * lost, refused, TLS failed): down at once, health 0, so it takes `rise`
 * passing probes to come back. Probing goes on as scheduled, and a probe in
 * flight still counts. Returns KL_HEALTH_WENT_DOWN if it was up, else
 * KL_HEALTH_NONE. */
kl_health_change_t kl_health_force_down(kl_health_t *h, uint64_t now_ms);

/* Up at full health now, whatever the counter said: another worker's
 * prober decided (DESIGN.md "Threads and state"). Returns
 * KL_HEALTH_WENT_UP when it was down, else KL_HEALTH_NONE. */
kl_health_change_t kl_health_force_up(kl_health_t *h, const kl_conf_health_t *conf,
                                      uint64_t now_ms);

/* When the prober next has to look at <h>: the deadline of the probe in
 * flight, else the time the next probe is due. */
uint64_t kl_health_next_ms(const kl_health_t *h);

/* Returns true if <code> is in conf->accept. */
bool kl_health_accepts(const kl_conf_health_t *conf, int code);

static inline bool kl_health_is_up(const kl_health_t *h)
{
    return h->up;
}

#endif
