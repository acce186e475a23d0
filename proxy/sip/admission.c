/* Admission control (DESIGN.md "Resilience semantics", overload): what a new
 * request must pass before keel spends a transaction on it.
 *
 *   - scanners: a User-Agent containing one of admission.scanner_user_agents
 *     is dropped without an answer (answering tells the scanner it found a
 *     SIP server);
 *   - per source: a token bucket per source address (per_source.rate/burst)
 *     for requests outside dialogs;
 *   - new calls: a token bucket for initial INVITEs (new_calls_per_s);
 *   - overload: when the worker's thread is busier than max_cpu_percent,
 *     a shed fraction rises per traffic class in DESIGN's order (chat, then
 *     other, then calls) and falls back in reverse once the load drops; so
 *     only the excess is refused, early and cheaply, with 503 and
 *     Retry-After, instead of every call timing out.
 *
 * Emergency calls (Request-URI urn:service:sos*, or a user part among
 * admission.emergency.numbers) pass every check. Per worker; rates are
 * divided among the workers. */
#include "sip/proxy-int.h"

#include "core/errors.h"
#include "core/limiter.h"
#include "core/log.h"
#include "core/rand.h"
#include "core/stats.h"

#include <openssl/rand.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SRC_TABLE       65536
#define SHED_STEP       100 /* per mille per tick while overloaded */
#define SHED_STEP_CALLS 50
#define SHED_RELAX      50
#define SHED_MAX        1000
#define SHED_CALLS_MAX  950 /* some calls always get through: the load is measured on them */

struct kl_admission {
    kl_bucket_t new_calls;
    bool new_calls_on;
    kl_srclimit_t *src;
    uint32_t src_rate, src_burst;
    /* overload: thread CPU time over wall time, per tick */
    uint64_t last_wall_ms, last_cpu_us;
    unsigned busy_pct;             /* last tick's */
    unsigned shed[KL_CLASS_COUNT]; /* per mille shed, by class */
    uint64_t seen[KL_CLASS_COUNT]; /* new requests since the last tick */
    double recent[KL_CLASS_COUNT]; /* new requests per tick, smoothed over about 1 s */
    uint64_t shed_draw;            /* xorshift for probabilistic shedding */
};

static uint64_t thread_cpu_us(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void adm_configure(kl_admission_t *a, const kl_conf_t *conf, uint64_t now_ms)
{
    unsigned nw = conf->workers > 0 ? conf->workers : 1;
    const kl_conf_admission_t *ac = &conf->admission;

    a->new_calls_on = ac->new_calls_per_s > 0;
    if (a->new_calls_on) {
        uint32_t rate = (ac->new_calls_per_s + nw - 1) / nw;

        kl_bucket_configure(&a->new_calls, rate, rate, now_ms);
    }
    a->src_rate = ac->per_source_rate;
    a->src_burst = ac->per_source_burst != 0 ? ac->per_source_burst : ac->per_source_rate;
}

kl_admission_t *kl__admission_new(const kl_conf_t *conf)
{
    kl_admission_t *a = calloc(1, sizeof(*a));
    uint64_t seed = 0;
    uint64_t now = kl_now_ms();

    if (a == NULL)
        return NULL;
    RAND_bytes((unsigned char *)&seed, sizeof(seed));
    a->src = kl_srclimit_new(SRC_TABLE, seed);
    if (a->src == NULL) {
        free(a);
        return NULL;
    }
    a->shed_draw = seed | 1;
    kl_bucket_init(&a->new_calls, 0, 0, now);
    adm_configure(a, conf, now);
    a->last_wall_ms = now;
    a->last_cpu_us = thread_cpu_us();
    return a;
}

void kl__admission_free(kl_admission_t *a)
{
    if (a == NULL)
        return;
    kl_srclimit_free(a->src);
    free(a);
}

void kl__admission_reload(kl_admission_t *a, const kl_conf_t *conf)
{
    adm_configure(a, conf, kl_now_ms());
}

/* Smooths the per-class arrivals over about a second: a class whose traffic
 * pauses for one tick is not skipped in the shedding order. */
static void adm_smooth(kl_admission_t *a)
{
    for (int c = 0; c < KL_CLASS_COUNT; c++)
        a->recent[c] = a->recent[c] * 0.8 + (double)a->seen[c];
}

/* The shedding controller, once per policy tick. */
void kl__admission_tick(kl_proxy_t *p, uint64_t now_ms)
{
    kl_admission_t *a = p->adm;
    unsigned limit = p->w->conf->admission.max_cpu_percent;
    uint64_t cpu = thread_cpu_us(), wall = now_ms - a->last_wall_ms;
    static const kl_class_t order[] = {KL_CLASS_CHAT, KL_CLASS_OTHER, KL_CLASS_CALL};

    if (wall < 50)
        return;
    adm_smooth(a);
    a->busy_pct = (unsigned)((cpu - a->last_cpu_us) / 10 / wall); /* us / (ms * 10) = % */
    a->last_wall_ms = now_ms;
    a->last_cpu_us = cpu;
    if (limit == 0) {
        memset(a->shed, 0, sizeof(a->shed));
    } else if (a->busy_pct >= limit) {
        /* shed more of the first class in order that still has traffic to
         * shed; a class with none this tick is skipped, not waited on */
        for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
            kl_class_t c = order[i];
            unsigned max = c == KL_CLASS_CALL ? SHED_CALLS_MAX : SHED_MAX;

            if (a->shed[c] >= max || a->recent[c] < 0.5)
                continue;
            a->shed[c] += c == KL_CLASS_CALL ? SHED_STEP_CALLS : SHED_STEP;
            if (a->shed[c] > max)
                a->shed[c] = max;
            break;
        }
    } else if (a->busy_pct + 10 < limit) {
        /* relax in reverse order: calls first */
        for (size_t i = sizeof(order) / sizeof(order[0]); i-- > 0;) {
            kl_class_t c = order[i];

            if (a->shed[c] == 0)
                continue;
            a->shed[c] = a->shed[c] > SHED_RELAX ? a->shed[c] - SHED_RELAX : 0;
            break;
        }
    }
    memset(a->seen, 0, sizeof(a->seen));
}

bool kl__admission_scanner(kl_proxy_t *p, const kl_sip_msg_t *m)
{
    const kl_conf_admission_t *ac = &p->w->conf->admission;
    size_t len = 0;
    const char *ua;

    if (ac->nscanner_user_agents == 0)
        return false;
    ua = kl_sip_hdr_value(m, KL_HDR_USER_AGENT, &len);
    if (ua == NULL || len == 0)
        return false;
    for (size_t i = 0; i < ac->nscanner_user_agents; i++) {
        const char *needle = ac->scanner_user_agents[i];
        size_t nl = strlen(needle);

        for (size_t j = 0; nl > 0 && j + nl <= len; j++) {
            if (strncasecmp(ua + j, needle, nl) == 0)
                return true;
        }
    }
    return false;
}

bool kl__admission_emergency(const kl_conf_t *conf, const kl_sip_msg_t *m)
{
    const char *rl = m->buf, *sp = memchr(rl, ' ', m->hdr_len);
    osip_uri_t *u = m->osip->req_uri;

    if (sp != NULL && (size_t)(sp + 1 - rl) + 15 <= m->hdr_len &&
        strncasecmp(sp + 1, "urn:service:sos", 15) == 0)
        return true;
    if (u == NULL || u->username == NULL)
        return false;
    for (size_t i = 0; i < conf->admission.nemergency_numbers; i++) {
        if (strcmp(u->username, conf->admission.emergency_numbers[i]) == 0)
            return true;
    }
    return false;
}

static uint32_t draw(kl_admission_t *a)
{
    return (uint32_t)(kl_xorshift64(&a->shed_draw) >> 33) % 1000;
}

int kl__admission_check(kl_proxy_t *p, const kl_tp_src_t *src, const kl_sip_msg_t *m,
                        kl_class_t cls, const char **reason)
{
    kl_admission_t *a = p->adm;
    uint64_t now = kl_now_ms();

    if (cls == KL_CLASS_EMERGENCY)
        return KL_OK;
    a->seen[cls < KL_CLASS_COUNT ? cls : KL_CLASS_OTHER]++;
    if (a->src_rate > 0) {
        const void *key;
        size_t keylen;

        if (src->peer.u.sa.sa_family == AF_INET6) {
            key = &src->peer.u.in6.sin6_addr;
            keylen = 16;
        } else {
            key = &src->peer.u.in.sin_addr;
            keylen = 4;
        }
        if (!kl_srclimit_take(a->src, key, keylen, a->src_rate, a->src_burst, now)) {
            *reason = "Service Unavailable - Source Rate Limited";
            return KL_EBUSY;
        }
    }
    if (cls < KL_CLASS_COUNT && a->shed[cls] > 0 && draw(a) < a->shed[cls]) {
        *reason = "Service Unavailable - Overloaded";
        return KL_EBUSY;
    }
    if (m->method == KL_M_INVITE && cls == KL_CLASS_CALL && a->new_calls_on &&
        !kl_bucket_take(&a->new_calls, 1, now)) {
        *reason = "Service Unavailable - Call Rate Limited";
        return KL_EBUSY;
    }
    return KL_OK;
}

unsigned kl__admission_oc(const kl_proxy_t *p, kl_class_t cls)
{
    const kl_admission_t *a = p->adm;
    unsigned pct;

    if (cls >= KL_CLASS_COUNT || a->shed[cls] == 0)
        return 0;
    pct = (a->shed[cls] + 9) / 10;
    return pct > 100 ? 100 : pct;
}

void kl__admission_collect(const kl_proxy_t *p, kl_stats_t *into)
{
    static const char *const names[KL_CLASS_COUNT] = {"call", "chat", "other", "emergency"};
    const kl_admission_t *a = p->adm;

    kl_stats_add(into, KL_ST_WORKER_BUSY, NULL, a->busy_pct / 100.0);
    for (int c = 0; c < KL_CLASS_COUNT; c++) {
        const char *l[] = {names[c]};

        kl_stats_add(into, KL_ST_SHED_FRACTION, l, a->shed[c] / 1000.0);
    }
}
