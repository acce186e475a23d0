/* A worker's transports: the kl_tp_t, its listener registry, the send and
 * reply dispatch and the counters. The sockets' work is in udp.c and tcp.c. */
#include "transport/transport.h"

#include "transport/transport-int.h"
#include "core/errors.h"
#include "core/log.h"

#include <event2/event.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TP_LISTEN_BACKLOG 1024

uint64_t kl__tp_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

size_t kl__addr_key(const kl_addr_t *a, char *out)
{
    if (a->u.sa.sa_family == AF_INET6) {
        out[0] = 6;
        memcpy(out + 1, &a->u.in6.sin6_port, 2);
        memcpy(out + 3, &a->u.in6.sin6_addr, 16);
        return 19;
    }
    out[0] = 4;
    memcpy(out + 1, &a->u.in.sin_port, 2);
    memcpy(out + 3, &a->u.in.sin_addr, 4);
    return 7;
}

void kl__tp_summary(kl_tp_t *tp)
{
    kl_tp_stats_t *s = &tp->stats, *o = &tp->stats_logged;
    uint64_t now = kl__tp_now_ms();

    if (tp->summary_ms != 0 && now - tp->summary_ms < KL__SUMMARY_EVERY_MS)
        return;
    tp->summary_ms = now;
    kl_log(KL_LOG_NOTICE, &tp->log,
           "event=transport_limits conns_rejected=%llu framing_errors=%llu too_big=%llu "
           "header_timeouts=%llu send_errors=%llu",
           (unsigned long long)(s->conns_rejected - o->conns_rejected),
           (unsigned long long)(s->framing_errors - o->framing_errors),
           (unsigned long long)(s->too_big - o->too_big),
           (unsigned long long)(s->header_timeouts - o->header_timeouts),
           (unsigned long long)(s->send_errors - o->send_errors));
    *o = *s;
}

kl_tp_t *kl_tp_new(struct event_base *base, const kl_conf_transport_t *limits, bool reuseport,
                   kl_tp_msg_cb on_msg, kl_tp_err_cb on_err, void *arg)
{
    kl_tp_t *tp;

    if (base == NULL || limits == NULL || on_msg == NULL)
        return NULL;
    tp = calloc(1, sizeof(*tp));
    if (tp == NULL)
        return NULL;
    tp->base = base;
    tp->limits = *limits;
    tp->reuseport = reuseport;
    tp->on_msg = on_msg;
    tp->on_err = on_err;
    tp->arg = arg;
    tp->log.worker = -1;
    tp->icmp_ev = event_new(base, -1, 0, kl__udp_icmp_cb, tp);
    if (tp->icmp_ev == NULL || kl_htab_init(&tp->by_peer, 64) != KL_OK ||
        kl__udp_bufs_alloc(tp) != KL_OK || kl__tcp_bufs_alloc(tp) != KL_OK) {
        kl_tp_free(tp);
        return NULL;
    }
    return tp;
}

void kl_tp_set_log_ctx(kl_tp_t *tp, const kl_log_ctx_t *ctx)
{
    tp->log = *ctx;
}

void kl_tp_set_limits(kl_tp_t *tp, const kl_conf_transport_t *limits)
{
    tp->limits = *limits;
    /* on failure the old, smaller buffers stay: datagrams past them count as
     * too big, which is the safe side */
    kl__udp_bufs_alloc(tp);
    kl__tcp_bufs_alloc(tp);
}

const kl_tp_stats_t *kl_tp_stats(const kl_tp_t *tp)
{
    return &tp->stats;
}

kl_tp_kind_t kl_listener_kind(const kl_listener_t *lst)
{
    return lst->kind;
}

const kl_addr_t *kl_listener_addr(const kl_listener_t *lst)
{
    return &lst->addr;
}

/* ---- listeners ---- */

bool kl__tp_has_listener(const kl_tp_t *tp, const kl_listener_t *lst)
{
    for (const kl_listener_t *l = tp->listeners; l != NULL; l = l->next) {
        if (l == lst)
            return true;
    }
    return false;
}

kl_listener_t *kl_tp_find_listener(kl_tp_t *tp, kl_tp_kind_t kind, const char *address,
                                   uint16_t port)
{
    for (kl_listener_t *l = tp->listeners; l != NULL; l = l->next) {
        if (l->kind == kind && l->port == port && strcmp(l->address, address) == 0)
            return l;
    }
    return NULL;
}

kl_listener_t *kl_tp_any_listener(kl_tp_t *tp, kl_tp_kind_t kind, int family)
{
    kl_listener_t *found = NULL;

    /* the list is newest first; the first configured one is the answer */
    for (kl_listener_t *l = tp->listeners; l != NULL; l = l->next) {
        if (l->kind == kind && l->addr.u.sa.sa_family == family)
            found = l;
    }
    return found;
}

static bool tp_addr_wildcard(const kl_addr_t *a)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;

    if (a->u.sa.sa_family == AF_INET6)
        return memcmp(&a->u.in6.sin6_addr, &any6, sizeof(any6)) == 0;
    return a->u.in.sin_addr.s_addr == htonl(INADDR_ANY);
}

/* Opens, configures and binds the socket for <cl>. Returns the fd, or -1
 * with errno set. */
static int tp_bind(kl_tp_t *tp, const kl_conf_listen_t *cl, const kl_addr_t *a)
{
    int type = cl->transport == KL_TP_UDP ? SOCK_DGRAM : SOCK_STREAM;
    int fd = socket(a->u.sa.sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, saved;

    if (fd < 0)
        return -1;
    /* TCP: rebind over TIME_WAIT after a restart. Not UDP, where it would let
     * a second daemon bind the same port and split the traffic silently. */
    if (cl->transport == KL_TP_TCP &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (tp->reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (a->u.sa.sa_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (cl->transport == KL_TP_UDP)
        kl__udp_sockopts(fd);
    if (bind(fd, &a->u.sa, a->len) < 0)
        goto fail;
    if (cl->transport == KL_TP_TCP && listen(fd, TP_LISTEN_BACKLOG) < 0)
        goto fail;
    return fd;
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

int kl_tp_listen(kl_tp_t *tp, const kl_conf_listen_t *cl, kl_listener_t **out)
{
    kl_listener_t *l;
    kl_addr_t a;
    socklen_t al;
    int fd;

    if (cl->transport != KL_TP_UDP && cl->transport != KL_TP_TCP) {
        errno = EPROTONOSUPPORT;
        return KL_EIO;
    }
    if (cl->address == NULL || kl_addr_from_str(cl->address, cl->port, &a) != KL_OK)
        return KL_EINVAL;
    if (kl_tp_find_listener(tp, cl->transport, cl->address, cl->port) != NULL)
        return KL_EEXIST;
    fd = tp_bind(tp, cl, &a);
    if (fd < 0)
        return KL_EIO;
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        close(fd);
        return KL_ENOMEM;
    }
    l->tp = tp;
    l->kind = cl->transport;
    l->fd = fd;
    l->port = cl->port;
    snprintf(l->address, sizeof(l->address), "%s", cl->address);
    al = sizeof(l->addr.u.ss);
    if (getsockname(fd, &l->addr.u.sa, &al) == 0)
        l->addr.len = al;
    else
        l->addr = a;
    l->wildcard = tp_addr_wildcard(&l->addr);
    l->ev = event_new(tp->base, fd, EV_READ | EV_PERSIST,
                      l->kind == KL_TP_UDP ? kl__udp_read_cb : kl__tcp_accept_cb, l);
    if (l->kind == KL_TP_TCP)
        l->pause = evtimer_new(tp->base, kl__tcp_pause_cb, l);
    if (l->ev == NULL || (l->kind == KL_TP_TCP && l->pause == NULL) ||
        event_add(l->ev, NULL) != 0) {
        if (l->ev != NULL)
            event_free(l->ev);
        if (l->pause != NULL)
            event_free(l->pause);
        close(fd);
        free(l);
        return KL_ENOMEM;
    }
    l->next = tp->listeners;
    tp->listeners = l;
    if (kl_log_level_get() >= KL_LOG_DEBUG) {
        char s[64];

        kl_addr_to_str(&l->addr, s, sizeof(s));
        kl_log(KL_LOG_DEBUG, &tp->log, "event=listen transport=%s addr=%s",
               kl_tp_kind_name(l->kind), s);
    }
    if (out != NULL)
        *out = l;
    return KL_OK;
}

void kl_tp_unlisten(kl_tp_t *tp, kl_listener_t *lst)
{
    kl_listener_t **pp;

    if (lst == NULL)
        return;
    for (pp = &tp->listeners; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == lst) {
            *pp = lst->next;
            break;
        }
    }
    if (lst->kind == KL_TP_TCP)
        kl__tcp_listener_gone(tp, lst);
    event_free(lst->ev);
    if (lst->pause != NULL)
        event_free(lst->pause);
    close(lst->fd);
    free(lst);
}

void kl_tp_free(kl_tp_t *tp)
{
    if (tp == NULL)
        return;
    while (tp->listeners != NULL)
        kl_tp_unlisten(tp, tp->listeners);
    kl__tcp_close_all(tp);
    if (tp->icmp_ev != NULL)
        event_free(tp->icmp_ev);
    kl_htab_free(&tp->by_peer);
    kl__udp_bufs_free(tp);
    free(tp->rscratch);
    free(tp);
}

/* ---- sending ---- */

int kl_tp_send(kl_tp_t *tp, kl_tp_kind_t kind, const kl_addr_t *dst, const char *buf, size_t len)
{
    kl_listener_t *l;

    switch (kind) {
    case KL_TP_UDP:
        l = kl_tp_any_listener(tp, KL_TP_UDP, dst->u.sa.sa_family);
        if (l == NULL)
            return KL_ENOENT;
        return kl__udp_sendto(tp, l, dst, buf, len);
    case KL_TP_TCP:
        return kl__tcp_send(tp, dst, buf, len);
    default:
        return KL_EINVAL;
    }
}

int kl_tp_reply(kl_tp_t *tp, const kl_tp_src_t *src, const kl_addr_t *dst, const char *buf,
                size_t len)
{
    if (src->kind == KL_TP_UDP) {
        /* the transaction may outlive the listener it came on (reload) */
        if (src->listener != NULL && kl__tp_has_listener(tp, src->listener))
            return kl__udp_sendto(tp, src->listener, dst, buf, len);
        return kl_tp_send(tp, KL_TP_UDP, dst, buf, len);
    }
    if (src->conn != NULL && kl__conn_writable(src->conn))
        return kl__conn_send(src->conn, buf, len);
    /* RFC 3261 §18.2.2: the connection is gone, open one to the Via's address */
    return kl_tp_send(tp, src->kind, dst, buf, len);
}
