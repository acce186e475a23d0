/* Metric series of one worker (DESIGN.md "Observability").
 *
 * Every metric keel exports is a family declared once in kl_stat_families[]
 * (name, help, type, label names, histogram buckets). The data path records
 * into its worker's own kl_stats_t with no lock and no atomic: a store is
 * touched only by the thread that owns it. A scrape runs on each worker in
 * turn (kl_worker_call) and merges that worker's store into the scrape's
 * own, so values are summed across workers at scrape time.
 *
 * A series is found by its label values (in the family's label order); the
 * first use of a label set creates it. Worker thread only (the owner's). */
#ifndef KL_CORE_STATS_H
#define KL_CORE_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    KL_STAT_COUNTER = 0,
    KL_STAT_GAUGE,
    KL_STAT_HISTOGRAM,
} kl_stat_type_t;

#define KL_STAT_MAX_LABELS  4
#define KL_STAT_MAX_BUCKETS 16

typedef struct kl_stat_family {
    const char *name; /* keel_..., with _total for counters */
    const char *help;
    kl_stat_type_t type;
    unsigned nlabels;
    const char *labels[KL_STAT_MAX_LABELS];
    unsigned nbuckets; /* histogram: upper bounds, ascending, +Inf implied */
    double buckets[KL_STAT_MAX_BUCKETS];
} kl_stat_family_t;

typedef enum {
    KL_ST_BUILD_INFO = 0,
    KL_ST_REQUESTS_RECEIVED,
    KL_ST_REQUESTS_FORWARDED,
    KL_ST_RESPONSES_RECEIVED,
    KL_ST_RESPONSES_SENT,
    KL_ST_TRANSACTIONS_IN_FLIGHT,
    KL_ST_CALLS_IN_FLIGHT,
    KL_ST_FAILOVERS,
    KL_ST_CALL_SETUP,
    KL_ST_CALLS_SEIZED,
    KL_ST_CALLS_ANSWERED,
    KL_ST_CALLS_NETWORK_FAILURES,
    KL_ST_CALL_RESPONSES,
    KL_ST_CALL_DURATION,
    KL_ST_DEST_UP,
    KL_ST_DEST_WEIGHT,
    KL_ST_DEST_IN_FLIGHT,
    KL_ST_DEST_DRAINED,
    KL_ST_ZONE_DRAINED,
    KL_ST_BULKHEAD_OCCUPANCY,
    KL_ST_PROBES,
    KL_ST_DEST_EJECTED,
    KL_ST_DEST_EJECTIONS,
    KL_ST_DEST_HEALTH_CHANGES,
    KL_ST_RETRY_BUDGET_DENIED,
    KL_ST_CLUSTER_PANICS,
    KL_ST_ZONE_DEGRADED,
    KL_ST_DNS_TARGETS,
    KL_ST_DNS_STALE,
    KL_ST_DNS_STALE_USED,
    KL_ST_DNS_QUERY_TIME,
    KL_ST_DNS_QUERIES,
    KL_ST_DNS_HEDGES,
    KL_ST_DNS_TIER_FAILOVERS,
    KL_ST_DNS_RESOLVER_UP,
    KL_ST_DNS_STALE_SERVED,
    KL_ST_WORKER_BUSY,
    KL_ST_SHED_FRACTION,
    KL_ST_FAULT_HITS,
    KL_ST_FAULTS_INJECTED,
    KL_ST_MESSAGES_DROPPED,
    KL_ST_REQUESTS_REJECTED,
    KL_ST_RELOADS,
    KL_ST_CONFIG_VERSION,
    KL_ST_CONFIG_RELOAD_TIME,
    KL_ST_START_TIME,
    KL_ST_RTP_REPORTS,
    KL_ST_RTP_PACKETS_RECEIVED,
    KL_ST_RTP_PACKETS_LOST,
    KL_ST_RTP_JITTER,
    KL_ST_RTP_MOS,
    KL_ST_WORKER_HANDOFFS,
    KL_ST_WORKER_INBOX_REFUSED,
    KL_ST_COUNT
} kl_stat_id_t;

extern const kl_stat_family_t kl_stat_families[KL_ST_COUNT];

/* One series: a family and a set of label values. */
typedef struct kl_series kl_series_t;

typedef struct kl_stats kl_stats_t;

/* Returns a new, empty store, or NULL. */
kl_stats_t *kl_stats_new(void);

/* Frees <s> and its series. Accepts NULL. */
void kl_stats_free(kl_stats_t *s);

/* Adds <v> to a counter or gauge series (created at 0 on first use).
 * <vals> holds the family's nlabels label values (NULL entries read as "").
 * Counters only ever grow: a negative <v> on a counter is ignored. Memory
 * exhaustion drops the sample. */
void kl_stats_add(kl_stats_t *s, kl_stat_id_t id, const char *const *vals, double v);

/* Sets a gauge series to <v>. */
void kl_stats_set(kl_stats_t *s, kl_stat_id_t id, const char *const *vals, double v);

/* Records one observation <v> in a histogram series. */
void kl_stats_observe(kl_stats_t *s, kl_stat_id_t id, const char *const *vals, double v);

/* The value of a counter or gauge series, 0 when it does not exist. For
 * tests and the admin API. */
double kl_stats_get(const kl_stats_t *s, kl_stat_id_t id, const char *const *vals);

/* Adds every series of <src> into <dst> (counters and gauges summed,
 * histograms bucket by bucket). Returns KL_OK or KL_ENOMEM. */
int kl_stats_merge(kl_stats_t *dst, const kl_stats_t *src);

/* Zeroes every gauge series of <s> (counters and histograms keep their
 * values): for stores rebuilt from live state at each scrape. */
void kl_stats_clear_gauges(kl_stats_t *s);

/* Writes the Prometheus text exposition (format 0.0.4) of <s>: every family
 * that has a series (and every family with no labels, at 0), with HELP and
 * TYPE, series sorted. Returns a new NUL-terminated buffer (free() it) or
 * NULL; *<len> is its length. */
char *kl_stats_render(const kl_stats_t *s, size_t *len);

/* The number of series in <s>. */
size_t kl_stats_count(const kl_stats_t *s);

#endif
