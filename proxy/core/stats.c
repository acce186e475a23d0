/* Metric series stores and the Prometheus text exposition (see stats.h). */
#include "core/stats.h"

#include "core/errors.h"
#include "core/htab.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SETUP_BUCKETS .nbuckets = 12, .buckets = {0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60}
#define DURATION_BUCKETS                                                                           \
    .nbuckets = 12, .buckets = {1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200}

#define JITTER_BUCKETS                                                                             \
    .nbuckets = 9, .buckets = {0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.5}
#define MOS_BUCKETS .nbuckets = 8, .buckets = {1.5, 2, 2.5, 3, 3.5, 3.8, 4, 4.2}

const kl_stat_family_t kl_stat_families[KL_ST_COUNT] = {
    [KL_ST_BUILD_INFO] = {.name = "keel_build_info",
                          .help = "keel's version (the value is always 1)",
                          .type = KL_STAT_GAUGE,
                          .nlabels = 1,
                          .labels = {"version"}},
    [KL_ST_REQUESTS_RECEIVED] = {.name = "keel_sip_requests_received_total",
                                 .help = "SIP requests received from callers, by method",
                                 .type = KL_STAT_COUNTER,
                                 .nlabels = 1,
                                 .labels = {"method"}},
    [KL_ST_REQUESTS_FORWARDED] =
        {.name = "keel_sip_requests_forwarded_total",
         .help = "SIP requests sent to destinations (every attempt), by method "
                 "and zone",
         .type = KL_STAT_COUNTER,
         .nlabels = 2,
         .labels = {"method", "zone"}},
    [KL_ST_RESPONSES_RECEIVED] = {.name = "keel_sip_responses_received_total",
                                  .help =
                                      "SIP responses received from destinations, by method, code "
                                      "class (1xx..6xx) and zone",
                                  .type = KL_STAT_COUNTER,
                                  .nlabels = 3,
                                  .labels = {"method", "code", "zone"}},
    [KL_ST_RESPONSES_SENT] = {.name = "keel_sip_responses_sent_total",
                              .help = "SIP responses sent to callers (forwarded or keel's own), by "
                                      "method and code class",
                              .type = KL_STAT_COUNTER,
                              .nlabels = 2,
                              .labels = {"method", "code"}},
    [KL_ST_TRANSACTIONS_IN_FLIGHT] = {.name = "keel_transactions_in_flight",
                                      .help =
                                          "Client transactions waiting for a destination's final "
                                          "response, by zone and traffic class",
                                      .type = KL_STAT_GAUGE,
                                      .nlabels = 2,
                                      .labels = {"zone", "class"}},
    [KL_ST_CALLS_IN_FLIGHT] = {.name = "keel_calls_in_flight",
                               .help =
                                   "Established calls (INVITE 2xx until BYE), by zone and class",
                               .type = KL_STAT_GAUGE,
                               .nlabels = 2,
                               .labels = {"zone", "class"}},
    [KL_ST_FAILOVERS] =
        {.name = "keel_failovers_total",
         .help = "Attempts that failed and moved the request to another destination, by "
                 "cluster, the zone that failed and cause (code, timeout, transport)",
         .type = KL_STAT_COUNTER,
         .nlabels = 3,
         .labels = {"cluster", "zone", "cause"}},
    [KL_ST_CALL_SETUP] =
        {.name = "keel_call_setup_seconds",
         .help = "Call setup time of answered and ringing INVITEs, from keel receiving "
                 "the INVITE: phase=ringing to the first 18x, phase=answer to the 2xx",
         .type = KL_STAT_HISTOGRAM,
         .nlabels = 2,
         .labels = {"zone", "phase"},
         SETUP_BUCKETS},
    [KL_ST_CALLS_SEIZED] = {.name = "keel_calls_seized_total",
                            .help = "INVITE attempts sent to a destination (seizures, ITU-T E.411)",
                            .type = KL_STAT_COUNTER,
                            .nlabels = 2,
                            .labels = {"zone", "destination"}},
    [KL_ST_CALLS_ANSWERED] = {.name = "keel_calls_answered_total",
                              .help = "INVITE attempts answered with a 2xx (answered seizures)",
                              .type = KL_STAT_COUNTER,
                              .nlabels = 2,
                              .labels = {"zone", "destination"}},
    [KL_ST_CALLS_NETWORK_FAILURES] =
        {.name = "keel_calls_network_failures_total",
         .help = "INVITE attempts that failed for the network or the server "
                 "(failover codes, timeout, transport error): 1 - this / "
                 "seized is the NER (ITU-T E.425)",
         .type = KL_STAT_COUNTER,
         .nlabels = 2,
         .labels = {"zone", "destination"}},
    [KL_ST_CALL_RESPONSES] = {.name = "keel_call_final_responses_total",
                              .help =
                                  "Final responses to INVITE attempts by exact code (RFC 6076 SER "
                                  "and SEER)",
                              .type = KL_STAT_COUNTER,
                              .nlabels = 3,
                              .labels = {"zone", "destination", "code"}},
    [KL_ST_CALL_DURATION] = {.name = "keel_call_duration_seconds",
                             .help =
                                 "Session duration of ended calls, from the INVITE 2xx to the BYE",
                             .type = KL_STAT_HISTOGRAM,
                             .nlabels = 1,
                             .labels = {"zone"},
                             DURATION_BUCKETS},
    [KL_ST_DEST_UP] = {.name = "keel_destination_up",
                       .help = "1 when the destination takes new requests (health), else 0",
                       .type = KL_STAT_GAUGE,
                       .nlabels = 3,
                       .labels = {"cluster", "zone", "destination"}},
    [KL_ST_DEST_WEIGHT] = {.name = "keel_destination_weight",
                           .help = "The destination's weight in force (configured x slow-start)",
                           .type = KL_STAT_GAUGE,
                           .nlabels = 3,
                           .labels = {"cluster", "zone", "destination"}},
    [KL_ST_DEST_IN_FLIGHT] = {.name = "keel_destination_in_flight",
                              .help = "Attempts in progress at the destination",
                              .type = KL_STAT_GAUGE,
                              .nlabels = 3,
                              .labels = {"cluster", "zone", "destination"}},
    [KL_ST_DEST_DRAINED] = {.name = "keel_destination_drained",
                            .help = "1 when the destination is drained (no new dialogs)",
                            .type = KL_STAT_GAUGE,
                            .nlabels = 3,
                            .labels = {"cluster", "zone", "destination"}},
    [KL_ST_ZONE_DRAINED] = {.name = "keel_zone_drained",
                            .help = "1 when the zone is drained (no new dialogs)",
                            .type = KL_STAT_GAUGE,
                            .nlabels = 1,
                            .labels = {"zone"}},
    [KL_ST_BULKHEAD_OCCUPANCY] =
        {.name = "keel_bulkhead_occupancy",
         .help = "Work in progress counted against a zone's limits: kind=calls "
                 "(INVITEs in progress + established calls), chat, other, "
                 "transactions",
         .type = KL_STAT_GAUGE,
         .nlabels = 2,
         .labels = {"zone", "kind"}},
    [KL_ST_PROBES] =
        {.name = "keel_health_probes_total",
         .help = "Health-check OPTIONS probes by zone and result (sent, answered, timeout, "
                 "failed)",
         .type = KL_STAT_COUNTER,
         .nlabels = 2,
         .labels = {"zone", "result"}},
    [KL_ST_DEST_EJECTED] = {.name = "keel_destination_ejected",
                            .help = "1 while the destination is ejected by its circuit breaker (or "
                                    "half-open)",
                            .type = KL_STAT_GAUGE,
                            .nlabels = 3,
                            .labels = {"cluster", "zone", "destination"}},
    [KL_ST_DEST_EJECTIONS] = {.name = "keel_destination_ejections_total",
                              .help = "Ejections by the circuit breaker (outlier detection)",
                              .type = KL_STAT_COUNTER,
                              .nlabels = 3,
                              .labels = {"cluster", "zone", "destination"}},
    [KL_ST_DEST_HEALTH_CHANGES] =
        {.name = "keel_destination_health_changes_total",
         .help = "Health state changes of a destination, by the state entered",
         .type = KL_STAT_COUNTER,
         .nlabels = 4,
         .labels = {"cluster", "zone", "destination", "to"}},
    [KL_ST_RETRY_BUDGET_DENIED] = {.name = "keel_retry_budget_exhausted_total",
                                   .help = "Failovers refused by the cluster's retry budget",
                                   .type = KL_STAT_COUNTER,
                                   .nlabels = 1,
                                   .labels = {"cluster"}},
    [KL_ST_CLUSTER_PANICS] = {.name = "keel_cluster_panic_total",
                              .help =
                                  "Requests routed ignoring health because nothing in the cluster "
                                  "was healthy (panic mode)",
                              .type = KL_STAT_COUNTER,
                              .nlabels = 1,
                              .labels = {"cluster"}},
    [KL_ST_ZONE_DEGRADED] = {.name = "keel_zone_degraded",
                             .help =
                                 "1 when fewer than half of the zone's destinations are healthy",
                             .type = KL_STAT_GAUGE,
                             .nlabels = 2,
                             .labels = {"cluster", "zone"}},
    [KL_ST_DNS_TARGETS] = {.name = "keel_dns_targets",
                           .help = "Targets a destination's DNS name resolves to now (RFC 3263)",
                           .type = KL_STAT_GAUGE,
                           .nlabels = 2,
                           .labels = {"zone", "name"}},
    [KL_ST_DNS_STALE] = {.name = "keel_dns_stale",
                         .help = "1 while a name is served from an expired answer (RFC 8767)",
                         .type = KL_STAT_GAUGE,
                         .nlabels = 2,
                         .labels = {"zone", "name"}},
    [KL_ST_DNS_STALE_USED] = {.name = "keel_dns_stale_targets_used_total",
                              .help = "Attempts routed to a target of a stale answer",
                              .type = KL_STAT_COUNTER,
                              .nlabels = 2,
                              .labels = {"zone", "name"}},
    [KL_ST_DNS_QUERY_TIME] = {.name = "keel_dns_query_seconds",
                              .help = "DNS query latency by resolver (answered queries)",
                              .type = KL_STAT_HISTOGRAM,
                              .nlabels = 1,
                              .labels = {"resolver"},
                              .nbuckets = 10,
                              .buckets = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5,
                                          1}},
    [KL_ST_DNS_QUERIES] = {.name = "keel_dns_queries_total",
                           .help = "DNS queries by resolver and result (answer, nxdomain, timeout, "
                                   "error, late)",
                           .type = KL_STAT_COUNTER,
                           .nlabels = 2,
                           .labels = {"resolver", "result"}},
    [KL_ST_DNS_HEDGES] = {.name = "keel_dns_hedges_total",
                          .help = "Hedged queries (sent to the next tier after hedge_after), by "
                                  "outcome: sent, won",
                          .type = KL_STAT_COUNTER,
                          .nlabels = 1,
                          .labels = {"result"}},
    [KL_ST_DNS_TIER_FAILOVERS] = {.name = "keel_dns_tier_failovers_total",
                                  .help = "Queries that moved to the next tier after a failure",
                                  .type = KL_STAT_COUNTER,
                                  .nlabels = 0},
    [KL_ST_DNS_RESOLVER_UP] = {.name = "keel_dns_resolver_up",
                               .help = "1 while the resolver is considered up",
                               .type = KL_STAT_GAUGE,
                               .nlabels = 2,
                               .labels = {"tier", "resolver"}},
    [KL_ST_DNS_STALE_SERVED] = {.name = "keel_dns_stale_answers_total",
                                .help =
                                    "Refreshes that failed on every resolver and kept serving the "
                                    "expired answer (RFC 8767)",
                                .type = KL_STAT_COUNTER,
                                .nlabels = 1,
                                .labels = {"name"}},
    [KL_ST_WORKER_BUSY] = {.name = "keel_worker_busy_ratio",
                           .help = "Share of the last 100 ms the workers' threads spent on the CPU "
                                   "(summed over workers)",
                           .type = KL_STAT_GAUGE,
                           .nlabels = 0},
    [KL_ST_SHED_FRACTION] =
        {.name = "keel_shed_ratio",
         .help = "Share of new requests of a class refused by overload control (503 "
                 "Retry-After), summed over workers",
         .type = KL_STAT_GAUGE,
         .nlabels = 1,
         .labels = {"class"}},
    [KL_ST_FAULT_HITS] = {.name = "keel_fault_hits_total",
                          .help =
                              "Attempts an injected fault acted on (game days), by kind and zone",
                          .type = KL_STAT_COUNTER,
                          .nlabels = 2,
                          .labels = {"kind", "zone"}},
    [KL_ST_FAULTS_INJECTED] = {.name = "keel_faults_injected_total",
                               .help = "Faults injected through POST /v1/faults, by kind",
                               .type = KL_STAT_COUNTER,
                               .nlabels = 1,
                               .labels = {"kind"}},
    [KL_ST_MESSAGES_DROPPED] = {.name = "keel_messages_dropped_total",
                                .help = "Messages dropped without an answer, by reason",
                                .type = KL_STAT_COUNTER,
                                .nlabels = 1,
                                .labels = {"reason"}},
    [KL_ST_REQUESTS_REJECTED] = {.name = "keel_requests_rejected_total",
                                 .help = "Requests keel answered itself with an error, by code and "
                                         "reason",
                                 .type = KL_STAT_COUNTER,
                                 .nlabels = 2,
                                 .labels = {"code", "reason"}},
    [KL_ST_RELOADS] = {.name = "keel_config_reloads_total",
                       .help = "Configuration reloads, by result (ok, error)",
                       .type = KL_STAT_COUNTER,
                       .nlabels = 1,
                       .labels = {"result"}},
    [KL_ST_CONFIG_VERSION] = {.name = "keel_config_version",
                              .help =
                                  "The version of the configuration snapshot in force (1 at start, "
                                  "+1 per successful reload)",
                              .type = KL_STAT_GAUGE,
                              .nlabels = 0},
    [KL_ST_CONFIG_RELOAD_TIME] = {.name = "keel_config_last_reload_success_timestamp_seconds",
                                  .help = "When the configuration in force was loaded (Unix time)",
                                  .type = KL_STAT_GAUGE,
                                  .nlabels = 0},
    [KL_ST_START_TIME] = {.name = "keel_start_time_seconds",
                          .help = "When keel started (Unix time)",
                          .type = KL_STAT_GAUGE,
                          .nlabels = 0},
    [KL_ST_WORKER_HANDOFFS] = {.name = "keel_worker_handoffs_total",
                               .help = "Messages a worker handed to the worker they belong to "
                                       "(responses to its requests, BYEs of its calls)",
                               .type = KL_STAT_COUNTER,
                               .nlabels = 0},
    [KL_ST_WORKER_INBOX_REFUSED] = {.name = "keel_worker_inbox_refused_total",
                                    .help = "Hand-offs refused because the owner's inbox was full "
                                            "or it was stopping",
                                    .type = KL_STAT_COUNTER,
                                    .nlabels = 0},
    [KL_ST_RTP_REPORTS] = {.name = "keel_rtp_reports_total",
                           .help =
                               "Media quality reports (P-RTP-Stat or X-RTP-Stat on a BYE or its "
                               "2xx) read at the end of calls, by who sent them",
                           .type = KL_STAT_COUNTER,
                           .nlabels = 2,
                           .labels = {"zone", "side"}},
    [KL_ST_RTP_PACKETS_RECEIVED] = {.name = "keel_rtp_packets_received_total",
                                    .help = "RTP packets the reporting side received (PR)",
                                    .type = KL_STAT_COUNTER,
                                    .nlabels = 2,
                                    .labels = {"zone", "side"}},
    [KL_ST_RTP_PACKETS_LOST] = {.name = "keel_rtp_packets_lost_total",
                                .help = "RTP packets the reporting side lost (PL)",
                                .type = KL_STAT_COUNTER,
                                .nlabels = 2,
                                .labels = {"zone", "side"}},
    [KL_ST_RTP_JITTER] = {.name = "keel_rtp_jitter_seconds",
                          .help = "Interarrival jitter a call's report gave (JI)",
                          .type = KL_STAT_HISTOGRAM,
                          .nlabels = 2,
                          .labels = {"zone", "side"},
                          JITTER_BUCKETS},
    [KL_ST_RTP_MOS] = {.name = "keel_rtp_mos",
                       .help = "MOS estimated from a call's report (simplified E-model, G.711)",
                       .type = KL_STAT_HISTOGRAM,
                       .nlabels = 2,
                       .labels = {"zone", "side"},
                       MOS_BUCKETS},
};

struct kl_series {
    kl_hnode_t hn;
    kl_series_t *next; /* the store's list */
    kl_stat_id_t id;
    double value;
    double sum;
    uint64_t count;
    uint64_t *buckets; /* histogram: nbuckets (cumulative at render) */
    size_t keylen;
    char key[]; /* id byte, then the label values separated by \x1f */
};

struct kl_stats {
    kl_htab_t index;
    kl_series_t *head;
    size_t count;
};

kl_stats_t *kl_stats_new(void)
{
    kl_stats_t *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return NULL;
    if (kl_htab_init(&s->index, 256) != KL_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void kl_stats_free(kl_stats_t *s)
{
    kl_series_t *e, *next;

    if (s == NULL)
        return;
    for (e = s->head; e != NULL; e = next) {
        next = e->next;
        free(e->buckets);
        free(e);
    }
    kl_htab_free(&s->index);
    free(s);
}

size_t kl_stats_count(const kl_stats_t *s)
{
    return s != NULL ? s->count : 0;
}

/* The series key: id byte then values joined by \x1f. Returns its length,
 * or 0 when it does not fit. */
static size_t make_key(kl_stat_id_t id, const char *const *vals, char *out, size_t cap)
{
    const kl_stat_family_t *f = &kl_stat_families[id];
    size_t n = 0;

    out[n++] = (char)(id + 1);
    for (unsigned i = 0; i < f->nlabels; i++) {
        const char *v = (vals != NULL && vals[i] != NULL) ? vals[i] : "";
        size_t l = strlen(v);

        if (i > 0) {
            if (n + 1 >= cap)
                return 0;
            out[n++] = '\x1f';
        }
        if (n + l >= cap)
            return 0;
        memcpy(out + n, v, l);
        n += l;
    }
    out[n] = '\0';
    return n;
}

static kl_series_t *series_get(kl_stats_t *s, kl_stat_id_t id, const char *key, size_t keylen)
{
    kl_hnode_t *hn = kl_htab_get(&s->index, key, keylen);
    kl_series_t *e;

    if (hn != NULL)
        return kl_container_of(hn, kl_series_t, hn);
    e = calloc(1, sizeof(*e) + keylen + 1);
    if (e == NULL)
        return NULL;
    e->id = id;
    e->keylen = keylen;
    memcpy(e->key, key, keylen + 1);
    if (kl_stat_families[id].type == KL_STAT_HISTOGRAM) {
        e->buckets = calloc(kl_stat_families[id].nbuckets + 1, sizeof(uint64_t));
        if (e->buckets == NULL) {
            free(e);
            return NULL;
        }
    }
    kl_htab_add(&s->index, &e->hn, e->key, keylen);
    e->next = s->head;
    s->head = e;
    s->count++;
    return e;
}

static kl_series_t *series_for(kl_stats_t *s, kl_stat_id_t id, const char *const *vals)
{
    char key[512];
    size_t n;

    if (s == NULL || (unsigned)id >= KL_ST_COUNT)
        return NULL;
    n = make_key(id, vals, key, sizeof(key));
    return n > 0 ? series_get(s, id, key, n) : NULL;
}

void kl_stats_add(kl_stats_t *s, kl_stat_id_t id, const char *const *vals, double v)
{
    kl_series_t *e;

    if ((unsigned)id >= KL_ST_COUNT || kl_stat_families[id].type == KL_STAT_HISTOGRAM)
        return;
    if (kl_stat_families[id].type == KL_STAT_COUNTER && !(v >= 0))
        return;
    e = series_for(s, id, vals);
    if (e != NULL)
        e->value += v;
}

void kl_stats_set(kl_stats_t *s, kl_stat_id_t id, const char *const *vals, double v)
{
    kl_series_t *e;

    if ((unsigned)id >= KL_ST_COUNT || kl_stat_families[id].type != KL_STAT_GAUGE)
        return;
    e = series_for(s, id, vals);
    if (e != NULL)
        e->value = v;
}

void kl_stats_observe(kl_stats_t *s, kl_stat_id_t id, const char *const *vals, double v)
{
    const kl_stat_family_t *f;
    kl_series_t *e;
    unsigned i;

    if ((unsigned)id >= KL_ST_COUNT || kl_stat_families[id].type != KL_STAT_HISTOGRAM || isnan(v))
        return;
    f = &kl_stat_families[id];
    e = series_for(s, id, vals);
    if (e == NULL)
        return;
    for (i = 0; i < f->nbuckets && v > f->buckets[i]; i++)
        ;
    e->buckets[i]++; /* i == nbuckets: +Inf only */
    e->sum += v;
    e->count++;
}

double kl_stats_get(const kl_stats_t *s, kl_stat_id_t id, const char *const *vals)
{
    char key[512];
    size_t n;
    kl_hnode_t *hn;

    if (s == NULL || (unsigned)id >= KL_ST_COUNT)
        return 0;
    n = make_key(id, vals, key, sizeof(key));
    hn = n > 0 ? kl_htab_get(&s->index, key, n) : NULL;
    if (hn == NULL)
        return 0;
    {
        const kl_series_t *e = kl_container_of(hn, kl_series_t, hn);

        return kl_stat_families[id].type == KL_STAT_HISTOGRAM ? (double)e->count : e->value;
    }
}

int kl_stats_merge(kl_stats_t *dst, const kl_stats_t *src)
{
    if (dst == NULL || src == NULL)
        return KL_OK;
    for (const kl_series_t *e = src->head; e != NULL; e = e->next) {
        kl_series_t *d = series_get(dst, e->id, e->key, e->keylen);

        if (d == NULL)
            return KL_ENOMEM;
        d->value += e->value;
        d->sum += e->sum;
        d->count += e->count;
        if (e->buckets != NULL && d->buckets != NULL) {
            for (unsigned i = 0; i <= kl_stat_families[e->id].nbuckets; i++)
                d->buckets[i] += e->buckets[i];
        }
    }
    return KL_OK;
}

void kl_stats_clear_gauges(kl_stats_t *s)
{
    if (s == NULL)
        return;
    for (kl_series_t *e = s->head; e != NULL; e = e->next) {
        if (kl_stat_families[e->id].type == KL_STAT_GAUGE)
            e->value = 0;
    }
}

/* ---- exposition ---- */

typedef struct out {
    char *buf;
    size_t len, cap;
    bool failed;
} out_t;

static void out_put(out_t *o, const char *s, size_t n)
{
    if (o->failed)
        return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        char *nb;

        while (cap < o->len + n + 1)
            cap *= 2;
        nb = realloc(o->buf, cap);
        if (nb == NULL) {
            o->failed = true;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_str(out_t *o, const char *s)
{
    out_put(o, s, strlen(s));
}

static void out_fmt(out_t *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_fmt(out_t *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        out_put(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A sample value: integers without a decimal point, +Inf/-Inf/NaN spelt as
 * the format wants. */
static void out_value(out_t *o, double v)
{
    if (isnan(v))
        out_str(o, "NaN");
    else if (isinf(v))
        out_str(o, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 1e15)
        out_fmt(o, "%.0f", v);
    else
        out_fmt(o, "%.17g", v);
}

/* HELP text escapes \ and newline; label values also escape the quote. */
static void out_escaped(out_t *o, const char *s, size_t n, bool quote)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (c == '\\')
            out_str(o, "\\\\");
        else if (c == '\n')
            out_str(o, "\\n");
        else if (c == '"' && quote)
            out_str(o, "\\\"");
        else
            out_put(o, &c, 1);
    }
}

/* {a="x",b="y"[,le="..."]} or nothing */
static void out_labels(out_t *o, const kl_series_t *e, const char *le)
{
    const kl_stat_family_t *f = &kl_stat_families[e->id];
    const char *p = e->key + 1, *end = e->key + e->keylen;

    if (f->nlabels == 0 && le == NULL)
        return;
    out_str(o, "{");
    for (unsigned i = 0; i < f->nlabels; i++) {
        const char *sep = memchr(p, '\x1f', (size_t)(end - p));
        size_t n = sep != NULL ? (size_t)(sep - p) : (size_t)(end - p);

        if (i > 0)
            out_str(o, ",");
        out_str(o, f->labels[i]);
        out_str(o, "=\"");
        out_escaped(o, p, n, true);
        out_str(o, "\"");
        p += n + (sep != NULL ? 1 : 0);
    }
    if (le != NULL) {
        if (f->nlabels > 0)
            out_str(o, ",");
        out_str(o, "le=\"");
        out_str(o, le);
        out_str(o, "\"");
    }
    out_str(o, "}");
}

static int series_cmp(const void *a, const void *b)
{
    const kl_series_t *x = *(const kl_series_t *const *)a, *y = *(const kl_series_t *const *)b;
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->key, y->key, n);

    if (c != 0)
        return c;
    return x->keylen < y->keylen ? -1 : x->keylen > y->keylen;
}

static void render_series(out_t *o, const kl_series_t *e)
{
    const kl_stat_family_t *f = &kl_stat_families[e->id];

    if (f->type != KL_STAT_HISTOGRAM) {
        out_str(o, f->name);
        out_labels(o, e, NULL);
        out_str(o, " ");
        out_value(o, e->value);
        out_str(o, "\n");
        return;
    }
    {
        uint64_t cum = 0;
        char le[32];

        for (unsigned i = 0; i <= f->nbuckets; i++) {
            cum += e->buckets[i];
            if (i < f->nbuckets)
                snprintf(le, sizeof(le), "%g", f->buckets[i]);
            else
                snprintf(le, sizeof(le), "+Inf");
            out_str(o, f->name);
            out_str(o, "_bucket");
            out_labels(o, e, le);
            out_fmt(o, " %llu\n", (unsigned long long)cum);
        }
        out_str(o, f->name);
        out_str(o, "_sum");
        out_labels(o, e, NULL);
        out_str(o, " ");
        out_value(o, e->sum);
        out_str(o, "\n");
        out_str(o, f->name);
        out_str(o, "_count");
        out_labels(o, e, NULL);
        out_fmt(o, " %llu\n", (unsigned long long)e->count);
    }
}

char *kl_stats_render(const kl_stats_t *s, size_t *len)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    const kl_series_t **all = NULL;
    out_t o = {0};
    size_t n = 0, j = 0;

    if (s != NULL && s->count > 0) {
        all = malloc(s->count * sizeof(*all));
        if (all == NULL)
            return NULL;
        for (const kl_series_t *e = s->head; e != NULL; e = e->next)
            all[n++] = e;
        qsort(all, n, sizeof(*all), series_cmp);
    }
    for (int id = 0; id < KL_ST_COUNT; id++) {
        const kl_stat_family_t *f = &kl_stat_families[id];
        bool any = j < n && all[j]->id == (kl_stat_id_t)id;

        if (!any && f->nlabels > 0)
            continue;
        out_fmt(&o, "# HELP %s ", f->name);
        out_escaped(&o, f->help, strlen(f->help), false);
        out_fmt(&o, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        if (!any) {
            /* a family with no labels always has its one series */
            out_fmt(&o, "%s 0\n", f->name);
            continue;
        }
        for (; j < n && all[j]->id == (kl_stat_id_t)id; j++)
            render_series(&o, all[j]);
    }
    free(all);
    if (o.failed || o.buf == NULL) {
        free(o.buf);
        return NULL;
    }
    if (len != NULL)
        *len = o.len;
    return o.buf;
}
