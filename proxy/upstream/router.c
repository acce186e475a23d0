/* The routing policy of a worker (see router.h): snapshots' generations,
 * plans, choosing zones and destinations, attempts' outcomes, health and
 * ejection on the policy tick. Operator control and introspection are in
 * control.c. */
#include "upstream/router-int.h"

#include "core/conf.h"
#include "core/errors.h"
#include "core/worker.h"
#include "core/rand.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- generations ---- */

static void gen_unref(kl_router_t *r, gen_t *g)
{
    if (g == NULL || --g->refs > 0)
        return;
    for (size_t c = 0; c < g->nclusters; c++) {
        cluster_rt_t *cl = &g->clusters[c];

        for (size_t z = 0; z < cl->nzones && cl->zones != NULL; z++) {
            zone_rt_t *zr = &cl->zones[z];

            for (size_t d = 0; d < zr->conf->ndests && zr->dests != NULL; d++)
                kl_registry_unref(&r->reg, zr->dests[d]);
            free(zr->dests);
            kl_swrr_free(&zr->swrr);
        }
        free(cl->zones);
        kl_swrr_free(&cl->order);
        kl_swrr_free(&cl->failover);
    }
    free(g->clusters);
    kl_conf_unref(g->conf);
    free(g);
}

static zone_state_t *zone_state_get(kl_router_t *r, const char *name)
{
    size_t n = strlen(name);
    kl_hnode_t *hn = kl_htab_get(&r->zones, name, n);
    zone_state_t *zs;

    if (hn != NULL)
        return kl_container_of(hn, zone_state_t, hn);
    zs = calloc(1, sizeof(*zs) + n + 1);
    if (zs == NULL)
        return NULL;
    memcpy(zs->name, name, n + 1);
    kl_htab_add(&r->zones, &zs->hn, zs->name, n);
    zs->next = r->zone_list;
    r->zone_list = zs;
    return zs;
}

static cluster_state_t *cluster_state_get(kl_router_t *r, const char *name, uint64_t now_ms)
{
    size_t n = strlen(name);
    kl_hnode_t *hn = kl_htab_get(&r->clusters, name, n);
    cluster_state_t *cs;

    if (hn != NULL)
        return kl_container_of(hn, cluster_state_t, hn);
    cs = calloc(1, sizeof(*cs) + n + 1);
    if (cs == NULL)
        return NULL;
    memcpy(cs->name, name, n + 1);
    kl_budget_init(&cs->budget, now_ms);
    kl_htab_add(&r->clusters, &cs->hn, cs->name, n);
    cs->next = r->cluster_list;
    r->cluster_list = cs;
    return cs;
}

static uint32_t router_rand(kl_router_t *r)
{
    return (uint32_t)(kl_xorshift64(&r->rnd) >> 16);
}

static unsigned weight_scaled(unsigned w)
{
    return (w > WEIGHT_MAX ? WEIGHT_MAX : w) * WEIGHT_SCALE;
}

static int zone_build(kl_router_t *r, zone_rt_t *zr, const kl_conf_zone_t *cz)
{
    zr->conf = cz;
    zr->dests = calloc(cz->ndests ? cz->ndests : 1, sizeof(*zr->dests));
    if (zr->dests == NULL || kl_swrr_init(&zr->swrr, cz->ndests) != KL_OK)
        return KL_ENOMEM;
    zr->zs = zone_state_get(r, cz->name);
    if (zr->zs == NULL)
        return KL_ENOMEM;
    for (size_t d = 0; d < cz->ndests; d++) {
        if (kl_registry_get(&r->reg, cz->name, &cz->dests[d], &zr->dests[d]) != KL_OK)
            return KL_ENOMEM;
        zr->dests[d]->zone_state = zr->zs;
        kl_swrr_set_weight(&zr->swrr, d, weight_scaled(cz->dests[d].weight));
    }
    return KL_OK;
}

static int cluster_build(kl_router_t *r, cluster_rt_t *cl, const kl_conf_t *conf,
                         const kl_conf_cluster_t *cc)
{
    cl->conf = cc;
    cl->local = -1;
    cl->cs = cluster_state_get(r, cc->name, kl_now_ms());
    if (cl->cs == NULL)
        return KL_ENOMEM;
    cl->zones = calloc(cc->nzones ? cc->nzones : 1, sizeof(*cl->zones));
    if (cl->zones == NULL || kl_swrr_init(&cl->order, cc->nzones) != KL_OK ||
        kl_swrr_init(&cl->failover, cc->nzones) != KL_OK)
        return KL_ENOMEM;
    for (size_t z = 0; z < cc->nzones; z++) {
        const kl_conf_zone_t *cz = &cc->zones[z];

        cl->nzones++;
        if (zone_build(r, &cl->zones[z], cz) != KL_OK)
            return KL_ENOMEM;
        kl_swrr_set_weight(&cl->order, z, weight_scaled(cz->weight));
        kl_swrr_set_weight(&cl->failover, z, weight_scaled(cz->weight));
        if (cc->prefer_local && conf->node_zone != NULL && strcmp(cz->name, conf->node_zone) == 0)
            cl->local = (int)z;
    }
    return KL_OK;
}

/* Builds the structures of <conf> and takes a ref on every destination state
 * it names; changes nothing else, so a failure leaves the router as it was. */
static gen_t *gen_build(kl_router_t *r, const kl_conf_t *conf)
{
    gen_t *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->refs = 1;
    g->conf = kl_conf_ref(conf);
    g->clusters = calloc(conf->nclusters ? conf->nclusters : 1, sizeof(*g->clusters));
    if (g->clusters == NULL)
        goto fail;
    for (size_t c = 0; c < conf->nclusters; c++) {
        g->nclusters++;
        if (cluster_build(r, &g->clusters[c], conf, &conf->clusters[c]) != KL_OK)
            goto fail;
    }
    return g;
fail:
    gen_unref(r, g);
    return NULL;
}

static void state_clear_in_config(void *arg, kl_dest_state_t *s)
{
    (void)arg;
    s->in_config = false;
}

bool kl__router_zone_is_drained(const kl_router_t *r, const char *zone)
{
    for (size_t i = 0; i < r->ndrained_zones; i++) {
        if (strcmp(r->drained_zones[i], zone) == 0)
            return true;
    }
    return false;
}

/* Makes <g> current. On a reload, a destination that was not in the previous
 * snapshot starts its slow-start window at <now_ms>. */
static void gen_commit(kl_router_t *r, gen_t *g, bool reload, uint64_t now_ms)
{
    for (size_t c = 0; c < g->nclusters && reload; c++) {
        const cluster_rt_t *cl = &g->clusters[c];

        for (size_t z = 0; z < cl->nzones; z++) {
            for (size_t d = 0; d < cl->zones[z].conf->ndests; d++) {
                kl_dest_state_t *s = cl->zones[z].dests[d];

                if (!s->in_config && cl->conf->slow_start.window > 0)
                    s->slow_start_at = now_ms != 0 ? now_ms : 1;
            }
        }
    }
    for (cluster_state_t *cs = r->cluster_list; cs != NULL; cs = cs->next)
        cs->conf = NULL;
    for (size_t c = 0; c < g->nclusters; c++)
        g->clusters[c].cs->conf = g->clusters[c].conf;
    kl_registry_each(&r->reg, state_clear_in_config, NULL);
    for (size_t c = 0; c < g->nclusters; c++) {
        const cluster_rt_t *cl = &g->clusters[c];

        for (size_t z = 0; z < cl->nzones; z++) {
            bool zd = kl__router_zone_is_drained(r, cl->zones[z].conf->name);

            for (size_t d = 0; d < cl->zones[z].conf->ndests; d++) {
                cl->zones[z].dests[d]->in_config = true;
                if (zd)
                    cl->zones[z].dests[d]->drained = true;
            }
        }
    }
    gen_unref(r, r->gen);
    r->gen = g;
}

/* ---- the router ---- */

kl_router_t *kl_router_new(const kl_conf_t *conf)
{
    kl_router_t *r = calloc(1, sizeof(*r));
    gen_t *g;

    if (r == NULL)
        return NULL;
    if (kl_registry_init(&r->reg) != KL_OK) {
        free(r);
        return NULL;
    }
    if (kl_htab_init(&r->zones, 16) != KL_OK || kl_htab_init(&r->clusters, 16) != KL_OK) {
        kl_htab_free(&r->zones);
        kl_registry_free(&r->reg);
        free(r);
        return NULL;
    }
    r->rnd = ((uint64_t)(uintptr_t)r ^ (kl_now_ms() << 20)) | 1;
    g = gen_build(r, conf);
    if (g == NULL) {
        kl_router_free(r);
        return NULL;
    }
    gen_commit(r, g, false, 0);
    return r;
}

void kl_router_free(kl_router_t *r)
{
    if (r == NULL)
        return;
    gen_unref(r, r->gen);
    r->gen = NULL;
    kl_registry_free(&r->reg);
    for (size_t i = 0; i < r->ndrained_zones; i++)
        free(r->drained_zones[i]);
    while (r->zone_list != NULL) {
        zone_state_t *zs = r->zone_list;

        r->zone_list = zs->next;
        free(zs);
    }
    kl_htab_free(&r->zones);
    while (r->cluster_list != NULL) {
        cluster_state_t *cs = r->cluster_list;

        r->cluster_list = cs->next;
        free(cs);
    }
    kl_htab_free(&r->clusters);
    free(r);
}

int kl_router_reload_at(kl_router_t *r, const kl_conf_t *conf, uint64_t now_ms)
{
    gen_t *g = gen_build(r, conf);

    if (g == NULL)
        return KL_ENOMEM;
    gen_commit(r, g, true, now_ms);
    return KL_OK;
}

void kl_router_reload(kl_router_t *r, const kl_conf_t *conf)
{
    (void)kl_router_reload_at(r, conf, kl_now_ms());
}

size_t kl_router_dest_count(const kl_router_t *r)
{
    return r->reg.count;
}

typedef struct each_ctx {
    void (*fn)(void *arg, const kl_dest_info_t *d);
    void *arg;
} each_ctx_t;

static void each_state(void *arg, kl_dest_state_t *s)
{
    each_ctx_t *ec = arg;
    kl_dest_info_t d = {
        .zone = s->zone,
        .uri = s->uri,
        .up = s->up,
        .drained = s->drained,
        .routable = s->routable,
        .in_config = s->in_config,
        .in_flight = s->in_flight,
        .dialogs = s->dialogs,
        .attempts = s->attempts,
        .successes = s->successes,
        .failures = s->failures,
        .timeouts = s->timeouts,
        .slow_start_at = s->slow_start_at,
    };

    ec->fn(ec->arg, &d);
}

void kl_router_each(const kl_router_t *r, void (*fn)(void *arg, const kl_dest_info_t *d), void *arg)
{
    each_ctx_t ec = {.fn = fn, .arg = arg};

    kl_registry_each(&r->reg, each_state, &ec);
}

/* ---- routes ---- */

static bool route_matches(const kl_conf_match_t *m, const kl_route_req_t *req)
{
    if (m->nmethods > 0) {
        bool any = false;

        for (size_t i = 0; i < m->nmethods && !any && req->method != NULL; i++)
            any = strcmp(m->methods[i], req->method) == 0;
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

/* ---- choosing ---- */

static bool state_tried(const kl_plan_t *p, const kl_dest_state_t *st)
{
    for (unsigned i = 0; i < p->ntried; i++) {
        if (p->tried[i].state == st)
            return true;
    }
    return false;
}

static bool zone_failed(const kl_plan_t *p, size_t z)
{
    for (unsigned i = 0; i < p->ntried; i++) {
        if (p->tried[i].zone == z)
            return true;
    }
    return false;
}

/* An ejected destination takes nothing; a half-open one takes its one trial. */
static bool breaker_blocks(const kl_breaker_t *b)
{
    return b->state == KL_BREAKER_EJECTED ||
           (b->state == KL_BREAKER_HALF_OPEN && b->trial_in_flight);
}

static bool target_eligible(const kl_plan_t *p, const kl_dest_state_t *s)
{
    if (!s->routable || s->drained || state_tried(p, s))
        return false;
    if (p->panic)
        return true;
    return s->up && !breaker_blocks(&s->breaker);
}

/* Down, drained, name-only (no DNS yet) and tried destinations are out. A
 * zone whose destinations are all down has nothing eligible (panic mode is a
 * later issue). */
static bool dest_eligible(const kl_plan_t *p, size_t z, size_t d)
{
    const kl_dest_state_t *s = p->cl->zones[z].dests[d];

    if (s->nchildren > 0) {
        /* a name: eligible when one of its targets is */
        if (s->drained)
            return false;
        for (size_t i = 0; i < s->nchildren; i++) {
            if (target_eligible(p, s->children[i]))
                return true;
        }
        return false;
    }
    return target_eligible(p, s);
}

/* Which bulkhead of zone <z> would the plan's next attempt overflow: 0
 * calls, 1 chat, 2 other, 3 transactions, or -1 when it fits. Emergency
 * requests bypass them all (DESIGN.md). */
static int zone_full(const kl_plan_t *p, size_t z)
{
    const zone_rt_t *zr = &p->cl->zones[z];
    const kl_conf_limits_t *lim = &zr->conf->limits;
    const zone_state_t *zs = zr->zs;

    if (p->cls == KL_CLASS_EMERGENCY || zs == NULL)
        return -1;
    if (p->invite && p->cls == KL_CLASS_CALL && lim->calls > 0 && zs->calls >= lim->calls)
        return 0;
    if (p->cls == KL_CLASS_CHAT && lim->chat > 0 && zs->txns[KL_CLASS_CHAT] >= lim->chat)
        return 1;
    if (p->cls == KL_CLASS_OTHER && lim->other > 0 && zs->txns[KL_CLASS_OTHER] >= lim->other)
        return 2;
    if (lim->transactions > 0 && zs->txns_total >= lim->transactions)
        return 3;
    return -1;
}

static bool zone_has_dest(const kl_plan_t *p, size_t z)
{
    for (size_t d = 0; d < p->cl->zones[z].conf->ndests; d++) {
        if (dest_eligible(p, z, d))
            return true;
    }
    return false;
}

static bool zone_eligible(const kl_plan_t *p, size_t z)
{
    if (!zone_has_dest(p, z))
        return false;
    if (zone_full(p, z) >= 0) {
        ((kl_plan_t *)p)->full = true;
        return false;
    }
    return true;
}

typedef struct pick_ctx {
    const kl_plan_t *p;
    size_t zone;
    bool skip_failed;
} pick_ctx_t;

static bool zone_ok(void *arg, size_t z)
{
    const pick_ctx_t *pc = arg;

    return !(pc->skip_failed && zone_failed(pc->p, z)) && zone_eligible(pc->p, z);
}

static bool dest_ok(void *arg, size_t d)
{
    const pick_ctx_t *pc = arg;

    return dest_eligible(pc->p, pc->zone, d);
}

/* The slow-start factor of <s> at <now_ms>; ends the ramp once it is over. */
static double ramp_factor(const kl_conf_cluster_t *cc, kl_dest_state_t *s, uint64_t now_ms)
{
    const kl_conf_slow_start_t *ss = &cc->slow_start;
    double f;

    if (s->slow_start_at == 0)
        return 1.0;
    f = kl_slowstart_factor(now_ms, s->slow_start_at, ss->window, ss->aggression,
                            ss->min_weight_percent);
    if (f >= 1.0)
        s->slow_start_at = 0;
    return f;
}

/* Effective destination weights: weight x slow-start factor. */
static void dest_weights(cluster_rt_t *cl, zone_rt_t *zr, uint64_t now_ms)
{
    for (size_t d = 0; d < zr->conf->ndests; d++) {
        unsigned w = weight_scaled(zr->conf->dests[d].weight);
        double f = ramp_factor(cl->conf, zr->dests[d], now_ms);
        kl_dest_state_t *s = zr->dests[d];

        /* RFC 7339 loss algorithm: the asked share fewer new requests */
        if (kl__oc_active(s, now_ms))
            f *= kl__oc_factor(s, now_ms);
        else
            s->oc_percent = 0;

        if (f < 1.0 && w > 0) {
            w = (unsigned)(w * f);
            w = w > 0 || s->oc_percent == 100 ? w : 1;
        }
        kl_swrr_set_weight(&zr->swrr, d, w);
    }
}

/* Effective zone weights (DESIGN): weight x (sum of its destinations'
 * effective weights / sum of their configured weights), so a zone that comes
 * back ramps as a whole. Float work only while something ramps. */
static void zone_weights(cluster_rt_t *cl, kl_swrr_t *b, uint64_t now_ms)
{
    for (size_t z = 0; z < cl->nzones; z++) {
        const zone_rt_t *zr = &cl->zones[z];
        unsigned w = weight_scaled(zr->conf->weight);
        double eff = 0, conf = 0;
        bool ramping = false;

        for (size_t d = 0; d < zr->conf->ndests; d++)
            ramping =
                ramping || zr->dests[d]->slow_start_at != 0 || kl__oc_active(zr->dests[d], now_ms);
        if (ramping && w > 0) {
            /* RFC 7339 and slow-start both scale the zone by the share of its
             * weight its destinations take now */
            for (size_t d = 0; d < zr->conf->ndests; d++) {
                double dw = zr->conf->dests[d].weight;

                eff += dw * ramp_factor(cl->conf, zr->dests[d], now_ms) *
                       kl__oc_factor(zr->dests[d], now_ms);
                conf += dw;
            }
            if (conf > 0 && eff < conf) {
                w = (unsigned)(w * (eff / conf));
                w = w > 0 ? w : 1;
            }
        }
        kl_swrr_set_weight(b, z, w);
    }
}

/* The zone of the next attempt, or -1. First attempt: the local zone when
 * preferred, else SWRR by zone weight (once per plan). After a failure: SWRR
 * among weighted zones that have not failed in this plan, then standby zones
 * that have not, then the untried destinations of failed zones in the order
 * they were tried. Standby zones (weight 0) come before failed ones and
 * after the weighted ones: used only for failover or when nothing weighted
 * is eligible. */
static int zone_choose(kl_plan_t *p)
{
    cluster_rt_t *cl = p->cl;
    pick_ctx_t pc = {.p = p, .skip_failed = p->ntried > 0};
    kl_swrr_t *b = p->ntried == 0 ? &cl->order : &cl->failover;
    int z;

    if (p->ntried == 0 && cl->local >= 0 && zone_eligible(p, (size_t)cl->local))
        return cl->local;
    zone_weights(cl, b, p->now_ms);
    z = kl_swrr_pick(b, zone_ok, &pc);
    if (z >= 0)
        return z;
    for (size_t i = 0; i < cl->nzones; i++) {
        if (cl->zones[i].conf->weight == 0 && !zone_failed(p, i) && zone_eligible(p, i))
            return (int)i;
    }
    for (unsigned i = 0; i < p->ntried; i++) {
        if (zone_eligible(p, p->tried[i].zone))
            return (int)p->tried[i].zone;
    }
    return -1;
}

static void target_fill(kl_dest_state_t *s, kl_target_t *out)
{
    memset(out, 0, sizeof(*out));
    out->dest = s;
    out->zone = s->zone;
    out->uri = s->uri;
    out->transport = s->transport;
    out->addr = s->addr;
}

/* Bulkhead accounting of a target's work: +1 when handed out, -1 when
 * released. */
static void target_account(const kl_target_t *t, int delta)
{
    const kl_dest_state_t *s = t->dest;
    zone_state_t *zs = s != NULL ? s->zone_state : NULL;

    cluster_state_t *cs = t->cluster_state;

    if (cs != NULL) {
        if (delta > 0) {
            cs->in_flight++;
        } else {
            if (cs->in_flight > 0)
                cs->in_flight--;
            if (t->retry)
                kl_budget_retry_done(&cs->budget);
        }
    }
    if (zs == NULL)
        return;
    if (delta > 0) {
        zs->txns[t->cls]++;
        zs->txns_total++;
        if (t->call)
            zs->calls++;
        return;
    }
    if (zs->txns[t->cls] > 0)
        zs->txns[t->cls]--;
    if (zs->txns_total > 0)
        zs->txns_total--;
    if (t->call && zs->calls > 0)
        zs->calls--;
}

/* A target now holds <s>: a ref, one more attempt in flight. */
static void target_take(kl_dest_state_t *s, const kl_plan_t *p, kl_target_t *out)
{
    kl_dest_state_ref(s);
    s->in_flight++;
    s->attempts++;
    target_fill(s, out);
    out->cls = p->cls < KL_CLASS_COUNT ? p->cls : KL_CLASS_OTHER;
    out->call = p->invite && p->cls != KL_CLASS_CHAT;
    out->cluster_state = p->cl->cs;
    if (!p->panic && s->breaker.state == KL_BREAKER_HALF_OPEN)
        out->trial = kl_breaker_allow(&s->breaker, kl_now_ms());
    target_account(out, +1);
}

/* ---- injected faults ---- */

/* Marks <out> with the first active fault that covers its destination. */
static void fault_apply(kl_router_t *r, const kl_dest_state_t *s, kl_target_t *out, bool in_dialog,
                        uint64_t now_ms)
{
    if (r->nfaults == 0)
        return;
    kl__router_faults_expire(r, now_ms);
    for (size_t i = 0; i < r->nfaults; i++) {
        const kl_fault_t *f = &r->faults[i];

        if ((in_dialog && !f->in_dialog) || strcmp(f->zone, s->zone) != 0 ||
            (f->uri[0] != '\0' && strcmp(f->uri, s->uri) != 0 &&
             (s->group == NULL || strcmp(f->uri, s->group->uri) != 0)))
            continue;
        out->fault = f->kind;
        out->fault_delay_ms = f->delay_ms;
        return;
    }
}

/* RFC 2782 among a name's eligible targets: the lowest priority, then
 * weighted random (weight 0 only when all are 0). */
static kl_dest_state_t *pick_child(kl_router_t *r, const kl_plan_t *p, const kl_dest_state_t *g)
{
    unsigned best = UINT_MAX;
    uint64_t total = 0, draw;
    size_t nbest = 0;

    for (size_t i = 0; i < g->nchildren; i++) {
        if (!target_eligible(p, g->children[i]))
            continue;
        if (g->child_prio[i] < best) {
            best = g->child_prio[i];
            total = 0;
            nbest = 0;
        }
        if (g->child_prio[i] == best) {
            total += g->child_weight[i];
            nbest++;
        }
    }
    if (nbest == 0)
        return NULL;
    draw = total > 0 ? router_rand(r) % total : router_rand(r) % nbest;
    for (size_t i = 0; i < g->nchildren; i++) {
        uint64_t w;

        if (g->child_prio[i] != best || !target_eligible(p, g->children[i]))
            continue;
        w = total > 0 ? g->child_weight[i] : 1;
        if (draw < w)
            return g->children[i];
        draw -= w;
    }
    return NULL;
}

/* ---- the operations ---- */

static kl_plan_t *router_plan_new(void *router, const kl_route_req_t *req)
{
    kl_router_t *r = router;
    gen_t *g = r->gen;
    const kl_conf_t *conf = g->conf;
    size_t ci = 0;
    kl_plan_t *p;
    unsigned max;

    if (conf->nroutes > 0) {
        size_t i = 0;

        while (i < conf->nroutes && !route_matches(&conf->routes[i].match, req))
            i++;
        if (i == conf->nroutes)
            return NULL;
        ci = conf->routes[i].cluster;
    }
    if (ci >= g->nclusters)
        return NULL;
    p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    g->refs++;
    p->gen = g;
    p->cl = &g->clusters[ci];
    p->cls = req->cls;
    p->invite = req->method != NULL && strcmp(req->method, "INVITE") == 0;
    p->now_ms = req->now_ms != 0 ? req->now_ms : kl_now_ms();
    kl_budget_on_request(&p->cl->cs->budget, p->now_ms);
    max = p->cl->conf->failover.max_attempts;
    p->max = max == 0 ? 1 : (max > PLAN_MAX_TRIED ? PLAN_MAX_TRIED : max);
    return p;
}

static const kl_conf_cluster_t *router_plan_cluster(const kl_plan_t *p)
{
    return p->cl->conf;
}

static void router_plan_moved(void *router, kl_plan_t *p)
{
    (void)router;
    p->moved = true;
}

static void router_plan_free(void *router, kl_plan_t *p)
{
    if (p == NULL)
        return;
    gen_unref(router, p->gen);
    free(p);
}

static int router_plan_next(void *router, kl_plan_t *p, kl_target_t *out)
{
    pick_ctx_t pc = {.p = p};
    zone_rt_t *zr;
    int z, d;

    kl_router_t *r = router;
    uint64_t now = kl_now_ms();
    kl_dest_state_t *chosen;

    if (p->ntried >= p->max)
        return KL_ENOENT;
    p->full = false;
    z = zone_choose(p);
    if (z < 0 && p->ntried == 0 && !p->full && !p->panic) {
        /* nothing healthy in the whole cluster: route anyway (Envoy's panic
         * mode) rather than answer every call 503 on evidence that may be
         * about load, not about the servers */
        p->panic = true;
        z = zone_choose(p);
        if (z >= 0) {
            p->cl->cs->panics++;
            if (r->log != NULL && p->cl->cs->panics % 1000 == 1)
                kl_log(KL_LOG_WARN, r->log, "event=cluster_panic cluster=%s panics=%llu",
                       p->cl->conf->name, (unsigned long long)p->cl->cs->panics);
        }
    }
    if (z < 0)
        return p->full ? KL_EBUSY : KL_ENOENT;
    zr = &p->cl->zones[z];
    pc.zone = (size_t)z;
    dest_weights(p->cl, zr, p->now_ms);
    d = kl_swrr_pick(&zr->swrr, dest_ok, &pc);
    if (d < 0)
        return KL_ENOENT; /* eligible but weight 0 everywhere */
    chosen = zr->dests[d];
    if (chosen->nchildren > 0) {
        chosen = pick_child(r, p, chosen);
        if (chosen == NULL)
            return KL_ENOENT;
    }
    if (p->ntried > 0 && !p->moved &&
        !kl_budget_try_retry(&p->cl->cs->budget, &p->cl->conf->retry_budget, p->cl->cs->in_flight,
                             p->now_ms)) {
        /* past the retry budget: this request keeps the answer it has */
        p->cl->cs->budget_denied++;
        return KL_EPERM;
    }
    p->tried[p->ntried].zone = (uint32_t)z;
    p->tried[p->ntried].dest = (uint32_t)d;
    p->tried[p->ntried].state = chosen;
    p->ntried++;
    target_take(chosen, p, out);
    out->retry = p->ntried > 1 && !p->moved;
    p->moved = false;
    if (chosen->group != NULL && chosen->group->dns_stale)
        chosen->group->dns_stale_used++;
    fault_apply(router, chosen, out, false, now);
    return KL_OK;
}

static int router_lookup(void *router, const char *zone, const char *uri, kl_target_t *out)
{
    kl_router_t *r = router;
    kl_dest_state_t *s;

    if (zone == NULL || uri == NULL || kl_registry_get_uri(&r->reg, zone, uri, &s) != KL_OK)
        return KL_ENOENT;
    if (!s->routable) {
        kl_registry_unref(&r->reg, s);
        return KL_ENOENT;
    }
    /* in-dialog requests follow their dialog even to a destination that is
     * down or drained: the cookie decided, not the policy */
    if (s->zone_state == NULL)
        s->zone_state = zone_state_get(r, zone);
    s->in_flight++;
    s->attempts++;
    target_fill(s, out); /* the ref kl_registry_get_uri took is the target's */
    out->cls = KL_CLASS_CALL;
    target_account(out, +1);
    fault_apply(r, s, out, true, kl_now_ms());
    return KL_OK;
}

/* ---- health and ejection ---- */

/* The zone of <cl> named <zone>, or NULL. */
static zone_rt_t *zone_of(cluster_rt_t *cl, const char *zone)
{
    for (size_t z = 0; z < cl->nzones; z++) {
        if (strcmp(cl->zones[z].conf->name, zone) == 0)
            return &cl->zones[z];
    }
    return NULL;
}

/* The first cluster of the current snapshot with destination <s>, and its
 * zone: its health and outlier settings govern <s>. */
cluster_rt_t *kl__router_cluster_with(const kl_router_t *r, const kl_dest_state_t *s,
                                      zone_rt_t **zout)
{
    for (size_t c = 0; c < r->gen->nclusters; c++) {
        zone_rt_t *zr = zone_of(&r->gen->clusters[c], s->zone);

        for (size_t d = 0; zr != NULL && d < zr->conf->ndests; d++) {
            if (zr->dests[d] == s || (s->group != NULL && zr->dests[d] == s->group)) {
                if (zout != NULL)
                    *zout = zr;
                return &r->gen->clusters[c];
            }
        }
    }
    return NULL;
}

static void zone_ejected(const zone_rt_t *zr, const kl_dest_state_t *except, unsigned *ejected,
                         unsigned *total)
{
    *ejected = 0;
    *total = 0;
    for (size_t d = 0; d < zr->conf->ndests; d++) {
        const kl_dest_state_t *g = zr->dests[d];
        size_t n = g->is_name ? g->nchildren : 1;

        for (size_t i = 0; i < n; i++) {
            const kl_dest_state_t *s = g->is_name ? g->children[i] : g;

            (*total)++;
            if (s != except && kl_breaker_is_ejected(&s->breaker))
                (*ejected)++;
        }
    }
    if (*total == 0)
        *total = 1;
}

/* Back in service after being down or ejected: ramp up (DESIGN slow-start). */
static void dest_recovered(kl_router_t *r, kl_dest_state_t *s, const kl_conf_cluster_t *cc,
                           uint64_t now_ms, const char *why)
{
    if (cc != NULL && cc->slow_start.window > 0)
        s->slow_start_at = now_ms != 0 ? now_ms : 1;
    if (r->log != NULL)
        kl_log(KL_LOG_NOTICE, r->log, "event=destination_recovered zone=%s dest=%s by=%s", s->zone,
               s->uri, why);
}

/* Applies a health change; <why> names the evidence for the log, NULL for a
 * change taken from the prober (logged, counted and told there). Returns
 * true when the destination went down. */
static bool dest_health_change(kl_router_t *r, kl_dest_state_t *s, const kl_conf_cluster_t *cc,
                               kl_health_change_t ch, uint64_t now_ms, const char *why)
{
    bool own = why != NULL;

    if (ch == KL_HEALTH_WENT_DOWN) {
        s->up = false;
        if (own)
            s->went_down++;
        if (r->log != NULL && own)
            kl_log(KL_LOG_WARN, r->log,
                   "event=destination_down zone=%s dest=%s by=%s consecutive_failures=%u "
                   "last_code=%d",
                   s->zone, s->uri, why, s->health.consec_fail, s->health.last_code);
        if (own && r->health_fn != NULL)
            r->health_fn(r->health_arg, s->zone, s->uri, false, KL_HEALTH_NEWS_CHANGE);
        return true;
    }
    if (ch == KL_HEALTH_WENT_UP) {
        s->up = true;
        if (own)
            s->went_up++;
        if (r->log != NULL && own)
            kl_log(KL_LOG_NOTICE, r->log, "event=destination_up zone=%s dest=%s", s->zone, s->uri);
        if (own)
            dest_recovered(r, s, cc, now_ms, "health");
        else if (cc != NULL && cc->slow_start.window > 0)
            s->slow_start_at = now_ms != 0 ? now_ms : 1;
        if (own && r->health_fn != NULL)
            r->health_fn(r->health_arg, s->zone, s->uri, true, KL_HEALTH_NEWS_CHANGE);
    }
    return false;
}

static void dest_ejected_log(kl_router_t *r, const kl_dest_state_t *s, const kl_conf_outlier_t *o,
                             uint64_t now_ms)
{
    static const char *const why[] = {"none", "consecutive_failures", "failure_percent",
                                      "trial_failed"};

    if (r->log == NULL)
        return;
    kl_log(KL_LOG_WARN, r->log,
           "event=destination_ejected zone=%s dest=%s why=%s times=%u for_ms=%llu", s->zone, s->uri,
           why[s->breaker.why & 3], s->breaker.multiplier,
           (unsigned long long)kl_breaker_remaining_ms(&s->breaker, now_ms));
    (void)o;
}

static bool router_report(void *router, const kl_target_t *t, kl_outcome_t o, int code,
                          uint64_t now_ms)
{
    kl_router_t *r = router;
    kl_dest_state_t *s = t->dest;
    const cluster_state_t *cs = t->cluster_state;
    const kl_conf_cluster_t *cc;
    bool failure, dead = false;

    (void)code;
    if (s == NULL)
        return false;
    if (o != KL_OUTCOME_PROGRESS && t->retry && cs != NULL)
        kl_budget_retry_done(&((cluster_state_t *)cs)->budget); /* the failover has its answer */
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
    case KL_OUTCOME_ABANDONED:
        return false;
    }
    /* in-dialog requests carry no cluster: their outcomes still teach the
     * breaker through the destination's own cluster */
    cc = cs != NULL && cs->conf != NULL ? cs->conf : NULL;
    if (cc == NULL) {
        cluster_rt_t *cl = kl__router_cluster_with(r, s, NULL);

        cc = cl != NULL ? cl->conf : NULL;
    }
    if (cc == NULL)
        return false;
    failure = o != KL_OUTCOME_OK;
    if (t->trial) {
        kl_breaker_state_t st =
            kl_breaker_on_trial_result(&s->breaker, &cc->outlier, failure, now_ms);

        if (st == KL_BREAKER_EJECTED) {
            dest_ejected_log(r, s, &cc->outlier, now_ms);
            dead = true;
        } else if (st == KL_BREAKER_CLOSED) {
            dest_recovered(r, s, cc, now_ms, "trial");
        }
    } else if (kl_breaker_record(&s->breaker, &cc->outlier, failure, now_ms)) {
        zone_rt_t *zr = NULL;
        unsigned ej = 0, total = 1;

        if (kl__router_cluster_with(r, s, &zr) != NULL && zr != NULL)
            zone_ejected(zr, s, &ej, &total);
        if (kl_breaker_try_eject(&s->breaker, &cc->outlier, now_ms, ej, total) ==
            KL_BREAKER_EJECTED) {
            dest_ejected_log(r, s, &cc->outlier, now_ms);
            dead = true;
        }
    }
    /* a refused or reset connection is direct evidence: down now, back
     * after `rise` probes (only where probes run, or it would never return) */
    if (o == KL_OUTCOME_TRANSPORT && cc->health.enabled && s->health_started) {
        if (!r->not_prober)
            dead = dest_health_change(r, s, cc, kl_health_force_down(&s->health, now_ms), now_ms,
                                      "transport") ||
                   dead;
        else if (s->up && r->health_fn != NULL)
            /* the prober decides, and its decision comes back at once */
            r->health_fn(r->health_arg, s->zone, s->uri, false, KL_HEALTH_NEWS_EVIDENCE);
    }
    return dead;
}

/* One destination (or DNS target) at a tick: probe timeouts, probes due,
 * the breaker's evaluation. */
static void tick_dest(kl_router_t *r, const kl_conf_cluster_t *cc, zone_rt_t *zr,
                      kl_dest_state_t *s, uint64_t now_ms, kl_tick_out_t *out)
{
    kl_breaker_state_t st;
    unsigned ej, total;
    bool dead = false;

    if (s->tick_seen == r->tick_no)
        return; /* in an earlier cluster too: governed by that one */
    s->tick_seen = r->tick_no;
    if (cc->health.enabled && s->routable) {
        if (!s->health_started) {
            kl_health_init(&s->health, &cc->health, now_ms, router_rand(r));
            s->health_started = true;
        }
        dead =
            dest_health_change(r, s, cc, kl_health_check_timeout(&s->health, &cc->health, now_ms),
                               now_ms, "probe_timeout");
        if (!r->not_prober && kl_health_due(&s->health, now_ms) && out->nprobes < KL_TICK_MAX) {
            kl_probe_req_t *pr = &out->probes[out->nprobes++];

            snprintf(pr->zone, sizeof(pr->zone), "%s", s->zone);
            snprintf(pr->uri, sizeof(pr->uri), "%s", s->uri);
            pr->transport = s->transport;
            pr->addr = s->addr;
            kl_health_probe_sent(&s->health, &cc->health, now_ms, router_rand(r));
            pr->deadline_ms = s->health.deadline_ms;
        }
        if (r->sync_now && r->health_fn != NULL)
            r->health_fn(r->health_arg, s->zone, s->uri, s->up, KL_HEALTH_NEWS_SYNC);
    } else if (s->health_started && !cc->health.enabled) {
        /* checks turned off by a reload: evidence ends, up again */
        s->health_started = false;
        if (!s->up)
            dest_health_change(r, s, cc, KL_HEALTH_WENT_UP, now_ms, "checks_off");
    }
    zone_ejected(zr, s, &ej, &total);
    st = kl_breaker_tick(&s->breaker, &cc->outlier, now_ms, ej, total);
    if (st == KL_BREAKER_EJECTED) {
        dest_ejected_log(r, s, &cc->outlier, now_ms);
        dead = true;
    }
    if (dead && out->ndead < KL_TICK_MAX)
        out->dead[out->ndead++] = s;
}

static void router_tick(void *router, uint64_t now_ms, kl_tick_out_t *out)
{
    kl_router_t *r = router;
    gen_t *g = r->gen;

    out->nprobes = 0;
    out->ndead = 0;
    r->tick_no++;
    /* the prober tells the other workers its whole state once a second */
    r->sync_now = !r->not_prober && r->health_fn != NULL && now_ms - r->last_sync_ms >= 1000;
    if (r->sync_now)
        r->last_sync_ms = now_ms;
    for (size_t c = 0; c < g->nclusters; c++) {
        cluster_rt_t *cl = &g->clusters[c];

        for (size_t z = 0; z < cl->nzones; z++) {
            zone_rt_t *zr = &cl->zones[z];

            for (size_t d = 0; d < zr->conf->ndests; d++) {
                kl_dest_state_t *s = zr->dests[d];

                if (s->is_name) {
                    for (size_t i = 0; i < s->nchildren; i++)
                        tick_dest(r, cl->conf, zr, s->children[i], now_ms, out);
                    continue;
                }
                tick_dest(r, cl->conf, zr, s, now_ms, out);
            }
        }
    }
}

static void *router_probe_result(void *router, const char *zone, const char *uri, int code,
                                 uint64_t now_ms)
{
    kl_router_t *r = router;
    kl_dest_state_t *s = kl_registry_find(&r->reg, zone, uri);
    cluster_rt_t *cl;
    kl_health_change_t ch;
    bool passed, dead;

    if (s == NULL || !s->health_started || (cl = kl__router_cluster_with(r, s, NULL)) == NULL)
        return NULL;
    ch = kl_health_result(&s->health, &cl->conf->health, code, now_ms);
    passed = code != 0 && kl_health_accepts(&cl->conf->health, code);
    if (passed && kl_breaker_uneject(&s->breaker, now_ms) == KL_BREAKER_CLOSED)
        dest_recovered(r, s, cl->conf, now_ms, "probe"); /* a passing probe ends an ejection */
    dead = dest_health_change(r, s, cl->conf, ch, now_ms, "probe");
    if (passed && r->health_fn != NULL)
        r->health_fn(r->health_arg, s->zone, s->uri, s->up, KL_HEALTH_NEWS_PROBE_PASS);
    return dead ? s : NULL;
}

static void router_overload(void *router, const kl_target_t *t, unsigned percent,
                            uint32_t validity_ms, uint64_t now_ms)
{
    kl_router_t *r = router;
    kl_dest_state_t *s = t->dest;

    if (s == NULL)
        return;
    if (percent != s->oc_percent && r->log != NULL)
        kl_log(KL_LOG_NOTICE, r->log,
               "event=overload_feedback zone=%s dest=%s reduce_percent=%u validity_ms=%u", s->zone,
               s->uri, percent, validity_ms);
    s->oc_percent = validity_ms > 0 ? percent : 0;
    s->oc_until_ms = now_ms + validity_ms;
    s->oc_feedback++;
}

void kl_router_set_log(kl_router_t *r, const kl_log_ctx_t *log)
{
    r->log = log;
}

void kl_router_set_health_hook(kl_router_t *r, kl_router_health_fn fn, void *arg)
{
    r->health_fn = fn;
    r->health_arg = arg;
}

void kl_router_set_prober(kl_router_t *r, bool prober)
{
    r->not_prober = !prober;
}

void *kl_router_health_apply(kl_router_t *r, const char *zone, const char *uri, bool up,
                             bool probe_passed, uint64_t now_ms)
{
    kl_dest_state_t *s = kl_registry_find(&r->reg, zone, uri);
    cluster_rt_t *cl;

    if (s == NULL || (cl = kl__router_cluster_with(r, s, NULL)) == NULL ||
        !cl->conf->health.enabled)
        return NULL;
    if (!s->health_started) {
        kl_health_init(&s->health, &cl->conf->health, now_ms, router_rand(r));
        s->health_started = true;
    }
    if (probe_passed && kl_breaker_uneject(&s->breaker, now_ms) == KL_BREAKER_CLOSED)
        dest_recovered(r, s, cl->conf, now_ms, "probe");
    if (!up)
        return s->up && dest_health_change(r, s, cl->conf, kl_health_force_down(&s->health, now_ms),
                                           now_ms, NULL)
                   ? s
                   : NULL;
    if (!s->up)
        dest_health_change(r, s, cl->conf,
                           kl_health_force_up(&s->health, &cl->conf->health, now_ms), now_ms, NULL);
    return NULL;
}

void *kl_router_health_evidence(kl_router_t *r, const char *zone, const char *uri, uint64_t now_ms)
{
    kl_dest_state_t *s = kl_registry_find(&r->reg, zone, uri);
    cluster_rt_t *cl;

    if (s == NULL || !s->health_started || (cl = kl__router_cluster_with(r, s, NULL)) == NULL ||
        !cl->conf->health.enabled)
        return NULL;
    return dest_health_change(r, s, cl->conf, kl_health_force_down(&s->health, now_ms), now_ms,
                              "transport")
               ? s
               : NULL;
}

static void *router_dialog_begin(void *router, const kl_target_t *t)
{
    kl_dest_state_t *s = t->dest;
    zone_state_t *zs;

    (void)router;
    if (s == NULL)
        return NULL;
    zs = s->zone_state;
    s->dialogs++;
    if (zs != NULL) {
        zs->dialogs++;
        zs->calls++;
    }
    kl_dest_state_ref(s);
    return s;
}

static void router_dialog_end(void *router, void *handle)
{
    kl_router_t *r = router;
    kl_dest_state_t *s = handle;
    zone_state_t *zs;

    if (s == NULL)
        return;
    zs = s->zone_state;
    if (s->dialogs > 0)
        s->dialogs--;
    if (zs != NULL && zs->dialogs > 0) {
        zs->dialogs--;
        if (zs->calls > 0)
            zs->calls--;
    }
    kl_registry_unref(&r->reg, s);
}

static void router_release(void *router, kl_target_t *t)
{
    kl_router_t *r = router;
    kl_dest_state_t *s = t != NULL ? t->dest : NULL;

    if (s == NULL)
        return;
    if (s->in_flight > 0)
        s->in_flight--;
    target_account(t, -1);
    memset(t, 0, sizeof(*t));
    kl_registry_unref(&r->reg, s);
}

const kl_router_ops_t kl_router_ops = {
    .plan_new = router_plan_new,
    .plan_cluster = router_plan_cluster,
    .plan_next = router_plan_next,
    .plan_moved = router_plan_moved,
    .plan_free = router_plan_free,
    .lookup = router_lookup,
    .report = router_report,
    .tick = router_tick,
    .overload = router_overload,
    .probe_result = router_probe_result,
    .dialog_begin = router_dialog_begin,
    .dialog_end = router_dialog_end,
    .release = router_release,
};
