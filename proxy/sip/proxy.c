#include "sip/proxy-int.h"

#include "sip/cookie.h"

#include "core/conf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/stats.h"

#include <event2/event.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define PROXY_SUMMARY_MS 10000

/* What keel answers for itself (RFC 3261 §11.2). */
#define KL_ALLOW                                                                                   \
    "INVITE, ACK, CANCEL, BYE, OPTIONS, MESSAGE, INFO, UPDATE, PRACK, REFER, NOTIFY, SUBSCRIBE"

static const char *const drop_names[KL_DROP_COUNT] = {
    [KL_DROP_JUNK] = "junk",
    [KL_DROP_BAD_RESPONSE] = "bad_response",
    [KL_DROP_UNMATCHED_RESPONSE] = "unmatched_response",
    [KL_DROP_BAD_ACK] = "bad_ack",
    [KL_DROP_UNMATCHED_ACK] = "unmatched_ack",
    [KL_DROP_FRAMING] = "framing",
    [KL_DROP_TOO_BIG] = "too_big",
    [KL_DROP_SCANNER] = "scanner",
};

const char *kl__method_label(kl_method_t m)
{
    const char *n = kl_sip_method_name(m);

    return n != NULL ? n : "OTHER";
}

const char *kl__code_label(int code)
{
    static const char *const names[] = {"0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"};

    return (code >= 100 && code < 700) ? names[code / 100] : "0xx";
}

/* A metrics token from a reason phrase of keel's own (always a literal in
 * this code, so the label set stays bounded): the part after " - ", lower
 * case, anything but letters and digits as '_'. */
void kl__reason_token(const char *reason, char *out, size_t cap)
{
    const char *dash = strstr(reason, " - ");
    const char *s = dash != NULL ? dash + 3 : reason;
    size_t n = 0;

    for (; *s != '\0' && n + 1 < cap; s++) {
        char c = *s;

        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
            c = '_';
        if (c == '_' && (n == 0 || out[n - 1] == '_'))
            continue;
        out[n++] = c;
    }
    while (n > 0 && out[n - 1] == '_')
        n--;
    out[n] = '\0';
}

const char *kl_drop_reason_name(kl_drop_reason_t r)
{
    return (r < KL_DROP_COUNT) ? drop_names[r] : "?";
}

const kl_proxy_stats_t *kl_proxy_stats(const kl_proxy_t *p)
{
    return &p->stats;
}

/* One line per interval with what was dropped or refused since the last one,
 * instead of one line per hostile packet. */
static void proxy_summary_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_proxy_t *p = arg;
    char line[512];
    size_t n = 0;
    bool any = false;

    (void)fd;
    (void)what;
    for (int i = 0; i < KL_DROP_COUNT; i++) {
        uint64_t d = p->stats.dropped[i] - p->logged.dropped[i];

        if (d == 0)
            continue;
        any = true;
        n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu", drop_names[i],
                              (unsigned long long)d);
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
    }
    if (p->stats.bad_requests != p->logged.bad_requests ||
        p->stats.relay_denied != p->logged.relay_denied)
        any = true;
    if (any) {
        kl_log(KL_LOG_NOTICE, &p->w->log,
               "event=hostile_input_summary interval_s=%d bad_requests=%llu relay_denied=%llu%s",
               PROXY_SUMMARY_MS / 1000,
               (unsigned long long)(p->stats.bad_requests - p->logged.bad_requests),
               (unsigned long long)(p->stats.relay_denied - p->logged.relay_denied), line);
    }
    p->logged = p->stats;
    kl__dialog_expire(p, kl_now_ms());
}

kl_proxy_t *kl_proxy_new(kl_worker_t *w, const kl_router_ops_t *ops, void *router)
{
    kl_proxy_t *p = calloc(1, sizeof(*p));
    struct timeval tv = {PROXY_SUMMARY_MS / 1000, 0};

    if (p == NULL)
        return NULL;
    p->w = w;
    p->rops = ops;
    p->router = router;
    kl_branch_gen_init(&p->gen, w->id);
    snprintf(p->server_hdr, sizeof(p->server_hdr), "Server: keel/%s\r\n", KEEL_VERSION);
    p->adm = kl__admission_new(w->conf);
    if (p->adm == NULL || kl__txn_init(p) != KL_OK || kl_htab_init(&p->dialogs, 1024) != KL_OK ||
        kl__probe_init(p) != KL_OK)
        goto fail;
    p->summary = event_new(w->base, -1, EV_PERSIST, proxy_summary_cb, p);
    if (p->summary == NULL || event_add(p->summary, &tv) != 0)
        goto fail;
    return p;
fail:
    kl_proxy_free(p);
    return NULL;
}

void kl_proxy_free(kl_proxy_t *p)
{
    if (p == NULL)
        return;
    kl__probe_shutdown(p);
    kl__txn_shutdown(p);
    kl__dialog_free_all(p);
    if (p->summary != NULL)
        event_free(p->summary);
    free(p->prev_secret);
    kl__admission_free(p->adm);
    free(p);
}

bool kl_proxy_uses_listener(const kl_proxy_t *p, const void *listener)
{
    const kl_htab_t *t = &p->servers;

    for (size_t b = 0; b < t->nbuckets; b++) {
        for (const kl_hnode_t *n = t->buckets[b]; n != NULL; n = n->next) {
            const kl_ptx_t *x = kl_container_of(n, kl_ptx_t, hn);

            if ((const void *)x->src.listener == listener)
                return true;
        }
    }
    return false;
}

void kl_proxy_dest_dead(kl_proxy_t *p, void *dest)
{
    kl__txn_dest_dead(p, dest);
    kl__txn_dead_flush(p);
}

void kl_proxy_collect(const kl_proxy_t *p, kl_stats_t *into)
{
    kl_stats_add(into, KL_ST_WORKER_HANDOFFS, NULL, (double)p->stats.handed_off);
    for (int i = 0; i < KL_DROP_COUNT; i++) {
        const char *l[] = {drop_names[i]};

        kl_stats_add(into, KL_ST_MESSAGES_DROPPED, l, (double)p->stats.dropped[i]);
    }
    kl__admission_collect(p, into);
}

void kl_proxy_reload(kl_proxy_t *p, const kl_conf_t *old_conf, const kl_conf_t *new_conf)
{
    kl__admission_reload(p->adm, new_conf);
    /* a new cookie secret: dialogs signed with the old one keep working for
     * cookie_secret_grace */
    if (old_conf->cookie_secret != NULL && new_conf->cookie_secret != NULL &&
        strcmp(old_conf->cookie_secret, new_conf->cookie_secret) != 0 &&
        new_conf->cookie_grace > 0) {
        char *copy = strdup(old_conf->cookie_secret);

        if (copy != NULL) {
            free(p->prev_secret);
            p->prev_secret = copy;
            p->prev_until_ms = kl_now_ms() + new_conf->cookie_grace;
        }
    }
}

static void dialog_end_elsewhere(kl_proxy_t *p, const char *cid, size_t len);

static void proxy_drop(kl_proxy_t *p, kl_drop_reason_t r)
{
    p->stats.dropped[r]++;
}

/* ---- where responses go (RFC 3261 §18.2.2, RFC 3581) ---- */

/* The address a response to <m> goes to: over a stream the connection (the
 * transport handles it); over UDP the source address, with the source port
 * when the top Via asks for rport, else the Via's sent-by port (5060). */
void kl__proxy_reply_addr(const kl_sip_msg_t *m, const kl_tp_src_t *src, kl_addr_t *dst)
{
    osip_via_t *via = NULL;
    osip_generic_param_t *rport = NULL;
    int port;

    *dst = src->peer;
    if (src->kind != KL_TP_UDP || m == NULL || m->osip == NULL)
        return;
    if (osip_message_get_via(m->osip, 0, &via) < 0 || via == NULL)
        return;
    osip_via_param_get_byname(via, "rport", &rport);
    if (rport != NULL)
        return;
    port = (via->port != NULL) ? atoi(via->port) : 5060;
    if (port <= 0 || port > 65535)
        return;
    if (dst->u.sa.sa_family == AF_INET)
        dst->u.in.sin_port = htons((uint16_t)port);
    else if (dst->u.sa.sa_family == AF_INET6)
        dst->u.in6.sin6_port = htons((uint16_t)port);
}

/* A To tag for keel's stateless answers: the same for every retransmission
 * of one request (RFC 3261 §8.2.6.2), so it is derived from the request. */
static void proxy_stateless_tag(const kl_sip_msg_t *m, char out[17])
{
    static const kl_hdr_id_t ids[] = {KL_HDR_CALL_ID, KL_HDR_FROM, KL_HDR_CSEQ, KL_HDR_VIA};
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        size_t len = 0;
        const char *v = kl_sip_hdr_value(m, ids[i], &len);

        for (size_t j = 0; v != NULL && j < len; j++) {
            h ^= (unsigned char)v[j];
            h *= 0x100000001b3ull;
        }
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* RFC 7339: when the caller's top Via says it supports overload control
 * (an `oc` parameter), keel's answer to it while shedding says by how much
 * to reduce: oc=<percent>;oc-algo="loss";oc-validity=<ms>;oc-seq=<time>.
 * Edits the response in <out> (first Via line, first value). Returns the new
 * length. */
static int proxy_oc_insert(char *out, size_t n, size_t cap, unsigned percent)
{
    char add[128];
    struct timespec ts;
    char *via = NULL, *eol, *p;
    size_t al;

    for (p = out; p < out + n;) {
        eol = memchr(p, '\n', (size_t)(out + n - p));
        if (eol == NULL)
            break;
        if ((eol - p > 4 && strncasecmp(p, "Via:", 4) == 0) ||
            (eol - p > 2 && strncasecmp(p, "v:", 2) == 0)) {
            via = p;
            break;
        }
        p = eol + 1;
    }
    if (via == NULL)
        return (int)n;
    /* the first value ends at a comma or the end of the line */
    for (p = via; p < eol && *p != ','; p++) {
        if (*p == ';' && eol - p >= 3 && strncasecmp(p + 1, "oc", 2) == 0 &&
            (p[3] == ';' || p[3] == ',' || p[3] == '\r' || p[3] == '\n' || p[3] == ' '))
            break;
    }
    if (p >= eol || *p != ';')
        return (int)n;
    clock_gettime(CLOCK_REALTIME, &ts);
    al = (size_t)snprintf(add, sizeof(add), "=%u;oc-algo=\"loss\";oc-validity=%u;oc-seq=%lld.%03ld",
                          percent, 2000u, (long long)ts.tv_sec, ts.tv_nsec / 1000000);
    if (n + al >= cap)
        return (int)n;
    p += 3; /* after ";oc" */
    memmove(p + al, p, (size_t)(out + n - p));
    memcpy(p, add, al);
    return (int)(n + al);
}

/* Answers <m> statelessly with <code> <reason>, plus <extra> header lines. */
void kl__proxy_reply(kl_proxy_t *p, const kl_tp_src_t *src, const kl_sip_msg_t *m, int code,
                     const char *reason, const char *extra)
{
    char out[8192];
    char tag[17];
    char hdrs[1024];
    kl_addr_t dst;
    int n;

    if (m->method == KL_M_ACK)
        return; /* an ACK is never answered */
    proxy_stateless_tag(m, tag);
    snprintf(hdrs, sizeof(hdrs), "%s%s", p->server_hdr, extra != NULL ? extra : "");
    n = kl_sip_reply_raw(m, code, reason, code > 100 ? tag : NULL, hdrs, out, sizeof(out));
    if (n < 0) {
        kl_log(KL_LOG_DEBUG, &p->w->log, "event=reply_failed code=%d err=%s", code, kl_strerror(n));
        return;
    }
    if (p->reply_oc_percent > 0)
        n = proxy_oc_insert(out, (size_t)n, sizeof(out), p->reply_oc_percent);
    kl__proxy_reply_addr(m, src, &dst);
    if (kl_tp_reply(p->w->tp, src, &dst, out, (size_t)n) != KL_OK)
        return;
    p->stats.replied[code / 100 < 7 ? code / 100 : 0]++;
    {
        const char *l[] = {kl__method_label(m->method), kl__code_label(code)};

        kl_stats_add(p->w->stats, KL_ST_RESPONSES_SENT, l, 1);
    }
    if (code >= 300) {
        char codes[16], tok[64];
        const char *l[] = {codes, tok};

        snprintf(codes, sizeof(codes), "%d", code);
        kl__reason_token(reason, tok, sizeof(tok));
        kl_stats_add(p->w->stats, KL_ST_REQUESTS_REJECTED, l, 1);
    }
}

/* ---- who is keel ---- */

static bool host_eq(const char *a, const char *b)
{
    size_t la, lb;

    /* IPv6 references may come bracketed */
    if (*a == '[')
        a++;
    if (*b == '[')
        b++;
    la = strcspn(a, "]");
    lb = strcspn(b, "]");
    return la == lb && strncasecmp(a, b, la) == 0;
}

/* Is <host>[:<port>] keel itself: one of its domains, or a listen address
 * (on a listen port, when a port is given)? */
bool kl__proxy_is_self(const kl_conf_t *conf, const char *host, const char *port)
{
    int portn = (port != NULL) ? atoi(port) : 0;

    if (host == NULL)
        return false;
    for (size_t i = 0; i < conf->ndomains; i++) {
        if (host_eq(host, conf->domains[i]))
            return true;
    }
    for (size_t i = 0; i < conf->nlisten; i++) {
        if (!host_eq(host, conf->listen[i].address))
            continue;
        if (portn == 0 || portn == conf->listen[i].port)
            return true;
    }
    return false;
}

/* Does some route name <host> as its domain (keel may relay for it)? */
static bool proxy_routes_domain(const kl_conf_t *conf, const char *host)
{
    for (size_t i = 0; i < conf->nroutes; i++) {
        const char *d = conf->routes[i].match.domain;

        if (d != NULL && host != NULL && host_eq(host, d))
            return true;
    }
    return false;
}

/* ---- requests ---- */

static void proxy_options_self(kl_proxy_t *p, const kl_tp_src_t *src, const kl_sip_msg_t *m)
{
    kl__proxy_reply(p, src, m, 200, "OK",
                    "Allow: " KL_ALLOW "\r\n"
                    "Accept: application/sdp, text/plain, message/cpim\r\n"
                    "Accept-Encoding: identity\r\n"
                    "Accept-Language: en\r\n"
                    "Supported: \r\n");
}

/* A target from a URI as written in a Route or the Request-URI:
 * [<]sip(s):[user@]host[:port][;transport=x][>]. Only address literals: a
 * name would need DNS. */
static int proxy_uri_target(const char *uri, size_t len, kl_target_t *out)
{
    char host[64];
    const char *s = uri, *end = uri + len, *h, *q;
    unsigned port = 0;
    kl_tp_kind_t kind = KL_TP_UDP;
    bool sips = false;
    size_t hl;

    while (s < end && (*s == ' ' || *s == '<'))
        s++;
    if (end - s >= 5 && strncasecmp(s, "sips:", 5) == 0) {
        s += 5;
        sips = true;
        kind = KL_TP_TLS;
    } else if (end - s >= 4 && strncasecmp(s, "sip:", 4) == 0) {
        s += 4;
    } else {
        return KL_EINVAL;
    }
    for (q = s; q < end && *q != '>' && *q != ';'; q++) {
        if (*q == '@') {
            s = q + 1;
            break;
        }
    }
    if (s < end && *s == '[') {
        h = ++s;
        while (s < end && *s != ']')
            s++;
        hl = (size_t)(s - h);
        if (s < end)
            s++;
    } else {
        h = s;
        while (s < end && *s != ':' && *s != ';' && *s != '>' && *s != '?')
            s++;
        hl = (size_t)(s - h);
    }
    if (hl == 0 || hl >= sizeof(host))
        return KL_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (s < end && *s == ':') {
        s++;
        while (s < end && *s >= '0' && *s <= '9' && port <= 65535)
            port = port * 10 + (unsigned)(*s++ - '0');
        if (port == 0 || port > 65535)
            return KL_EINVAL;
    }
    for (q = s; q + 11 <= end && *q != '>'; q++) {
        if (*q == ';' && strncasecmp(q + 1, "transport=", 10) == 0) {
            if (end - q >= 14 && strncasecmp(q + 11, "tcp", 3) == 0)
                kind = KL_TP_TCP;
            else if (end - q >= 14 && strncasecmp(q + 11, "tls", 3) == 0)
                kind = KL_TP_TLS;
            else if (end - q >= 14 && strncasecmp(q + 11, "udp", 3) == 0)
                kind = KL_TP_UDP;
            break;
        }
    }
    if (port == 0)
        port = (sips || kind == KL_TP_TLS) ? 5061 : 5060;
    memset(out, 0, sizeof(*out));
    if (kl_addr_from_str(host, (uint16_t)port, &out->addr) != KL_OK)
        return KL_EINVAL;
    out->transport = kind;
    out->zone = "";
    out->uri = "";
    return KL_OK;
}

/* An in-dialog request: it must carry keel's Route with a valid cookie
 * (DESIGN.md "Threads and state"); toward the destination the cookie names,
 * or from that destination back toward the caller by the remaining route
 * set or the Request-URI. Forged cookies are refused, never followed. */
static void proxy_in_dialog(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m)
{
    const kl_conf_t *conf = p->w->conf;
    const char *secrets[2];
    size_t nsecrets = 0;
    const char *tok = NULL;
    size_t off, len, toklen = 0;
    kl_cookie_t ck;
    kl_target_t dest, next;
    bool to_caller;

    if (kl_sip_first_value_range(m, KL_HDR_ROUTE, &off, &len) != KL_OK ||
        !kl__fwd_route_is_self(p, m->buf + off, len, &tok, &toklen) || tok == NULL) {
        if (m->method == KL_M_ACK) {
            proxy_drop(p, KL_DROP_UNMATCHED_ACK);
            return;
        }
        p->stats.relay_denied++;
        kl__proxy_reply(p, src, m, 403, "Forbidden - No Route Through keel", NULL);
        return;
    }
    secrets[nsecrets++] = conf->cookie_secret;
    if (p->prev_secret != NULL && kl_now_ms() < p->prev_until_ms)
        secrets[nsecrets++] = p->prev_secret;
    if (kl_cookie_decode(tok, toklen, secrets, nsecrets, &ck) != KL_OK) {
        p->stats.bad_cookies++;
        if (m->method != KL_M_ACK)
            kl__proxy_reply(p, src, m, 403, "Forbidden - Invalid Route Cookie", NULL);
        return;
    }
    if (p->rops->lookup(p->router, ck.zone, ck.dest, &dest) != KL_OK) {
        if (m->method != KL_M_ACK)
            kl__proxy_reply(p, src, m, 404, "Not Found - Unknown Destination", NULL);
        return;
    }
    to_caller = kl_addr_eq(&src->peer, &dest.addr);
    if (!to_caller && src->kind != KL_TP_UDP) {
        char a[64], b[64];

        kl_addr_host(&src->peer, a, sizeof(a));
        kl_addr_host(&dest.addr, b, sizeof(b));
        to_caller = strcmp(a, b) == 0 && src->listener == NULL;
    }
    if (m->method == KL_M_BYE) {
        size_t cl = 0;
        const char *cid = kl_sip_hdr_value(m, KL_HDR_CALL_ID, &cl);

        if (cid != NULL && cl > 0 && !kl__dialog_end(p, cid, cl, kl_now_ms()))
            dialog_end_elsewhere(p, cid, cl);
        kl__dialog_quality(p, m, dest.zone, to_caller);
    }
    if (to_caller) {
        /* back toward the caller: the first Route entry that is not ours,
         * else the Request-URI */
        int rc = KL_EINVAL;
        bool found = false;

        for (int i = kl_sip_hdr_next(m, KL_HDR_ROUTE, -1); i >= 0 && !found;
             i = kl_sip_hdr_next(m, KL_HDR_ROUTE, i)) {
            const kl_sip_hdr_t *h = &m->hdrs[i];
            const char *v = m->buf + h->value_off;
            size_t vl = h->value_len, a = 0;

            /* values on this line */
            while (a < vl && !found) {
                size_t b = a;
                int angle = 0;
                const char *t2;
                size_t t2l;

                while (b < vl && !(v[b] == ',' && angle == 0)) {
                    angle += (v[b] == '<') - (v[b] == '>');
                    b++;
                }
                if (!kl__fwd_route_is_self(p, v + a, b - a, &t2, &t2l)) {
                    found = true;
                    rc = proxy_uri_target(v + a, b - a, &next);
                }
                a = b + 1;
            }
        }
        if (!found) {
            const char *rl = m->buf, *sp1 = memchr(rl, ' ', m->hdr_len);
            const char *sp2 =
                sp1 ? memchr(sp1 + 1, ' ', m->hdr_len - (size_t)(sp1 + 1 - rl)) : NULL;

            if (sp1 != NULL && sp2 != NULL)
                rc = proxy_uri_target(sp1 + 1, (size_t)(sp2 - sp1 - 1), &next);
        }
        p->rops->release(p->router, &dest);
        if (rc != KL_OK) {
            if (m->method != KL_M_ACK)
                kl__proxy_reply(p, src, m, 404, "Not Found - Next Hop Unresolvable", NULL);
            return;
        }
        dest = next;
    }
    if (m->method == KL_M_ACK) {
        /* an ACK for a 2xx is its own transaction: forwarded statelessly */
        kl_fwd_opts_t o = {0};
        char branch[80];
        char *buf;
        size_t blen;

        kl_branch_make(&p->gen, branch, sizeof(branch));
        o.branch = branch;
        o.out_kind = dest.transport;
        o.out_family = dest.addr.u.sa.sa_family;
        o.src = src;
        o.pop_own_routes = true;
        if (kl__fwd_request(p, m, &o, &buf, &blen) == KL_OK) {
            kl_tp_send(p->w->tp, dest.transport, &dest.addr, buf, blen);
            free(buf);
        }
        p->rops->release(p->router, &dest);
        return;
    }
    kl__txn_in_dialog(p, src, m, &dest, ck.zone, to_caller);
}

/* Vias of keel itself in a request: more than one means a loop (a spiral
 * comes back once). */
static bool proxy_looped(kl_proxy_t *p, const kl_sip_msg_t *m)
{
    osip_via_t *via;
    int ours = 0;

    for (int i = 0; osip_message_get_via(m->osip, i, &via) >= 0 && via != NULL; i++) {
        osip_generic_param_t *br = NULL;

        osip_via_param_get_byname(via, "branch", &br);
        if (br != NULL && br->gvalue != NULL &&
            kl_branch_worker(br->gvalue, strlen(br->gvalue)) >= 0 &&
            kl__proxy_is_self(p->w->conf, via->host, via->port))
            ours++;
    }
    return ours >= 2;
}

static void proxy_request(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m)
{
    const kl_conf_t *conf = p->w->conf;
    kl_sip_verdict_t v = {0};
    osip_uri_t *ruri;
    osip_generic_param_t *totag = NULL;
    bool self;

    p->stats.rx_requests++;
    {
        const char *l[] = {kl__method_label(m->method)};

        kl_stats_add(p->w->stats, KL_ST_REQUESTS_RECEIVED, l, 1);
    }
    if (kl_sip_msg_check_request(m, &v) != KL_OK) {
        if (v.code == 0) {
            proxy_drop(p, m->method == KL_M_ACK ? KL_DROP_BAD_ACK : KL_DROP_JUNK);
            return;
        }
        p->stats.bad_requests++;
        kl__proxy_reply(p, src, m, v.code, v.reason, v.code == 420 ? "Unsupported: *\r\n" : NULL);
        return;
    }
    if (kl__admission_scanner(p, m)) {
        proxy_drop(p, KL_DROP_SCANNER);
        return;
    }
    /* retransmissions, CANCEL, the ACK of a non-2xx */
    if (kl__txn_match_request(p, src, m))
        return;
    if (proxy_looped(p, m)) {
        kl__proxy_reply(p, src, m, 482, "Loop Detected", NULL);
        return;
    }
    if (m->osip->to != NULL)
        osip_to_get_tag(m->osip->to, &totag);
    if (totag != NULL && totag->gvalue != NULL && totag->gvalue[0] != '\0') {
        proxy_in_dialog(p, src, m);
        return;
    }

    ruri = m->osip->req_uri;
    self = ruri != NULL && ruri->host != NULL && kl__proxy_is_self(conf, ruri->host, ruri->port);

    /* keel itself: an OPTIONS to its address or domain with no user part */
    if (m->method == KL_M_OPTIONS && self && (ruri->username == NULL || *ruri->username == '\0')) {
        proxy_options_self(p, src, m);
        return;
    }

    /* never an open relay: a sip(s) Request-URI must name one of keel's
     * domains or addresses, or a domain some route is configured for */
    if (ruri != NULL && ruri->host != NULL && !self && !proxy_routes_domain(conf, ruri->host) &&
        ruri->scheme != NULL &&
        (strcasecmp(ruri->scheme, "sip") == 0 || strcasecmp(ruri->scheme, "sips") == 0)) {
        p->stats.relay_denied++;
        kl__proxy_reply(p, src, m, 403, "Forbidden - Relaying Denied", NULL);
        return;
    }

    if (m->method == KL_M_ACK) {
        proxy_drop(p, KL_DROP_UNMATCHED_ACK);
        return;
    }
    kl__txn_new_request(p, src, m);
}

/* A BYE for a call this worker did not set up: with several workers it may
 * have reached the wrong one (a BYE from the server side comes from an
 * address that hashes to any worker), so the others are told; the one that
 * knows the call ends it. */
typedef struct dialog_bye {
    kl_post_t post;
    size_t len;
    char call_id[];
} dialog_bye_t;

static void dialog_bye_run(kl_worker_t *w, kl_post_t *post)
{
    dialog_bye_t *b = (dialog_bye_t *)post;

    if (w->proxy != NULL)
        kl__dialog_end(w->proxy, b->call_id, b->len, kl_now_ms());
}

static void dialog_end_elsewhere(kl_proxy_t *p, const char *cid, size_t len)
{
    for (unsigned i = 0; i < p->w->npeers; i++) {
        dialog_bye_t *b;

        if (i == p->w->id)
            continue;
        b = malloc(sizeof(*b) + len + 1);
        if (b == NULL)
            return;
        b->post.run = dialog_bye_run;
        b->post.control = true; /* a call left counted would hold its bulkhead slot */
        b->len = len;
        memcpy(b->call_id, cid, len);
        b->call_id[len] = '\0';
        if (kl_worker_post(p->w->peers[i], &b->post) == KL_OK)
            p->stats.handed_off++;
    }
}

/* A response that names another worker in its branch (DESIGN.md "Threads
 * and state"): with SO_REUSEPORT the kernel hands a UDP datagram to the
 * socket its addresses hash to, not to the worker that sent the request, so
 * the owner gets a copy through its inbox and handles it as received. */
typedef struct handoff {
    kl_post_t post;
    kl_tp_kind_t kind;
    kl_addr_t peer;
    kl_addr_t local;
    size_t len;
    char buf[];
} handoff_t;

static void handoff_run(kl_worker_t *w, kl_post_t *post)
{
    handoff_t *h = (handoff_t *)post;
    kl_tp_src_t src = {.kind = h->kind, .peer = h->peer, .local = h->local};

    if (w->proxy != NULL)
        kl_proxy_on_msg(w->proxy, &src, h->buf, h->len, KL_OK);
}

/* True when <m> belongs to another worker and was handed to it (or lost
 * trying: the owner is stopping or its inbox is full). */
static bool response_handoff(kl_proxy_t *p, const kl_tp_src_t *src, const kl_sip_msg_t *m,
                             const char *buf, size_t len)
{
    osip_via_t *via = NULL;
    osip_generic_param_t *br = NULL;
    handoff_t *h;
    int owner;

    if (p->w->npeers < 2 || osip_message_get_via(m->osip, 0, &via) < 0 || via == NULL)
        return false;
    osip_via_param_get_byname(via, "branch", &br);
    if (br == NULL || br->gvalue == NULL)
        return false;
    owner = kl_branch_worker(br->gvalue, strlen(br->gvalue));
    if (owner < 0 || (unsigned)owner == p->w->id || (unsigned)owner >= p->w->npeers)
        return false;
    h = malloc(sizeof(*h) + len);
    if (h == NULL)
        return true;
    h->post.run = handoff_run;
    h->post.control = false;
    h->kind = src->kind;
    h->peer = src->peer;
    h->local = src->local;
    h->len = len;
    memcpy(h->buf, buf, len);
    if (kl_worker_post(p->w->peers[owner], &h->post) == KL_OK)
        p->stats.handed_off++;
    else
        proxy_drop(p, KL_DROP_UNMATCHED_RESPONSE);
    return true;
}

static void proxy_response(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m, const char *buf,
                           size_t len)
{
    if (response_handoff(p, src, m, buf, len))
        return;
    p->stats.rx_responses++;
    if (kl_sip_msg_check_response(m) != KL_OK) {
        proxy_drop(p, KL_DROP_BAD_RESPONSE);
        return;
    }
    kl__txn_response(p, src, m);
}

void kl_proxy_on_msg(void *arg, const kl_tp_src_t *src, char *buf, size_t len, int status)
{
    kl_proxy_t *p = arg;
    kl_sip_msg_t m;
    kl_sip_verdict_t v = {0};
    int rc;

    memset(&m, 0, sizeof(m));
    rc = kl_sip_msg_parse(&m, buf, len, src->kind != KL_TP_UDP && status == KL_OK, &v);
    if (status != KL_OK) {
        /* a stream that broke framing: answer what can be answered, then the
         * transport closes the connection */
        proxy_drop(p, status == KL_ETOOBIG ? KL_DROP_TOO_BIG : KL_DROP_FRAMING);
        if (m.nhdrs > 0 && (rc == KL_OK ? m.is_request : v.code != 0)) {
            if (status == KL_ETOOBIG)
                kl__proxy_reply(p, src, &m, 513, "Message Too Large", NULL);
            else
                kl__proxy_reply(p, src, &m, 400, "Bad Request - Broken Framing", NULL);
        }
        goto out;
    }
    if (rc != KL_OK) {
        if (v.code != 0) {
            p->stats.bad_requests++;
            kl__proxy_reply(p, src, &m, v.code, v.reason, NULL);
        } else if (v.why != NULL && strcmp(v.why, "keepalive") == 0) {
            p->stats.keepalives++;
        } else {
            proxy_drop(p, KL_DROP_JUNK);
        }
        goto out;
    }
    if (m.is_request)
        proxy_request(p, src, &m);
    else
        proxy_response(p, src, &m, buf, len);
out:
    kl_sip_msg_free(&m);
}

void kl_proxy_on_tp_error(void *arg, kl_tp_kind_t kind, const kl_addr_t *peer, int err)
{
    kl_proxy_t *p = arg;
    char a[64];

    kl_addr_to_str(peer, a, sizeof(a));
    kl_log(KL_LOG_DEBUG, &p->w->log, "event=transport_error transport=%s peer=%s err=%s",
           kl_tp_kind_name(kind), a, kl_strerror(err));
    kl__txn_tp_error(p, kind, peer);
    kl__probe_tp_error(p, kind, peer);
}
