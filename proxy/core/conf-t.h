/* The configuration snapshot's types (DESIGN.md "Configuration").
 *
 * A kl_conf_t is built by kl_conf_load() and frozen: after the build every
 * user sees only `const kl_conf_t *` and keeps it alive with kl_conf_ref().
 * Durations are milliseconds; strings are NUL-terminated and owned by the
 * snapshot. Arrays are a pointer plus a count (`n<name>`). */
#ifndef KL_CORE_CONF_T_H
#define KL_CORE_CONF_T_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KL_MAX_MODULES 16

/* A config error: where, which key, what was expected. */
typedef struct kl_cfg_err {
    char file[256];
    int line;      /* 1-based; 0 when the error is not tied to a place */
    int col;       /* 1-based */
    char key[256]; /* key path: clusters[0].zones[1].weight */
    char msg[512];
} kl_cfg_err_t;

#define KL_CFG_MAX_ERRS 32

/* Every error found in one file, up to KL_CFG_MAX_ERRS (n counts them all). */
typedef struct kl_cfg_errs {
    kl_cfg_err_t e[KL_CFG_MAX_ERRS];
    int n;
} kl_cfg_errs_t;

typedef enum {
    KL_TP_UDP = 0,
    KL_TP_TCP = 1,
    KL_TP_TLS = 2,
    KL_TP_WS = 3,
} kl_tp_kind_t;

/* listen: [ { transport, address, port } ] */
typedef struct kl_conf_listen {
    kl_tp_kind_t transport;
    char *address; /* numeric IPv4 or IPv6 literal, no brackets */
    uint16_t port;
} kl_conf_listen_t;

/* A parsed sip:/sips: URI of a destination (static host or DNS name). */
typedef struct kl_conf_dest {
    char *uri;       /* as written, the destination's identity with its zone */
    unsigned weight; /* default 1 */
    char *host;      /* without brackets */
    uint16_t port;   /* 0: not given (RFC 3263 rules apply) */
    kl_tp_kind_t transport;
    bool transport_set; /* ;transport= present */
    bool host_is_ip;    /* literal address: no DNS */
} kl_conf_dest_t;

typedef struct kl_conf_limits {
    unsigned calls;        /* concurrent dialogs of class call; 0 = unlimited */
    unsigned chat;         /* concurrent chat transactions */
    unsigned other;        /* concurrent other transactions */
    unsigned transactions; /* all concurrent transactions */
    unsigned lookups;      /* pending DNS lookups */
} kl_conf_limits_t;

typedef struct kl_conf_zone {
    char *name;
    unsigned weight; /* 0: standby */
    kl_conf_limits_t limits;
    kl_conf_dest_t *dests;
    size_t ndests;
} kl_conf_zone_t;

typedef struct kl_conf_failover {
    unsigned max_attempts;    /* 3 */
    uint32_t attempt_timeout; /* ms, 2000 */
    uint32_t ring_timeout;    /* ms, 120000 (Timer C) */
    int *codes;               /* [408, 500, 503, 504] */
    size_t ncodes;
} kl_conf_failover_t;

typedef struct kl_conf_retry_budget {
    unsigned percent; /* 20 */
    unsigned min;     /* 3 */
} kl_conf_retry_budget_t;

typedef struct kl_conf_health {
    uint32_t interval; /* ms, 5000 */
    uint32_t timeout;  /* ms, 2000, always < interval */
    unsigned rise;     /* 2 */
    unsigned fall;     /* 3 */
    int *accept;       /* [200, 404, 405, 483] */
    size_t naccept;
    bool enabled; /* true */
} kl_conf_health_t;

typedef struct kl_conf_outlier {
    unsigned consecutive_failures; /* 5 */
    unsigned failure_percent;      /* 50 */
    unsigned min_requests;         /* 20 */
    uint32_t interval;             /* ms, 10000 */
    uint32_t base_ejection;        /* ms, 30000 */
    uint32_t max_ejection;         /* ms, 300000 */
    unsigned max_ejected_percent;  /* 50 */
} kl_conf_outlier_t;

typedef struct kl_conf_slow_start {
    uint32_t window;             /* ms, 30000 */
    double aggression;           /* 1.0 */
    unsigned min_weight_percent; /* 10 */
} kl_conf_slow_start_t;

typedef struct kl_conf_cluster {
    char *name;
    bool prefer_local;
    kl_conf_failover_t failover;
    kl_conf_retry_budget_t retry_budget;
    kl_conf_health_t health;
    kl_conf_outlier_t outlier;
    kl_conf_slow_start_t slow_start;
    kl_conf_zone_t *zones;
    size_t nzones;
} kl_conf_cluster_t;

typedef struct kl_conf_match {
    char **methods; /* upper case; NULL/0: any */
    size_t nmethods;
    char *user_prefix; /* NULL: any */
    char *domain;      /* NULL: any; compared case-insensitively with the R-URI host */
} kl_conf_match_t;

typedef struct kl_conf_route {
    kl_conf_match_t match;
    char *cluster_name;
    size_t cluster; /* index into kl_conf_t.clusters, resolved at load */
} kl_conf_route_t;

typedef struct kl_conf_admin {
    char *address; /* NULL: no admin listener */
    uint16_t port;
    char *token; /* "" or NULL: POSTs unguarded */
    bool faults;
} kl_conf_admin_t;

typedef struct kl_conf_admission {
    unsigned new_calls_per_s; /* 0 = unlimited */
    unsigned per_source_rate; /* per_source.rate, 0 = unlimited */
    unsigned per_source_burst;
    char **scanner_user_agents; /* substrings, matched case-insensitively */
    size_t nscanner_user_agents;
    char **emergency_numbers;
    size_t nemergency_numbers;
    unsigned max_cpu_percent; /* 90: a worker busier than this sheds new work (0 = never) */
} kl_conf_admission_t;

/* transport: limits for stream transports and messages (keel's extension). */
typedef struct kl_conf_transport {
    uint32_t max_message_size; /* bytes, 65536 */
    unsigned max_connections;  /* 4096 */
    uint32_t header_timeout;   /* ms, 10000: slowloris guard */
    uint32_t idle_timeout;     /* ms, 300000 */
} kl_conf_transport_t;

typedef struct kl_conf {
    _Atomic unsigned refs;
    uint64_t version; /* increases with every successful load in a process */
    char *file;       /* the path it was read from */

    char *node_id;   /* node.id */
    char *node_zone; /* node.zone, NULL if unset */
    unsigned workers;
    int log_level; /* kl_log_level_t */
    char *cookie_secret;
    uint32_t cookie_grace; /* ms: the previous secret stays valid after a reload changed it */
    char **domains;
    size_t ndomains;
    kl_conf_listen_t *listen;
    size_t nlisten;
    kl_conf_admin_t admin;
    kl_conf_admission_t admission;
    kl_conf_transport_t transport;
    kl_conf_route_t *routes;
    size_t nroutes;
    kl_conf_cluster_t *clusters;
    size_t nclusters;

    /* Each module's private conf, by index in kl_modules[]; NULL where the
     * module's section is absent and it has no defaults. */
    void *mod_conf[KL_MAX_MODULES];
} kl_conf_t;

#endif
