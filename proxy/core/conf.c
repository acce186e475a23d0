/* The configuration snapshot: loading (libyaml document API + the key
 * tables below), validation across keys, reference counting. */
#include "core/conf.h"

#include "core/cfg.h"
#include "core/errors.h"
#include "core/module.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONF_MAX_FILE (1024 * 1024)

static _Atomic uint64_t conf_versions;

static const char *const log_levels[] = {"err", "warn", "notice", "info", "debug", NULL};
static const char *const transports[] = {"udp", "tcp", "tls", "ws", NULL};

static int *int_list(const int *v, size_t n)
{
    int *l = malloc(n * sizeof(int));

    if (l != NULL)
        memcpy(l, v, n * sizeof(int));
    return l;
}

/* ---- destinations: sip:host[:port][;params] ---- */

static int parse_dest_uri(kl_conf_dest_t *d)
{
    const char *s = d->uri, *h, *e;
    char host[256];
    size_t hl;
    bool sips = false;
    unsigned long port = 0;
    unsigned char buf[16];

    if (strncasecmp(s, "sips:", 5) == 0) {
        s += 5;
        sips = true;
    } else if (strncasecmp(s, "sip:", 4) == 0) {
        s += 4;
    } else {
        return KL_EINVAL;
    }
    if (strchr(s, '@') != NULL)
        return KL_EINVAL;
    if (*s == '[') {
        h = ++s;
        e = strchr(s, ']');
        if (e == NULL)
            return KL_EINVAL;
        hl = (size_t)(e - h);
        s = e + 1;
    } else {
        h = s;
        while (*s != '\0' && *s != ':' && *s != ';')
            s++;
        hl = (size_t)(s - h);
    }
    if (hl == 0 || hl >= sizeof(host))
        return KL_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    for (size_t i = 0; i < hl; i++) {
        char c = host[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':'))
            return KL_EINVAL;
    }
    if (*s == ':') {
        char *end;

        s++;
        if (*s < '0' || *s > '9')
            return KL_EINVAL;
        port = strtoul(s, &end, 10);
        if (port == 0 || port > 65535 || (*end != '\0' && *end != ';'))
            return KL_EINVAL;
        s = end;
    }
    d->transport = sips ? KL_TP_TLS : KL_TP_UDP;
    while (*s == ';') {
        const char *p = ++s;

        while (*s != '\0' && *s != ';')
            s++;
        if ((size_t)(s - p) > 10 && strncasecmp(p, "transport=", 10) == 0) {
            const char *t = p + 10;
            size_t tl = (size_t)(s - t);
            int k = -1;

            for (int i = 0; transports[i] != NULL; i++) {
                if (strlen(transports[i]) == tl && strncasecmp(t, transports[i], tl) == 0)
                    k = i;
            }
            if (k < 0)
                return KL_EINVAL;
            d->transport = (kl_tp_kind_t)k;
            d->transport_set = true;
        }
    }
    if (*s != '\0')
        return KL_EINVAL;
    d->host = strdup(host);
    d->port = (uint16_t)port;
    d->host_is_ip = inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
    if (!d->host_is_ip && strchr(host, ':') != NULL)
        return KL_EINVAL;
    return d->host != NULL ? KL_OK : KL_ENOMEM;
}

static int dest_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *elem)
{
    kl_conf_dest_t *d = elem;

    if (d->uri == NULL)
        return kl_cfg_error(ctx, node, ".uri", "a destination needs a uri");
    if (parse_dest_uri(d) != KL_OK)
        return kl_cfg_error(ctx, kl_cfg_map_get(ctx, node, "uri"), ".uri",
                            "expected sip:host[:port][;transport=udp|tcp|tls|ws] or sips:..., "
                            "got '%s'",
                            d->uri);
    return KL_OK;
}

/* duplicates by a string field, reported at the later element's key */
static int seq_unique(kl_cfg_ctx_t *ctx, yaml_node_t *seq, void *arr, size_t n, size_t size,
                      size_t off, const char *key, const char *what)
{
    int rc = KL_OK;

    for (size_t i = 0; i < n; i++) {
        const char *a = *(char **)((char *)arr + i * size + off);

        for (size_t j = 0; a != NULL && j < i; j++) {
            const char *b = *(char **)((char *)arr + j * size + off);

            if (b != NULL && strcasecmp(a, b) == 0) {
                yaml_node_t *el =
                    yaml_document_get_node(ctx->doc, seq->data.sequence.items.start[i]);
                char suffix[64];

                snprintf(suffix, sizeof(suffix), "[%zu].%s", i, key);
                rc = kl_cfg_error(ctx, kl_cfg_map_get(ctx, el, key), suffix,
                                  "duplicate %s '%s' (also entry %zu)", what, a, j);
                break;
            }
        }
    }
    return rc;
}

static int dests_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *arr, size_t n)
{
    return seq_unique(ctx, node, arr, n, sizeof(kl_conf_dest_t), offsetof(kl_conf_dest_t, uri),
                      "uri", "destination");
}

static int zones_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *arr, size_t n)
{
    return seq_unique(ctx, node, arr, n, sizeof(kl_conf_zone_t), offsetof(kl_conf_zone_t, name),
                      "name", "zone");
}

static int clusters_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *arr, size_t n)
{
    return seq_unique(ctx, node, arr, n, sizeof(kl_conf_cluster_t),
                      offsetof(kl_conf_cluster_t, name), "name", "cluster");
}

static void dest_init(void *elem)
{
    kl_conf_dest_t *d = elem;

    d->weight = 1;
}

static void zone_init(void *elem)
{
    kl_conf_zone_t *z = elem;

    z->weight = 1;
}

static void cluster_init(void *elem)
{
    static const int codes[] = {408, 500, 503, 504};
    static const int accept[] = {200, 404, 405, 483};
    kl_conf_cluster_t *c = elem;

    c->failover.max_attempts = 3;
    c->failover.attempt_timeout = 2000;
    c->failover.ring_timeout = 120000;
    c->failover.codes = int_list(codes, 4);
    c->failover.ncodes = c->failover.codes ? 4 : 0;
    c->retry_budget.percent = 20;
    c->retry_budget.min = 3;
    c->health.enabled = true;
    c->health.interval = 5000;
    c->health.timeout = 2000;
    c->health.rise = 2;
    c->health.fall = 3;
    c->health.accept = int_list(accept, 4);
    c->health.naccept = c->health.accept ? 4 : 0;
    c->outlier.consecutive_failures = 5;
    c->outlier.failure_percent = 50;
    c->outlier.min_requests = 20;
    c->outlier.interval = 10000;
    c->outlier.base_ejection = 30000;
    c->outlier.max_ejection = 300000;
    c->outlier.max_ejected_percent = 50;
    c->slow_start.window = 30000;
    c->slow_start.aggression = 1.0;
    c->slow_start.min_weight_percent = 10;
}

static int cluster_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *elem)
{
    kl_conf_cluster_t *c = elem;
    yaml_node_t *h = kl_cfg_map_get(ctx, node, "health");
    yaml_node_t *o = kl_cfg_map_get(ctx, node, "outlier");
    int rc = KL_OK;

    if (c->name == NULL)
        rc = kl_cfg_error(ctx, node, ".name", "a cluster needs a name");
    if (c->nzones == 0)
        rc = kl_cfg_error(ctx, node, ".zones", "a cluster needs at least one zone");
    if (c->health.timeout >= c->health.interval)
        rc = kl_cfg_error(ctx, h != NULL ? kl_cfg_map_get(ctx, h, "timeout") : node,
                          ".health.timeout", "must be below health.interval (%ums)",
                          c->health.interval);
    if (c->outlier.base_ejection > c->outlier.max_ejection)
        rc = kl_cfg_error(ctx, o != NULL ? kl_cfg_map_get(ctx, o, "base_ejection") : node,
                          ".outlier.base_ejection", "must not exceed outlier.max_ejection (%ums)",
                          c->outlier.max_ejection);
    for (size_t i = 0; i < c->nzones; i++) {
        if (c->zones[i].name == NULL)
            rc = kl_cfg_error(ctx, node, ".zones", "zone %zu has no name", i);
        else if (c->zones[i].ndests == 0)
            rc = kl_cfg_error(ctx, node, ".zones", "zone '%s' has no destinations",
                              c->zones[i].name);
    }
    return rc;
}

static int route_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *elem)
{
    kl_conf_route_t *r = elem;

    if (r->cluster_name == NULL)
        return kl_cfg_error(ctx, node, ".cluster", "a route needs a cluster");
    return KL_OK;
}

static int listen_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *elem)
{
    kl_conf_listen_t *l = elem;
    unsigned char buf[16];

    if (l->address == NULL ||
        (inet_pton(AF_INET, l->address, buf) != 1 && inet_pton(AF_INET6, l->address, buf) != 1))
        return kl_cfg_error(ctx, kl_cfg_map_get(ctx, node, "address") ?: node, ".address",
                            "expected a numeric IPv4 or IPv6 address, got '%s'",
                            l->address != NULL ? l->address : "");
    if (l->port == 0)
        return kl_cfg_error(ctx, node, ".port", "a listener needs a port (1..65535)");
    if (l->transport == KL_TP_TLS || l->transport == KL_TP_WS)
        return kl_cfg_error(ctx, kl_cfg_map_get(ctx, node, "transport"), ".transport",
                            "transport %s is not available yet (udp, tcp)",
                            l->transport == KL_TP_TLS ? "tls" : "ws");
    return KL_OK;
}

/* ---- tables ---- */

static int methods_upper(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *field);

#define F(type, field) offsetof(type, field)

static const kl_cfg_key_t methods_key[] = {{.name = "method",
                                            .type = KL_CFG_STRLIST,
                                            .off = F(kl_conf_match_t, methods),
                                            .count_off = F(kl_conf_match_t, nmethods)},
                                           {0}};

static const kl_cfg_key_t node_keys[] = {
    {.name = "id", .type = KL_CFG_STR, .off = F(kl_conf_t, node_id)},
    {.name = "zone", .type = KL_CFG_STR, .off = F(kl_conf_t, node_zone)},
    {0},
};
static const kl_cfg_key_t log_keys[] = {
    {.name = "level", .type = KL_CFG_ENUM, .off = F(kl_conf_t, log_level), .enums = log_levels},
    {0},
};
static const kl_cfg_key_t listen_keys[] = {
    {.name = "transport",
     .type = KL_CFG_ENUM,
     .off = F(kl_conf_listen_t, transport),
     .enums = transports},
    {.name = "address", .type = KL_CFG_STR, .off = F(kl_conf_listen_t, address)},
    {.name = "port",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_listen_t, port),
     .min = 1,
     .max = 65535,
     .width = sizeof(uint16_t)},
    {0},
};
static const kl_cfg_key_t admin_keys[] = {
    {.name = "address", .type = KL_CFG_STR, .off = F(kl_conf_admin_t, address)},
    {.name = "port",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_admin_t, port),
     .min = 1,
     .max = 65535,
     .width = sizeof(uint16_t)},
    {.name = "token", .type = KL_CFG_STR, .off = F(kl_conf_admin_t, token)},
    {.name = "faults", .type = KL_CFG_BOOL, .off = F(kl_conf_admin_t, faults)},
    {0},
};
static const kl_cfg_key_t per_source_keys[] = {
    {.name = "rate",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_admission_t, per_source_rate),
     .max = 10000000},
    {.name = "burst",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_admission_t, per_source_burst),
     .max = 10000000},
    {0},
};
static const kl_cfg_key_t emergency_keys[] = {
    {.name = "numbers",
     .type = KL_CFG_STRLIST,
     .off = F(kl_conf_admission_t, emergency_numbers),
     .count_off = F(kl_conf_admission_t, nemergency_numbers)},
    {0},
};
static const kl_cfg_key_t admission_keys[] = {
    {.name = "new_calls_per_s",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_admission_t, new_calls_per_s),
     .max = 10000000},
    {.name = "per_source", .type = KL_CFG_MAP, .off = 0, .sub = per_source_keys},
    {.name = "scanner_user_agents",
     .type = KL_CFG_STRLIST,
     .off = F(kl_conf_admission_t, scanner_user_agents),
     .count_off = F(kl_conf_admission_t, nscanner_user_agents)},
    {.name = "emergency", .type = KL_CFG_MAP, .off = 0, .sub = emergency_keys},
    {.name = "max_cpu_percent",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_admission_t, max_cpu_percent),
     .max = 100},
    {0},
};
static const kl_cfg_key_t transport_keys[] = {
    {.name = "max_message_size",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_transport_t, max_message_size),
     .min = 1024,
     .max = 1048576},
    {.name = "max_connections",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_transport_t, max_connections),
     .min = 1,
     .max = 1000000},
    {.name = "header_timeout",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_transport_t, header_timeout),
     .min = 100,
     .max = 3600000},
    {.name = "idle_timeout",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_transport_t, idle_timeout),
     .min = 1000,
     .max = 86400000},
    {0},
};
static const kl_cfg_key_t match_keys[] = {
    {.name = "method", .type = KL_CFG_CUSTOM, .off = 0, .custom = methods_upper},
    {.name = "user_prefix", .type = KL_CFG_STR, .off = F(kl_conf_match_t, user_prefix)},
    {.name = "domain", .type = KL_CFG_STR, .off = F(kl_conf_match_t, domain)},
    {0},
};
static const kl_cfg_key_t route_keys[] = {
    {.name = "match", .type = KL_CFG_MAP, .off = F(kl_conf_route_t, match), .sub = match_keys},
    {.name = "cluster", .type = KL_CFG_STR, .off = F(kl_conf_route_t, cluster_name)},
    {0},
};
static const kl_cfg_key_t failover_keys[] = {
    {.name = "max_attempts",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_failover_t, max_attempts),
     .min = 1,
     .max = 10},
    {.name = "attempt_timeout",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_failover_t, attempt_timeout),
     .min = 50,
     .max = 300000},
    {.name = "ring_timeout",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_failover_t, ring_timeout),
     .min = 1000,
     .max = 3600000},
    {.name = "codes",
     .type = KL_CFG_INTLIST,
     .off = F(kl_conf_failover_t, codes),
     .min = 300,
     .max = 699,
     .count_off = F(kl_conf_failover_t, ncodes)},
    {0},
};
static const kl_cfg_key_t retry_keys[] = {
    {.name = "percent", .type = KL_CFG_UINT, .off = F(kl_conf_retry_budget_t, percent), .max = 100},
    {.name = "min", .type = KL_CFG_UINT, .off = F(kl_conf_retry_budget_t, min), .max = 100000},
    {0},
};
static const kl_cfg_key_t health_keys[] = {
    {.name = "enabled", .type = KL_CFG_BOOL, .off = F(kl_conf_health_t, enabled)},
    {.name = "interval",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_health_t, interval),
     .min = 100,
     .max = 3600000},
    {.name = "timeout",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_health_t, timeout),
     .min = 50,
     .max = 3600000},
    {.name = "rise", .type = KL_CFG_UINT, .off = F(kl_conf_health_t, rise), .min = 1, .max = 100},
    {.name = "fall", .type = KL_CFG_UINT, .off = F(kl_conf_health_t, fall), .min = 1, .max = 100},
    {.name = "accept",
     .type = KL_CFG_INTLIST,
     .off = F(kl_conf_health_t, accept),
     .min = 100,
     .max = 699,
     .count_off = F(kl_conf_health_t, naccept)},
    {0},
};
static const kl_cfg_key_t outlier_keys[] = {
    {.name = "consecutive_failures",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_outlier_t, consecutive_failures),
     .min = 1,
     .max = 100000},
    {.name = "failure_percent",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_outlier_t, failure_percent),
     .min = 1,
     .max = 100},
    {.name = "min_requests",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_outlier_t, min_requests),
     .max = 1000000},
    {.name = "interval",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_outlier_t, interval),
     .min = 100,
     .max = 3600000},
    {.name = "base_ejection",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_outlier_t, base_ejection),
     .min = 100,
     .max = 86400000},
    {.name = "max_ejection",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_outlier_t, max_ejection),
     .min = 100,
     .max = 86400000},
    {.name = "max_ejected_percent",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_outlier_t, max_ejected_percent),
     .max = 100},
    {0},
};
static const kl_cfg_key_t slow_start_keys[] = {
    {.name = "window",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_slow_start_t, window),
     .min = 0,
     .max = 3600000},
    {.name = "aggression",
     .type = KL_CFG_DOUBLE,
     .off = F(kl_conf_slow_start_t, aggression),
     .dmin = 0,
     .dmax = 100},
    {.name = "min_weight_percent",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_slow_start_t, min_weight_percent),
     .max = 100},
    {0},
};
static const kl_cfg_key_t limits_keys[] = {
    {.name = "calls", .type = KL_CFG_UINT, .off = F(kl_conf_limits_t, calls), .max = 100000000},
    {.name = "chat", .type = KL_CFG_UINT, .off = F(kl_conf_limits_t, chat), .max = 100000000},
    {.name = "other", .type = KL_CFG_UINT, .off = F(kl_conf_limits_t, other), .max = 100000000},
    {.name = "transactions",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_limits_t, transactions),
     .max = 100000000},
    {.name = "lookups", .type = KL_CFG_UINT, .off = F(kl_conf_limits_t, lookups), .max = 100000000},
    {0},
};
static const kl_cfg_key_t dest_keys[] = {
    {.name = "uri", .type = KL_CFG_STR, .off = F(kl_conf_dest_t, uri)},
    {.name = "weight",
     .type = KL_CFG_UINT,
     .off = F(kl_conf_dest_t, weight),
     .min = 1,
     .max = 1000000},
    {0},
};
static const kl_cfg_key_t zone_keys[] = {
    {.name = "name", .type = KL_CFG_STR, .off = F(kl_conf_zone_t, name)},
    {.name = "weight", .type = KL_CFG_UINT, .off = F(kl_conf_zone_t, weight), .max = 1000000},
    {.name = "limits", .type = KL_CFG_MAP, .off = F(kl_conf_zone_t, limits), .sub = limits_keys},
    {.name = "destinations",
     .type = KL_CFG_SEQ,
     .off = F(kl_conf_zone_t, dests),
     .sub = dest_keys,
     .elem_size = sizeof(kl_conf_dest_t),
     .count_off = F(kl_conf_zone_t, ndests),
     .init = dest_init,
     .custom = dest_post,
     .seq_post = dests_post},
    {0},
};
static const kl_cfg_key_t cluster_keys[] = {
    {.name = "name", .type = KL_CFG_STR, .off = F(kl_conf_cluster_t, name)},
    {.name = "prefer_local", .type = KL_CFG_BOOL, .off = F(kl_conf_cluster_t, prefer_local)},
    {.name = "failover",
     .type = KL_CFG_MAP,
     .off = F(kl_conf_cluster_t, failover),
     .sub = failover_keys},
    {.name = "retry_budget",
     .type = KL_CFG_MAP,
     .off = F(kl_conf_cluster_t, retry_budget),
     .sub = retry_keys},
    {.name = "health", .type = KL_CFG_MAP, .off = F(kl_conf_cluster_t, health), .sub = health_keys},
    {.name = "outlier",
     .type = KL_CFG_MAP,
     .off = F(kl_conf_cluster_t, outlier),
     .sub = outlier_keys},
    {.name = "slow_start",
     .type = KL_CFG_MAP,
     .off = F(kl_conf_cluster_t, slow_start),
     .sub = slow_start_keys},
    {.name = "zones",
     .type = KL_CFG_SEQ,
     .off = F(kl_conf_cluster_t, zones),
     .sub = zone_keys,
     .elem_size = sizeof(kl_conf_zone_t),
     .count_off = F(kl_conf_cluster_t, nzones),
     .init = zone_init,
     .seq_post = zones_post},
    {0},
};
static const kl_cfg_key_t top_keys[] = {
    {.name = "node", .type = KL_CFG_MAP, .off = 0, .sub = node_keys},
    {.name = "workers", .type = KL_CFG_UINT, .off = F(kl_conf_t, workers), .min = 1, .max = 64},
    {.name = "log", .type = KL_CFG_MAP, .off = 0, .sub = log_keys},
    {.name = "cookie_secret", .type = KL_CFG_STR, .off = F(kl_conf_t, cookie_secret)},
    {.name = "cookie_secret_grace",
     .type = KL_CFG_DURATION,
     .off = F(kl_conf_t, cookie_grace),
     .min = 0,
     .max = 7 * 24 * 3600000},
    {.name = "domains",
     .type = KL_CFG_STRLIST,
     .off = F(kl_conf_t, domains),
     .count_off = F(kl_conf_t, ndomains)},
    {.name = "listen",
     .type = KL_CFG_SEQ,
     .off = F(kl_conf_t, listen),
     .sub = listen_keys,
     .elem_size = sizeof(kl_conf_listen_t),
     .count_off = F(kl_conf_t, nlisten),
     .custom = listen_post},
    {.name = "admin", .type = KL_CFG_MAP, .off = F(kl_conf_t, admin), .sub = admin_keys},
    {.name = "admission",
     .type = KL_CFG_MAP,
     .off = F(kl_conf_t, admission),
     .sub = admission_keys},
    {.name = "transport",
     .type = KL_CFG_MAP,
     .off = F(kl_conf_t, transport),
     .sub = transport_keys},
    {.name = "routes",
     .type = KL_CFG_SEQ,
     .off = F(kl_conf_t, routes),
     .sub = route_keys,
     .elem_size = sizeof(kl_conf_route_t),
     .count_off = F(kl_conf_t, nroutes),
     .custom = route_post},
    {.name = "clusters",
     .type = KL_CFG_SEQ,
     .off = F(kl_conf_t, clusters),
     .sub = cluster_keys,
     .elem_size = sizeof(kl_conf_cluster_t),
     .count_off = F(kl_conf_t, nclusters),
     .init = cluster_init,
     .custom = cluster_post,
     .seq_post = clusters_post},
    {.name = "dns", .type = KL_CFG_ELSEWHERE},
    {0},
};

static int methods_upper(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *field)
{
    kl_conf_match_t *m = field;
    int rc = KL_OK;

    if (node->type == YAML_SCALAR_NODE) {
        /* a single method is accepted as a one-item list */
        m->methods = calloc(1, sizeof(char *));
        if (m->methods == NULL)
            return kl_cfg_error(ctx, node, NULL, "out of memory");
        m->methods[0] = strdup((const char *)node->data.scalar.value);
        m->nmethods = m->methods[0] != NULL ? 1 : 0;
    } else {
        rc = kl_cfg_parse_list(ctx, node, methods_key, m);
    }
    for (size_t i = 0; rc == KL_OK && i < m->nmethods; i++) {
        if (m->methods[i][0] == '\0')
            return kl_cfg_error(ctx, node, NULL, "an empty method name");
        for (char *p = m->methods[i]; *p; p++) {
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
            else if (!((*p >= 'A' && *p <= 'Z') || *p == '-'))
                return kl_cfg_error(ctx, node, NULL, "'%s' is not a SIP method name",
                                    m->methods[i]);
        }
    }
    return rc;
}

/* ---- load ---- */

static void conf_defaults(kl_conf_t *c)
{
    c->workers = 1;
    c->cookie_grace = 4 * 3600000; /* 4h */
    c->admission.max_cpu_percent = 90;
    c->log_level = 3; /* info */
    c->transport.max_message_size = 65536;
    c->transport.max_connections = 4096;
    c->transport.header_timeout = 10000;
    c->transport.idle_timeout = 300000;
}

static void conf_free(kl_conf_t *c)
{
    if (c == NULL)
        return;
    for (int i = 0; kl_modules[i] != NULL && i < KL_MAX_MODULES; i++) {
        if (c->mod_conf[i] != NULL && kl_modules[i]->conf_free != NULL)
            kl_modules[i]->conf_free(c->mod_conf[i]);
    }
    for (size_t i = 0; c->routes != NULL && i < c->nroutes; i++)
        kl_cfg_free(methods_key, &c->routes[i].match);
    for (size_t i = 0; i < c->nclusters; i++) {
        for (size_t z = 0; z < c->clusters[i].nzones; z++) {
            for (size_t d = 0; d < c->clusters[i].zones[z].ndests; d++)
                free(c->clusters[i].zones[z].dests[d].host);
        }
    }
    kl_cfg_free(top_keys, c);
    free(c->file);
    free(c);
}

static void conf_validate(kl_cfg_ctx_t *ctx, yaml_node_t *root, kl_conf_t *c)
{
    yaml_node_t *routes = kl_cfg_map_get(ctx, root, "routes");

    if (c->nlisten == 0)
        kl_cfg_error(ctx, root, "listen", "at least one listener is needed");
    /* an admin section turns the admin listener on: loopback:9090 unless said */
    if (kl_cfg_map_get(ctx, root, "admin") != NULL) {
        if (c->admin.address == NULL)
            c->admin.address = strdup("127.0.0.1");
        if (c->admin.port == 0)
            c->admin.port = 9090;
    }
    if (c->admin.address != NULL && c->admin.address[0] != '\0') {
        unsigned char probe[16];

        if (inet_pton(AF_INET, c->admin.address, probe) != 1 &&
            inet_pton(AF_INET6, c->admin.address, probe) != 1)
            kl_cfg_error(ctx, kl_cfg_map_get(ctx, kl_cfg_map_get(ctx, root, "admin"), "address"),
                         "admin.address", "expected a numeric IPv4 or IPv6 address, got '%s'",
                         c->admin.address);
    }
    if (c->nclusters == 0)
        kl_cfg_error(ctx, root, "clusters", "no clusters: keel would have nowhere to route");
    if (c->cookie_secret == NULL || strlen(c->cookie_secret) < 16)
        kl_cfg_error(ctx, kl_cfg_map_get(ctx, root, "cookie_secret") ?: root, "cookie_secret",
                     "a secret of at least 16 bytes is needed to sign Record-Route cookies");
    for (size_t i = 0; i < c->nlisten; i++) {
        for (size_t j = 0; j < i; j++) {
            if (c->listen[i].transport == c->listen[j].transport &&
                c->listen[i].port == c->listen[j].port && c->listen[i].address &&
                c->listen[j].address && strcmp(c->listen[i].address, c->listen[j].address) == 0) {
                char sfx[32];

                snprintf(sfx, sizeof(sfx), "[%zu]", i);
                kl_cfg_error(ctx, kl_cfg_map_get(ctx, root, "listen"), sfx,
                             "duplicate listener (same as listen[%zu])", j);
            }
        }
    }
    for (size_t i = 0; i < c->nroutes; i++) {
        kl_conf_route_t *r = &c->routes[i];
        const kl_conf_cluster_t *cl = r->cluster_name ? kl_conf_cluster(c, r->cluster_name) : NULL;

        if (r->cluster_name != NULL && cl == NULL) {
            yaml_node_t *el =
                routes ? yaml_document_get_node(ctx->doc, routes->data.sequence.items.start[i])
                       : NULL;
            char sfx[48];

            snprintf(sfx, sizeof(sfx), "routes[%zu].cluster", i);
            kl_cfg_error(ctx, el ? kl_cfg_map_get(ctx, el, "cluster") : root, sfx,
                         "no cluster named '%s'", r->cluster_name);
        } else if (cl != NULL) {
            r->cluster = (size_t)(cl - c->clusters);
        }
    }
    if (c->node_zone != NULL && c->nclusters > 0) {
        bool found = false;

        for (size_t i = 0; i < c->nclusters && !found; i++)
            found = kl_conf_zone(&c->clusters[i], c->node_zone) != NULL;
        if (!found) {
            yaml_node_t *n = kl_cfg_map_get(ctx, root, "node");

            kl_cfg_error(ctx, n ? kl_cfg_map_get(ctx, n, "zone") : root, "node.zone",
                         "no cluster has a zone named '%s'", c->node_zone);
        }
    }
}

kl_conf_t *kl_conf_load_buf(const char *name, const char *buf, size_t len, kl_cfg_errs_t *errs)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    kl_cfg_ctx_t ctx;
    yaml_node_t *root;
    kl_conf_t *c = NULL;
    bool have_doc = false;

    memset(errs, 0, sizeof(*errs));
    memset(&ctx, 0, sizeof(ctx));
    ctx.file = name;
    ctx.errs = errs;
    ctx.doc = &doc;
    if (!yaml_parser_initialize(&parser)) {
        kl_cfg_error(&ctx, NULL, NULL, "cannot initialise the YAML parser");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        kl_cfg_err_t *e = &errs->e[0];

        errs->n = 1;
        memset(e, 0, sizeof(*e));
        snprintf(e->file, sizeof(e->file), "%s", name);
        e->line = (int)parser.problem_mark.line + 1;
        e->col = (int)parser.problem_mark.column + 1;
        snprintf(e->msg, sizeof(e->msg), "YAML syntax error: %s%s%s",
                 parser.problem ? parser.problem : "unknown", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        goto out;
    }
    have_doc = true;
    root = yaml_document_get_root_node(&doc);
    if (root == NULL) {
        kl_cfg_error(&ctx, NULL, NULL,
                     "the file is empty: keel needs at least listen and "
                     "clusters");
        goto out;
    }
    if (root->type != YAML_MAPPING_NODE) {
        kl_cfg_error(&ctx, root, NULL, "expected a map of sections at the top");
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    conf_defaults(c);
    {
        /* module sections are keys too: let the walker accept them */
        kl_cfg_key_t keys[sizeof(top_keys) / sizeof(top_keys[0]) + KL_MAX_MODULES];
        size_t n = 0;

        for (const kl_cfg_key_t *k = top_keys; k->name != NULL; k++)
            keys[n++] = *k;
        for (int i = 0; kl_modules[i] != NULL && i < KL_MAX_MODULES; i++) {
            bool dup = false;

            for (size_t j = 0; j < n; j++)
                dup = dup || strcmp(keys[j].name, kl_modules[i]->name) == 0;
            if (!dup)
                keys[n++] = (kl_cfg_key_t){.name = kl_modules[i]->name, .type = KL_CFG_ELSEWHERE};
        }
        keys[n] = (kl_cfg_key_t){0};
        kl_cfg_parse_map(&ctx, root, keys, c);
    }
    for (int i = 0; kl_modules[i] != NULL && i < KL_MAX_MODULES; i++) {
        yaml_node_t *sec = kl_cfg_map_get(&ctx, root, kl_modules[i]->name);

        if (kl_modules[i]->conf_parse == NULL)
            continue;
        snprintf(ctx.path, sizeof(ctx.path), "%s", kl_modules[i]->name);
        kl_modules[i]->conf_parse(&ctx, sec, &c->mod_conf[i]);
        ctx.path[0] = '\0';
    }
    if (errs->n == 0)
        conf_validate(&ctx, root, c);
    if (errs->n == 0 && c->nroutes == 0) {
        /* no routes: everything goes to the first cluster */
        c->routes = calloc(1, sizeof(*c->routes));
        if (c->routes != NULL) {
            c->routes[0].cluster_name = strdup(c->clusters[0].name);
            c->routes[0].cluster = 0;
            c->nroutes = 1;
        }
    }
    if (errs->n == 0 && c->node_id == NULL)
        c->node_id = strdup("keel");
out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (errs->n > 0 || c == NULL) {
        if (errs->n == 0)
            kl_cfg_error(&ctx, NULL, NULL, "out of memory");
        conf_free(c);
        return NULL;
    }
    c->file = strdup(name);
    c->version = ++conf_versions;
    atomic_init(&c->refs, 1);
    return c;
}

kl_conf_t *kl_conf_load(const char *path, kl_cfg_errs_t *errs)
{
    FILE *fp = fopen(path, "rb");
    char *buf;
    long len;
    kl_conf_t *c;

    memset(errs, 0, sizeof(*errs));
    if (fp == NULL) {
        errs->n = 1;
        snprintf(errs->e[0].file, sizeof(errs->e[0].file), "%s", path);
        snprintf(errs->e[0].msg, sizeof(errs->e[0].msg), "cannot open: %s", strerror(errno));
        return NULL;
    }
    fseek(fp, 0, SEEK_END);
    len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    if (len < 0 || len > CONF_MAX_FILE) {
        fclose(fp);
        errs->n = 1;
        snprintf(errs->e[0].file, sizeof(errs->e[0].file), "%s", path);
        snprintf(errs->e[0].msg, sizeof(errs->e[0].msg), "the file is larger than 1 MiB");
        return NULL;
    }
    buf = malloc((size_t)len + 1);
    if (buf == NULL || fread(buf, 1, (size_t)len, fp) != (size_t)len) {
        free(buf);
        fclose(fp);
        errs->n = 1;
        snprintf(errs->e[0].file, sizeof(errs->e[0].file), "%s", path);
        snprintf(errs->e[0].msg, sizeof(errs->e[0].msg), "cannot read the file");
        return NULL;
    }
    fclose(fp);
    buf[len] = '\0';
    c = kl_conf_load_buf(path, buf, (size_t)len, errs);
    free(buf);
    return c;
}

const kl_conf_t *kl_conf_ref(const kl_conf_t *conf)
{
    if (conf != NULL)
        atomic_fetch_add(&((kl_conf_t *)conf)->refs, 1);
    return conf;
}

void kl_conf_unref(const kl_conf_t *conf)
{
    if (conf != NULL && atomic_fetch_sub(&((kl_conf_t *)conf)->refs, 1) == 1)
        conf_free((kl_conf_t *)conf);
}

int kl_cfg_err_format(const kl_cfg_err_t *e, char *out, size_t outlen)
{
    if (e->line > 0)
        return snprintf(out, outlen, "%s:%d:%d: %s%s%s", e->file, e->line, e->col, e->key,
                        e->key[0] ? ": " : "", e->msg);
    return snprintf(out, outlen, "%s: %s%s%s", e->file, e->key, e->key[0] ? ": " : "", e->msg);
}

void kl_cfg_errs_print(const kl_cfg_errs_t *errs, FILE *fp)
{
    char line[1200];

    for (int i = 0; i < errs->n && i < KL_CFG_MAX_ERRS; i++) {
        kl_cfg_err_format(&errs->e[i], line, sizeof(line));
        fprintf(fp, "%s\n", line);
    }
    if (errs->n > KL_CFG_MAX_ERRS)
        fprintf(fp, "... and %d more errors\n", errs->n - KL_CFG_MAX_ERRS);
}

const kl_conf_cluster_t *kl_conf_cluster(const kl_conf_t *conf, const char *name)
{
    for (size_t i = 0; i < conf->nclusters; i++) {
        if (conf->clusters[i].name != NULL && strcmp(conf->clusters[i].name, name) == 0)
            return &conf->clusters[i];
    }
    return NULL;
}

const kl_conf_zone_t *kl_conf_zone(const kl_conf_cluster_t *cl, const char *name)
{
    for (size_t i = 0; i < cl->nzones; i++) {
        if (cl->zones[i].name != NULL && strcmp(cl->zones[i].name, name) == 0)
            return &cl->zones[i];
    }
    return NULL;
}
