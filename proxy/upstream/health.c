#include "upstream/health.h"

/* interval ± 10%: spreads the probes of many destinations (and of several
 * keel instances) so they do not beat in step. */
static uint64_t health_jitter(uint32_t interval, uint32_t rand32)
{
    uint32_t span = interval / 5;

    return (uint64_t)interval - span / 2 + rand32 % ((uint64_t)span + 1);
}

static unsigned health_top(const kl_conf_health_t *conf)
{
    unsigned rise = conf->rise ? conf->rise : 1, fall = conf->fall ? conf->fall : 1;

    return rise + fall - 1;
}

/* Brings the counter back into the range of the current state after a
 * reload changed rise or fall. */
static void health_normalize(kl_health_t *h, const kl_conf_health_t *conf)
{
    unsigned rise = conf->rise ? conf->rise : 1, top = health_top(conf);

    if (h->up) {
        if (h->health > top)
            h->health = top;
        if (h->health < rise)
            h->health = rise;
    } else if (h->health >= rise) {
        h->health = rise - 1;
    }
}

static kl_health_change_t health_count(kl_health_t *h, const kl_conf_health_t *conf, bool ok,
                                       uint64_t now_ms)
{
    unsigned rise = conf->rise ? conf->rise : 1, top = health_top(conf);

    health_normalize(h, conf);
    h->probes++;
    if (ok) {
        h->consec_ok++;
        h->consec_fail = 0;
        if (h->health < top)
            h->health++;
        if (!h->up && h->health >= rise) {
            h->up = true;
            h->health = top;
            h->changed_ms = now_ms;
            return KL_HEALTH_WENT_UP;
        }
        return KL_HEALTH_NONE;
    }
    h->failures++;
    h->consec_fail++;
    h->consec_ok = 0;
    if (h->health > 0)
        h->health--;
    if (h->health < rise)
        h->health = 0;
    if (h->up && h->health < rise) {
        h->up = false;
        h->changed_ms = now_ms;
        return KL_HEALTH_WENT_DOWN;
    }
    return KL_HEALTH_NONE;
}

bool kl_health_accepts(const kl_conf_health_t *conf, int code)
{
    for (size_t i = 0; i < conf->naccept; i++)
        if (conf->accept[i] == code)
            return true;
    return false;
}

void kl_health_init(kl_health_t *h, const kl_conf_health_t *conf, uint64_t now_ms, uint32_t rand32)
{
    *h = (kl_health_t){
        .up = true,
        .health = health_top(conf),
        .next_ms = now_ms + health_jitter(conf->interval, rand32),
        .changed_ms = now_ms,
    };
}

bool kl_health_due(const kl_health_t *h, uint64_t now_ms)
{
    return !h->in_flight && now_ms >= h->next_ms;
}

void kl_health_probe_sent(kl_health_t *h, const kl_conf_health_t *conf, uint64_t now_ms,
                          uint32_t rand32)
{
    h->in_flight = true;
    h->sent_ms = now_ms;
    h->deadline_ms = now_ms + conf->timeout;
    h->next_ms = now_ms + health_jitter(conf->interval, rand32);
}

kl_health_change_t kl_health_result(kl_health_t *h, const kl_conf_health_t *conf, int code,
                                    uint64_t now_ms)
{
    bool ok;

    if (!h->in_flight)
        return KL_HEALTH_NONE;
    h->in_flight = false;
    if (now_ms > h->deadline_ms)
        code = 0;
    h->last_code = code;
    ok = code != 0 && kl_health_accepts(conf, code);
    return health_count(h, conf, ok, now_ms);
}

kl_health_change_t kl_health_check_timeout(kl_health_t *h, const kl_conf_health_t *conf,
                                           uint64_t now_ms)
{
    if (!h->in_flight || now_ms < h->deadline_ms)
        return KL_HEALTH_NONE;
    h->in_flight = false;
    h->last_code = 0;
    return health_count(h, conf, false, now_ms);
}

kl_health_change_t kl_health_force_down(kl_health_t *h, uint64_t now_ms)
{
    bool was_up = h->up;

    h->health = 0;
    h->consec_ok = 0;
    if (!was_up)
        return KL_HEALTH_NONE;
    h->up = false;
    h->changed_ms = now_ms;
    return KL_HEALTH_WENT_DOWN;
}

kl_health_change_t kl_health_force_up(kl_health_t *h, const kl_conf_health_t *conf, uint64_t now_ms)
{
    bool was_up = h->up;

    h->health = health_top(conf);
    h->consec_fail = 0;
    if (was_up)
        return KL_HEALTH_NONE;
    h->up = true;
    h->changed_ms = now_ms;
    return KL_HEALTH_WENT_UP;
}

uint64_t kl_health_next_ms(const kl_health_t *h)
{
    return h->in_flight ? h->deadline_ms : h->next_ms;
}
