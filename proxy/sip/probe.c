/* Health probes (DESIGN.md "Resilience semantics"): SIP OPTIONS sent to the
 * destinations the routing policy says are due, their answers fed back to
 * it. The policy (upstream/) decides and keeps the state; this file only
 * sends, matches and times out. A tick every KL__PROBE_TICK_MS also runs the
 * policy's periodic work (probe timeouts, ejection evaluation) and moves
 * the calls of destinations declared dead elsewhere. */
#include "sip/proxy-int.h"

#include "core/errors.h"
#include "core/log.h"
#include "core/stats.h"

#include <event2/event.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kl_probe {
    kl_hnode_t hn;
    kl_probe_t *next;
    char branch[80];
    char zone[64];
    char uri[256];
    kl_tp_kind_t transport;
    kl_addr_t addr;
    uint64_t deadline_ms;
    uint64_t next_retrans_ms;
    unsigned retrans_ms;
    char *req;
    size_t reqlen;
};

static void probe_free(kl_proxy_t *p, kl_probe_t *pr)
{
    kl_probe_t **pp = &p->probes_list;

    kl_htab_del(&p->probes, &pr->hn);
    while (*pp != NULL && *pp != pr)
        pp = &(*pp)->next;
    if (*pp == pr)
        *pp = pr->next;
    free(pr->req);
    free(pr);
}

static void probe_count(kl_proxy_t *p, const char *zone, const char *result)
{
    const char *l[] = {zone, result};

    kl_stats_add(p->w->stats, KL_ST_PROBES, l, 1);
}

/* Builds and sends an OPTIONS to <req>'s destination. */
static void probe_send(kl_proxy_t *p, const kl_probe_req_t *req, uint64_t now_ms)
{
    char host[64], vhost[80], tag[24], cid[40], buf[1024];
    uint16_t port;
    kl_probe_t *pr;
    int n;

    if (kl__fwd_local(p, req->transport, req->addr.u.sa.sa_family, host, sizeof(host), &port) !=
        KL_OK)
        return;
    snprintf(vhost, sizeof(vhost), strchr(host, ':') != NULL ? "[%s]" : "%s", host);
    pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return;
    if (kl_branch_make(&p->gen, pr->branch, sizeof(pr->branch)) < 0) {
        free(pr);
        return;
    }
    kl_branch_tag(&p->gen, tag, sizeof(tag));
    kl_branch_tag(&p->gen, cid, sizeof(cid));
    n = snprintf(buf, sizeof(buf),
                 "OPTIONS %s SIP/2.0\r\n"
                 "Via: SIP/2.0/%s %s:%u;branch=%s;rport\r\n"
                 "Max-Forwards: 70\r\n"
                 "From: <sip:keel@%s>;tag=%s\r\n"
                 "To: <%s>\r\n"
                 "Call-ID: probe-%s@%s\r\n"
                 "CSeq: 1 OPTIONS\r\n"
                 "User-Agent: keel/%s health-check\r\n"
                 "Accept: application/sdp\r\n"
                 "Content-Length: 0\r\n\r\n",
                 req->uri, kl_tp_kind_via(req->transport), vhost, port, pr->branch, vhost, tag,
                 req->uri, cid, vhost, KEEL_VERSION);
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        free(pr);
        return;
    }
    pr->req = malloc((size_t)n);
    if (pr->req == NULL) {
        free(pr);
        return;
    }
    memcpy(pr->req, buf, (size_t)n);
    pr->reqlen = (size_t)n;
    snprintf(pr->zone, sizeof(pr->zone), "%s", req->zone);
    snprintf(pr->uri, sizeof(pr->uri), "%s", req->uri);
    pr->transport = req->transport;
    pr->addr = req->addr;
    pr->deadline_ms = req->deadline_ms;
    pr->retrans_ms = KL_T1;
    pr->next_retrans_ms = now_ms + KL_T1;
    kl_htab_add(&p->probes, &pr->hn, pr->branch, strlen(pr->branch));
    pr->next = p->probes_list;
    p->probes_list = pr;
    probe_count(p, pr->zone, "sent");
    if (kl_tp_send(p->w->tp, pr->transport, &pr->addr, pr->req, pr->reqlen) != KL_OK) {
        /* could not even send (connection refused at once): a failed probe */
        void *dead = p->rops->probe_result(p->router, pr->zone, pr->uri, 0, now_ms);

        probe_count(p, pr->zone, "failed");
        if (dead != NULL)
            kl__txn_dest_dead(p, dead);
        probe_free(p, pr);
    }
}

static void probe_tick_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_proxy_t *p = arg;
    uint64_t now = kl_now_ms();
    kl_probe_t *pr, *next;

    (void)fd;
    (void)what;
    /* probes past their deadline: the policy counts the timeout itself */
    for (pr = p->probes_list; pr != NULL; pr = next) {
        next = pr->next;
        if (now >= pr->deadline_ms) {
            probe_count(p, pr->zone, "timeout");
            probe_free(p, pr);
        } else if (pr->transport == KL_TP_UDP && now >= pr->next_retrans_ms) {
            kl_tp_send(p->w->tp, pr->transport, &pr->addr, pr->req, pr->reqlen); /* Timer E */
            pr->retrans_ms = pr->retrans_ms * 2 > KL_T2 ? KL_T2 : pr->retrans_ms * 2;
            pr->next_retrans_ms = now + pr->retrans_ms;
        }
    }
    kl__admission_tick(p, now);
    p->rops->tick(p->router, now, p->tick_out);
    for (size_t i = 0; i < p->tick_out->nprobes; i++)
        probe_send(p, &p->tick_out->probes[i], now);
    for (size_t i = 0; i < p->tick_out->ndead; i++)
        kl__txn_dest_dead(p, p->tick_out->dead[i]);
    kl__txn_dead_flush(p);
}

bool kl__probe_response(kl_proxy_t *p, const char *branch, int code)
{
    kl_hnode_t *hn = kl_htab_get(&p->probes, branch, strlen(branch));
    kl_probe_t *pr;
    void *dead;

    if (hn == NULL)
        return false;
    if (code < 200)
        return true; /* a provisional: the final decides */
    pr = kl_container_of(hn, kl_probe_t, hn);
    probe_count(p, pr->zone, "answered");
    dead = p->rops->probe_result(p->router, pr->zone, pr->uri, code, kl_now_ms());
    if (dead != NULL)
        kl__txn_dest_dead(p, dead);
    probe_free(p, pr);
    return true;
}

void kl__probe_tp_error(kl_proxy_t *p, kl_tp_kind_t kind, const kl_addr_t *peer)
{
    kl_probe_t *pr, *next;

    for (pr = p->probes_list; pr != NULL; pr = next) {
        void *dead;

        next = pr->next;
        if (pr->transport != kind || !kl_addr_eq(&pr->addr, peer))
            continue;
        probe_count(p, pr->zone, "failed");
        dead = p->rops->probe_result(p->router, pr->zone, pr->uri, 0, kl_now_ms());
        if (dead != NULL)
            kl__txn_dest_dead(p, dead);
        probe_free(p, pr);
    }
}

int kl__probe_init(kl_proxy_t *p)
{
    struct timeval tv = {0, KL__PROBE_TICK_MS * 1000};

    if (kl_htab_init(&p->probes, 64) != KL_OK)
        return KL_ENOMEM;
    p->tick_out = calloc(1, sizeof(*p->tick_out));
    if (p->tick_out == NULL)
        return KL_ENOMEM;
    if (p->rops->tick == NULL)
        return KL_OK;
    p->probe_timer = event_new(p->w->base, -1, EV_PERSIST, probe_tick_cb, p);
    if (p->probe_timer == NULL || event_add(p->probe_timer, &tv) != 0)
        return KL_ENOMEM;
    return KL_OK;
}

void kl__probe_shutdown(kl_proxy_t *p)
{
    if (p->probe_timer != NULL)
        event_free(p->probe_timer);
    p->probe_timer = NULL;
    while (p->probes_list != NULL)
        probe_free(p, p->probes_list);
    kl_htab_free(&p->probes);
    free(p->tick_out);
    p->tick_out = NULL;
}
