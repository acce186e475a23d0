/* Building the bytes keel sends on behalf of others: forwarded requests and
 * responses are the received buffer with a few splices (DESIGN.md "Parsing
 * and forwarding"); CANCEL and hop-by-hop ACK are built from the request as
 * it was sent. */
#include "sip/proxy-int.h"

#include "sip/cookie.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/worker.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FWD_MAX_EDITS 24

/* Calls <fn> for each comma-separated value of [s, s+len), outside quotes and
 * <...>; offsets are relative to <s>, whitespace trimmed. Stops early when
 * <fn> returns false. */
typedef bool (*fwd_value_fn)(void *arg, size_t off, size_t len);

static void fwd_split_values(const char *s, size_t len, fwd_value_fn fn, void *arg)
{
    size_t start = 0;
    bool quoted = false;
    int angle = 0;

    for (size_t i = 0; i <= len; i++) {
        char c = (i < len) ? s[i] : ',';

        if (quoted) {
            if (c == '\\' && i + 1 < len)
                i++;
            else if (c == '"')
                quoted = false;
            continue;
        }
        if (c == '"')
            quoted = true;
        else if (c == '<')
            angle++;
        else if (c == '>' && angle > 0)
            angle--;
        else if (c == ',' && angle == 0) {
            size_t a = start, b = i;

            while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r' || s[a] == '\n'))
                a++;
            while (b > a &&
                   (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r' || s[b - 1] == '\n'))
                b--;
            if (b > a && !fn(arg, a, b - a))
                return;
            start = i + 1;
        }
    }
}

int kl__fwd_local(kl_proxy_t *p, kl_tp_kind_t kind, int family, char *host, size_t hostlen,
                  uint16_t *port)
{
    kl_listener_t *l = kl_tp_any_listener(p->w->tp, kind, family);

    if (l == NULL)
        l = kl_tp_any_listener(p->w->tp, KL_TP_UDP, family);
    if (l == NULL)
        l = kl_tp_any_listener(p->w->tp, KL_TP_TCP, family);
    if (l == NULL)
        return KL_ENOENT;
    kl_addr_host(kl_listener_addr(l), host, hostlen);
    *port = kl_addr_port(kl_listener_addr(l));
    return KL_OK;
}

/* host as it goes in a URI or Via: IPv6 in brackets */
static void fwd_uri_host(const char *host, char *out, size_t outlen)
{
    if (strchr(host, ':') != NULL)
        snprintf(out, outlen, "[%s]", host);
    else
        snprintf(out, outlen, "%s", host);
}

bool kl__fwd_route_is_self(kl_proxy_t *p, const char *val, size_t len, const char **tok,
                           size_t *toklen)
{
    char host[128], port[8];
    const char *s = val, *end = val + len, *h, *q;
    size_t hl;

    *tok = NULL;
    *toklen = 0;
    while (s < end && *s != '<')
        s++;
    if (s == end)
        s = val;
    else
        s++;
    if (end - s >= 4 && strncasecmp(s, "sip:", 4) == 0)
        s += 4;
    else if (end - s >= 5 && strncasecmp(s, "sips:", 5) == 0)
        s += 5;
    else
        return false;
    /* skip a user part */
    for (q = s; q < end && *q != '>' && *q != ';'; q++) {
        if (*q == '@') {
            s = q + 1;
            break;
        }
    }
    h = s;
    if (h < end && *h == '[') {
        while (s < end && *s != ']')
            s++;
        if (s < end)
            s++;
    } else {
        while (s < end && *s != ':' && *s != ';' && *s != '>')
            s++;
    }
    hl = (size_t)(s - h);
    if (hl == 0 || hl >= sizeof(host))
        return false;
    memcpy(host, h, hl);
    host[hl] = '\0';
    port[0] = '\0';
    if (s < end && *s == ':') {
        size_t pl = 0;

        s++;
        while (s < end && isdigit((unsigned char)*s) && pl < sizeof(port) - 1)
            port[pl++] = *s++;
        port[pl] = '\0';
    }
    if (!kl__proxy_is_self(p->w->conf, host, port[0] ? port : NULL))
        return false;
    /* the cookie: ;kc=TOKEN */
    for (q = s; q + 4 <= end && *q != '>'; q++) {
        if (*q == ';' && strncasecmp(q + 1, "kc=", 3) == 0) {
            const char *t = q + 4, *te = t;

            while (te < end && *te != ';' && *te != '>' && *te != ',' && *te != ' ')
                te++;
            *tok = t;
            *toklen = (size_t)(te - t);
            break;
        }
    }
    return true;
}

/* ---- own Route entries ---- */

typedef struct route_scan {
    kl_proxy_t *p;
    const char *line; /* the header value start */
    size_t nvals, nself;
    bool stop;
    size_t first_kept_off; /* offset (in value) of the first value kept */
} route_scan_t;

static bool route_scan_cb(void *arg, size_t off, size_t len)
{
    route_scan_t *r = arg;
    const char *tok;
    size_t toklen;

    r->nvals++;
    if (!r->stop && kl__fwd_route_is_self(r->p, r->line + off, len, &tok, &toklen)) {
        r->nself++;
        return true;
    }
    r->stop = true;
    r->first_kept_off = off;
    return false;
}

static size_t fwd_pop_own_routes(kl_proxy_t *p, const kl_sip_msg_t *m, kl_splice_t *e, size_t n,
                                 size_t max)
{
    for (int i = kl_sip_hdr_next(m, KL_HDR_ROUTE, -1); i >= 0 && n < max;
         i = kl_sip_hdr_next(m, KL_HDR_ROUTE, i)) {
        const kl_sip_hdr_t *h = &m->hdrs[i];
        route_scan_t r = {.p = p, .line = m->buf + h->value_off};

        fwd_split_values(r.line, h->value_len, route_scan_cb, &r);
        if (r.nself == 0)
            break;
        if (!r.stop) {
            /* every value on this line is ours: drop the line */
            e[n++] = (kl_splice_t){.off = h->off, .del = h->len};
            continue;
        }
        /* drop the leading own values, keep the rest of the line */
        e[n++] = (kl_splice_t){.off = h->value_off, .del = r.first_kept_off};
        break;
    }
    return n;
}

/* ---- received / rport on the caller's Via (RFC 3261 §18.2.1, RFC 3581) ---- */

static size_t fwd_via_received(const kl_sip_msg_t *m, const kl_tp_src_t *src, char *scratch,
                               size_t scratchlen, kl_splice_t *e, size_t n)
{
    osip_via_t *via = NULL;
    size_t off, len;
    char ip[64];
    const char *v, *rp = NULL;
    int w;

    if (kl_sip_first_value_range(m, KL_HDR_VIA, &off, &len) != KL_OK)
        return n;
    if (m->osip == NULL || osip_message_get_via(m->osip, 0, &via) < 0 || via == NULL)
        return n;
    kl_addr_host(&src->peer, ip, sizeof(ip));
    v = m->buf + off;
    /* a bare ;rport (no value) */
    for (size_t i = 0; i + 6 <= len; i++) {
        if (v[i] == ';' && strncasecmp(v + i + 1, "rport", 5) == 0) {
            char c = (i + 6 < len) ? v[i + 6] : ';';

            if (c == ';' || c == ' ' || c == '\t' || c == ',') {
                rp = v + i;
                break;
            }
        }
    }
    if (rp != NULL) {
        w = snprintf(scratch, scratchlen, ";received=%s;rport=%u", ip, kl_addr_port(&src->peer));
        e[n++] = (kl_splice_t){
            .off = (size_t)(rp - m->buf), .del = 6, .ins = scratch, .inslen = (size_t)w};
        return n;
    }
    if (via->host != NULL && !(strcasecmp(via->host, ip) == 0)) {
        osip_generic_param_t *gp = NULL;

        osip_via_param_get_byname(via, "received", &gp);
        if (gp != NULL)
            return n;
        w = snprintf(scratch, scratchlen, ";received=%s", ip);
        e[n++] = (kl_splice_t){.off = off + len, .del = 0, .ins = scratch, .inslen = (size_t)w};
    }
    return n;
}

static int fwd_cmp_edit(const void *a, const void *b)
{
    const kl_splice_t *x = a, *y = b;

    if (x->off != y->off)
        return x->off < y->off ? -1 : 1;
    return (x->del < y->del) ? -1 : (x->del > y->del);
}

static int fwd_apply(const char *src, size_t len, kl_splice_t *e, size_t n, char **out,
                     size_t *outlen)
{
    size_t cap = len + 1;
    char *buf;
    int r;

    for (size_t i = 0; i < n; i++)
        cap += e[i].inslen;
    qsort(e, n, sizeof(*e), fwd_cmp_edit);
    buf = malloc(cap);
    if (buf == NULL)
        return KL_ENOMEM;
    r = kl_splice_apply(src, len, e, n, buf, cap);
    if (r < 0) {
        free(buf);
        return r;
    }
    *out = buf;
    *outlen = (size_t)r;
    return KL_OK;
}

static int fwd_rr_line(kl_proxy_t *p, const char *host, uint16_t port, kl_tp_kind_t kind,
                       const char *tok, char *out, size_t outlen)
{
    char h[80];

    (void)p;
    fwd_uri_host(host, h, sizeof(h));
    if (kind == KL_TP_UDP)
        return snprintf(out, outlen, "Record-Route: <sip:%s:%u;lr;kc=%s>\r\n", h, port, tok);
    return snprintf(out, outlen, "Record-Route: <sip:%s:%u;transport=%s;lr;kc=%s>\r\n", h, port,
                    kl_tp_kind_name(kind), tok);
}

int kl__fwd_request(kl_proxy_t *p, const kl_sip_msg_t *m, const kl_fwd_opts_t *o, char **out,
                    size_t *outlen)
{
    kl_splice_t e[FWD_MAX_EDITS];
    size_t n = 0;
    char top[2048];
    char vhost[80], host[64];
    char rcv[128], mfs[8];
    uint16_t port;
    int w = 0, mf, rc;

    rc = kl__fwd_local(p, o->out_kind, o->out_family, host, sizeof(host), &port);
    if (rc != KL_OK)
        return rc;
    fwd_uri_host(host, vhost, sizeof(vhost));
    /* ;oc: keel understands RFC 7339 overload control from its next hops */
    w = snprintf(top, sizeof(top), "Via: SIP/2.0/%s %s:%u;branch=%s;oc\r\n",
                 kl_tp_kind_via(o->out_kind), vhost, port, o->branch);

    if (o->record_route) {
        kl_cookie_t c;
        char tok[512];
        char inhost[64];
        int tl;

        memset(&c, 0, sizeof(c));
        snprintf(c.zone, sizeof(c.zone), "%s", o->rr_zone != NULL ? o->rr_zone : "");
        snprintf(c.dest, sizeof(c.dest), "%s", o->rr_dest != NULL ? o->rr_dest : "");
        c.flags = (uint8_t)o->src->kind;
        c.issued = (uint32_t)time(NULL);
        tl = kl_cookie_encode(&c, p->w->conf->cookie_secret, strlen(p->w->conf->cookie_secret), tok,
                              sizeof(tok));
        if (tl < 0)
            return tl;
        tok[tl] = '\0';
        kl_addr_host(&o->src->local, inhost, sizeof(inhost));
        /* two entries when the two sides differ in transport or family: the
         * top one faces the destination, the bottom one the caller */
        if (o->src->kind != o->out_kind ||
            o->src->local.u.sa.sa_family != (sa_family_t)o->out_family)
            w += fwd_rr_line(p, host, port, o->out_kind, tok, top + w, sizeof(top) - (size_t)w);
        w += fwd_rr_line(p, inhost, kl_addr_port(&o->src->local), o->src->kind, tok, top + w,
                         sizeof(top) - (size_t)w);
    }
    mf = kl_sip_msg_max_forwards(m);
    if (mf < 0)
        w += snprintf(top + w, sizeof(top) - (size_t)w, "Max-Forwards: 70\r\n");
    if (w <= 0 || (size_t)w >= sizeof(top))
        return KL_ETOOBIG;
    e[n++] =
        (kl_splice_t){.off = kl_sip_msg_headers_off(m), .del = 0, .ins = top, .inslen = (size_t)w};
    if (mf > 0) {
        if (kl_sip_edit_max_forwards(m, mf - 1, mfs, &e[n]) == KL_OK)
            n++;
    }
    n = fwd_via_received(m, o->src, rcv, sizeof(rcv), e, n);
    if (o->pop_own_routes)
        n = fwd_pop_own_routes(p, m, e, n, FWD_MAX_EDITS);
    return fwd_apply(m->buf, m->len, e, n, out, outlen);
}

int kl__fwd_response(const kl_sip_msg_t *m, char **out, size_t *outlen)
{
    kl_splice_t e;

    if (kl_sip_edit_pop_first(m, KL_HDR_VIA, &e) != KL_OK)
        return KL_EPROTO;
    return fwd_apply(m->buf, m->len, &e, 1, out, outlen);
}

/* ---- CANCEL and ACK (RFC 3261 §9.1, §17.1.1.3) ---- */

static int fwd_copy_line(const kl_sip_msg_t *m, int i, char *out, size_t cap, size_t *w)
{
    const kl_sip_hdr_t *h = &m->hdrs[i];

    if (*w + h->len >= cap)
        return KL_ETOOBIG;
    memcpy(out + *w, m->buf + h->off, h->len);
    *w += h->len;
    return KL_OK;
}

/* request line target of <m>: between the first and the last space */
static int fwd_ruri(const kl_sip_msg_t *m, const char **ruri, size_t *len)
{
    const char *sp1 = memchr(m->buf, ' ', m->hdr_len);
    const char *eol = memchr(m->buf, '\n', m->hdr_len);
    const char *sp2;

    if (sp1 == NULL || eol == NULL)
        return KL_EPROTO;
    sp2 = eol;
    while (sp2 > sp1 && *sp2 != ' ')
        sp2--;
    if (sp2 <= sp1)
        return KL_EPROTO;
    *ruri = sp1 + 1;
    *len = (size_t)(sp2 - sp1 - 1);
    return KL_OK;
}

static int fwd_build_from_req(const char *req, size_t reqlen, const kl_sip_msg_t *resp,
                              const char *method, char **out, size_t *outlen)
{
    kl_sip_msg_t m;
    kl_sip_verdict_t v;
    const char *ruri, *cseq;
    size_t rl, cl, w = 0, cap;
    char *buf = NULL;
    int rc, i;
    unsigned long num;

    memset(&m, 0, sizeof(m));
    rc = kl_sip_msg_parse(&m, req, reqlen, false, &v);
    if (rc != KL_OK)
        goto out;
    rc = fwd_ruri(&m, &ruri, &rl);
    if (rc != KL_OK)
        goto out;
    cseq = kl_sip_hdr_value(&m, KL_HDR_CSEQ, &cl);
    if (cseq == NULL) {
        rc = KL_EPROTO;
        goto out;
    }
    num = strtoul(cseq, NULL, 10);
    cap = m.hdr_len + (resp != NULL ? resp->hdr_len : 0) + 256;
    buf = malloc(cap);
    if (buf == NULL) {
        rc = KL_ENOMEM;
        goto out;
    }
    w = (size_t)snprintf(buf, cap, "%s %.*s SIP/2.0\r\n", method, (int)rl, ruri);
    /* only the top Via: ours */
    i = kl_sip_hdr_next(&m, KL_HDR_VIA, -1);
    if (i < 0 || (rc = fwd_copy_line(&m, i, buf, cap, &w)) != KL_OK)
        goto out;
    for (i = kl_sip_hdr_next(&m, KL_HDR_ROUTE, -1); i >= 0;
         i = kl_sip_hdr_next(&m, KL_HDR_ROUTE, i))
        if ((rc = fwd_copy_line(&m, i, buf, cap, &w)) != KL_OK)
            goto out;
    if ((i = kl_sip_hdr_next(&m, KL_HDR_FROM, -1)) < 0 ||
        (rc = fwd_copy_line(&m, i, buf, cap, &w)) != KL_OK)
        goto out;
    /* To: the response's (with its tag) for an ACK, the request's for CANCEL */
    if (resp != NULL)
        i = kl_sip_hdr_next(resp, KL_HDR_TO, -1);
    else
        i = kl_sip_hdr_next(&m, KL_HDR_TO, -1);
    if (i < 0 || (rc = fwd_copy_line(resp != NULL ? resp : &m, i, buf, cap, &w)) != KL_OK)
        goto out;
    if ((i = kl_sip_hdr_next(&m, KL_HDR_CALL_ID, -1)) < 0 ||
        (rc = fwd_copy_line(&m, i, buf, cap, &w)) != KL_OK)
        goto out;
    w += (size_t)snprintf(buf + w, cap - w,
                          "CSeq: %lu %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", num,
                          method);
    if (w >= cap) {
        rc = KL_ETOOBIG;
        goto out;
    }
    *out = buf;
    *outlen = w;
    buf = NULL;
    rc = KL_OK;
out:
    free(buf);
    kl_sip_msg_free(&m);
    return rc;
}

int kl__fwd_cancel(const char *req, size_t reqlen, char **out, size_t *outlen)
{
    return fwd_build_from_req(req, reqlen, NULL, "CANCEL", out, outlen);
}

int kl__fwd_ack(const char *req, size_t reqlen, const kl_sip_msg_t *resp, char **out,
                size_t *outlen)
{
    return fwd_build_from_req(req, reqlen, resp, "ACK", out, outlen);
}
