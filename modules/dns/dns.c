#include "modules/dns/dns.h"

#include "modules/dns/answer.h"
#include "modules/dns/resolver.h"

#include "core/cfg.h"
#include "core/conf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/module.h"
#include "core/stats.h"
#include "core/worker.h"
#include "upstream/router.h"

#include <event2/event.h>

#include <arpa/inet.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dns_server_parse(const char *s, kl_dns_server_t *out)
{
    unsigned char buf[16];
    const char *h = s, *colon = NULL;
    size_t hl;
    unsigned long port = 53;

    if (*s == '[') {
        const char *e = strchr(s, ']');

        if (e == NULL)
            return KL_EINVAL;
        h = s + 1;
        hl = (size_t)(e - h);
        if (e[1] == ':')
            colon = e + 1;
        else if (e[1] != '\0')
            return KL_EINVAL;
    } else {
        colon = strchr(s, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL)
            colon = NULL; /* a bare IPv6 address */
        hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
    }
    if (hl == 0 || hl >= sizeof(out->host))
        return KL_EINVAL;
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    if (inet_pton(AF_INET, out->host, buf) != 1 && inet_pton(AF_INET6, out->host, buf) != 1)
        return KL_EINVAL;
    if (colon != NULL) {
        char *end;

        if (colon[1] < '0' || colon[1] > '9')
            return KL_EINVAL;
        port = strtoul(colon + 1, &end, 10);
        if (*end != '\0' || port == 0 || port > 65535)
            return KL_EINVAL;
    }
    out->port = (uint16_t)port;
    return KL_OK;
}

static int dns_tier_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *elem)
{
    kl_dns_tier_t *t = elem;
    yaml_node_t *sn = kl_cfg_map_get(ctx, node, "servers");
    int rc = KL_OK;

    if (t->name == NULL)
        rc = kl_cfg_error(ctx, node, ".name", "a resolver tier needs a name");
    if (t->nservers == 0)
        return kl_cfg_error(ctx, sn != NULL ? sn : node, ".servers",
                            "a resolver tier needs at least one server");
    t->parsed = calloc(t->nservers, sizeof(*t->parsed));
    if (t->parsed == NULL)
        return kl_cfg_error(ctx, node, NULL, "out of memory");
    for (size_t i = 0; i < t->nservers; i++) {
        if (dns_server_parse(t->servers[i], &t->parsed[i]) != KL_OK) {
            char sfx[32];
            yaml_node_t *item =
                sn != NULL && sn->type == YAML_SEQUENCE_NODE
                    ? yaml_document_get_node(ctx->doc, sn->data.sequence.items.start[i])
                    : node;

            snprintf(sfx, sizeof(sfx), ".servers[%zu]", i);
            rc = kl_cfg_error(ctx, item, sfx,
                              "expected an IP address with an optional port (10.0.0.2:53, "
                              "[::1]:5353), got '%s'",
                              t->servers[i]);
        }
    }
    return rc;
}

static const kl_cfg_key_t tier_keys[] = {
    {.name = "name", .type = KL_CFG_STR, .off = offsetof(kl_dns_tier_t, name)},
    {.name = "servers",
     .type = KL_CFG_STRLIST,
     .off = offsetof(kl_dns_tier_t, servers),
     .count_off = offsetof(kl_dns_tier_t, nservers)},
    {0},
};

static const kl_cfg_key_t dns_keys[] = {
    {.name = "tiers",
     .type = KL_CFG_SEQ,
     .off = offsetof(kl_dns_conf_t, tiers),
     .sub = tier_keys,
     .elem_size = sizeof(kl_dns_tier_t),
     .count_off = offsetof(kl_dns_conf_t, ntiers),
     .custom = dns_tier_post},
    {.name = "timeout",
     .type = KL_CFG_DURATION,
     .off = offsetof(kl_dns_conf_t, timeout),
     .min = 10,
     .max = 60000},
    {.name = "hedge_after",
     .type = KL_CFG_DURATION,
     .off = offsetof(kl_dns_conf_t, hedge_after),
     .min = 0,
     .max = 60000},
    {.name = "max_fails",
     .type = KL_CFG_UINT,
     .off = offsetof(kl_dns_conf_t, max_fails),
     .min = 1,
     .max = 1000},
    {.name = "max_stale",
     .type = KL_CFG_DURATION,
     .off = offsetof(kl_dns_conf_t, max_stale),
     .min = 0,
     .max = 604800000},
    {0},
};

static void dns_conf_free(void *p)
{
    kl_dns_conf_t *c = p;

    if (c == NULL)
        return;
    for (size_t i = 0; i < c->ntiers; i++)
        free(c->tiers[i].parsed);
    kl_cfg_free(dns_keys, c);
    free(c);
}

static int dns_conf_parse(kl_cfg_ctx_t *ctx, yaml_node_t *node, void **out)
{
    kl_dns_conf_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return kl_cfg_error(ctx, node, NULL, "out of memory");
    c->timeout = 500;
    c->hedge_after = 150;
    c->max_fails = 2;
    c->max_stale = 3600000;
    if (node != NULL && kl_cfg_parse_map(ctx, node, dns_keys, c) != KL_OK) {
        dns_conf_free(c);
        return KL_EINVAL;
    }
    *out = c;
    return KL_OK;
}

/* ---- resolution of the configured names (RFC 3263) ----
 *
 * Requests never wait for DNS: like Envoy's strict DNS clusters, every name
 * a destination is given by is resolved in the background, refreshed ahead
 * of its TTL, and the targets are handed to the router, which picks among
 * them per request. A name that has no answer yet, or none at all
 * (NXDOMAIN), is not eligible and its requests fail over; when every
 * resolver fails, the last answer is served stale (RFC 8767) for max_stale.
 */

#define DNS_TICK_MS      100
#define DNS_MAX_TARGETS  32
#define DNS_TTL_MIN      5     /* s */
#define DNS_TTL_MAX      3600  /* s */
#define DNS_NEG_DEFAULT  30    /* s, a negative answer without SOA */
#define DNS_STALE_TTL_MS 30000 /* RFC 8767: a stale answer's TTL, and the refresh retry */
#define DNS_RETRY_MS     2000  /* refresh retry while the answer is still fresh */

typedef struct dns_name dns_name_t;
typedef struct dns_job dns_job_t;

struct dns_name {
    dns_name_t *next;
    char zone[64];
    char uri[256];
    char host[256];
    uint16_t port;
    kl_tp_kind_t tp;
    bool tp_set;
    kl_dns_target_t t[DNS_MAX_TARGETS];
    char thost[DNS_MAX_TARGETS][256]; /* the host name each target's address came from */
    size_t nt;
    bool have;    /* an answer (positive or negative) is known */
    bool stale;   /* served past its expiry */
    bool pushed;  /* the router has the current targets */
    bool in_conf; /* mark and sweep at reload */
    uint64_t expires_ms, next_ms;
    dns_job_t *job;
};

struct dns_job {
    dns_name_t *n;
    struct kl_dns *d;
    unsigned pending;
    bool failed;
    bool negative;
    uint32_t min_ttl, neg_ttl;
    kl_dns_target_t t[DNS_MAX_TARGETS];
    char thost[DNS_MAX_TARGETS][256];
    size_t nt;
    bool kept;        /* some targets were carried over from the last answer (a lookup failed) */
    unsigned answers; /* queries of this job a resolver answered */
};

typedef enum { STEP_NAPTR, STEP_SRV, STEP_A, STEP_AAAA } step_t;

typedef struct dns_q {
    dns_job_t *job;
    step_t step;
    char qname[256];
    kl_tp_kind_t tp;
    uint16_t port, prio, weight;
    int fallback; /* SRV without NAPTR: 0 none, 1 then _sip._tcp, 2 then A */
} dns_q_t;

typedef struct kl_dns {
    kl_worker_t *w;
    const kl_dns_conf_t *conf;
    kl_resolvers_t *res;
    dns_name_t *names;
    struct event *tick;
    uint64_t last_res_tick;
} kl_dns_t;

static int dns_mod_index(void)
{
    static int idx = -2;

    if (idx == -2)
        idx = kl_module_index("dns");
    return idx;
}

static uint32_t clamp_ttl(uint32_t s)
{
    return s < DNS_TTL_MIN ? DNS_TTL_MIN : s > DNS_TTL_MAX ? DNS_TTL_MAX : s;
}

static void job_query(dns_job_t *j, step_t step, const char *qname, kl_tp_kind_t tp, uint16_t port,
                      uint16_t prio, uint16_t weight, int fallback);

static void name_push(kl_dns_t *d, dns_name_t *n, uint64_t now_ms)
{
    if (d->w->router == NULL)
        return;
    n->pushed = kl_router_set_targets(d->w->router, n->zone, n->uri, n->t, n->nt, n->stale,
                                      now_ms) == KL_OK;
}

static void job_done(dns_job_t *j)
{
    kl_dns_t *d = j->d;
    dns_name_t *n = j->n;
    uint64_t now = kl_now_ms();

    n->job = NULL;
    if (j->nt > 0 && (j->answers > 0 || !j->kept)) {
        uint32_t ttl = clamp_ttl(j->min_ttl);

        memcpy(n->t, j->t, j->nt * sizeof(j->t[0]));
        memcpy(n->thost, j->thost, j->nt * sizeof(j->thost[0]));
        n->nt = j->nt;
        if (j->kept && j->min_ttl > DNS_STALE_TTL_MS / 1000)
            j->min_ttl = DNS_STALE_TTL_MS / 1000; /* retry the failed part sooner */
        n->have = true;
        n->stale = false;
        n->expires_ms = now + (uint64_t)ttl * 1000;
        n->next_ms = now + (uint64_t)ttl * 800; /* refresh ahead of expiry */
        name_push(d, n, now);
    } else if (!j->failed) {
        /* NXDOMAIN or no usable records: cached per the SOA minimum */
        uint32_t neg = clamp_ttl(j->neg_ttl > 0 ? j->neg_ttl : DNS_NEG_DEFAULT);

        if (d->w->log.worker >= 0 && (n->nt > 0 || !n->have))
            kl_log(KL_LOG_WARN, &d->w->log, "event=dns_no_targets zone=%s name=%s", n->zone,
                   n->host);
        n->nt = 0;
        n->have = true;
        n->stale = false;
        n->expires_ms = now + (uint64_t)neg * 1000;
        n->next_ms = n->expires_ms;
        name_push(d, n, now);
    } else if (n->have && n->nt > 0 && now < n->expires_ms) {
        n->next_ms = now + DNS_RETRY_MS; /* still fresh: try again soon */
    } else if (n->have && n->nt > 0 && now + 100 < n->expires_ms + d->conf->max_stale) {
        const char *l[] = {n->uri};

        if (!n->stale)
            kl_log(KL_LOG_WARN, &d->w->log,
                   "event=dns_serve_stale zone=%s name=%s targets=%zu expired_ms_ago=%llu", n->zone,
                   n->host, n->nt, (unsigned long long)(now - n->expires_ms));
        n->stale = true;
        kl_stats_add(d->w->stats, KL_ST_DNS_STALE_SERVED, l, 1);
        /* retried every 30 s, and no later than the end of max_stale */
        n->next_ms = now + DNS_STALE_TTL_MS;
        if (n->next_ms > n->expires_ms + d->conf->max_stale)
            n->next_ms = n->expires_ms + d->conf->max_stale;
        name_push(d, n, now);
    } else {
        /* nothing to serve: the name is out until a resolver answers */
        if (n->nt > 0 || !n->have)
            kl_log(KL_LOG_WARN, &d->w->log, "event=dns_unresolvable zone=%s name=%s", n->zone,
                   n->host);
        n->nt = 0;
        n->have = true;
        n->stale = false;
        n->next_ms = now + 1000;
        name_push(d, n, now);
    }
    free(j);
}

static void job_release(dns_job_t *j)
{
    if (--j->pending == 0)
        job_done(j);
}

static void add_target(dns_job_t *j, const kl_dns_rr_t *rr, const char *host, uint16_t port,
                       kl_tp_kind_t tp, uint16_t prio, uint16_t weight)
{
    char ip[64];
    kl_dns_target_t *t;

    if (j->nt >= DNS_MAX_TARGETS)
        return;
    if (inet_ntop(rr->family == 6 ? AF_INET6 : AF_INET, rr->addr, ip, sizeof(ip)) == NULL)
        return;
    t = &j->t[j->nt];
    snprintf(t->uri, sizeof(t->uri),
             rr->family == 6 ? "sip:[%s]:%u;transport=%s" : "sip:%s:%u;transport=%s", ip, port,
             tp == KL_TP_TCP ? "tcp" : "udp");
    for (size_t i = 0; i < j->nt; i++) {
        if (strcmp(j->t[i].uri, t->uri) == 0)
            return; /* the same target twice (two SRV names to one host) */
    }
    t->priority = prio;
    t->weight = weight;
    snprintf(j->thost[j->nt], sizeof(j->thost[0]), "%s", host);
    j->nt++;
}

/* A lookup of <host> failed while others answered: its targets of the last
 * answer are kept (RFC 8767 in the small) instead of being dropped. */
static void keep_targets(dns_job_t *j, const char *host, bool v6, uint16_t prio, uint16_t weight)
{
    const dns_name_t *n = j->n;

    for (size_t i = 0; i < n->nt && j->nt < DNS_MAX_TARGETS; i++) {
        bool dup = false;

        if (strcmp(n->thost[i], host) != 0 || (strchr(n->t[i].uri, '[') != NULL) != v6)
            continue;
        for (size_t k = 0; k < j->nt && !dup; k++)
            dup = strcmp(j->t[k].uri, n->t[i].uri) == 0;
        if (dup)
            continue;
        j->t[j->nt] = n->t[i];
        j->t[j->nt].priority = prio;
        j->t[j->nt].weight = weight;
        snprintf(j->thost[j->nt], sizeof(j->thost[0]), "%s", host);
        j->nt++;
        j->kept = true;
    }
}

static void q_cb(void *arg, int status, const unsigned char *abuf, int alen)
{
    dns_q_t *q = arg;
    dns_job_t *j = q->job;
    kl_dns_answer_t *a = NULL;
    int type = q->step == STEP_NAPTR  ? KL_DNS_T_NAPTR
               : q->step == STEP_SRV  ? KL_DNS_T_SRV
               : q->step == STEP_AAAA ? KL_DNS_T_AAAA
                                      : KL_DNS_T_A;

    if (status == KL_ETIMEDOUT || status == KL_ERR || abuf == NULL) {
        j->failed = true;
        if (q->step == STEP_A || q->step == STEP_AAAA)
            keep_targets(j, q->qname, q->step == STEP_AAAA, q->prio, q->weight);
        if (q->step == STEP_NAPTR) {
            /* no usable NAPTR answer (refused, failed): RFC 3263's SRV
             * fallback still applies */
            char qn[300];

            snprintf(qn, sizeof(qn), "_sip._udp.%s", j->n->host);
            job_query(j, STEP_SRV, qn, KL_TP_UDP, 0, 0, 0, 1);
        }
        goto out;
    }
    a = malloc(sizeof(*a));
    if (a == NULL || kl_dns_answer_parse((kl_dns_type_t)type, abuf, alen, a) != KL_OK) {
        j->failed = true;
        goto out;
    }
    j->answers++;
    if (a->n > 0 && (j->min_ttl == 0 || a->ttl < j->min_ttl))
        j->min_ttl = a->ttl > 0 ? a->ttl : 1;
    if (a->n == 0 && a->neg_ttl > 0 && (j->neg_ttl == 0 || a->neg_ttl < j->neg_ttl))
        j->neg_ttl = a->neg_ttl;
    switch (q->step) {
    case STEP_NAPTR: {
        const kl_dns_rr_t *best = NULL;
        kl_tp_kind_t btp = KL_TP_UDP;

        /* RFC 3263 §4.1: the lowest order, then preference, among the
         * services keel can use (SIP over UDP or TCP), flag "s" */
        for (size_t i = 0; status == KL_OK && i < a->n; i++) {
            const kl_dns_rr_t *r = &a->rr[i];
            kl_tp_kind_t tp;

            if (strcasecmp(r->flags, "s") != 0)
                continue;
            if (strcasecmp(r->service, "SIP+D2U") == 0)
                tp = KL_TP_UDP;
            else if (strcasecmp(r->service, "SIP+D2T") == 0)
                tp = KL_TP_TCP;
            else
                continue;
            if (best == NULL || r->order < best->order ||
                (r->order == best->order && r->preference < best->preference)) {
                best = r;
                btp = tp;
            }
        }
        if (best != NULL) {
            job_query(j, STEP_SRV, best->replacement, btp, 0, 0, 0, 0);
        } else if (status == KL_ENOENT) {
            j->negative = true; /* the domain does not exist */
        } else {
            char qn[300];

            snprintf(qn, sizeof(qn), "_sip._udp.%s", j->n->host);
            job_query(j, STEP_SRV, qn, KL_TP_UDP, 0, 0, 0, 1);
        }
        break;
    }
    case STEP_SRV: {
        size_t used = 0;

        for (size_t i = 0; status == KL_OK && i < a->n; i++) {
            const kl_dns_rr_t *r = &a->rr[i];

            if (r->target[0] == '\0' || strcmp(r->target, ".") == 0)
                continue; /* "service not available here" */
            job_query(j, STEP_A, r->target, q->tp, r->port, r->priority, r->weight, 0);
            used++;
        }
        if (used == 0 && q->fallback == 1) {
            char qn[300];

            snprintf(qn, sizeof(qn), "_sip._tcp.%s", j->n->host);
            job_query(j, STEP_SRV, qn, KL_TP_TCP, 0, 0, 0, 2);
        } else if (used == 0 && q->fallback == 2) {
            job_query(j, STEP_A, j->n->host, KL_TP_UDP, 5060, 0, 0, 0);
        } else if (used == 0 && j->n->tp_set) {
            job_query(j, STEP_A, j->n->host, j->n->tp, 5060, 0, 0, 0);
        }
        break;
    }
    case STEP_A:
    case STEP_AAAA:
        for (size_t i = 0; status == KL_OK && i < a->n; i++)
            add_target(j, &a->rr[i], q->qname, q->port, q->tp, q->prio, q->weight);
        break;
    }
out:
    free(a);
    free(q);
    job_release(j);
}

static void job_query(dns_job_t *j, step_t step, const char *qname, kl_tp_kind_t tp, uint16_t port,
                      uint16_t prio, uint16_t weight, int fallback)
{
    dns_q_t *q;
    int type = step == STEP_NAPTR  ? KL_DNS_T_NAPTR
               : step == STEP_SRV  ? KL_DNS_T_SRV
               : step == STEP_AAAA ? KL_DNS_T_AAAA
                                   : KL_DNS_T_A;

    if (step == STEP_A) /* an address lookup asks for both families */
        job_query(j, STEP_AAAA, qname, tp, port, prio, weight, fallback);
    q = calloc(1, sizeof(*q));

    if (q == NULL) {
        j->failed = true;
        return;
    }
    q->job = j;
    q->step = step;
    snprintf(q->qname, sizeof(q->qname), "%s", qname);
    q->tp = tp;
    q->port = port;
    q->prio = prio;
    q->weight = weight;
    q->fallback = fallback;
    j->pending++;
    if (kl_resolvers_query(j->d->res, q->qname, type, q_cb, q) != KL_OK) {
        j->pending--;
        j->failed = true;
        free(q);
    }
}

static void name_start(kl_dns_t *d, dns_name_t *n)
{
    dns_job_t *j = calloc(1, sizeof(*j));

    if (j == NULL)
        return;
    j->n = n;
    j->d = d;
    j->pending = 1; /* held while the first queries are issued */
    n->job = j;
    if (n->port != 0) {
        job_query(j, STEP_A, n->host, n->tp, n->port, 0, 0, 0);
    } else if (n->tp_set) {
        char qn[300];

        snprintf(qn, sizeof(qn), "_sip._%s.%s", n->tp == KL_TP_TCP ? "tcp" : "udp", n->host);
        job_query(j, STEP_SRV, qn, n->tp, 0, 0, 0, 0);
    } else {
        job_query(j, STEP_NAPTR, n->host, KL_TP_UDP, 0, 0, 0, 0);
    }
    job_release(j);
}

static void dns_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_dns_t *d = arg;
    uint64_t now = kl_now_ms();

    (void)fd;
    (void)what;
    if (now - d->last_res_tick >= 1000) {
        kl_resolvers_tick(d->res, now);
        d->last_res_tick = now;
    }
    for (dns_name_t *n = d->names; n != NULL; n = n->next) {
        if (n->job == NULL && now >= n->next_ms)
            name_start(d, n);
        else if (n->have && !n->pushed)
            name_push(d, n, now);
    }
}

/* Marks the names <conf> needs (adding new ones); unmarked ones are swept. */
static void names_sync(kl_dns_t *d, const kl_conf_t *conf)
{
    dns_name_t **pp;

    for (dns_name_t *n = d->names; n != NULL; n = n->next)
        n->in_conf = false;
    for (size_t c = 0; c < conf->nclusters; c++) {
        const kl_conf_cluster_t *cl = &conf->clusters[c];

        for (size_t z = 0; z < cl->nzones; z++) {
            const kl_conf_zone_t *zn = &cl->zones[z];

            for (size_t i = 0; i < zn->ndests; i++) {
                const kl_conf_dest_t *de = &zn->dests[i];
                dns_name_t *n;

                if (de->host == NULL || de->host_is_ip || strcasecmp(de->host, "localhost") == 0)
                    continue;
                /* sips:, TLS, WS: keel has no client for them yet; resolving
                 * would only produce targets that must not be used */
                if (de->transport == KL_TP_TLS || de->transport == KL_TP_WS)
                    continue;
                for (n = d->names; n != NULL; n = n->next) {
                    if (strcmp(n->zone, zn->name) == 0 && strcmp(n->uri, de->uri) == 0)
                        break;
                }
                if (n == NULL) {
                    n = calloc(1, sizeof(*n));
                    if (n == NULL)
                        continue;
                    snprintf(n->zone, sizeof(n->zone), "%s", zn->name);
                    snprintf(n->uri, sizeof(n->uri), "%s", de->uri);
                    snprintf(n->host, sizeof(n->host), "%s", de->host);
                    n->port = de->port;
                    n->tp = de->transport;
                    n->tp_set = de->transport_set;
                    n->next = d->names;
                    d->names = n;
                }
                n->in_conf = true;
                n->pushed = false; /* a new snapshot's router entry may be new */
            }
        }
    }
    for (pp = &d->names; *pp != NULL;) {
        dns_name_t *n = *pp;

        if (n->in_conf) {
            pp = &n->next;
            continue;
        }
        *pp = n->next;
        if (n->job != NULL)
            n->job->n = NULL; /* cannot happen: jobs are cancelled before a sync */
        free(n);
    }
}

static void jobs_drop(kl_dns_t *d)
{
    /* after kl_resolvers_free(): no callback will come, the jobs are ours */
    for (dns_name_t *n = d->names; n != NULL; n = n->next) {
        free(n->job);
        n->job = NULL;
        n->next_ms = 0;
    }
}

static int dns_init(kl_worker_t *w, const void *conf)
{
    kl_dns_t *d;
    struct timeval tv = {0, DNS_TICK_MS * 1000};
    int idx = dns_mod_index();

    if (idx < 0 || conf == NULL)
        return KL_OK;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return KL_ENOMEM;
    d->w = w;
    d->conf = conf;
    names_sync(d, w->conf);
    if (d->names != NULL) {
        d->res = kl_resolvers_new(w->base, d->conf, w->stats, &w->log);
        d->tick = event_new(w->base, -1, EV_PERSIST, dns_tick_cb, d);
        if (d->res == NULL || d->tick == NULL || event_add(d->tick, &tv) != 0) {
            kl_resolvers_free(d->res);
            if (d->tick != NULL)
                event_free(d->tick);
            free(d);
            return KL_ENOMEM;
        }
    }
    w->mod_state[idx] = d;
    return KL_OK;
}

static void dns_stop(kl_worker_t *w)
{
    int idx = dns_mod_index();
    kl_dns_t *d = idx >= 0 ? w->mod_state[idx] : NULL;

    if (d == NULL)
        return;
    if (d->tick != NULL)
        event_free(d->tick);
    kl_resolvers_free(d->res);
    jobs_drop(d);
    while (d->names != NULL) {
        dns_name_t *n = d->names;

        d->names = n->next;
        free(n);
    }
    free(d);
    w->mod_state[idx] = NULL;
}

/* A new snapshot: new resolvers (tiers may have changed; health starts
 * over), the names it needs, and every name re-resolved at once. Cached
 * answers of names that stay are kept, so stale serving goes on. Runs before
 * w->conf is already the new snapshot; targets are pushed at the next tick. */
static void dns_reload(kl_worker_t *w, const void *old_conf, const void *new_conf)
{
    int idx = dns_mod_index();
    kl_dns_t *d = idx >= 0 ? w->mod_state[idx] : NULL;
    struct timeval tv = {0, DNS_TICK_MS * 1000};

    (void)old_conf;
    if (d == NULL) {
        dns_init(w, new_conf);
        return;
    }
    if (d->tick != NULL)
        event_free(d->tick);
    d->tick = NULL;
    kl_resolvers_free(d->res);
    d->res = NULL;
    jobs_drop(d);
    d->conf = new_conf;
    names_sync(d, w->conf);
    d->res = kl_resolvers_new(w->base, d->conf, w->stats, &w->log);
    d->tick = event_new(w->base, -1, EV_PERSIST, dns_tick_cb, d);
    if (d->tick != NULL)
        event_add(d->tick, &tv);
}

void kl_dns_collect(kl_worker_t *w, kl_stats_t *into)
{
    int idx = dns_mod_index();
    kl_dns_t *d = idx >= 0 ? w->mod_state[idx] : NULL;

    if (d != NULL && d->res != NULL)
        kl_resolvers_collect(d->res, into);
}

const kl_module_t kl_dns_module = {
    .name = "dns",
    .conf_parse = dns_conf_parse,
    .conf_free = dns_conf_free,
    .init = dns_init,
    .reload = dns_reload,
    .stop = dns_stop,
};
