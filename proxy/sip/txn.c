/* Transactions (RFC 3261 §17) and the proxy core's serial failover (§16,
 * DESIGN.md "Resilience semantics").
 *
 * A kl_ptx_t is the server transaction of one request plus its attempts; a
 * kl_ctx_t is one attempt (a client transaction). Attempts run one at a time:
 * on a failure (408/500/503/504, a timeout before the first provisional, a
 * transport error) the next destination is asked of the router, another zone
 * preferred. Timers are libevent timers embedded in the structs. */
#include "sip/proxy-int.h"

#include "core/conf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/stats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void ptx_attempt(kl_ptx_t *t);
static void ptx_finish(kl_ptx_t *t);

static const char *const cause_names[] = {"code", "timeout", "transport", "none"};

/* ---- metrics (core/stats.h): one worker's store, no locks ---- */

static void st_inflight(kl_ctx_t *c, double delta)
{
    const char *l[] = {c->target.zone, kl_class_name(c->cls)};

    kl_stats_add(c->p->w->stats, KL_ST_TRANSACTIONS_IN_FLIGHT, l, delta);
}

/* The attempt <c> has its final (or is gone): no longer in flight. */
static void ctx_inflight_end(kl_ctx_t *c)
{
    if (!c->in_flight)
        return;
    c->in_flight = false;
    st_inflight(c, -1);
}

static void st_failover(kl_ptx_t *t, int cause)
{
    const char *l[] = {t->cluster != NULL ? t->cluster->name : "", t->failed_zone,
                       cause_names[cause & 3]};

    kl_stats_add(t->p->w->stats, KL_ST_FAILOVERS, l, 1);
}

static void st_setup(kl_ptx_t *t, const kl_ctx_t *c, const char *phase)
{
    const char *l[] = {c->target.zone, phase};

    kl_stats_observe(t->p->w->stats, KL_ST_CALL_SETUP, l,
                     (double)(kl_now_ms() - t->start_ms) / 1000.0);
}

/* A 2xx to an initial INVITE reached the caller through <t>: the call is
 * established. */
static void call_answered(kl_ptx_t *t, kl_ctx_t *c)
{
    kl_proxy_t *p = c->p;

    st_setup(t, c, "answer");
    kl__dialog_start(p, t->call_id, &c->target, t->cls, kl_now_ms());
}

static void ms_to_tv(unsigned ms, struct timeval *tv)
{
    tv->tv_sec = ms / 1000;
    tv->tv_usec = (ms % 1000) * 1000;
}

static void timer_arm(struct event *ev, unsigned ms)
{
    struct timeval tv;

    ms_to_tv(ms, &tv);
    evtimer_add(ev, &tv);
}

static bool code_in(const int *codes, size_t n, int code)
{
    for (size_t i = 0; i < n; i++) {
        if (codes[i] == code)
            return true;
    }
    return false;
}

static char method_class(kl_method_t m)
{
    return (m == KL_M_INVITE || m == KL_M_ACK) ? 'I' : (m == KL_M_CANCEL ? 'C' : 'N');
}

/* Server transaction key (§17.2.3): top Via branch + sent-by + method class.
 * Requests from RFC 2543 elements (no magic cookie) fall back to Call-ID,
 * CSeq number and From tag. */
static int server_key(const kl_sip_msg_t *m, char cls, const char *method, char *out, size_t cap)
{
    osip_via_t *via = NULL;
    osip_generic_param_t *br = NULL;
    int n;

    if (m->osip == NULL || osip_message_get_via(m->osip, 0, &via) < 0 || via == NULL)
        return KL_EPROTO;
    osip_via_param_get_byname(via, "branch", &br);
    if (br != NULL && br->gvalue != NULL && strncmp(br->gvalue, "z9hG4bK", 7) == 0) {
        n = snprintf(out, cap, "%s|%s:%s|%c%s", br->gvalue, via->host ? via->host : "",
                     via->port ? via->port : "", cls, cls == 'N' ? method : "");
    } else {
        osip_generic_param_t *ft = NULL;
        const char *cid =
            (m->osip->call_id && m->osip->call_id->number) ? m->osip->call_id->number : "";

        if (m->osip->from != NULL)
            osip_from_param_get_byname(m->osip->from, "tag", &ft);
        n = snprintf(out, cap, "2543|%s|%s|%s|%c%s", cid,
                     m->osip->cseq && m->osip->cseq->number ? m->osip->cseq->number : "",
                     ft && ft->gvalue ? ft->gvalue : "", cls, cls == 'N' ? method : "");
    }
    return (n > 0 && (size_t)n < cap) ? n : KL_ETOOBIG;
}

/* ---- client transactions ---- */

static void ctx_active_unlink(kl_ctx_t *c)
{
    kl_proxy_t *p = c->p;

    if (c->prev_active != NULL)
        c->prev_active->next_active = c->next_active;
    else if (p->active == c)
        p->active = c->next_active;
    if (c->next_active != NULL)
        c->next_active->prev_active = c->prev_active;
    c->next_active = c->prev_active = NULL;
}

static void ctx_free(kl_ctx_t *c)
{
    kl_proxy_t *p = c->p;

    event_del(&c->t_retrans);
    event_del(&c->t_attempt);
    ctx_inflight_end(c);
    ctx_active_unlink(c);
    kl_htab_del(&p->clients, &c->hn);
    if (c->ptx != NULL && c->ptx->cur == c)
        c->ptx->cur = NULL;
    if (c->owner != NULL) {
        kl_ptx_t *t = c->owner;

        for (unsigned i = 0; i < t->nbranches; i++) {
            if (t->branches[i] == c) {
                t->branches[i] = t->branches[--t->nbranches];
                break;
            }
        }
    }
    if (c->has_target)
        p->rops->release(p->router, &c->target);
    free(c->req);
    free(c);
}

static void ctx_report(kl_ctx_t *c, kl_outcome_t o, int code)
{
    kl_stats_t *st = c->p->w->stats;

    if (c->reported || !c->has_target || c->target.dest == NULL)
        return;
    if (o != KL_OUTCOME_PROGRESS)
        c->reported = true;
    if (c->p->rops->report(c->p->router, &c->target, o, code, kl_now_ms()))
        kl__txn_dest_dead(c->p, c->target.dest);
    if (o == KL_OUTCOME_PROGRESS)
        return;
    c->target.retry = false; /* its budget slot was given back with the outcome */
    if (o != KL_OUTCOME_OK && c->ptx != NULL)
        snprintf(c->ptx->failed_zone, sizeof(c->ptx->failed_zone), "%s", c->target.zone);
    if (!c->initial_invite)
        return;
    {
        const char *l[] = {c->target.zone, c->target.uri, NULL};
        char cs[16];

        if (o != KL_OUTCOME_OK)
            kl_stats_add(st, KL_ST_CALLS_NETWORK_FAILURES, l, 1);
        if (o == KL_OUTCOME_OK || o == KL_OUTCOME_FAILURE) {
            snprintf(cs, sizeof(cs), "%d", code);
            l[2] = cs;
            kl_stats_add(st, KL_ST_CALL_RESPONSES, l, 1);
        }
        if (o == KL_OUTCOME_OK && code >= 200 && code < 300)
            kl_stats_add(st, KL_ST_CALLS_ANSWERED, l, 1);
    }
}

static void ctx_send(kl_ctx_t *c, const char *buf, size_t len)
{
    int rc;

    if (c->target.fault == KL_FAULT_BLACKHOLE)
        return; /* injected: the destination hears nothing */
    rc = kl_tp_send(c->p->w->tp, c->target.transport, &c->target.addr, buf, len);

    if (rc != KL_OK)
        kl_log(KL_LOG_DEBUG, &c->p->w->log, "event=send_failed dest=%s err=%s", c->target.uri,
               kl_strerror(rc));
}

static void ctx_send_cancel(kl_ctx_t *c)
{
    char *buf;
    size_t len;

    if (c->cancel_sent || c->final || !c->invite)
        return;
    c->cancel_sent = true;
    if (kl__fwd_cancel(c->req, c->reqlen, &buf, &len) == KL_OK) {
        ctx_send(c, buf, len);
        free(buf);
    }
}

/* The attempt is over for its ptx; the ctx lingers for late responses: a
 * late 1xx gets a CANCEL, a late final its ACK, a late 2xx goes through. */
static void ctx_abandon(kl_ctx_t *c, unsigned linger_ms)
{
    if (c->ptx != NULL && c->ptx->cur == c)
        c->ptx->cur = NULL;
    c->ptx = NULL;
    event_del(&c->t_retrans);
    event_del(&c->t_attempt);
    ctx_active_unlink(c);
    timer_arm(&c->t_attempt, linger_ms);
}

static void ctx_retrans_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_ctx_t *c = arg;

    (void)fd;
    (void)what;
    if (c->final)
        return;
    if (c->delayed) {
        /* an injected delay is over: the first send, then the usual timers */
        c->delayed = false;
        ctx_send(c, c->req, c->reqlen);
        if (c->target.transport == KL_TP_UDP) {
            c->retrans_ms = KL_T1;
            timer_arm(&c->t_retrans, c->retrans_ms);
        }
        return;
    }
    ctx_send(c, c->req, c->reqlen);
    if (c->invite)
        c->retrans_ms *= 2; /* Timer A: doubles until Timer B */
    else
        c->retrans_ms = (c->retrans_ms * 2 > KL_T2 || c->provisional) ? KL_T2 : c->retrans_ms * 2;
    timer_arm(&c->t_retrans, c->retrans_ms);
}

/* A failed attempt: feed the router, then the next attempt or the answer. */
static void ptx_attempt_failed(kl_ptx_t *t, int cause)
{
    if (t->final_sent)
        return;
    if (t->cancelled || t->plan == NULL || t->cluster == NULL) {
        ptx_finish(t);
        return;
    }
    if (t->attempts < t->cluster->failover.max_attempts) {
        /* counted as a failover only once the next attempt is really made
         * (the retry budget or an empty plan may say no) */
        t->failover_cause = cause;
        ptx_attempt(t);
        return;
    }
    ptx_finish(t);
}

static void ctx_attempt_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_ctx_t *c = arg;
    kl_ptx_t *t = c->ptx;

    (void)fd;
    (void)what;
    if (t == NULL || c->final) {
        /* linger over */
        ctx_free(c);
        return;
    }
    if (c->provisional && c->invite) {
        /* Timer C: the call rang too long. An answer about the call, not the
         * server: CANCEL the branch and tell the caller 408, no failover. */
        kl_log(KL_LOG_INFO, &c->p->w->log, "event=ring_timeout call_id=%s dest=%s", t->call_id,
               c->target.uri);
        ctx_send_cancel(c);
        ctx_abandon(c, KL_TXN_LINGER);
        t->cancelled = true;
        if (t->best_code == 0 || t->best_code > 408)
            t->best_code = 408, free(t->best), t->best = NULL;
        ptx_finish(t);
        return;
    }
    /* no (provisional) response in attempt_timeout: try elsewhere */
    kl_log(KL_LOG_INFO, &c->p->w->log, "event=attempt_timeout call_id=%s zone=%s dest=%s",
           t->call_id, c->target.zone, c->target.uri);
    ctx_report(c, KL_OUTCOME_TIMEOUT, 408);
    if (t->best_code == 0)
        t->best_code = 408; /* §16.7: a timeout counts as a 408 */
    ctx_abandon(c, KL_TXN_LINGER);
    ptx_attempt_failed(t, 1);
}

/* ---- server side ---- */

static void ptx_free(kl_ptx_t *t)
{
    kl_proxy_t *p = t->p;

    event_del(&t->t_server);
    event_del(&t->t_life);
    kl_htab_del(&p->servers, &t->hn);
    if (t->cur != NULL)
        ctx_abandon(t->cur, KL_TXN_LINGER);
    for (unsigned i = 0; i < t->nbranches; i++)
        t->branches[i]->owner = NULL;
    t->nbranches = 0;
    if (t->plan != NULL)
        p->rops->plan_free(p->router, t->plan);
    if (t->req != NULL) {
        kl_sip_msg_free(t->req);
        free(t->req);
    }
    kl_conn_unref(t->src.conn);
    kl_conf_unref(t->conf);
    free(t->best);
    free(t->last);
    free(t);
}

static void ptx_life_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ptx_free(arg);
}

static void ptx_g_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_ptx_t *t = arg;

    (void)fd;
    (void)what;
    if (t->acked || t->last == NULL)
        return;
    kl_tp_reply(t->p->w->tp, &t->src, &t->reply_to, t->last, t->lastlen);
    t->g_ms = (t->g_ms * 2 > KL_T2) ? KL_T2 : t->g_ms * 2;
    timer_arm(&t->t_server, t->g_ms);
}

/* Sends <buf> to the caller; takes ownership of <buf> as the last response. */
static void ptx_send(kl_ptx_t *t, char *buf, size_t len, int code)
{
    kl_proxy_t *p = t->p;

    kl_tp_reply(p->w->tp, &t->src, &t->reply_to, buf, len);
    {
        const char *l[] = {kl__method_label(t->method), kl__code_label(code)};

        kl_stats_add(p->w->stats, KL_ST_RESPONSES_SENT, l, 1);
    }
    free(t->last);
    t->last = buf;
    t->lastlen = len;
    if (code < 200)
        return;
    t->final_code = code;
    /* final: the request is no longer needed, the transaction lingers only
     * to absorb retransmissions and the ACK */
    t->final_sent = true;
    if (t->cur != NULL)
        ctx_abandon(t->cur, KL_TXN_LINGER);
    if (t->req != NULL) {
        kl_sip_msg_free(t->req);
        free(t->req);
        t->req = NULL;
    }
    if (t->method == KL_M_INVITE && code >= 300 && t->src.kind == KL_TP_UDP) {
        t->g_ms = KL_T1; /* Timer G until the ACK, Timer H */
        timer_arm(&t->t_server, t->g_ms);
        timer_arm(&t->t_life, KL_TXN_LINGER);
    } else if (t->src.kind == KL_TP_UDP || t->method == KL_M_INVITE) {
        timer_arm(&t->t_life, KL_TXN_LINGER); /* Timer J / L */
    } else {
        timer_arm(&t->t_life, KL_T4);
    }
}

/* Answers the caller from keel itself (100, 408, 487, 503...). */
static void ptx_reply_local(kl_ptx_t *t, int code, const char *reason, const char *extra)
{
    char out[8192];
    char tag[24];
    char hdrs[512];
    int n;

    if (t->req == NULL)
        return;
    kl_branch_tag(&t->p->gen, tag, sizeof(tag));
    snprintf(hdrs, sizeof(hdrs), "%s%s", t->p->server_hdr, extra != NULL ? extra : "");
    n = kl_sip_reply_raw(t->req, code, reason, code > 100 ? tag : NULL, hdrs, out, sizeof(out));
    if (n < 0)
        return;
    if (code >= 400 && code != 487) {
        char cs[16], tok[64];
        const char *l[] = {cs, tok};

        snprintf(cs, sizeof(cs), "%d", code);
        kl__reason_token(reason, tok, sizeof(tok));
        kl_stats_add(t->p->w->stats, KL_ST_REQUESTS_REJECTED, l, 1);
    }
    {
        char *copy = malloc((size_t)n);

        if (copy == NULL)
            return;
        memcpy(copy, out, (size_t)n);
        ptx_send(t, copy, (size_t)n, code);
    }
}

/* §16.7: 6xx first, else the lowest class */
static bool better(int code, int best)
{
    if (best == 0)
        return true;
    if (best / 100 == 6)
        return false;
    if (code / 100 == 6)
        return true;
    return code / 100 < best / 100;
}

static void ptx_finish(kl_ptx_t *t)
{
    if (t->final_sent)
        return;
    if (t->cancelled && t->best == NULL && t->best_code != 408) {
        ptx_reply_local(t, 487, "Request Terminated", NULL);
        return;
    }
    if (t->best != NULL) {
        char *b = t->best;

        t->best = NULL;
        if (t->best_code == 503) {
            /* §16.7: a 503 from upstream goes out as 500; 503 would say keel
             * itself is overloaded */
            char *sp = memchr(b, ' ', t->bestlen);
            char *eol = memchr(b, '\r', t->bestlen);
            static const char repl[] = "500 Server Internal Error";

            if (sp != NULL && eol != NULL && eol > sp) {
                size_t head = (size_t)(sp + 1 - b), tail = t->bestlen - (size_t)(eol - b);
                char *nb = malloc(head + sizeof(repl) - 1 + tail);

                if (nb != NULL) {
                    memcpy(nb, b, head);
                    memcpy(nb + head, repl, sizeof(repl) - 1);
                    memcpy(nb + head + sizeof(repl) - 1, eol, tail);
                    free(b);
                    b = nb;
                    t->bestlen = head + sizeof(repl) - 1 + tail;
                    t->best_code = 500;
                }
            }
        }
        ptx_send(t, b, t->bestlen, t->best_code);
        return;
    }
    if (t->best_code == 408) {
        ptx_reply_local(t, 408, "Request Timeout", NULL);
        return;
    }
    if (t->best_code >= 300) {
        ptx_reply_local(t, t->best_code == 503 ? 500 : t->best_code,
                        t->best_code == 503 ? "Server Internal Error" : "Final Response", NULL);
        return;
    }
    ptx_reply_local(t, 503, "Service Unavailable - No Destination Available", "Retry-After: 5\r\n");
}

static kl_ptx_t *ptx_new(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m, const char *key,
                         size_t keylen)
{
    kl_ptx_t *t = calloc(1, sizeof(*t));
    const char *cid;
    size_t cl = 0;

    if (t == NULL)
        return NULL;
    t->req = malloc(sizeof(*t->req));
    if (t->req == NULL) {
        free(t);
        return NULL;
    }
    *t->req = *m; /* takes the message over */
    memset(m, 0, sizeof(*m));
    t->p = p;
    t->conf = kl_conf_ref(p->w->conf);
    t->src = *src;
    kl_conn_ref(t->src.conn);
    kl__proxy_reply_addr(t->req, src, &t->reply_to);
    t->method = t->req->method;
    memcpy(t->key, key, keylen);
    t->key[keylen] = '\0';
    cid = kl_sip_hdr_value(t->req, KL_HDR_CALL_ID, &cl);
    snprintf(t->call_id, sizeof(t->call_id), "%.*s", (int)(cl < 100 ? cl : 100), cid ? cid : "");
    t->start_ms = kl_now_ms();
    t->failover_cause = -1;
    evtimer_assign(&t->t_server, p->w->base, ptx_g_cb, t);
    evtimer_assign(&t->t_life, p->w->base, ptx_life_cb, t);
    kl_htab_add(&p->servers, &t->hn, t->key, keylen);
    return t;
}

static kl_ctx_t *ctx_new(kl_ptx_t *t, const kl_target_t *target)
{
    kl_proxy_t *p = t->p;
    kl_ctx_t *c = calloc(1, sizeof(*c));
    int n;

    if (c == NULL)
        return NULL;
    c->p = p;
    c->ptx = t;
    if (t->nbranches < sizeof(t->branches) / sizeof(t->branches[0])) {
        c->owner = t;
        t->branches[t->nbranches++] = c;
    }
    c->target = *target;
    c->has_target = true;
    c->invite = t->method == KL_M_INVITE;
    c->initial_invite = c->invite && t->plan != NULL;
    c->cls = t->cls;
    n = kl_branch_make(&p->gen, c->branch, sizeof(c->branch));
    if (n < 0) {
        if (c->owner != NULL)
            t->nbranches--; /* it was the last one added */
        free(c);
        return NULL;
    }
    n = snprintf(c->key, sizeof(c->key), "%s|%c", c->branch,
                 method_class(t->method == KL_M_CANCEL ? KL_M_CANCEL : t->method));
    evtimer_assign(&c->t_retrans, p->w->base, ctx_retrans_cb, c);
    evtimer_assign(&c->t_attempt, p->w->base, ctx_attempt_cb, c);
    kl_htab_add(&p->clients, &c->hn, c->key, (size_t)n);
    c->next_active = p->active;
    if (p->active != NULL)
        p->active->prev_active = c;
    p->active = c;
    return c;
}

static bool method_records_route(kl_method_t m)
{
    return m == KL_M_INVITE || m == KL_M_SUBSCRIBE || m == KL_M_REFER || m == KL_M_NOTIFY;
}

/* Sends the request to <target> as one attempt. Returns KL_OK, or an error
 * when it could not even be sent (the caller moves on). Takes over the
 * target's ref in every case. */
static int ptx_send_attempt(kl_ptx_t *t, kl_target_t *target, bool in_dialog)
{
    kl_proxy_t *p = t->p;
    kl_fwd_opts_t o;
    kl_ctx_t *c;
    int rc;

    c = ctx_new(t, target);
    if (c == NULL) {
        p->rops->release(p->router, target);
        return KL_ENOMEM;
    }
    memset(&o, 0, sizeof(o));
    o.branch = c->branch;
    o.out_kind = target->transport;
    o.out_family = target->addr.u.sa.sa_family;
    o.src = &t->src;
    o.record_route = !in_dialog && method_records_route(t->method);
    o.rr_zone = target->zone;
    o.rr_dest = target->uri;
    o.pop_own_routes = true;
    rc = kl__fwd_request(p, t->req, &o, &c->req, &c->reqlen);
    if (rc != KL_OK) {
        ctx_free(c);
        return rc;
    }
    t->cur = c;
    if (c->initial_invite) {
        const char *l[] = {target->zone, target->uri};

        kl_stats_add(p->w->stats, KL_ST_CALLS_SEIZED, l, 1);
    }
    if (target->fault != KL_FAULT_NONE) {
        const char *l[] = {kl_fault_kind_name(target->fault), target->zone};

        kl_stats_add(p->w->stats, KL_ST_FAULT_HITS, l, 1);
    }
    if (target->fault == KL_FAULT_ABORT) {
        /* injected: as if the destination had answered 503, nothing sent */
        ctx_report(c, KL_OUTCOME_FAILURE, 503);
        if (better(503, t->best_code)) {
            free(t->best);
            t->best = NULL;
            t->best_code = 503;
        }
        ctx_free(c);
        return KL_EPERM;
    }
    if (target->fault == KL_FAULT_DELAY && target->fault_delay_ms > 0) {
        c->delayed = true;
        timer_arm(&c->t_retrans, target->fault_delay_ms);
        rc = KL_OK;
    } else if (target->fault == KL_FAULT_BLACKHOLE) {
        rc = KL_OK;
    } else {
        rc = kl_tp_send(p->w->tp, target->transport, &target->addr, c->req, c->reqlen);
    }
    if (rc != KL_OK) {
        ctx_report(c, KL_OUTCOME_TRANSPORT, 503);
        ctx_free(c);
        return rc;
    }
    {
        const char *l[] = {kl__method_label(t->method), target->zone};

        kl_stats_add(p->w->stats, KL_ST_REQUESTS_FORWARDED, l, 1);
    }
    c->in_flight = true;
    st_inflight(c, +1);
    if (target->transport == KL_TP_UDP && !c->delayed && target->fault != KL_FAULT_BLACKHOLE) {
        c->retrans_ms = KL_T1;
        timer_arm(&c->t_retrans, c->retrans_ms);
    }
    /* attempt_timeout is about failing over; an in-dialog request has
     * nowhere else to go, so it gets the RFC's Timer B/F */
    timer_arm(&c->t_attempt, (t->cluster != NULL && t->plan != NULL)
                                 ? t->cluster->failover.attempt_timeout
                                 : KL_TXN_LINGER);
    return KL_OK;
}

static void ptx_attempt(kl_ptx_t *t)
{
    kl_proxy_t *p = t->p;

    while (!t->final_sent && t->attempts < t->cluster->failover.max_attempts) {
        kl_target_t target;
        int rc = p->rops->plan_next(p->router, t->plan, &target);

        if (rc == KL_EBUSY && t->best_code == 0 && t->best == NULL) {
            /* every zone that could take it is at its limits (bulkheads) */
            ptx_reply_local(t, 503, "Service Unavailable - Capacity Full", "Retry-After: 5\r\n");
            return;
        }
        if (rc != KL_OK)
            break;
        t->attempts++;
        if (t->attempts > 1 && t->failover_cause >= 0) {
            p->failovers[t->failover_cause & 3]++;
            st_failover(t, t->failover_cause);
        }
        t->failover_cause = -1;
        kl_log(KL_LOG_DEBUG, &p->w->log, "event=attempt call_id=%s n=%u zone=%s dest=%s",
               t->call_id, t->attempts, target.zone, target.uri);
        rc = ptx_send_attempt(t, &target, false);
        if (rc == KL_OK)
            return;
        t->failover_cause = rc == KL_EPERM ? 0 : 2; /* an injected abort is a 503 */
    }
    ptx_finish(t);
}

static kl_class_t classify(kl_method_t m)
{
    switch (m) {
    case KL_M_MESSAGE:
        return KL_CLASS_CHAT;
    case KL_M_INVITE:
    case KL_M_ACK:
    case KL_M_BYE:
    case KL_M_CANCEL:
    case KL_M_PRACK:
    case KL_M_UPDATE:
    case KL_M_INFO:
        return KL_CLASS_CALL;
    default:
        return KL_CLASS_OTHER;
    }
}

void kl__txn_new_request(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m)
{
    char key[200];
    int kl = server_key(m, method_class(m->method), m->osip->sip_method, key, sizeof(key));
    kl_route_req_t rr;
    kl_plan_t *plan;
    kl_ptx_t *t;
    osip_uri_t *u = m->osip->req_uri;

    if (kl < 0) {
        kl__proxy_reply(p, src, m, 400, "Bad Request - Unusable Via", NULL);
        return;
    }
    memset(&rr, 0, sizeof(rr));
    rr.method = m->osip->sip_method;
    rr.ruri_user = u != NULL ? u->username : NULL;
    rr.ruri_host = u != NULL ? u->host : NULL;
    rr.cls = classify(m->method);
    if ((m->method == KL_M_INVITE || m->method == KL_M_MESSAGE) &&
        kl__admission_emergency(p->w->conf, m))
        rr.cls = KL_CLASS_EMERGENCY;
    rr.source = &src->peer;
    {
        const char *why = NULL;

        if (kl__admission_check(p, src, m, rr.cls, &why) != KL_OK) {
            p->reply_oc_percent = kl__admission_oc(p, rr.cls);
            kl__proxy_reply(p, src, m, 503, why, "Retry-After: 2\r\n");
            p->reply_oc_percent = 0;
            return;
        }
    }
    plan = p->rops->plan_new(p->router, &rr);
    if (plan == NULL) {
        kl__proxy_reply(p, src, m, 404, "Not Found - No Route", NULL);
        return;
    }
    t = ptx_new(p, src, m, key, (size_t)kl);
    if (t == NULL) {
        p->rops->plan_free(p->router, plan);
        return;
    }
    t->plan = plan;
    t->cluster = p->rops->plan_cluster(plan);
    t->cls = rr.cls;
    if (t->method == KL_M_INVITE)
        ptx_reply_local(t, 100, "Trying", NULL);
    ptx_attempt(t);
}

void kl__txn_in_dialog(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m, kl_target_t *target,
                       const char *zone, bool to_caller)
{
    char key[200];
    int kl = server_key(m, method_class(m->method), m->osip->sip_method, key, sizeof(key));
    kl_ptx_t *t;

    if (kl < 0) {
        p->rops->release(p->router, target);
        kl__proxy_reply(p, src, m, 400, "Bad Request - Unusable Via", NULL);
        return;
    }
    t = ptx_new(p, src, m, key, (size_t)kl);
    if (t == NULL) {
        p->rops->release(p->router, target);
        return;
    }
    t->cls = classify(t->method);
    t->attempts = 1;
    snprintf(t->dlg_zone, sizeof(t->dlg_zone), "%s", zone != NULL ? zone : "");
    t->dlg_to_caller = to_caller;
    /* the cluster of the dialog's zone gives the timeouts (no failover) */
    for (size_t i = 0; target->zone != NULL && i < t->conf->nclusters && t->cluster == NULL; i++) {
        if (kl_conf_zone(&t->conf->clusters[i], target->zone) != NULL)
            t->cluster = &t->conf->clusters[i];
    }
    if (t->method == KL_M_INVITE)
        ptx_reply_local(t, 100, "Trying", NULL);
    if (ptx_send_attempt(t, target, true) != KL_OK) {
        t->best_code = 0;
        ptx_reply_local(t, 503, "Service Unavailable - Destination Unreachable",
                        "Retry-After: 5\r\n");
    }
}

/* ---- matching requests: retransmissions, ACK, CANCEL ---- */

static void ptx_cancel(kl_ptx_t *t)
{
    kl_ctx_t *c = t->cur;

    t->cancelled = true;
    if (t->final_sent)
        return;
    if (c != NULL && c->provisional) {
        ctx_send_cancel(c); /* the 487 comes back through the branch */
        return;
    }
    if (c != NULL) {
        /* no provisional yet: CANCEL may not be sent before one (§9.1) */
        c->cancel_pending = true;
        ctx_abandon(c, KL_TXN_LINGER);
    }
    ptx_reply_local(t, 487, "Request Terminated", NULL);
}

bool kl__txn_match_request(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m)
{
    char key[200];
    kl_hnode_t *hn;
    kl_ptx_t *t;
    int kl;

    if (m->method == KL_M_ACK || m->method == KL_M_CANCEL)
        kl = server_key(m, 'I', "", key, sizeof(key));
    else
        kl = server_key(m, method_class(m->method), m->osip->sip_method, key, sizeof(key));
    if (kl < 0)
        return false;
    hn = kl_htab_get(&p->servers, key, (size_t)kl);
    t = hn != NULL ? kl_container_of(hn, kl_ptx_t, hn) : NULL;

    if (m->method == KL_M_ACK) {
        if (t == NULL || !t->final_sent || t->final_code < 300)
            return false; /* an ACK for a 2xx: its own transaction, routed */
        /* the ACK of a non-2xx final: absorbed hop by hop */
        if (!t->acked) {
            t->acked = true;
            event_del(&t->t_server);
            event_del(&t->t_life);
            timer_arm(&t->t_life, src->kind == KL_TP_UDP ? KL_T4 : 0);
        }
        return true;
    }
    if (m->method == KL_M_CANCEL) {
        if (t == NULL || t->method != KL_M_INVITE) {
            kl__proxy_reply(p, src, m, 481, "Call/Transaction Does Not Exist", NULL);
            return true;
        }
        kl__proxy_reply(p, src, m, 200, "OK", NULL);
        ptx_cancel(t);
        return true;
    }
    if (t == NULL)
        return false;
    /* a retransmission: the last response again, nothing forwarded */
    if (t->last != NULL)
        kl_tp_reply(p->w->tp, src, &t->reply_to, t->last, t->lastlen);
    return true;
}

/* ---- responses ---- */

/* A response for no transaction of ours but with our Via on top (a 2xx
 * retransmission after the transaction ended, a late 2xx): forwarded
 * statelessly by the next Via. */
static void txn_forward_stateless(kl_proxy_t *p, kl_sip_msg_t *m)
{
    osip_via_t *via = NULL;
    osip_generic_param_t *rcv = NULL, *rport = NULL;
    kl_tp_kind_t kind = KL_TP_UDP;
    kl_addr_t dst;
    const char *host;
    int port;
    char *buf;
    size_t len;

    if (osip_message_get_via(m->osip, 1, &via) < 0 || via == NULL)
        return;
    osip_via_param_get_byname(via, "received", &rcv);
    osip_via_param_get_byname(via, "rport", &rport);
    host = (rcv != NULL && rcv->gvalue != NULL) ? rcv->gvalue : via->host;
    port = (rport != NULL && rport->gvalue != NULL) ? atoi(rport->gvalue)
           : via->port != NULL                      ? atoi(via->port)
                                                    : 5060;
    if (via->protocol != NULL && strcasecmp(via->protocol, "TCP") == 0)
        kind = KL_TP_TCP;
    if (host == NULL || port <= 0 || port > 65535 ||
        kl_addr_from_str(host, (uint16_t)port, &dst) != KL_OK)
        return;
    if (kl__fwd_response(m, &buf, &len) != KL_OK)
        return;
    kl_tp_send(p->w->tp, kind, &dst, buf, len);
    free(buf);
}

static void ctx_ack(kl_ctx_t *c, const kl_sip_msg_t *resp)
{
    char *buf;
    size_t len;

    if (kl__fwd_ack(c->req, c->reqlen, resp, &buf, &len) == KL_OK) {
        ctx_send(c, buf, len);
        free(buf);
    }
}

/* RFC 7339: our Via (the top one of a response) carries the destination's
 * overload feedback: oc=<percent to reduce>, oc-validity=<ms>. */
static void txn_overload_feedback(kl_proxy_t *p, kl_ctx_t *c, osip_via_t *via)
{
    osip_generic_param_t *oc = NULL, *val = NULL;
    long pct, validity = 2000; /* RFC 7339 §5.2: a default of 2 s ... */

    osip_via_param_get_byname(via, "oc", &oc);
    if (oc == NULL || oc->gvalue == NULL || p->rops->overload == NULL || c->target.dest == NULL)
        return;
    pct = strtol(oc->gvalue, NULL, 10);
    osip_via_param_get_byname(via, "oc-validity", &val);
    if (val != NULL && val->gvalue != NULL)
        validity = strtol(val->gvalue, NULL, 10);
    if (pct < 0 || pct > 100 || validity < 0 || validity > 86400000)
        return;
    p->rops->overload(p->router, &c->target, (unsigned)pct, (uint32_t)validity, kl_now_ms());
}

void kl__txn_response(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m)
{
    osip_via_t *via = NULL;
    osip_generic_param_t *br = NULL;
    char key[128];
    kl_hnode_t *hn;
    kl_ctx_t *c;
    kl_ptx_t *t;
    int code = m->status, n;
    char *fwd;
    size_t fwdlen;

    (void)src;

    if (osip_message_get_via(m->osip, 0, &via) < 0 || via == NULL) {
        p->stats.dropped[KL_DROP_BAD_RESPONSE]++;
        return;
    }
    osip_via_param_get_byname(via, "branch", &br);
    if (m->method == KL_M_CANCEL)
        return; /* the answer to a CANCEL of ours: nothing to do */
    if (br == NULL || br->gvalue == NULL || kl_branch_worker(br->gvalue, strlen(br->gvalue)) < 0) {
        p->stats.dropped[KL_DROP_UNMATCHED_RESPONSE]++;
        return;
    }
    if (m->method == KL_M_OPTIONS && kl__probe_response(p, br->gvalue, code))
        return;
    n = snprintf(key, sizeof(key), "%s|%c", br->gvalue, method_class(m->method));
    hn = (n > 0 && (size_t)n < sizeof(key)) ? kl_htab_get(&p->clients, key, (size_t)n) : NULL;
    if (hn == NULL) {
        if (code >= 200 && code < 300)
            txn_forward_stateless(p, m);
        else
            p->stats.dropped[KL_DROP_UNMATCHED_RESPONSE]++;
        return;
    }
    c = kl_container_of(hn, kl_ctx_t, hn);
    t = c->ptx;
    txn_overload_feedback(p, c, via);
    {
        const char *l[] = {kl__method_label(m->method), kl__code_label(code), c->target.zone};

        kl_stats_add(p->w->stats, KL_ST_RESPONSES_RECEIVED, l, 1);
    }

    if (c->final) {
        /* a retransmitted final */
        if (code >= 300 && c->invite)
            ctx_ack(c, m);
        else if (code >= 200 && code < 300)
            txn_forward_stateless(p, m);
        return;
    }

    if (m->method == KL_M_BYE && code >= 200 && code < 300) {
        const kl_ptx_t *o = c->owner != NULL ? c->owner : c->ptx;

        /* the 2xx comes from whoever got the BYE */
        if (o != NULL && o->dlg_zone[0] != '\0')
            kl__dialog_quality(p, m, o->dlg_zone, !o->dlg_to_caller);
    }
    if (code < 200) {
        if (!c->provisional) {
            c->provisional = true;
            ctx_report(c, KL_OUTCOME_PROGRESS, code);
        }
        if (t == NULL || c->cancel_pending || t->cancelled) {
            ctx_send_cancel(c);
            return;
        }
        if (c->invite) {
            /* alive: the attempt timer gives way to Timer C */
            event_del(&c->t_retrans);
            event_del(&c->t_attempt);
            timer_arm(&c->t_attempt,
                      t->cluster != NULL ? t->cluster->failover.ring_timeout : 180000);
        }
        if (code > 100 && m->osip->vias.nb_elt >= 2 &&
            kl__fwd_response(m, &fwd, &fwdlen) == KL_OK) {
            if (code >= 180 && code < 190 && c->initial_invite && !t->rang) {
                t->rang = true;
                st_setup(t, c, "ringing");
            }
            ptx_send(t, fwd, fwdlen, code);
        }
        return;
    }

    c->final = true;
    ctx_inflight_end(c);
    event_del(&c->t_retrans);
    event_del(&c->t_attempt);

    if (code < 300) {
        ctx_report(c, KL_OUTCOME_OK, code);
        if (t == NULL && c->owner != NULL && !c->owner->final_sent && m->osip->vias.nb_elt >= 2 &&
            kl__fwd_response(m, &fwd, &fwdlen) == KL_OK) {
            /* a late 2xx on an abandoned branch answers the call (§16.7):
             * forward it and cancel the branch still trying */
            kl_ptx_t *o = c->owner;

            if (o->cur != NULL) {
                if (o->cur->provisional)
                    ctx_send_cancel(o->cur);
                else
                    o->cur->cancel_pending = true;
            }
            if (c->initial_invite)
                call_answered(o, c);
            ptx_send(o, fwd, fwdlen, code);
        } else if (t == NULL || t->final_sent) {
            /* late 2xx after the caller got its answer: the caller must
             * still see it (its ACK and BYE end that dialog) */
            txn_forward_stateless(p, m);
        } else if (kl__fwd_response(m, &fwd, &fwdlen) == KL_OK) {
            if (c->initial_invite)
                call_answered(t, c);
            ptx_send(t, fwd, fwdlen, code);
        }
        ctx_free(c);
        return;
    }

    /* 3xx-6xx */
    if (c->invite)
        ctx_ack(c, m);
    {
        const kl_conf_cluster_t *cl = (t != NULL) ? t->cluster : NULL;
        bool failure = cl != NULL ? code_in(cl->failover.codes, cl->failover.ncodes, code)
                                  : (code == 408 || code == 500 || code == 503 || code == 504);

        ctx_report(c, failure ? KL_OUTCOME_FAILURE : KL_OUTCOME_OK, code);
        if (t == NULL || t->final_sent) {
            ctx_abandon(c, src->kind == KL_TP_UDP ? KL_TXN_LINGER : 0);
            return;
        }
        if (better(code, t->best_code)) {
            free(t->best);
            t->best = NULL;
            t->best_code = code;
            /* a response that lost the caller's Via (a broken server) is
             * not forwarded as it is: keel answers with its status */
            if (m->osip->vias.nb_elt >= 2 && kl__fwd_response(m, &fwd, &fwdlen) == KL_OK) {
                t->best = fwd;
                t->bestlen = fwdlen;
            }
        }
        ctx_abandon(c, src->kind == KL_TP_UDP ? KL_TXN_LINGER : 0);
        if (failure && cl != NULL && t->plan != NULL)
            ptx_attempt_failed(t, 0);
        else
            ptx_finish(t);
    }
}

void kl__txn_tp_error(kl_proxy_t *p, kl_tp_kind_t kind, const kl_addr_t *peer)
{
    kl_ctx_t *c = p->active, *next;

    for (; c != NULL; c = next) {
        kl_ptx_t *t = c->ptx;

        next = c->next_active;
        if (c->final || c->target.transport != kind || !kl_addr_eq(&c->target.addr, peer))
            continue;
        ctx_report(c, KL_OUTCOME_TRANSPORT, 503);
        ctx_abandon(c, 0);
        if (t == NULL)
            continue;
        if (t->plan != NULL) {
            ptx_attempt_failed(t, 2);
        } else {
            ptx_reply_local(t, 503, "Service Unavailable - Destination Unreachable",
                            "Retry-After: 5\r\n");
        }
        /* ptx_attempt may have added to the list; restart from the head */
        next = p->active;
    }
}

void kl__txn_dest_dead(kl_proxy_t *p, void *dest)
{
    for (size_t i = 0; i < p->ndead; i++) {
        if (p->dead[i] == dest)
            return;
    }
    if (p->ndead < KL__DEAD_MAX)
        p->dead[p->ndead++] = dest;
}

static bool dest_is_dead(const kl_proxy_t *p, const void *dest)
{
    for (size_t i = 0; i < p->ndead; i++) {
        if (p->dead[i] == dest)
            return true;
    }
    return false;
}

void kl__txn_dead_flush(kl_proxy_t *p)
{
    kl_ctx_t *c, *next;

    if (p->ndead == 0)
        return;
    for (c = p->active; c != NULL; c = next) {
        kl_ptx_t *t = c->ptx;

        next = c->next_active;
        if (t == NULL || c->final || t->final_sent || t->plan == NULL ||
            !dest_is_dead(p, c->target.dest))
            continue;
        /* serial forking: a call ringing (or waiting) on a destination that
         * died is not left there until Timer C; CANCEL that branch and try
         * the next one */
        kl_log(KL_LOG_INFO, &p->w->log,
               "event=dead_destination_failover call_id=%s zone=%s dest=%s "
               "ringing=%d",
               t->call_id, c->target.zone, c->target.uri, c->provisional);
        if (c->invite) {
            if (c->provisional)
                ctx_send_cancel(c);
            else
                c->cancel_pending = true;
        }
        ctx_report(c, KL_OUTCOME_ABANDONED, 0); /* no new evidence: the policy said it */
        if (p->rops->plan_moved != NULL)
            p->rops->plan_moved(p->router, t->plan);
        if (t->best_code == 0)
            t->best_code = 503;
        snprintf(t->failed_zone, sizeof(t->failed_zone), "%s", c->target.zone);
        ctx_abandon(c, KL_TXN_LINGER);
        ptx_attempt_failed(t, 2);
        next = p->active; /* the list changed */
    }
    p->ndead = 0;
}

int kl__txn_init(kl_proxy_t *p)
{
    if (kl_htab_init(&p->servers, 1024) != KL_OK)
        return KL_ENOMEM;
    if (kl_htab_init(&p->clients, 1024) != KL_OK)
        return KL_ENOMEM;
    return KL_OK;
}

void kl__txn_shutdown(kl_proxy_t *p)
{
    /* free every transaction: ptx first (they abandon their ctx), then ctx */
    for (size_t i = 0; p->servers.buckets != NULL && i < p->servers.nbuckets; i++) {
        while (p->servers.buckets[i] != NULL)
            ptx_free(kl_container_of(p->servers.buckets[i], kl_ptx_t, hn));
    }
    for (size_t i = 0; p->clients.buckets != NULL && i < p->clients.nbuckets; i++) {
        while (p->clients.buckets[i] != NULL)
            ctx_free(kl_container_of(p->clients.buckets[i], kl_ctx_t, hn));
    }
    kl_htab_free(&p->servers);
    kl_htab_free(&p->clients);
}

const char *kl_fault_kind_name(kl_fault_kind_t k)
{
    switch (k) {
    case KL_FAULT_ABORT:
        return "abort";
    case KL_FAULT_DELAY:
        return "delay";
    case KL_FAULT_BLACKHOLE:
        return "blackhole";
    default:
        return "none";
    }
}

const char *kl_class_name(kl_class_t c)
{
    static const char *const names[KL_CLASS_COUNT] = {"call", "chat", "other", "emergency"};

    return (c < KL_CLASS_COUNT) ? names[c] : "?";
}
