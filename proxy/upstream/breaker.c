#include "upstream/breaker.h"

static uint64_t breaker_base(const kl_conf_outlier_t *conf)
{
    return conf->base_ejection ? conf->base_ejection : 1;
}

/* The multiplier stops growing once base x multiplier reaches the cap, so
 * that decay brings a long-ejected destination back to short ejections in a
 * bounded number of intervals. */
static unsigned breaker_mult_cap(const kl_conf_outlier_t *conf)
{
    uint64_t base = breaker_base(conf), cap = (conf->max_ejection + base - 1) / base;

    return cap == 0 ? 1 : (unsigned)cap;
}

static uint64_t breaker_duration(const kl_conf_outlier_t *conf, unsigned multiplier)
{
    uint64_t d = breaker_base(conf) * multiplier;

    return d > conf->max_ejection ? conf->max_ejection : d;
}

static void breaker_window_reset(kl_breaker_t *b, uint64_t now_ms)
{
    b->win_start_ms = now_ms;
    b->win_requests = 0;
    b->win_failures = 0;
}

static void breaker_eject(kl_breaker_t *b, const kl_conf_outlier_t *conf, uint64_t now_ms,
                          kl_breaker_why_t why)
{
    unsigned cap = breaker_mult_cap(conf);

    if (b->multiplier < cap)
        b->multiplier++;
    else
        b->multiplier = cap; /* a reload may have lowered the cap */
    b->state = KL_BREAKER_EJECTED;
    b->why = why;
    b->trial_in_flight = false;
    b->consecutive = 0;
    b->ejected_ms = now_ms;
    b->until_ms = now_ms + breaker_duration(conf, b->multiplier);
    b->ejections++;
    breaker_window_reset(b, now_ms);
}

static void breaker_close(kl_breaker_t *b, uint64_t now_ms)
{
    b->state = KL_BREAKER_CLOSED;
    b->trial_in_flight = false;
    b->consecutive = 0;
    b->closed_ms = now_ms;
    b->until_ms = 0;
    /* results from before the ejection must not eject it again */
    breaker_window_reset(b, now_ms);
}

static bool breaker_zone_allows(const kl_conf_outlier_t *conf, unsigned zone_ejected,
                                unsigned zone_total)
{
    if (zone_ejected == 0)
        return true;
    return ((uint64_t)zone_ejected + 1) * 100 <= (uint64_t)conf->max_ejected_percent * zone_total;
}

static bool breaker_share_tripped(const kl_breaker_t *b, const kl_conf_outlier_t *conf)
{
    uint64_t min = conf->min_requests ? conf->min_requests : 1;

    if (b->win_requests < min)
        return false;
    return (uint64_t)b->win_failures * 100 >= (uint64_t)conf->failure_percent * b->win_requests;
}

static bool breaker_run_tripped(const kl_breaker_t *b, const kl_conf_outlier_t *conf)
{
    return conf->consecutive_failures > 0 && b->consecutive >= conf->consecutive_failures;
}

void kl_breaker_init(kl_breaker_t *b, uint64_t now_ms)
{
    *b = (kl_breaker_t){
        .state = KL_BREAKER_CLOSED,
        .closed_ms = now_ms,
        .win_start_ms = now_ms,
    };
}

bool kl_breaker_record(kl_breaker_t *b, const kl_conf_outlier_t *conf, bool failure,
                       uint64_t now_ms)
{
    (void)now_ms;
    if (b->state != KL_BREAKER_CLOSED)
        return false;
    if (b->win_requests < UINT32_MAX)
        b->win_requests++;
    if (!failure) {
        b->consecutive = 0;
        return false;
    }
    if (b->win_failures < UINT32_MAX)
        b->win_failures++;
    if (b->consecutive < UINT32_MAX)
        b->consecutive++;
    return breaker_run_tripped(b, conf);
}

kl_breaker_state_t kl_breaker_try_eject(kl_breaker_t *b, const kl_conf_outlier_t *conf,
                                        uint64_t now_ms, unsigned zone_ejected, unsigned zone_total)
{
    kl_breaker_why_t why = KL_BREAKER_WHY_CONSECUTIVE;

    if (b->state != KL_BREAKER_CLOSED || !breaker_zone_allows(conf, zone_ejected, zone_total))
        return KL_BREAKER_NONE;
    if (!breaker_run_tripped(b, conf))
        why = breaker_share_tripped(b, conf) ? KL_BREAKER_WHY_FAILURE_SHARE : KL_BREAKER_WHY_NONE;
    breaker_eject(b, conf, now_ms, why);
    return KL_BREAKER_EJECTED;
}

kl_breaker_state_t kl_breaker_tick(kl_breaker_t *b, const kl_conf_outlier_t *conf, uint64_t now_ms,
                                   unsigned zone_ejected, unsigned zone_total)
{
    kl_breaker_state_t change = KL_BREAKER_NONE;
    uint64_t interval = conf->interval ? conf->interval : 1, intervals;
    bool allowed = breaker_zone_allows(conf, zone_ejected, zone_total), tripped;

    if (b->state == KL_BREAKER_EJECTED && now_ms >= b->until_ms) {
        b->state = KL_BREAKER_HALF_OPEN;
        b->trial_in_flight = false;
        change = KL_BREAKER_HALF_OPEN;
    }
    if (b->state == KL_BREAKER_CLOSED && breaker_run_tripped(b, conf) && allowed) {
        breaker_eject(b, conf, now_ms, KL_BREAKER_WHY_CONSECUTIVE);
        return KL_BREAKER_EJECTED;
    }
    if (now_ms < b->win_start_ms + interval)
        return change;
    intervals = (now_ms - b->win_start_ms) / interval;
    tripped = breaker_share_tripped(b, conf);
    if (b->state == KL_BREAKER_CLOSED && tripped && allowed) {
        breaker_eject(b, conf, now_ms, KL_BREAKER_WHY_FAILURE_SHARE);
        return KL_BREAKER_EJECTED;
    }
    /* an interval is healthy when it was spent closed and no rule tripped
     * (one kept in only by its zone's share is not healthy) */
    if (b->state == KL_BREAKER_CLOSED && b->closed_ms <= b->win_start_ms && !tripped &&
        !breaker_run_tripped(b, conf))
        b->multiplier -= intervals < b->multiplier ? (unsigned)intervals : b->multiplier;
    breaker_window_reset(b, now_ms);
    return change;
}

bool kl_breaker_allow(kl_breaker_t *b, uint64_t now_ms)
{
    switch (b->state) {
    case KL_BREAKER_CLOSED:
        return true;
    case KL_BREAKER_HALF_OPEN:
        if (b->trial_in_flight)
            return false;
        b->trial_in_flight = true;
        b->trial_ms = now_ms;
        return true;
    default:
        return false;
    }
}

kl_breaker_state_t kl_breaker_on_trial_result(kl_breaker_t *b, const kl_conf_outlier_t *conf,
                                              bool failure, uint64_t now_ms)
{
    if (b->state != KL_BREAKER_HALF_OPEN || !b->trial_in_flight)
        return KL_BREAKER_NONE;
    if (failure) {
        breaker_eject(b, conf, now_ms, KL_BREAKER_WHY_TRIAL);
        return KL_BREAKER_EJECTED;
    }
    breaker_close(b, now_ms);
    return KL_BREAKER_CLOSED;
}

kl_breaker_state_t kl_breaker_uneject(kl_breaker_t *b, uint64_t now_ms)
{
    if (b->state == KL_BREAKER_CLOSED)
        return KL_BREAKER_NONE;
    breaker_close(b, now_ms);
    return KL_BREAKER_CLOSED;
}

uint64_t kl_breaker_remaining_ms(const kl_breaker_t *b, uint64_t now_ms)
{
    if (b->state != KL_BREAKER_EJECTED || now_ms >= b->until_ms)
        return 0;
    return b->until_ms - now_ms;
}

uint64_t kl_breaker_next_ms(const kl_breaker_t *b, const kl_conf_outlier_t *conf)
{
    uint64_t end = b->win_start_ms + (conf->interval ? conf->interval : 1);

    if (b->state == KL_BREAKER_EJECTED && b->until_ms < end)
        return b->until_ms;
    return end;
}

uint64_t kl_breaker_next_ejection_ms(const kl_breaker_t *b, const kl_conf_outlier_t *conf)
{
    unsigned cap = breaker_mult_cap(conf), m = b->multiplier < cap ? b->multiplier + 1 : cap;

    return breaker_duration(conf, m);
}
