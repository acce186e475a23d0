/* The admin listener (DESIGN.md "Observability"): libevent's evhttp on the
 * daemon's main event base, loopback by default.
 *
 *   GET  /healthz                  the process is alive
 *   GET  /readyz                   listeners bound, config loaded, a destination up per cluster
 *   GET  /metrics                  Prometheus text exposition 0.0.4, summed over workers
 *   GET  /v1/state                 JSON: config version, zones, destinations and their state
 *   POST /v1/reload                validate and swap the config file; 400 with the errors
 *   POST /v1/zones/{z}/drain       no new dialogs to zone z (and /undrain)
 *   POST /v1/zones/{z}/destinations/{uri}/drain   one destination ({uri} percent-encoded)
 *   GET/POST /v1/faults, DELETE /v1/faults/{id}   game-day faults (admin.faults: true)
 *
 * Answers are JSON through jansson (except /metrics). Unknown paths get 404,
 * wrong methods 405 with Allow, a missing or wrong bearer token on a POST
 * 401 when admin.token is set. Main thread only: the admin server reaches the
 * workers through kl_worker_call(), so no worker state is read from here. */
#ifndef KL_MODULES_METRICS_ADMIN_H
#define KL_MODULES_METRICS_ADMIN_H

#include "core/conf-t.h"
#include "core/stats.h"
#include "core/worker.h"
#include "upstream/router.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>

struct event_base;

/* What the daemon lends the admin server. Every callback runs on the main
 * thread; the worker_* ones are run on each worker's own thread through
 * kl_worker_call(). */
typedef struct kl_admin_host {
    void *arg;
    kl_worker_t *const *workers; /* borrowed array, *nworkers entries */
    const unsigned *nworkers;
    kl_stats_t *daemon_stats; /* main-thread series (reloads, config version) */
    /* The snapshot in force (borrowed). */
    const kl_conf_t *(*conf)(void *arg);
    /* Reloads the configuration file. Returns KL_OK, or KL_EINVAL with the
     * errors written (one per line, file:line:column: key: message) into
     * <err>. */
    int (*reload)(void *arg, char *err, size_t errlen);
    /* On worker <w>'s thread: a new JSON array of its clusters (see
     * kl_router_state_json). */
    json_t *(*worker_state)(kl_worker_t *w);
    /* On worker <w>'s thread: drain or undrain. KL_OK or KL_ENOENT. */
    int (*worker_drain)(kl_worker_t *w, const char *zone, const char *uri, bool on);
    /* On worker <w>'s thread: fault injection (upstream/router.h). */
    int (*worker_fault_add)(kl_worker_t *w, const kl_fault_t *f);
    int (*worker_fault_del)(kl_worker_t *w, unsigned id);
    size_t (*worker_faults)(kl_worker_t *w, kl_fault_t *out, size_t cap);
} kl_admin_host_t;

typedef struct kl_admin kl_admin_t;

/* Starts the admin listener on <conf>->address:<conf>->port on <base>.
 * Returns a new server, or NULL (the reason logged). <host> is borrowed and
 * must outlive the server. */
kl_admin_t *kl_admin_new(struct event_base *base, const kl_conf_admin_t *conf,
                         const kl_admin_host_t *host);

/* A reload: a new address or port rebinds (the new socket first; on failure
 * the old one stays and KL_EIO is returned), the token changes at once. */
int kl_admin_reload(kl_admin_t *a, const kl_conf_admin_t *conf);

/* Stops listening and frees <a>. Accepts NULL. */
void kl_admin_free(kl_admin_t *a);

/* The Prometheus exposition of every worker plus the daemon's series. Returns
 * a new buffer (free()) or NULL. Main thread. */
char *kl_admin_scrape(const kl_admin_host_t *host, size_t *len);

#endif
