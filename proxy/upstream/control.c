/* Operator control and introspection of a worker's router (see router.h):
 * drains, injected faults, the targets the dns module resolved names to,
 * and what metrics and /v1/state read. Off the per-call path, except the
 * fault list that router.c consults. */
#include "upstream/router-int.h"

#include "core/conf.h"
#include "core/errors.h"
#include "core/stats.h"

#include <jansson.h>

#include <stdlib.h>
#include <string.h>

/* ---- injected faults ---- */

void kl__router_faults_expire(kl_router_t *r, uint64_t now_ms)
{
    for (size_t i = 0; i < r->nfaults;) {
        if (r->faults[i].until_ms <= now_ms)
            r->faults[i] = r->faults[--r->nfaults];
        else
            i++;
    }
}

int kl_router_fault_add(kl_router_t *r, const kl_fault_t *f, uint64_t now_ms)
{
    kl__router_faults_expire(r, now_ms);
    if (!kl__router_zone_known(r, f->zone))
        return KL_ENOENT;
    if (f->uri[0] != '\0') {
        const kl_dest_state_t *s = kl_registry_find(&r->reg, f->zone, f->uri);

        if (s == NULL || !s->in_config)
            return KL_ENOENT;
    }
    for (size_t i = 0; i < r->nfaults; i++) {
        if (r->faults[i].id == f->id) {
            r->faults[i] = *f;
            return KL_OK;
        }
    }
    if (r->nfaults >= KL_ROUTER_MAX_FAULTS)
        return KL_ETOOBIG;
    r->faults[r->nfaults++] = *f;
    return KL_OK;
}

int kl_router_fault_del(kl_router_t *r, unsigned id)
{
    for (size_t i = 0; i < r->nfaults; i++) {
        if (r->faults[i].id == id) {
            r->faults[i] = r->faults[--r->nfaults];
            return KL_OK;
        }
    }
    return KL_ENOENT;
}

size_t kl_router_faults(kl_router_t *r, uint64_t now_ms, kl_fault_t *out, size_t cap)
{
    size_t n = 0;

    kl__router_faults_expire(r, now_ms);
    for (size_t i = 0; i < r->nfaults && n < cap; i++)
        out[n++] = r->faults[i];
    return n;
}

/* ---- operator control and introspection ---- */

typedef struct drain_ctx {
    const char *zone, *uri;
    bool on;
    size_t n;
} drain_ctx_t;

static void drain_one(void *arg, kl_dest_state_t *s)
{
    drain_ctx_t *dc = arg;

    if (strcmp(s->zone, dc->zone) != 0 || (dc->uri != NULL && strcmp(s->uri, dc->uri) != 0))
        return;
    s->drained = dc->on;
    dc->n++;
}

bool kl__router_zone_known(const kl_router_t *r, const char *zone)
{
    for (size_t c = 0; c < r->gen->nclusters; c++) {
        if (kl_conf_zone(r->gen->clusters[c].conf, zone) != NULL)
            return true;
    }
    return false;
}

int kl_router_drain(kl_router_t *r, const char *zone, const char *uri, bool on)
{
    drain_ctx_t dc = {.zone = zone, .uri = uri, .on = on};

    if (zone == NULL || !kl__router_zone_known(r, zone))
        return KL_ENOENT;
    if (uri != NULL) {
        kl_dest_state_t *s = kl_registry_find(&r->reg, zone, uri);

        if (s == NULL || !s->in_config)
            return KL_ENOENT;
        /* a destination of a drained zone stays drained; a name's targets
         * follow it */
        s->drained = on || kl__router_zone_is_drained(r, zone);
        for (size_t i = 0; i < s->nchildren; i++)
            s->children[i]->drained = s->drained;
        return KL_OK;
    }
    if (on && !kl__router_zone_is_drained(r, zone)) {
        char *copy;

        if (r->ndrained_zones >= ROUTER_MAX_DRAINED_ZONES)
            return KL_ETOOBIG;
        copy = strdup(zone);
        if (copy == NULL)
            return KL_ENOMEM;
        r->drained_zones[r->ndrained_zones++] = copy;
    } else if (!on) {
        for (size_t i = 0; i < r->ndrained_zones; i++) {
            if (strcmp(r->drained_zones[i], zone) == 0) {
                free(r->drained_zones[i]);
                r->drained_zones[i] = r->drained_zones[--r->ndrained_zones];
                break;
            }
        }
    }
    kl_registry_each(&r->reg, drain_one, &dc);
    return KL_OK;
}

bool kl_router_zone_drained(const kl_router_t *r, const char *zone)
{
    return kl__router_zone_is_drained(r, zone);
}

/* The weight of destination <d> of <zr> in force at <now_ms>: 0 when it
 * takes no new requests, else configured x slow-start. */
static double weight_in_force(const cluster_rt_t *cl, const zone_rt_t *zr, size_t d,
                              uint64_t now_ms)
{
    const kl_dest_state_t *s = zr->dests[d];
    const kl_conf_slow_start_t *ss = &cl->conf->slow_start;
    double w = zr->conf->dests[d].weight;

    if (!s->routable || !s->up || s->drained)
        return 0;
    if (s->slow_start_at != 0)
        w *= kl_slowstart_factor(now_ms, s->slow_start_at, ss->window, ss->aggression,
                                 ss->min_weight_percent);
    if (s->oc_percent > 0 && now_ms < s->oc_until_ms)
        w *= (100.0 - s->oc_percent) / 100.0;
    return w;
}

void kl_router_collect(const kl_router_t *r, kl_stats_t *into, uint64_t now_ms)
{
    const gen_t *g = r->gen;

    for (const zone_state_t *zs = r->zone_list; zs != NULL; zs = zs->next) {
        const char *lc[] = {zs->name, "calls"}, *lh[] = {zs->name, "chat"},
                   *lo[] = {zs->name, "other"}, *lt[] = {zs->name, "transactions"};

        kl_stats_add(into, KL_ST_BULKHEAD_OCCUPANCY, lc, zs->calls);
        kl_stats_add(into, KL_ST_BULKHEAD_OCCUPANCY, lh, zs->txns[KL_CLASS_CHAT]);
        kl_stats_add(into, KL_ST_BULKHEAD_OCCUPANCY, lo, zs->txns[KL_CLASS_OTHER]);
        kl_stats_add(into, KL_ST_BULKHEAD_OCCUPANCY, lt, zs->txns_total);
    }

    for (size_t c = 0; c < g->nclusters; c++) {
        const cluster_rt_t *cl = &g->clusters[c];

        const char *cln[] = {cl->conf->name};

        kl_stats_add(into, KL_ST_RETRY_BUDGET_DENIED, cln, (double)cl->cs->budget_denied);
        kl_stats_add(into, KL_ST_CLUSTER_PANICS, cln, (double)cl->cs->panics);
        for (size_t z = 0; z < cl->nzones; z++) {
            const zone_rt_t *zr = &cl->zones[z];
            const char *zl[] = {zr->conf->name};
            size_t healthy = 0;

            kl_stats_set(into, KL_ST_ZONE_DRAINED, zl,
                         kl__router_zone_is_drained(r, zr->conf->name));
            for (size_t d = 0; d < zr->conf->ndests; d++) {
                const kl_dest_state_t *g = zr->dests[d];
                size_t n = g->is_name ? g->nchildren : 1;

                if (g->is_name) {
                    const char *ln[] = {zr->conf->name, g->uri};

                    kl_stats_set(into, KL_ST_DNS_TARGETS, ln, (double)g->nchildren);
                    kl_stats_set(into, KL_ST_DNS_STALE, ln, g->dns_stale ? 1 : 0);
                    kl_stats_add(into, KL_ST_DNS_STALE_USED, ln, (double)g->dns_stale_used);
                }
                for (size_t i = 0; i < n; i++) {
                    const kl_dest_state_t *s = g->is_name ? g->children[i] : g;
                    const char *l[] = {cl->conf->name, zr->conf->name, s->uri};
                    double w = g->is_name ? (s->up && !s->drained ? g->child_weight[i] : 0)
                                          : weight_in_force(cl, zr, d, now_ms);

                    kl_stats_set(into, KL_ST_DEST_UP, l, s->up && s->routable ? 1 : 0);
                    kl_stats_set(into, KL_ST_DEST_WEIGHT, l, w);
                    kl_stats_add(into, KL_ST_DEST_IN_FLIGHT, l, s->in_flight);
                    kl_stats_set(into, KL_ST_DEST_DRAINED, l, s->drained ? 1 : 0);
                    kl_stats_set(into, KL_ST_DEST_EJECTED, l,
                                 kl_breaker_is_ejected(&s->breaker) ? 1 : 0);
                    kl_stats_add(into, KL_ST_DEST_EJECTIONS, l, (double)s->breaker.ejections);
                    {
                        const char *ld[] = {cl->conf->name, zr->conf->name, s->uri, "down"};
                        const char *lu[] = {cl->conf->name, zr->conf->name, s->uri, "up"};

                        kl_stats_add(into, KL_ST_DEST_HEALTH_CHANGES, ld, (double)s->went_down);
                        kl_stats_add(into, KL_ST_DEST_HEALTH_CHANGES, lu, (double)s->went_up);
                    }
                    healthy += s->up && s->routable && !kl_breaker_is_ejected(&s->breaker);
                }
            }
            {
                const char *lz[] = {cl->conf->name, zr->conf->name};

                kl_stats_set(into, KL_ST_ZONE_DEGRADED, lz, healthy * 2 < zr->conf->ndests ? 1 : 0);
            }
        }
    }
}

/* Destinations (and DNS targets) of <zr> that take traffic, of all. */
static void zone_health(const zone_rt_t *zr, unsigned *healthy, unsigned *total)
{
    *healthy = *total = 0;
    for (size_t d = 0; d < zr->conf->ndests; d++) {
        const kl_dest_state_t *g = zr->dests[d];
        size_t n = g->is_name ? g->nchildren : 1;

        if (g->is_name && n == 0)
            (*total)++; /* a name that does not resolve counts as unhealthy */
        for (size_t i = 0; i < n; i++) {
            const kl_dest_state_t *s = g->is_name ? g->children[i] : g;

            (*total)++;
            *healthy += s->up && s->routable && !kl_breaker_is_ejected(&s->breaker);
        }
    }
}

/* Counters and gauges of one destination are summed over workers by the
 * caller (kl_router_state_merge); this builds one worker's view. */
json_t *kl_router_state_json(const kl_router_t *r, uint64_t now_ms)
{
    const gen_t *g = r->gen;
    json_t *clusters = json_array();

    if (clusters == NULL)
        return NULL;
    for (size_t c = 0; c < g->nclusters; c++) {
        const cluster_rt_t *cl = &g->clusters[c];
        json_t *zones = json_array();

        for (size_t z = 0; z < cl->nzones; z++) {
            const zone_rt_t *zr = &cl->zones[z];
            json_t *dests = json_array(), *zj;
            size_t up = 0;

            for (size_t d = 0; d < zr->conf->ndests; d++) {
                const kl_dest_state_t *s = zr->dests[d];
                double ramp = 1.0;
                json_t *dj;
                bool dup;

                if (s->slow_start_at != 0)
                    ramp = kl_slowstart_factor(
                        now_ms, s->slow_start_at, cl->conf->slow_start.window,
                        cl->conf->slow_start.aggression, cl->conf->slow_start.min_weight_percent);
                dup = s->up && s->routable;
                if (s->is_name) {
                    dup = false;
                    for (size_t i = 0; i < s->nchildren; i++)
                        dup = dup || (s->children[i]->up && s->children[i]->routable);
                }
                up += dup;
                dj = json_pack(
                    "{s:s, s:b, s:b, s:b, s:I, s:f, s:f, s:I, s:I, s:I, s:I, s:I, s:I}", "uri",
                    s->uri, "up", s->up && s->routable, "drained", s->drained, "slow_start",
                    s->slow_start_at != 0, "weight", (json_int_t)zr->conf->dests[d].weight,
                    "weight_in_force", weight_in_force(cl, zr, d, now_ms), "slow_start_progress",
                    ramp, "in_flight", (json_int_t)s->in_flight, "dialogs", (json_int_t)s->dialogs,
                    "attempts", (json_int_t)s->attempts, "successes", (json_int_t)s->successes,
                    "failures", (json_int_t)s->failures, "timeouts", (json_int_t)s->timeouts);
                if (dj != NULL) {
                    static const char *const bst[] = {"none", "closed", "ejected", "half_open"};
                    json_t *health =
                        json_pack("{s:b, s:I, s:I, s:i, s:I, s:I}", "checked", s->health_started,
                                  "consecutive_failures", (json_int_t)s->health.consec_fail,
                                  "consecutive_successes", (json_int_t)s->health.consec_ok,
                                  "last_code", s->health.last_code, "went_down",
                                  (json_int_t)s->went_down, "went_up", (json_int_t)s->went_up);
                    json_t *br =
                        json_pack("{s:s, s:I, s:I, s:I}", "state", bst[s->breaker.state & 3],
                                  "ejections", (json_int_t)s->breaker.ejections, "times_ejected",
                                  (json_int_t)s->breaker.multiplier, "remaining_ms",
                                  (json_int_t)kl_breaker_remaining_ms(&s->breaker, now_ms));
                    bool oc = s->oc_percent > 0 && now_ms < s->oc_until_ms;
                    json_t *ocj = json_pack("{s:I, s:I, s:I}", "reduce_percent",
                                            (json_int_t)(oc ? s->oc_percent : 0), "remaining_ms",
                                            (json_int_t)(oc ? s->oc_until_ms - now_ms : 0),
                                            "received", (json_int_t)s->oc_feedback);

                    json_object_set_new(dj, "health", health != NULL ? health : json_null());
                    json_object_set_new(dj, "breaker", br != NULL ? br : json_null());
                    json_object_set_new(dj, "overload", ocj != NULL ? ocj : json_null());
                    json_array_append_new(dests, dj);
                }
            }
            zj = json_pack("{s:s, s:I, s:b, s:b, s:I, s:o}", "name", zr->conf->name, "weight",
                           (json_int_t)zr->conf->weight, "drained",
                           kl__router_zone_is_drained(r, zr->conf->name), "local",
                           cl->local == (int)z, "destinations_up", (json_int_t)up, "destinations",
                           dests);
            if (zj != NULL) {
                const zone_state_t *zs = zr->zs;
                const kl_conf_limits_t *lim = &zr->conf->limits;
                unsigned healthy = 0, total = 0;

                zone_health(zr, &healthy, &total);
                /* degraded: under half healthy; panic: none healthy (routing
                 * then ignores health rather than refusing every call) */
                json_object_set_new(zj, "healthy", json_integer(healthy));
                json_object_set_new(zj, "degraded", json_boolean(healthy * 2 < total));
                json_object_set_new(zj, "panic", json_boolean(total > 0 && healthy == 0));
                json_object_set_new(
                    zj, "bulkhead",
                    json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I}}", "calls",
                              (json_int_t)(zs != NULL ? zs->calls : 0), "chat",
                              (json_int_t)(zs != NULL ? zs->txns[KL_CLASS_CHAT] : 0), "other",
                              (json_int_t)(zs != NULL ? zs->txns[KL_CLASS_OTHER] : 0),
                              "transactions", (json_int_t)(zs != NULL ? zs->txns_total : 0),
                              "limits", "calls", (json_int_t)lim->calls, "chat",
                              (json_int_t)lim->chat, "other", (json_int_t)lim->other,
                              "transactions", (json_int_t)lim->transactions));
                json_array_append_new(zones, zj);
            }
        }
        json_array_append_new(clusters,
                              json_pack("{s:s, s:o, s:I, s:{s:I, s:I, s:I}}", "name",
                                        cl->conf->name, "zones", zones, "panic_total",
                                        (json_int_t)cl->cs->panics, "retry_budget", "failovers",
                                        (json_int_t)cl->cs->budget.retries_total, "exhausted",
                                        (json_int_t)cl->cs->budget_denied, "in_flight_failovers",
                                        (json_int_t)cl->cs->budget.active));
    }
    return clusters;
}

/* ---- DNS names (RFC 3263) ---- */

int kl_router_set_targets(kl_router_t *r, const char *zone, const char *uri,
                          const kl_dns_target_t *t, size_t n, bool stale, uint64_t now_ms)
{
    kl_dest_state_t *g = kl_registry_find(&r->reg, zone, uri);
    kl_dest_state_t **c = NULL;
    uint16_t *prio = NULL, *weight = NULL;
    bool had = g != NULL && g->dns_resolved && g->nchildren > 0;
    cluster_rt_t *cl;

    if (g == NULL || !g->is_name)
        return KL_ENOENT;
    if (n > 0) {
        c = calloc(n, sizeof(*c));
        prio = calloc(n, sizeof(*prio));
        weight = calloc(n, sizeof(*weight));
        if (c == NULL || prio == NULL || weight == NULL)
            goto nomem;
    }
    cl = kl__router_cluster_with(r, g, NULL);
    for (size_t i = 0; i < n; i++) {
        bool known = false;

        for (size_t j = 0; j < g->nchildren && !known; j++)
            known = strcmp(g->children[j]->uri, t[i].uri) == 0;
        if (kl_registry_get_uri(&r->reg, zone, t[i].uri, &c[i]) != KL_OK) {
            while (i-- > 0)
                kl_registry_unref(&r->reg, c[i]);
            goto nomem;
        }
        c[i]->zone_state = g->zone_state;
        c[i]->in_config = true;
        c[i]->drained = g->drained; /* targets follow their name's drain */
        prio[i] = t[i].priority;
        weight[i] = t[i].weight;
        /* a target that appears in a later answer ramps up like an added
         * destination; the first answer's start at full weight */
        if (!known && had && cl != NULL && cl->conf->slow_start.window > 0 && c[i]->refs == 1)
            c[i]->slow_start_at = now_ms != 0 ? now_ms : 1;
    }
    kl_registry_set_children(&r->reg, g, c, prio, weight, n);
    g->dns_resolved = true;
    g->dns_stale = stale;
    return KL_OK;
nomem:
    free(c);
    free(prio);
    free(weight);
    return KL_ENOMEM;
}
