/* c-ares channels, resolver health and hedging (see resolver.h). */
#include "modules/dns/resolver.h"

#include "core/errors.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/worker.h"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <event2/event.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RES_MAX_FDS   8
#define RES_PROBE_MS  2000
#define RES_MAX_TIERS 8

typedef struct res_fd {
    int fd;
    struct event *ev;
    short what;
} res_fd_t;

typedef struct resolver {
    kl_resolvers_t *set;
    char name[80]; /* ip:port */
    char tier_name[32];
    unsigned tier;
    ares_channel ch;
    struct event *timer;
    res_fd_t fds[RES_MAX_FDS];
    bool up;
    unsigned fails;
    uint64_t next_probe_ms;
    bool probing;
} resolver_t;

struct kl_resolvers {
    struct event_base *base;
    const kl_dns_conf_t *conf; /* borrowed: the snapshot's module conf, replaced at reload */
    kl_stats_t *stats;
    const kl_log_ctx_t *log;
    resolver_t *res;
    size_t nres;
    unsigned ntiers;
    uint32_t hedge_after, max_fails;
};

typedef struct query {
    kl_resolvers_t *set;
    char name[256];
    int type;
    kl_dns_cb cb;
    void *arg;
    bool done;
    unsigned outstanding;
    unsigned next_tier; /* the next tier a hedge or a failover goes to */
    bool tried[RES_MAX_TIERS];
    struct event *hedge;
    unsigned guard; /* callers still using it: c-ares may answer inside ares_query() */
} query_t;

typedef struct send {
    query_t *q;
    resolver_t *r;
    uint64_t sent_ms;
    bool hedge;
} send_t;

static void res_schedule(resolver_t *r);

/* ---- libevent glue ---- */

static void res_fd_cb(evutil_socket_t fd, short what, void *arg)
{
    resolver_t *r = arg;

    ares_process_fd(r->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
                    (what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
    res_schedule(r);
}

static void res_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    resolver_t *r = arg;

    (void)fd;
    (void)what;
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    res_schedule(r);
}

/* Re-arms the c-ares timeout timer. */
static void res_schedule(resolver_t *r)
{
    struct timeval tv, *tvp;

    tvp = ares_timeout(r->ch, NULL, &tv);
    if (tvp == NULL)
        event_del(r->timer);
    else
        event_add(r->timer, tvp);
}

static void res_sock_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    resolver_t *r = data;
    res_fd_t *slot = NULL, *free_slot = NULL;
    short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));

    for (int i = 0; i < RES_MAX_FDS; i++) {
        if (r->fds[i].ev != NULL && r->fds[i].fd == fd)
            slot = &r->fds[i];
        else if (r->fds[i].ev == NULL && free_slot == NULL)
            free_slot = &r->fds[i];
    }
    if (what == 0) {
        if (slot != NULL) {
            event_free(slot->ev);
            slot->ev = NULL;
        }
        return;
    }
    if (slot != NULL && slot->what == what)
        return;
    if (slot != NULL) {
        event_free(slot->ev);
        slot->ev = NULL;
    } else {
        slot = free_slot;
    }
    if (slot == NULL)
        return; /* more sockets than slots: c-ares times the query out */
    slot->fd = fd;
    slot->what = what;
    slot->ev = event_new(r->set->base, fd, what | EV_PERSIST, res_fd_cb, r);
    if (slot->ev != NULL)
        event_add(slot->ev, NULL);
}

/* ---- health ---- */

static void res_ok(resolver_t *r)
{
    r->fails = 0;
    if (!r->up) {
        r->up = true;
        if (r->set->log != NULL)
            kl_log(KL_LOG_NOTICE, r->set->log, "event=resolver_up tier=%s resolver=%s",
                   r->tier_name, r->name);
    }
}

static void res_failed(resolver_t *r, uint64_t now_ms)
{
    if (++r->fails >= r->set->max_fails && r->up) {
        r->up = false;
        r->next_probe_ms = now_ms + RES_PROBE_MS;
        if (r->set->log != NULL)
            kl_log(KL_LOG_WARN, r->set->log,
                   "event=resolver_down tier=%s resolver=%s consecutive_failures=%u", r->tier_name,
                   r->name, r->fails);
    }
}

static void count(kl_resolvers_t *s, const resolver_t *r, const char *result)
{
    const char *l[] = {r->name, result};

    kl_stats_add(s->stats, KL_ST_DNS_QUERIES, l, 1);
}

/* ---- queries ---- */

static void query_maybe_free(query_t *q)
{
    if (!q->done || q->outstanding > 0 || q->guard > 0)
        return;
    if (q->hedge != NULL)
        event_free(q->hedge);
    free(q);
}

static bool query_send_tier(query_t *q, unsigned tier, bool hedge);

/* The next tier not tried yet; fails the query when none is left. */
static void query_next_tier(query_t *q, bool hedge)
{
    while (q->next_tier < q->set->ntiers) {
        unsigned t = q->next_tier++;

        if (!q->tried[t] && query_send_tier(q, t, hedge))
            return;
    }
    if (q->outstanding == 0 && !q->done) {
        q->done = true;
        q->cb(q->arg, KL_ETIMEDOUT, NULL, 0);
    }
}

static void query_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    send_t *s = arg;
    query_t *q = s->q;
    resolver_t *r = s->r;
    uint64_t now = kl_now_ms();
    bool answered = status == ARES_SUCCESS || status == ARES_ENODATA || status == ARES_ENOTFOUND;

    (void)timeouts;
    q->outstanding--;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
        q->done = true; /* the resolvers are going away: no callback */
        free(s);
        query_maybe_free(q);
        return;
    }
    if (answered) {
        const char *l[] = {r->name};

        res_ok(r);
        kl_stats_observe(q->set->stats, KL_ST_DNS_QUERY_TIME, l, (double)(now - s->sent_ms) / 1e3);
    } else if (status == ARES_ETIMEOUT || status == ARES_ECONNREFUSED || status == ARES_ESERVFAIL ||
               status == ARES_EREFUSED) {
        res_failed(r, now);
    }
    if (q->done) {
        count(q->set, r, answered ? "late" : status == ARES_ETIMEOUT ? "timeout" : "error");
        free(s);
        query_maybe_free(q);
        return;
    }
    count(q->set, r,
          status == ARES_SUCCESS || status == ARES_ENODATA ? "answer"
          : status == ARES_ENOTFOUND                       ? "nxdomain"
          : status == ARES_ETIMEOUT                        ? "timeout"
                                                           : "error");
    if (answered && abuf != NULL) {
        const char *hl[] = {"won"};

        if (s->hedge)
            kl_stats_add(q->set->stats, KL_ST_DNS_HEDGES, hl, 1);
        q->done = true;
        if (q->hedge != NULL)
            event_del(q->hedge);
        q->cb(q->arg, status == ARES_ENOTFOUND ? KL_ENOENT : KL_OK, abuf, alen);
    } else if (q->outstanding == 0) {
        /* this resolver failed and nothing else is pending: the next tier now */
        kl_stats_add(q->set->stats, KL_ST_DNS_TIER_FAILOVERS, NULL, 1);
        if (q->hedge != NULL)
            event_del(q->hedge);
        query_next_tier(q, false);
    }
    free(s);
    query_maybe_free(q);
}

static resolver_t *tier_pick(kl_resolvers_t *set, unsigned tier, bool up_only)
{
    for (size_t i = 0; i < set->nres; i++) {
        if (set->res[i].tier == tier && (set->res[i].up || !up_only))
            return &set->res[i];
    }
    return NULL;
}

static bool query_send_tier(query_t *q, unsigned tier, bool hedge)
{
    resolver_t *r = tier_pick(q->set, tier, true);
    send_t *s;

    if (r == NULL)
        return false;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return false;
    s->q = q;
    s->r = r;
    s->sent_ms = kl_now_ms();
    s->hedge = hedge;
    q->tried[tier] = true;
    q->outstanding++;
    q->guard++;
    ares_query(r->ch, q->name, C_IN, q->type, query_cb, s); /* may call query_cb now */
    q->guard--;
    res_schedule(r);
    return true;
}

static void query_hedge_cb(evutil_socket_t fd, short what, void *arg)
{
    query_t *q = arg;
    const char *l[] = {"sent"};
    unsigned before = q->outstanding;

    (void)fd;
    (void)what;
    if (q->done)
        return;
    q->guard++;
    query_next_tier(q, true);
    q->guard--;
    if (q->done) {
        query_maybe_free(q);
        return;
    }
    if (q->outstanding > before) {
        kl_stats_add(q->set->stats, KL_ST_DNS_HEDGES, l, 1);
        if (q->next_tier < q->set->ntiers && q->set->hedge_after > 0) {
            struct timeval tv = {q->set->hedge_after / 1000, (q->set->hedge_after % 1000) * 1000};

            event_add(q->hedge, &tv);
        }
    }
}

int kl_resolvers_query(kl_resolvers_t *set, const char *name, int type, kl_dns_cb cb, void *arg)
{
    query_t *q = calloc(1, sizeof(*q));
    unsigned first = 0;
    bool any_up = false;

    if (q == NULL)
        return KL_ENOMEM;
    q->set = set;
    snprintf(q->name, sizeof(q->name), "%s", name);
    q->type = type;
    q->cb = cb;
    q->arg = arg;
    q->hedge = evtimer_new(set->base, query_hedge_cb, q);
    if (q->hedge == NULL) {
        free(q);
        return KL_ENOMEM;
    }
    /* the first tier with a healthy resolver; when none is healthy anywhere,
     * every resolver gets asked in order anyway (they may be back) */
    for (unsigned t = 0; t < set->ntiers && !any_up; t++) {
        if (tier_pick(set, t, true) != NULL) {
            first = t;
            any_up = true;
        }
    }
    if (!any_up) {
        for (size_t i = 0; i < set->nres; i++)
            set->res[i].up = true; /* give them a try: failures mark them down again */
    }
    q->next_tier = first + 1;
    for (unsigned t = 0; t < first; t++)
        q->tried[t] = true; /* down tiers are skipped, not tried later */
    q->guard++;
    if (!query_send_tier(q, first, false)) {
        q->guard--;
        q->done = true;
        query_maybe_free(q);
        return KL_ENOMEM;
    }
    q->guard--;
    if (!q->done && q->next_tier < set->ntiers && set->hedge_after > 0) {
        struct timeval tv = {set->hedge_after / 1000, (set->hedge_after % 1000) * 1000};

        event_add(q->hedge, &tv);
    }
    query_maybe_free(q); /* answered already (inside ares_query) */
    return KL_OK;
}

/* ---- probes of down resolvers ---- */

static void probe_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    resolver_t *r = arg;

    (void)timeouts;
    (void)abuf;
    (void)alen;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED)
        return;
    r->probing = false;
    if (status != ARES_ETIMEOUT && status != ARES_ECONNREFUSED)
        res_ok(r); /* any answer, even a refusal, says it is alive */
    else
        r->next_probe_ms = kl_now_ms() + RES_PROBE_MS;
}

void kl_resolvers_tick(kl_resolvers_t *set, uint64_t now_ms)
{
    for (size_t i = 0; i < set->nres; i++) {
        resolver_t *r = &set->res[i];

        if (r->up || r->probing || now_ms < r->next_probe_ms)
            continue;
        r->probing = true;
        ares_query(r->ch, ".", C_IN, T_NS, probe_cb, r);
        res_schedule(r);
    }
}

void kl_resolvers_collect(const kl_resolvers_t *set, kl_stats_t *into)
{
    for (size_t i = 0; i < set->nres; i++) {
        const char *l[] = {set->res[i].tier_name, set->res[i].name};

        kl_stats_set(into, KL_ST_DNS_RESOLVER_UP, l, set->res[i].up ? 1 : 0);
    }
}

/* ---- life ---- */

static void library_init(void)
{
    ares_library_init(ARES_LIB_INIT_ALL);
}

static int res_open(kl_resolvers_t *set, resolver_t *r, const kl_dns_server_t *srv, unsigned tier,
                    const char *tier_name, bool system)
{
    struct ares_options o;
    struct ares_addr_port_node node;

    memset(&o, 0, sizeof(o));
    memset(&node, 0, sizeof(node));
    r->set = set;
    r->tier = tier;
    r->up = true;
    snprintf(r->tier_name, sizeof(r->tier_name), "%s", tier_name);
    snprintf(r->name, sizeof(r->name), strchr(srv->host, ':') ? "[%s]:%u" : "%s:%u", srv->host,
             srv->port);
    o.sock_state_cb = res_sock_cb;
    o.sock_state_cb_data = r;
    o.timeout = (int)set->conf->timeout;
    o.tries = 1;
    o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES | ARES_FLAG_NOCHECKRESP;
    if (ares_init_options(&r->ch, &o,
                          ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
                              ARES_OPT_FLAGS) != ARES_SUCCESS)
        return KL_ERR;
    if (inet_pton(AF_INET, srv->host, &node.addr.addr4) == 1) {
        node.family = AF_INET;
    } else if (inet_pton(AF_INET6, srv->host, &node.addr.addr6) == 1) {
        node.family = AF_INET6;
    } else {
        return KL_EINVAL;
    }
    node.udp_port = node.tcp_port = srv->port;
    if (!system && ares_set_servers_ports(r->ch, &node) != ARES_SUCCESS)
        return KL_ERR;
    r->timer = evtimer_new(set->base, res_timer_cb, r);
    return r->timer != NULL ? KL_OK : KL_ENOMEM;
}

kl_resolvers_t *kl_resolvers_new(struct event_base *base, const kl_dns_conf_t *conf,
                                 kl_stats_t *stats, const kl_log_ctx_t *log)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    static const kl_dns_server_t local = {.addr = NULL, .host = "127.0.0.1", .port = 53};
    kl_resolvers_t *set = calloc(1, sizeof(*set));
    size_t n = 0;

    pthread_once(&once, library_init);
    if (set == NULL)
        return NULL;
    set->base = base;
    set->conf = conf;
    set->stats = stats;
    set->log = log;
    set->hedge_after = conf->hedge_after;
    set->max_fails = conf->max_fails > 0 ? conf->max_fails : 1;
    for (size_t t = 0; t < conf->ntiers; t++)
        n += conf->tiers[t].nservers;
    set->res = calloc(n > 0 ? n : 1, sizeof(*set->res));
    if (set->res == NULL)
        goto fail;
    if (conf->ntiers == 0) {
        set->ntiers = 1;
        /* no tiers: the system's resolvers (/etc/resolv.conf) */
        if (res_open(set, &set->res[0], &local, 0, "system", true) != KL_OK)
            goto fail;
        set->nres = 1;
        return set;
    }
    set->ntiers = (unsigned)(conf->ntiers < RES_MAX_TIERS ? conf->ntiers : RES_MAX_TIERS);
    for (unsigned t = 0; t < set->ntiers; t++) {
        for (size_t i = 0; i < conf->tiers[t].nservers; i++) {
            resolver_t *r = &set->res[set->nres];

            if (res_open(set, r, &conf->tiers[t].parsed[i], t, conf->tiers[t].name, false) !=
                KL_OK) {
                set->nres++; /* freed below */
                goto fail;
            }
            set->nres++;
        }
    }
    return set;
fail:
    kl_resolvers_free(set);
    return NULL;
}

void kl_resolvers_free(kl_resolvers_t *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->nres; i++) {
        resolver_t *r = &set->res[i];

        if (r->ch != NULL)
            ares_destroy(r->ch); /* callbacks run with ARES_EDESTRUCTION */
        for (int j = 0; j < RES_MAX_FDS; j++) {
            if (r->fds[j].ev != NULL)
                event_free(r->fds[j].ev);
        }
        if (r->timer != NULL)
            event_free(r->timer);
    }
    free(set->res);
    free(set);
}
