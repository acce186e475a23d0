/* keel: command line, signals, start, stop and reload orchestration. */
#include "core/conf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/stats.h"
#include "core/worker.h"
#include "sip/msg.h"
#include "sip/proxy.h"
#include "transport/transport.h"
#include "upstream/router.h"
#include "modules/dns/dns.h"
#include "modules/metrics/admin.h"

#include <event2/event.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#define KL_MAX_WORKERS 64

typedef struct kl_daemon {
    const char *conf_path;
    const kl_conf_t *conf; /* the snapshot in force, keeps a ref */
    struct event_base *base;
    kl_worker_t *workers[KL_MAX_WORKERS];
    unsigned nworkers;
    kl_log_ctx_t log;
    uint64_t reloads_ok, reloads_failed;
    kl_stats_t *stats; /* main thread's series: reloads, config version */
    kl_admin_t *admin;
    kl_admin_host_t host;
} kl_daemon_t;

static void usage(FILE *fp)
{
    fprintf(fp, "usage: keel [-c FILE] [--check-config FILE] [--version] [--help]\n"
                "\n"
                "  -c, --config FILE        run with the configuration in FILE (default "
                "conf/keel.yaml)\n"
                "  -t, --check-config FILE  validate FILE: print ok, or every error as\n"
                "                           file:line:column: key: message; exit 0 or 1\n"
                "  -V, --version            print the version and exit\n"
                "  -h, --help               print this help and exit\n"
                "\n"
                "Signals: SIGHUP reloads the configuration, SIGTERM and SIGINT stop keel.\n");
}

/* ---- per-worker wiring of transport/ and sip/ ---- */

static int worker_listen_all(kl_worker_t *w, const kl_conf_t *conf)
{
    for (size_t i = 0; i < conf->nlisten; i++) {
        const kl_conf_listen_t *l = &conf->listen[i];
        int rc;

        if (kl_tp_find_listener(w->tp, l->transport, l->address, l->port) != NULL)
            continue;
        rc = kl_tp_listen(w->tp, l, NULL);
        if (rc != KL_OK) {
            kl_log(KL_LOG_ERR, &w->log,
                   "event=listen_failed transport=%s address=%s port=%u err=\"%s\"",
                   kl_tp_kind_name(l->transport), l->address, l->port,
                   rc == KL_EIO ? strerror(errno) : kl_strerror(rc));
            return rc;
        }
        kl_log(KL_LOG_INFO, &w->log, "event=listening transport=%s address=%s port=%u",
               kl_tp_kind_name(l->transport), l->address, l->port);
    }
    return KL_OK;
}

/* Gauges and counters read from live state at scrape time (worker thread). */
static void worker_collect(kl_worker_t *w, kl_stats_t *into)
{
    uint64_t refused;

    pthread_mutex_lock(&w->lock);
    refused = w->posts_dropped;
    pthread_mutex_unlock(&w->lock);
    kl_stats_add(into, KL_ST_WORKER_INBOX_REFUSED, NULL, (double)refused);
    kl_router_collect(w->router, into, kl_now_ms());
    kl_proxy_collect(w->proxy, into);
    kl_dns_collect(w, into);
}

static json_t *worker_state(kl_worker_t *w)
{
    return kl_router_state_json(w->router, kl_now_ms());
}

static int worker_drain(kl_worker_t *w, const char *zone, const char *uri, bool on)
{
    return kl_router_drain(w->router, zone, uri, on);
}

static int worker_fault_add(kl_worker_t *w, const kl_fault_t *f)
{
    return kl_router_fault_add(w->router, f, kl_now_ms());
}

static int worker_fault_del(kl_worker_t *w, unsigned id)
{
    return kl_router_fault_del(w->router, id);
}

static size_t worker_faults(kl_worker_t *w, kl_fault_t *out, size_t cap)
{
    return kl_router_faults(w->router, kl_now_ms(), out, cap);
}

/* ---- one health state across workers (DESIGN.md "Threads and state") ----
 * Worker 0 probes and decides up and down; it tells the others each change,
 * and they tell it the transport errors they see on real requests. */

typedef struct health_news {
    kl_post_t post;
    bool up;
    bool probe_passed; /* a probe just passed: ends an ejection */
    bool evidence;     /* to the prober: a transport error seen elsewhere */
    char zone[64];
    char uri[256];
} health_news_t;

static void health_news_run(kl_worker_t *w, kl_post_t *post)
{
    health_news_t *n = (health_news_t *)post;
    void *dead;

    if (w->router == NULL || w->proxy == NULL)
        return;
    if (n->evidence)
        dead = kl_router_health_evidence(w->router, n->zone, n->uri, kl_now_ms());
    else
        dead =
            kl_router_health_apply(w->router, n->zone, n->uri, n->up, n->probe_passed, kl_now_ms());
    if (dead != NULL)
        kl_proxy_dest_dead(w->proxy, dead);
}

static void health_news_post(kl_worker_t *to, const char *zone, const char *uri, bool up,
                             bool evidence, bool probe_passed)
{
    health_news_t *n = calloc(1, sizeof(*n));

    if (n == NULL)
        return;
    n->post.run = health_news_run;
    n->post.control = true;
    n->up = up;
    n->evidence = evidence;
    n->probe_passed = probe_passed;
    snprintf(n->zone, sizeof(n->zone), "%s", zone);
    snprintf(n->uri, sizeof(n->uri), "%s", uri);
    kl_worker_post(to, &n->post);
}

/* The router's hook (kl_router_set_health_hook), on worker <arg>'s thread. */
static void worker_health_change(void *arg, const char *zone, const char *uri, bool up,
                                 kl_health_news_t news)
{
    kl_worker_t *w = arg;

    if (w->id == 0 && news != KL_HEALTH_NEWS_EVIDENCE) {
        for (unsigned i = 1; i < w->npeers; i++)
            health_news_post(w->peers[i], zone, uri, up, false, news == KL_HEALTH_NEWS_PROBE_PASS);
    } else if (w->id != 0 && news == KL_HEALTH_NEWS_EVIDENCE) {
        health_news_post(w->peers[0], zone, uri, false, true, false);
    }
}

static int worker_start(kl_worker_t *w)
{
    w->collect = worker_collect;
    w->router = kl_router_new(w->conf);
    if (w->router == NULL)
        return KL_ENOMEM;
    kl_router_set_log(w->router, &w->log);
    if (w->npeers > 1) {
        kl_router_set_prober(w->router, w->id == 0);
        kl_router_set_health_hook(w->router, worker_health_change, w);
    }
    w->proxy = kl_proxy_new(w, &kl_router_ops, w->router);
    if (w->proxy == NULL)
        return KL_ENOMEM;
    w->tp = kl_tp_new(w->base, &w->conf->transport, w->conf->workers > 1, kl_proxy_on_msg,
                      kl_proxy_on_tp_error, w->proxy);
    if (w->tp == NULL)
        return KL_ENOMEM;
    kl_tp_set_log_ctx(w->tp, &w->log);
    return worker_listen_all(w, w->conf);
}

static bool conf_has_listen(const kl_conf_t *conf, const kl_conf_listen_t *l)
{
    for (size_t i = 0; i < conf->nlisten; i++) {
        const kl_conf_listen_t *o = &conf->listen[i];

        if (o->transport == l->transport && o->port == l->port &&
            strcmp(o->address, l->address) == 0)
            return true;
    }
    return false;
}

/* A listener a reload removed, closed once the transactions that came
 * through it are over (their retransmissions, ACKs and CANCELs arrive on
 * it), looked at every second, for at most LISTENER_LINGER_S. */
typedef struct listener_gone {
    struct listener_gone *next; /* the worker's list (w->hooks_state), freed at stop */
    kl_worker_t *w;
    struct event *ev;
    kl_tp_kind_t kind;
    char address[64];
    uint16_t port;
    unsigned checks;
} listener_gone_t;

#define LISTENER_LINGER_S 32

static void listener_gone_free(listener_gone_t *g)
{
    listener_gone_t **pp = (listener_gone_t **)&g->w->hooks_state;

    while (*pp != NULL && *pp != g)
        pp = &(*pp)->next;
    if (*pp == g)
        *pp = g->next;
    if (g->ev != NULL)
        event_free(g->ev);
    free(g);
}

static void listener_close_cb(evutil_socket_t fd, short what, void *arg)
{
    listener_gone_t *g = arg;
    kl_conf_listen_t l = {.transport = g->kind, .address = g->address, .port = g->port};
    kl_listener_t *lst;

    (void)fd;
    (void)what;
    /* a later reload may have brought it back */
    if (!conf_has_listen(g->w->conf, &l)) {
        lst = kl_tp_find_listener(g->w->tp, g->kind, g->address, g->port);
        if (lst != NULL && kl_proxy_uses_listener(g->w->proxy, lst) &&
            ++g->checks < LISTENER_LINGER_S) {
            struct timeval tv = {1, 0};

            if (event_add(g->ev, &tv) == 0)
                return; /* its transactions are not over: look again in a second */
        }
        if (lst != NULL) {
            kl_tp_unlisten(g->w->tp, lst);
            kl_log(KL_LOG_INFO, &g->w->log, "event=listener_closed transport=%s address=%s port=%u",
                   kl_tp_kind_name(g->kind), g->address, g->port);
        }
    }
    listener_gone_free(g);
}

static void worker_reload(kl_worker_t *w, const kl_conf_t *old_conf, const kl_conf_t *new_conf)
{
    /* new listeners first, then close the removed ones once their work is done */
    worker_listen_all(w, new_conf);
    for (size_t i = 0; i < old_conf->nlisten; i++) {
        const kl_conf_listen_t *l = &old_conf->listen[i];
        struct timeval tv = {0, 0};
        listener_gone_t *g;
        kl_listener_t *lst;

        if (conf_has_listen(new_conf, l))
            continue;
        lst = kl_tp_find_listener(w->tp, l->transport, l->address, l->port);
        if (lst == NULL)
            continue;
        g = l->transport == KL_TP_TCP ? NULL : calloc(1, sizeof(*g));
        if (g != NULL) {
            g->w = w;
            g->ev = evtimer_new(w->base, listener_close_cb, g);
            g->next = w->hooks_state;
            w->hooks_state = g;
        }
        if (g == NULL || g->ev == NULL || event_add(g->ev, &tv) != 0) {
            /* TCP (a listener only accepts: its connections live on), or no
             * memory: close now */
            if (g != NULL)
                listener_gone_free(g);
            kl_tp_unlisten(w->tp, lst);
            continue;
        }
        g->kind = l->transport;
        snprintf(g->address, sizeof(g->address), "%s", l->address);
        g->port = l->port;
    }
    kl_tp_set_limits(w->tp, &new_conf->transport);
    kl_router_reload(w->router, new_conf);
    kl_proxy_reload(w->proxy, old_conf, new_conf);
}

static void worker_stop(kl_worker_t *w)
{
    while (w->hooks_state != NULL)
        listener_gone_free(w->hooks_state);
    /* transactions first: they hold connections and router targets */
    kl_proxy_free(w->proxy);
    w->proxy = NULL;
    kl_tp_free(w->tp);
    w->tp = NULL;
    kl_router_free(w->router);
    w->router = NULL;
}

static const kl_worker_hooks_t worker_hooks = {
    .start = worker_start,
    .reload = worker_reload,
    .stop = worker_stop,
};

/* ---- reload and signals ---- */

static void daemon_conf_stats(kl_daemon_t *d)
{
    char v[32];
    const char *l[] = {v};

    snprintf(v, sizeof(v), "%s", KEEL_VERSION);
    kl_stats_set(d->stats, KL_ST_BUILD_INFO, l, 1);
    kl_stats_set(d->stats, KL_ST_CONFIG_VERSION, NULL, (double)d->conf->version);
    kl_stats_set(d->stats, KL_ST_CONFIG_RELOAD_TIME, NULL, (double)time(NULL));
}

static void daemon_admin(kl_daemon_t *d)
{
    const kl_conf_admin_t *ac = &d->conf->admin;

    if (ac->address == NULL || ac->address[0] == '\0') {
        kl_admin_free(d->admin);
        d->admin = NULL;
        return;
    }
    if (d->admin == NULL)
        d->admin = kl_admin_new(d->base, ac, &d->host);
    else
        kl_admin_reload(d->admin, ac);
}

static void daemon_admin_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    daemon_admin(arg);
}

/* 0 when <address>:<port> can be bound now (on a throwaway socket with the
 * workers' options), else the errno. */
static int try_bind(const char *address, uint16_t port, int type, bool reuseport)
{
    kl_addr_t a;
    int fd, one = 1, e;

    if (kl_addr_from_str(address, port, &a) != KL_OK)
        return 0; /* validated already */
    fd = socket(a.u.sa.sa_family, type, 0);
    if (fd < 0)
        return 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    e = bind(fd, &a.u.sa, a.len) == 0 ? 0 : errno;
    close(fd);
    return e;
}

static int bind_failed(kl_daemon_t *d, const kl_conf_t *conf, const char *what, int e, char *err,
                       size_t errlen)
{
    char line[400];

    snprintf(line, sizeof(line), "%s: %s: %s", conf->file != NULL ? conf->file : "", what,
             strerror(e));
    kl_log(KL_LOG_ERR, &d->log, "event=reload_failed error=\"%s\"", line);
    if (err != NULL)
        snprintf(err, errlen, "%s\n", line);
    return KL_EIO;
}

/* A reload must not half-apply: every listener it adds must be bindable
 * before any worker adopts it. Tries each on a throwaway socket with the
 * workers' options. Returns KL_OK, or KL_EIO with the reason in <err>. */
static int check_new_listeners(kl_daemon_t *d, const kl_conf_t *conf, char *err, size_t errlen)
{
    const kl_conf_admin_t *na = &conf->admin, *oa = &d->conf->admin;
    bool reuse = d->conf->workers > 1 || conf->workers > 1;
    char what[128];
    int e;

    /* a moved admin listener too */
    if (na->address != NULL && na->address[0] != '\0' &&
        (oa->address == NULL || strcmp(oa->address, na->address) != 0 || oa->port != na->port)) {
        e = try_bind(na->address, na->port, SOCK_STREAM, false);
        snprintf(what, sizeof(what), "admin: cannot bind %s:%u", na->address, na->port);
        if (e != 0)
            return bind_failed(d, conf, what, e, err, errlen);
    }
    for (size_t i = 0; i < conf->nlisten; i++) {
        const kl_conf_listen_t *l = &conf->listen[i];

        if (conf_has_listen(d->conf, l))
            continue;
        e = try_bind(l->address, l->port, l->transport == KL_TP_UDP ? SOCK_DGRAM : SOCK_STREAM,
                     reuse);
        snprintf(what, sizeof(what), "listen[%zu]: cannot bind %s %s:%u", i,
                 kl_tp_kind_name(l->transport), l->address, l->port);
        if (e != 0)
            return bind_failed(d, conf, what, e, err, errlen);
    }
    return KL_OK;
}

/* Reads, validates and swaps the configuration. Returns KL_OK, or KL_EINVAL
 * with the errors (one per line) in <err> when it is not NULL: then nothing
 * changed. */
static int daemon_reload(kl_daemon_t *d, char *err, size_t errlen)
{
    kl_cfg_errs_t *errs = calloc(1, sizeof(*errs));
    kl_conf_t *conf;
    size_t off = 0;

    if (errs == NULL)
        return KL_ENOMEM;
    conf = kl_conf_load(d->conf_path, errs);
    if (conf == NULL) {
        char line[1200];
        const char *l[] = {"error"};

        d->reloads_failed++;
        kl_stats_add(d->stats, KL_ST_RELOADS, l, 1);
        for (int i = 0; i < errs->n && i < KL_CFG_MAX_ERRS; i++) {
            kl_cfg_err_format(&errs->e[i], line, sizeof(line));
            kl_log(KL_LOG_ERR, &d->log, "event=reload_failed error=\"%s\"", line);
            if (err != NULL && off < errlen) {
                int n = snprintf(err + off, errlen - off, "%s\n", line);

                off += n > 0 ? (size_t)n : 0;
            }
        }
        if (errs->n > KL_CFG_MAX_ERRS && err != NULL && off < errlen)
            snprintf(err + off, errlen - off, "(%d more errors)\n", errs->n - KL_CFG_MAX_ERRS);
        free(errs);
        return KL_EINVAL;
    }
    free(errs);
    if (check_new_listeners(d, conf, err, errlen) != KL_OK) {
        const char *l[] = {"error"};

        d->reloads_failed++;
        kl_stats_add(d->stats, KL_ST_RELOADS, l, 1);
        kl_conf_unref(conf);
        return KL_EINVAL;
    }
    kl_log_level_set((kl_log_level_t)conf->log_level);
    for (unsigned i = 0; i < d->nworkers; i++)
        kl_worker_adopt(d->workers[i], conf);
    kl_conf_unref(d->conf);
    d->conf = conf;
    d->reloads_ok++;
    {
        const char *l[] = {"ok"};

        kl_stats_add(d->stats, KL_ST_RELOADS, l, 1);
    }
    daemon_conf_stats(d);
    if (d->admin != NULL && (conf->admin.address == NULL || conf->admin.address[0] == '\0')) {
        /* the admin listener may be serving this very reload, and freeing it
         * closes its connections: give the answer time to leave */
        struct timeval later = {0, 250000};

        if (event_base_once(d->base, -1, EV_TIMEOUT, daemon_admin_cb, d, &later) != 0)
            kl_log(KL_LOG_ERR, &d->log, "event=admin_reload_failed");
    } else {
        daemon_admin(d); /* a new port or token: connections stay */
    }
    kl_log(KL_LOG_NOTICE, &d->log, "event=reloaded version=%llu file=%s",
           (unsigned long long)conf->version, d->conf_path);
    return KL_OK;
}

static const kl_conf_t *host_conf(void *arg)
{
    return ((kl_daemon_t *)arg)->conf;
}

static int host_reload(void *arg, char *err, size_t errlen)
{
    return daemon_reload(arg, err, errlen);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    kl_daemon_t *d = arg;

    (void)what;
    if (sig == SIGHUP) {
        daemon_reload(d, NULL, 0);
        return;
    }
    kl_log(KL_LOG_NOTICE, &d->log, "event=stopping signal=%s", sig == SIGINT ? "INT" : "TERM");
    event_base_loopbreak(d->base);
}

static int check_config(const char *path)
{
    kl_cfg_errs_t *errs = calloc(1, sizeof(*errs));
    kl_conf_t *conf;

    if (errs == NULL)
        return 1;
    conf = kl_conf_load(path, errs);
    if (conf == NULL) {
        kl_cfg_errs_print(errs, stderr);
        free(errs);
        return 1;
    }
    printf("ok\n");
    kl_conf_unref(conf);
    free(errs);
    return 0;
}

static int run(const char *path)
{
    kl_daemon_t d = {.conf_path = path, .log = {.worker = -1}};
    struct event *sigs[3] = {NULL, NULL, NULL};
    const int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    kl_cfg_errs_t *errs = calloc(1, sizeof(*errs));
    kl_conf_t *conf;
    int rc = 1;

    if (errs == NULL)
        return 1;
    conf = kl_conf_load(path, errs);
    if (conf == NULL) {
        kl_cfg_errs_print(errs, stderr);
        free(errs);
        return 1;
    }
    free(errs);
    d.conf = conf;
    kl_log_level_set((kl_log_level_t)conf->log_level);
    d.stats = kl_stats_new();
    if (d.stats == NULL)
        goto out;
    d.host = (kl_admin_host_t){.arg = &d,
                               .workers = d.workers,
                               .nworkers = &d.nworkers,
                               .daemon_stats = d.stats,
                               .conf = host_conf,
                               .reload = host_reload,
                               .worker_state = worker_state,
                               .worker_drain = worker_drain,
                               .worker_fault_add = worker_fault_add,
                               .worker_fault_del = worker_fault_del,
                               .worker_faults = worker_faults};
    daemon_conf_stats(&d);
    kl_stats_set(d.stats, KL_ST_START_TIME, NULL, (double)time(NULL));
    {
        const char *ok[] = {"ok"}, *error[] = {"error"};

        kl_stats_add(d.stats, KL_ST_RELOADS, ok, 0);
        kl_stats_add(d.stats, KL_ST_RELOADS, error, 0);
    }
    if (kl_sip_init() != KL_OK) {
        fprintf(stderr, "keel: cannot initialise the SIP parser\n");
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);

    d.base = event_base_new();
    if (d.base == NULL)
        goto out;
    for (int i = 0; i < 3; i++) {
        sigs[i] = evsignal_new(d.base, signums[i], on_signal, &d);
        if (sigs[i] == NULL || event_add(sigs[i], NULL) != 0)
            goto out;
    }
    /* every worker exists (and knows its peers, for responses that land on
     * the wrong one) before any starts */
    for (unsigned i = 0; i < conf->workers && i < KL_MAX_WORKERS; i++) {
        kl_worker_t *w = kl_worker_new(i, conf, &worker_hooks);

        if (w == NULL)
            goto out;
        d.workers[d.nworkers++] = w;
    }
    for (unsigned i = 0; i < d.nworkers; i++) {
        d.workers[i]->peers = d.workers;
        d.workers[i]->npeers = d.nworkers;
    }
    for (unsigned i = 0; i < d.nworkers; i++) {
        if (kl_worker_spawn(d.workers[i]) != KL_OK)
            goto out;
    }
    daemon_admin(&d);
    if (d.conf->admin.address != NULL && d.conf->admin.address[0] != '\0' && d.admin == NULL)
        goto out;
    kl_log(KL_LOG_NOTICE, &d.log, "event=started version=%s config=%s workers=%u", KEEL_VERSION,
           path, d.nworkers);
    event_base_dispatch(d.base);
    rc = 0;
out:
    kl_admin_free(d.admin);
    d.admin = NULL;
    for (unsigned i = 0; i < d.nworkers; i++)
        kl_worker_stop(d.workers[i]);
    /* all joined before any is freed: a running worker may still post to
     * another */
    for (unsigned i = 0; i < d.nworkers; i++)
        kl_worker_join(d.workers[i]);
    for (unsigned i = 0; i < d.nworkers; i++)
        kl_worker_free(d.workers[i]);
    for (int i = 0; i < 3; i++) {
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    }
    if (d.base != NULL)
        event_base_free(d.base);
    kl_conf_unref(d.conf);
    kl_stats_free(d.stats);
    kl_sip_shutdown();
    libevent_global_shutdown();
    if (rc == 0)
        kl_log(KL_LOG_NOTICE, &d.log, "event=stopped");
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, 't'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = "conf/keel.yaml";
    int c;

    while ((c = getopt_long(argc, argv, "c:t:Vh", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 't':
            return check_config(optarg);
        case 'V':
            printf("keel %s\n", KEEL_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "keel: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    return run(path);
}
