#include "upstream/budget.h"

/* Moves the ring forward to <now_ms>'s second, emptying the buckets that
 * fell out of the window. A clock that goes back is treated as the current
 * second: the window never rewinds. */
static void budget_advance(kl_budget_t *b, uint64_t now_ms)
{
    uint64_t sec = now_ms / KL_BUDGET_BUCKET_MS;

    if (sec <= b->sec)
        return;
    if (sec - b->sec >= KL_BUDGET_BUCKETS) {
        for (unsigned i = 0; i < KL_BUDGET_BUCKETS; i++)
            b->requests[i] = b->retries[i] = 0;
        b->win_requests = b->win_retries = 0;
    } else {
        for (uint64_t s = b->sec + 1; s <= sec; s++) {
            unsigned i = (unsigned)(s % KL_BUDGET_BUCKETS);

            b->win_requests -= b->requests[i];
            b->win_retries -= b->retries[i];
            b->requests[i] = b->retries[i] = 0;
        }
    }
    b->sec = sec;
}

static bool budget_rate_allows(const kl_budget_t *b, const kl_conf_retry_budget_t *conf)
{
    /* (retries + 1) <= percent% x requests + min x window seconds, in
     * hundredths so that small windows are not rounded away */
    uint64_t allowed =
        (uint64_t)conf->percent * b->win_requests + (uint64_t)conf->min * KL_BUDGET_BUCKETS * 100;

    return (b->win_retries + 1) * 100 <= allowed;
}

static bool budget_inflight_allows(const kl_budget_t *b, const kl_conf_retry_budget_t *conf,
                                   unsigned in_flight)
{
    uint64_t cap = (uint64_t)conf->percent * in_flight / 100;

    if (cap < conf->min)
        cap = conf->min;
    return b->active < cap;
}

void kl_budget_init(kl_budget_t *b, uint64_t now_ms)
{
    *b = (kl_budget_t){.sec = now_ms / KL_BUDGET_BUCKET_MS};
}

void kl_budget_on_request(kl_budget_t *b, uint64_t now_ms)
{
    unsigned i;

    budget_advance(b, now_ms);
    i = (unsigned)(b->sec % KL_BUDGET_BUCKETS);
    if (b->requests[i] < UINT32_MAX) {
        b->requests[i]++;
        b->win_requests++;
    }
}

bool kl_budget_try_retry(kl_budget_t *b, const kl_conf_retry_budget_t *conf,
                         unsigned in_flight_transactions, uint64_t now_ms)
{
    unsigned i;

    budget_advance(b, now_ms);
    if (!budget_rate_allows(b, conf)) {
        b->denied_rate++;
        return false;
    }
    if (!budget_inflight_allows(b, conf, in_flight_transactions)) {
        b->denied_inflight++;
        return false;
    }
    i = (unsigned)(b->sec % KL_BUDGET_BUCKETS);
    if (b->retries[i] < UINT32_MAX) {
        b->retries[i]++;
        b->win_retries++;
    }
    b->active++;
    b->retries_total++;
    return true;
}

void kl_budget_retry_done(kl_budget_t *b)
{
    if (b->active > 0)
        b->active--;
}

uint64_t kl_budget_rate_left(kl_budget_t *b, const kl_conf_retry_budget_t *conf, uint64_t now_ms)
{
    uint64_t allowed;

    budget_advance(b, now_ms);
    allowed = ((uint64_t)conf->percent * b->win_requests +
               (uint64_t)conf->min * KL_BUDGET_BUCKETS * 100) /
              100;
    return allowed > b->win_retries ? allowed - b->win_retries : 0;
}
