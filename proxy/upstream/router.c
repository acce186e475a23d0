#include "upstream/router.h"

#include "upstream/balancer.h"
#include "core/conf.h"
#include "core/errors.h"
#include "core/htab.h"
#include "core/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PLAN_MAX_TRIED 10

typedef struct dest_state {
    kl_hnode_t hn;
    char *key; /* zone|uri */
    char *zone;
    char *uri;
    kl_addr_t addr;
    kl_tp_kind_t transport;
    bool routable; /* an address literal (names need DNS) */
    bool up;
    bool in_config;
    bool drained;
    unsigned refs; /* targets and config entries holding it */
    unsigned in_flight, dialogs;
    uint64_t attempts, successes, failures, timeouts;
    uint64_t slow_start_at;
} dest_state_t;

typedef struct zone_rt {
    const kl_conf_zone_t *conf;
    dest_state_t **dests;
    size_t ndests;
    kl_swrr_t swrr;
} zone_rt_t;

typedef struct cluster_rt {
    const kl_conf_cluster_t *conf;
    zone_rt_t *zones;
    size_t nzones;
    kl_swrr_t swrr; /* weighted zones */
    int local;      /* index of node.zone when prefer_local, else -1 */
} cluster_rt_t;

/* per-snapshot structures; plans keep the one they started with alive */
typedef struct rt_gen {
    unsigned refs;
    const kl_conf_t *conf;
    cluster_rt_t *clusters;
    size_t nclusters;
} rt_gen_t;

struct kl_router {
    rt_gen_t *gen;
    kl_htab_t states;
};

struct kl_plan {
    rt_gen_t *gen;
    cluster_rt_t *cl;
    kl_class_t cls;
    int first_zone; /* -1 until chosen */
    dest_state_t *tried[PLAN_MAX_TRIED];
    size_t ntried;
    bool zone_failed[64];
};

/* ---- registry ---- */

static void state_unref(kl_router_t *r, dest_state_t *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    kl_htab_del(&r->states, &s->hn);
    free(s->key);
    free(s->zone);
    free(s->uri);
    free(s);
}

static dest_state_t *state_get(kl_router_t *r, const char *zone, const char *uri, bool create)
{
    char key[512];
    int n = snprintf(key, sizeof(key), "%s|%s", zone, uri);
    kl_hnode_t *hn;
    dest_state_t *s;

    if (n < 0 || (size_t)n >= sizeof(key))
        return NULL;
    hn = kl_htab_get(&r->states, key, (size_t)n);
    if (hn != NULL)
        return kl_container_of(hn, dest_state_t, hn);
    if (!create)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->key = strdup(key);
    s->zone = strdup(zone);
    s->uri = strdup(uri);
    if (s->key == NULL || s->zone == NULL || s->uri == NULL) {
        free(s->key);
        free(s->zone);
        free(s->uri);
        free(s);
        return NULL;
    }
    s->up = true;
    kl_htab_add(&r->states, &s->hn, s->key, (size_t)n);
    return s;
}

static void state_set_addr(dest_state_t *s, const kl_conf_dest_t *d)
{
    uint16_t port = d->port ? d->port : (d->transport == KL_TP_TLS ? 5061 : 5060);

    s->transport = d->transport;
    /* "localhost" needs no resolver; other names wait for the dns module */
    if (strcasecmp(d->host, "localhost") == 0) {
        s->routable = kl_addr_from_str("127.0.0.1", port, &s->addr) == KL_OK &&
                      (d->transport == KL_TP_UDP || d->transport == KL_TP_TCP);
        return;
    }
    s->routable = d->host_is_ip && kl_addr_from_str(d->host, port, &s->addr) == KL_OK &&
                  (d->transport == KL_TP_UDP || d->transport == KL_TP_TCP);
}

/* ---- generations ---- */

static void gen_unref(kl_router_t *r, rt_gen_t *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    for (size_t c = 0; c < g->nclusters; c++) {
        cluster_rt_t *cl = &g->clusters[c];

        for (size_t z = 0; z < cl->nzones; z++) {
            zone_rt_t *zr = &cl->zones[z];

            for (size_t d = 0; d < zr->ndests; d++)
                state_unref(r, zr->dests[d]);
            free(zr->dests);
            kl_swrr_free(&zr->swrr);
        }
        free(cl->zones);
        kl_swrr_free(&cl->swrr);
    }
    free(g->clusters);
    kl_conf_unref(g->conf);
    free(g);
}

static rt_gen_t *gen_build(kl_router_t *r, const kl_conf_t *conf, bool reload)
{
    rt_gen_t *g = calloc(1, sizeof(*g));
    uint64_t now = kl_now_ms();

    if (g == NULL)
        return NULL;
    g->refs = 1;
    g->conf = kl_conf_ref(conf);
    g->clusters = calloc(conf->nclusters ? conf->nclusters : 1, sizeof(*g->clusters));
    if (g->clusters == NULL)
        goto fail;
    g->nclusters = conf->nclusters;
    for (size_t c = 0; c < conf->nclusters; c++) {
        const kl_conf_cluster_t *cc = &conf->clusters[c];
        cluster_rt_t *cl = &g->clusters[c];

        cl->conf = cc;
        cl->local = -1;
        cl->zones = calloc(cc->nzones ? cc->nzones : 1, sizeof(*cl->zones));
        if (cl->zones == NULL || kl_swrr_init(&cl->swrr, cc->nzones) != KL_OK)
            goto fail;
        cl->nzones = cc->nzones;
        for (size_t z = 0; z < cc->nzones; z++) {
            const kl_conf_zone_t *cz = &cc->zones[z];
            zone_rt_t *zr = &cl->zones[z];

            zr->conf = cz;
            kl_swrr_set_weight(&cl->swrr, z, cz->weight);
            if (cc->prefer_local && conf->node_zone != NULL &&
                strcmp(cz->name, conf->node_zone) == 0)
                cl->local = (int)z;
            zr->dests = calloc(cz->ndests ? cz->ndests : 1, sizeof(*zr->dests));
            if (zr->dests == NULL || kl_swrr_init(&zr->swrr, cz->ndests) != KL_OK)
                goto fail;
            for (size_t d = 0; d < cz->ndests; d++) {
                dest_state_t *s = state_get(r, cz->name, cz->dests[d].uri, true);

                if (s == NULL)
                    goto fail;
                if (s->refs == 0 && reload && cc->slow_start.window > 0)
                    s->slow_start_at = now; /* added by a reload: ramp up */
                s->refs++;
                state_set_addr(s, &cz->dests[d]);
                zr->dests[zr->ndests++] = s;
                kl_swrr_set_weight(&zr->swrr, d, cz->dests[d].weight);
            }
        }
    }
    return g;
fail:
    gen_unref(r, g);
    return NULL;
}

static void gen_mark_in_config(kl_router_t *r, rt_gen_t *g)
{
    for (size_t i = 0; i < r->states.nbuckets; i++) {
        for (kl_hnode_t *h = r->states.buckets[i]; h != NULL; h = h->next)
            kl_container_of(h, dest_state_t, hn)->in_config = false;
    }
    for (size_t c = 0; c < g->nclusters; c++) {
        for (size_t z = 0; z < g->clusters[c].nzones; z++) {
            for (size_t d = 0; d < g->clusters[c].zones[z].ndests; d++)
                g->clusters[c].zones[z].dests[d]->in_config = true;
        }
    }
}

kl_router_t *kl_router_new(const kl_conf_t *conf)
{
    kl_router_t *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return NULL;
    if (kl_htab_init(&r->states, 64) != KL_OK) {
        free(r);
        return NULL;
    }
    r->gen = gen_build(r, conf, false);
    if (r->gen == NULL) {
        kl_htab_free(&r->states);
        free(r);
        return NULL;
    }
    gen_mark_in_config(r, r->gen);
    return r;
}

void kl_router_reload(kl_router_t *r, const kl_conf_t *conf)
{
    rt_gen_t *g = gen_build(r, conf, true);

    if (g == NULL)
        return; /* keep routing on the old one */
    gen_unref(r, r->gen);
    r->gen = g;
    gen_mark_in_config(r, g);
}

void kl_router_free(kl_router_t *r)
{
    if (r == NULL)
        return;
    gen_unref(r, r->gen);
    /* states still referenced by nothing are gone; free any leftovers */
    for (size_t i = 0; i < r->states.nbuckets; i++) {
        while (r->states.buckets[i] != NULL) {
            dest_state_t *s = kl_container_of(r->states.buckets[i], dest_state_t, hn);

            s->refs = 1;
            state_unref(r, s);
        }
    }
    kl_htab_free(&r->states);
    free(r);
}

void kl_router_each(const kl_router_t *r, void (*fn)(void *arg, const kl_dest_info_t *d), void *arg)
{
    for (size_t i = 0; i < r->states.nbuckets; i++) {
        for (kl_hnode_t *h = r->states.buckets[i]; h != NULL; h = h->next) {
            const dest_state_t *s = kl_container_of(h, dest_state_t, hn);
            kl_dest_info_t d = {
                .zone = s->zone,
                .uri = s->uri,
                .up = s->up,
                .in_config = s->in_config,
                .in_flight = s->in_flight,
                .dialogs = s->dialogs,
                .attempts = s->attempts,
                .successes = s->successes,
                .failures = s->failures,
                .timeouts = s->timeouts,
                .slow_start_at = s->slow_start_at,
            };

            fn(arg, &d);
        }
    }
}

/* ---- plans ---- */

static bool route_matches(const kl_conf_route_t *rt, const kl_route_req_t *req)
{
    const kl_conf_match_t *m = &rt->match;

    if (m->nmethods > 0) {
        bool any = false;

        for (size_t i = 0; i < m->nmethods && !any; i++)
            any = req->method != NULL && strcmp(m->methods[i], req->method) == 0;
        if (!any)
            return false;
    }
    if (m->user_prefix != NULL && (req->ruri_user == NULL || strncmp(req->ruri_user, m->user_prefix,
                                                                     strlen(m->user_prefix)) != 0))
        return false;
    if (m->domain != NULL && (req->ruri_host == NULL || strcasecmp(req->ruri_host, m->domain) != 0))
        return false;
    return true;
}

static kl_plan_t *router_plan_new(void *arg, const kl_route_req_t *req)
{
    kl_router_t *r = arg;
    const kl_conf_t *conf = r->gen->conf;
    kl_plan_t *p;
    size_t ci = 0;
    bool found = false;

    for (size_t i = 0; i < conf->nroutes && !found; i++) {
        if (route_matches(&conf->routes[i], req)) {
            ci = conf->routes[i].cluster;
            found = true;
        }
    }
    if (!found && conf->nroutes > 0)
        return NULL;
    if (ci >= r->gen->nclusters)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->gen = r->gen;
    p->gen->refs++;
    p->cl = &p->gen->clusters[ci];
    p->cls = req->cls;
    p->first_zone = -1;
    return p;
}

static const kl_conf_cluster_t *router_plan_cluster(const kl_plan_t *p)
{
    return p->cl->conf;
}

static void router_plan_free(void *arg, kl_plan_t *p)
{
    if (p == NULL)
        return;
    gen_unref(arg, p->gen);
    free(p);
}

static bool dest_eligible(const kl_plan_t *p, const dest_state_t *s)
{
    if (!s->routable || !s->up || s->drained)
        return false;
    for (size_t i = 0; i < p->ntried; i++) {
        if (p->tried[i] == s)
            return false;
    }
    return true;
}

typedef struct pick_ctx {
    const kl_plan_t *p;
    const zone_rt_t *z;
    bool allow_failed; /* zones */
} pick_ctx_t;

static bool dest_ok_cb(void *arg, size_t i)
{
    pick_ctx_t *pc = arg;

    return dest_eligible(pc->p, pc->z->dests[i]);
}

static bool zone_has_eligible(const kl_plan_t *p, const zone_rt_t *z)
{
    for (size_t d = 0; d < z->ndests; d++) {
        if (dest_eligible(p, z->dests[d]))
            return true;
    }
    return false;
}

static bool zone_ok_cb(void *arg, size_t i)
{
    pick_ctx_t *pc = arg;
    const zone_rt_t *z = &pc->p->cl->zones[i];

    if (!pc->allow_failed && i < 64 && pc->p->zone_failed[i])
        return false;
    return zone_has_eligible(pc->p, z);
}

static int router_plan_next(void *arg, kl_plan_t *p, kl_target_t *out)
{
    cluster_rt_t *cl = p->cl;
    pick_ctx_t pc = {.p = p};
    int zi = -1, di;
    dest_state_t *s;

    (void)arg;
    if (p->ntried >= PLAN_MAX_TRIED)
        return KL_ENOENT;
    /* every earlier attempt of this plan failed: its zone is a failed zone */
    if (p->ntried > 0) {
        for (size_t z = 0; z < cl->nzones && z < 64; z++) {
            for (size_t d = 0; d < cl->zones[z].ndests; d++) {
                if (cl->zones[z].dests[d] == p->tried[p->ntried - 1])
                    p->zone_failed[z] = true;
            }
        }
    }
    if (p->ntried == 0 && cl->local >= 0 && zone_has_eligible(p, &cl->zones[cl->local]))
        zi = cl->local;
    if (zi < 0)
        zi = kl_swrr_pick(&cl->swrr, zone_ok_cb, &pc);
    if (zi < 0) {
        /* standby zones (weight 0), then zones that failed already */
        for (size_t z = 0; z < cl->nzones && zi < 0; z++) {
            if (cl->zones[z].conf->weight == 0 && zone_ok_cb(&pc, z))
                zi = (int)z;
        }
        pc.allow_failed = true;
        for (size_t z = 0; z < cl->nzones && zi < 0; z++) {
            if (zone_ok_cb(&pc, z))
                zi = (int)z;
        }
    }
    if (zi < 0)
        return KL_ENOENT;
    pc.z = &cl->zones[zi];
    {
        /* slow-start: effective weights for this pick */
        uint64_t now = kl_now_ms();

        for (size_t d = 0; d < pc.z->ndests; d++) {
            dest_state_t *ds = pc.z->dests[d];
            unsigned w = pc.z->conf->dests[d].weight;

            if (ds->slow_start_at != 0) {
                const kl_conf_slow_start_t *ss = &cl->conf->slow_start;
                double f = kl_slowstart_factor(now, ds->slow_start_at, ss->window, ss->aggression,
                                               ss->min_weight_percent);

                if (f >= 1.0)
                    ds->slow_start_at = 0;
                w = (unsigned)(w * 100 * f);
                if (w == 0)
                    w = 1;
            } else {
                w *= 100;
            }
            kl_swrr_set_weight((kl_swrr_t *)&pc.z->swrr, d, w);
        }
    }
    di = kl_swrr_pick((kl_swrr_t *)&pc.z->swrr, dest_ok_cb, &pc);
    if (di < 0)
        return KL_ENOENT;
    s = pc.z->dests[di];
    p->tried[p->ntried++] = s;
    s->refs++;
    s->in_flight++;
    s->attempts++;
    memset(out, 0, sizeof(*out));
    out->dest = s;
    out->zone = s->zone;
    out->uri = s->uri;
    out->transport = s->transport;
    out->addr = s->addr;
    return KL_OK;
}

static int router_lookup(void *arg, const char *zone, const char *uri, kl_target_t *out)
{
    kl_router_t *r = arg;
    dest_state_t *s = state_get(r, zone, uri, false);

    if (s == NULL) {
        /* a dialog from before a restart or another instance: the cookie is
         * signed, so its destination can be trusted if it is an address */
        kl_conf_dest_t d;

        memset(&d, 0, sizeof(d));
        d.uri = (char *)uri;
        {
            char host[128] = "";
            unsigned port = 0;
            const char *h = strncasecmp(uri, "sip:", 4) == 0 ? uri + 4 : NULL;

            if (h == NULL || sscanf(h, "%127[0-9.]:%u", host, &port) < 1)
                return KL_ENOENT;
            d.host = host;
            d.port = (uint16_t)port;
            d.host_is_ip = true;
            d.transport = strstr(uri, ";transport=tcp") != NULL ? KL_TP_TCP : KL_TP_UDP;
            s = state_get(r, zone, uri, true);
            if (s == NULL)
                return KL_ENOENT;
            state_set_addr(s, &d);
            if (!s->routable) {
                s->refs = 1;
                state_unref(r, s);
                return KL_ENOENT;
            }
            /* refs stays 0: the target below holds it, freed on release */
        }
    }
    if (!s->routable)
        return KL_ENOENT;
    s->refs++;
    s->in_flight++;
    memset(out, 0, sizeof(*out));
    out->dest = s;
    out->zone = s->zone;
    out->uri = s->uri;
    out->transport = s->transport;
    out->addr = s->addr;
    return KL_OK;
}

static void router_report(void *arg, const kl_target_t *t, kl_outcome_t o, int code,
                          uint64_t now_ms)
{
    dest_state_t *s = t->dest;

    (void)arg;
    (void)code;
    (void)now_ms;
    if (s == NULL)
        return;
    switch (o) {
    case KL_OUTCOME_OK:
        s->successes++;
        break;
    case KL_OUTCOME_FAILURE:
    case KL_OUTCOME_TRANSPORT:
        s->failures++;
        break;
    case KL_OUTCOME_TIMEOUT:
        s->timeouts++;
        break;
    case KL_OUTCOME_PROGRESS:
        break;
    }
}

static void router_dialog(void *arg, const kl_target_t *t, int delta)
{
    dest_state_t *s = t->dest;

    (void)arg;
    if (s == NULL)
        return;
    if (delta < 0 && s->dialogs > 0)
        s->dialogs--;
    else if (delta > 0)
        s->dialogs++;
}

static void router_release(void *arg, kl_target_t *t)
{
    dest_state_t *s = t->dest;

    if (s == NULL)
        return;
    if (s->in_flight > 0)
        s->in_flight--;
    t->dest = NULL;
    state_unref(arg, s);
}

const kl_router_ops_t kl_router_ops = {
    .plan_new = router_plan_new,
    .plan_cluster = router_plan_cluster,
    .plan_next = router_plan_next,
    .plan_free = router_plan_free,
    .lookup = router_lookup,
    .report = router_report,
    .dialog = router_dialog,
    .release = router_release,
};
