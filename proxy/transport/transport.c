/* A worker's transports: UDP sockets, TCP listeners and connections on one
 * libevent base. Streams are framed with kl_frame_find(); every complete
 * message goes up through on_msg. */
#include "transport/transport.h"

#include "transport/framing.h"
#include "core/errors.h"
#include "core/htab.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TP_UDP_BATCH 64
#define TP_READ_CHUNK 16384

struct kl_listener {
    kl_tp_t *tp;
    kl_tp_kind_t kind;
    int fd;
    kl_addr_t addr; /* bound address, real port */
    char address[64];
    uint16_t port; /* as configured */
    struct event *ev;
    kl_listener_t *next;
};

struct kl_conn {
    kl_tp_t *tp;
    int fd;
    int refs;
    bool open;
    bool outgoing;
    bool connecting;
    bool close_after_flush;
    kl_addr_t peer, local;
    kl_listener_t *listener;
    char *rbuf;
    size_t rlen, rcap;
    uint64_t msg_start_ms; /* first byte of an incomplete message, 0 none */
    uint64_t last_ms;
    struct evbuffer *out;
    struct event *rev, *wev, *timer;
    kl_hnode_t hn; /* in tp->by_peer while open */
    char key[sizeof(struct sockaddr_in6) + 2];
    size_t keylen;
    kl_conn_t *next, *prev;
};

struct kl_tp {
    struct event_base *base;
    kl_conf_transport_t limits;
    bool reuseport;
    kl_tp_msg_cb on_msg;
    kl_tp_err_cb on_err;
    void *arg;
    kl_listener_t *listeners;
    kl_conn_t *conns;
    unsigned nconns;
    kl_htab_t by_peer;
    kl_tp_stats_t stats;
    char *udpbuf;
    size_t udpcap;
    kl_log_ctx_t log;
};

static uint64_t tp_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static size_t addr_key(const kl_addr_t *a, char *out)
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

kl_tp_t *kl_tp_new(struct event_base *base, const kl_conf_transport_t *limits, bool reuseport,
                   kl_tp_msg_cb on_msg, kl_tp_err_cb on_err, void *arg)
{
    kl_tp_t *tp = calloc(1, sizeof(*tp));

    if (tp == NULL)
        return NULL;
    tp->base = base;
    tp->limits = *limits;
    tp->reuseport = reuseport;
    tp->on_msg = on_msg;
    tp->on_err = on_err;
    tp->arg = arg;
    tp->log.worker = -1;
    tp->udpcap = limits->max_message_size + 1;
    tp->udpbuf = malloc(tp->udpcap);
    if (tp->udpbuf == NULL || kl_htab_init(&tp->by_peer, 64) != KL_OK) {
        free(tp->udpbuf);
        free(tp);
        return NULL;
    }
    return tp;
}

void kl_tp_set_limits(kl_tp_t *tp, const kl_conf_transport_t *limits)
{
    char *nb;

    tp->limits = *limits;
    if (limits->max_message_size + 1 > tp->udpcap) {
        nb = realloc(tp->udpbuf, limits->max_message_size + 1);
        if (nb != NULL) {
            tp->udpbuf = nb;
            tp->udpcap = limits->max_message_size + 1;
        }
    }
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

/* ---- connections ---- */

static void conn_free(kl_conn_t *c)
{
    free(c->rbuf);
    if (c->out != NULL)
        evbuffer_free(c->out);
    free(c);
}

kl_conn_t *kl_conn_ref(kl_conn_t *c)
{
    if (c != NULL)
        c->refs++;
    return c;
}

void kl_conn_unref(kl_conn_t *c)
{
    if (c == NULL)
        return;
    if (--c->refs == 0 && !c->open)
        conn_free(c);
}

bool kl_conn_is_open(const kl_conn_t *c)
{
    return c != NULL && c->open;
}

static void conn_close(kl_conn_t *c, int err)
{
    kl_tp_t *tp = c->tp;
    bool notify;

    if (!c->open)
        return;
    notify = c->outgoing && err != KL_OK;
    c->open = false;
    if (c->rev != NULL)
        event_free(c->rev);
    if (c->wev != NULL)
        event_free(c->wev);
    if (c->timer != NULL)
        event_free(c->timer);
    c->rev = c->wev = c->timer = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    kl_htab_del(&tp->by_peer, &c->hn);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        tp->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    tp->nconns--;
    tp->stats.conns_closed++;
    if (notify && tp->on_err != NULL) {
        kl_addr_t peer = c->peer;

        c->refs++;
        tp->on_err(tp->arg, KL_TP_TCP, &peer, err);
        c->refs--;
    }
    if (c->refs == 0)
        conn_free(c);
}

static void conn_arm_timer(kl_conn_t *c)
{
    uint32_t ms = c->msg_start_ms != 0 ? c->tp->limits.header_timeout : c->tp->limits.idle_timeout;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

    if (c->timer != NULL)
        evtimer_add(c->timer, &tv);
}

static void conn_flush(kl_conn_t *c)
{
    if (!c->open || c->connecting)
        return;
    while (evbuffer_get_length(c->out) > 0) {
        int n = evbuffer_write(c->out, c->fd);

        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            c->tp->stats.send_errors++;
            conn_close(c, KL_EIO);
            return;
        }
        if (n == 0)
            break;
    }
    if (evbuffer_get_length(c->out) > 0) {
        event_add(c->wev, NULL);
        return;
    }
    if (c->close_after_flush)
        conn_close(c, KL_OK);
}

static int conn_send(kl_conn_t *c, const char *buf, size_t len)
{
    if (!c->open)
        return KL_EIO;
    if (evbuffer_add(c->out, buf, len) != 0)
        return KL_ENOMEM;
    c->tp->stats.tcp_tx++;
    conn_flush(c);
    return KL_OK;
}

static void conn_deliver(kl_conn_t *c, char *buf, size_t len, int status)
{
    kl_tp_src_t src;

    memset(&src, 0, sizeof(src));
    src.kind = KL_TP_TCP;
    src.peer = c->peer;
    src.local = c->local;
    src.listener = c->listener;
    src.conn = c;
    if (status == KL_OK)
        c->tp->stats.tcp_rx++;
    c->tp->on_msg(c->tp->arg, &src, buf, len, status);
}

/* Frames and delivers every complete message in the read buffer. */
static void conn_process(kl_conn_t *c)
{
    kl_tp_t *tp = c->tp;
    size_t max = tp->limits.max_message_size;

    while (c->open && !c->close_after_flush && c->rlen > 0) {
        kl_frame_t f;
        int rc;

        if (c->rlen >= 4 && memcmp(c->rbuf, "\r\n\r\n", 4) == 0) {
            /* RFC 5626 keep-alive ping: pong */
            memmove(c->rbuf, c->rbuf + 4, c->rlen - 4);
            c->rlen -= 4;
            conn_send(c, "\r\n", 2);
            continue;
        }
        rc = kl_frame_find(c->rbuf, c->rlen, max, true, &f);
        if (rc == KL_EINCOMPLETE) {
            size_t i = 0;

            while (i < c->rlen && (c->rbuf[i] == '\r' || c->rbuf[i] == '\n'))
                i++;
            if (i < c->rlen && c->msg_start_ms == 0)
                c->msg_start_ms = tp_now_ms();
            return;
        }
        if (rc == KL_ETOOBIG || rc == KL_EPROTO) {
            if (rc == KL_ETOOBIG)
                tp->stats.too_big++;
            else
                tp->stats.framing_errors++;
            c->close_after_flush = true;
            conn_deliver(c, c->rbuf, c->rlen, rc);
            c->rlen = 0;
            if (c->open && evbuffer_get_length(c->out) == 0)
                conn_close(c, KL_OK);
            else
                conn_flush(c);
            return;
        }
        if (c->rlen < f.skip + f.hdr_len + f.body_len) {
            if (c->msg_start_ms == 0)
                c->msg_start_ms = tp_now_ms();
            return;
        }
        {
            size_t total = f.skip + f.hdr_len + f.body_len;

            c->msg_start_ms = 0;
            conn_deliver(c, c->rbuf + f.skip, f.hdr_len + f.body_len, KL_OK);
            if (!c->open)
                return;
            memmove(c->rbuf, c->rbuf + total, c->rlen - total);
            c->rlen -= total;
        }
    }
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_conn_t *c = arg;
    kl_tp_t *tp = c->tp;
    size_t limit = tp->limits.max_message_size + 4096;

    (void)what;
    c->refs++;
    for (int rounds = 0; rounds < 16 && c->open; rounds++) {
        ssize_t n;

        if (c->rcap - c->rlen < TP_READ_CHUNK / 2 && c->rcap < limit + TP_READ_CHUNK) {
            size_t ncap = c->rcap ? c->rcap * 2 : TP_READ_CHUNK;
            char *nb;

            if (ncap > limit + TP_READ_CHUNK)
                ncap = limit + TP_READ_CHUNK;
            nb = realloc(c->rbuf, ncap);
            if (nb == NULL)
                break;
            c->rbuf = nb;
            c->rcap = ncap;
        }
        if (c->rcap == c->rlen) {
            /* full and still no message: too big */
            tp->stats.too_big++;
            c->close_after_flush = true;
            conn_deliver(c, c->rbuf, c->rlen, KL_ETOOBIG);
            c->rlen = 0;
            conn_close(c, KL_OK);
            break;
        }
        n = read(fd, c->rbuf + c->rlen, c->rcap - c->rlen);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            conn_close(c, KL_EIO);
            break;
        }
        if (n == 0) {
            conn_close(c, c->outgoing ? KL_EIO : KL_OK);
            break;
        }
        c->rlen += (size_t)n;
        c->last_ms = tp_now_ms();
        conn_process(c);
        if ((size_t)n < c->rcap - c->rlen)
            break;
    }
    if (c->open)
        conn_arm_timer(c);
    kl_conn_unref(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_conn_t *c = arg;

    (void)what;
    if (c->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
            char a[64];

            kl_addr_to_str(&c->peer, a, sizeof(a));
            kl_log(KL_LOG_NOTICE, &c->tp->log, "event=connect_failed peer=%s err=\"%s\"", a,
                   strerror(err));
            conn_close(c, KL_EIO);
            return;
        }
        c->connecting = false;
        {
            socklen_t ll = sizeof(c->local.u.ss);

            getsockname(fd, &c->local.u.sa, &ll);
            c->local.len = ll;
        }
        event_add(c->rev, NULL);
    }
    conn_flush(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_conn_t *c = arg;
    uint64_t now = tp_now_ms();

    (void)fd;
    (void)what;
    if (c->msg_start_ms != 0 && now - c->msg_start_ms >= c->tp->limits.header_timeout) {
        c->tp->stats.header_timeouts++;
        conn_close(c, KL_ETIMEDOUT);
        return;
    }
    if (c->msg_start_ms == 0 && now - c->last_ms >= c->tp->limits.idle_timeout) {
        c->tp->stats.idle_timeouts++;
        conn_close(c, KL_OK);
        return;
    }
    conn_arm_timer(c);
}

static kl_conn_t *conn_new(kl_tp_t *tp, int fd, const kl_addr_t *peer, bool outgoing)
{
    kl_conn_t *c = calloc(1, sizeof(*c));
    int one = 1;

    if (c == NULL)
        return NULL;
    c->tp = tp;
    c->fd = fd;
    c->open = true;
    c->outgoing = outgoing;
    c->peer = *peer;
    c->last_ms = tp_now_ms();
    c->out = evbuffer_new();
    c->rev = event_new(tp->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(tp->base, fd, EV_WRITE, conn_write_cb, c);
    c->timer = evtimer_new(tp->base, conn_timer_cb, c);
    if (c->out == NULL || c->rev == NULL || c->wev == NULL || c->timer == NULL) {
        if (c->rev)
            event_free(c->rev);
        if (c->wev)
            event_free(c->wev);
        if (c->timer)
            event_free(c->timer);
        if (c->out)
            evbuffer_free(c->out);
        free(c);
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->keylen = addr_key(peer, c->key);
    kl_htab_add(&tp->by_peer, &c->hn, c->key, c->keylen);
    c->next = tp->conns;
    if (tp->conns != NULL)
        tp->conns->prev = c;
    tp->conns = c;
    tp->nconns++;
    conn_arm_timer(c);
    return c;
}

static void tcp_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    kl_listener_t *l = arg;
    kl_tp_t *tp = l->tp;

    (void)what;
    for (int i = 0; i < 64; i++) {
        kl_addr_t peer;
        socklen_t pl = sizeof(peer.u.ss);
        int fd = accept4(lfd, &peer.u.sa, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        kl_conn_t *c;

        if (fd < 0)
            return;
        peer.len = pl;
        if (tp->nconns >= tp->limits.max_connections) {
            tp->stats.conns_rejected++;
            close(fd);
            continue;
        }
        c = conn_new(tp, fd, &peer, false);
        if (c == NULL) {
            close(fd);
            continue;
        }
        {
            socklen_t ll = sizeof(c->local.u.ss);

            getsockname(fd, &c->local.u.sa, &ll);
            c->local.len = ll;
        }
        c->listener = l;
        tp->stats.conns_accepted++;
        event_add(c->rev, NULL);
    }
}

static kl_conn_t *tcp_connect(kl_tp_t *tp, const kl_addr_t *dst)
{
    int fd = socket(dst->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    kl_conn_t *c;

    if (fd < 0)
        return NULL;
    if (connect(fd, &dst->u.sa, dst->len) < 0 && errno != EINPROGRESS) {
        close(fd);
        return NULL;
    }
    c = conn_new(tp, fd, dst, true);
    if (c == NULL) {
        close(fd);
        return NULL;
    }
    c->connecting = true;
    tp->stats.conns_opened++;
    event_add(c->wev, NULL);
    return c;
}

/* ---- UDP ---- */

static void udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_listener_t *l = arg;
    kl_tp_t *tp = l->tp;

    (void)what;
    for (int i = 0; i < TP_UDP_BATCH; i++) {
        kl_tp_src_t src;
        socklen_t pl = sizeof(src.peer.u.ss);
        ssize_t n;

        memset(&src, 0, sizeof(src));
        n = recvfrom(fd, tp->udpbuf, tp->udpcap, 0, &src.peer.u.sa, &pl);
        if (n < 0)
            return;
        if ((size_t)n >= tp->udpcap) {
            tp->stats.too_big++;
            continue;
        }
        src.peer.len = pl;
        src.kind = KL_TP_UDP;
        src.local = l->addr;
        src.listener = l;
        tp->stats.udp_rx++;
        tp->on_msg(tp->arg, &src, tp->udpbuf, (size_t)n, KL_OK);
    }
}

static int udp_sendto(kl_tp_t *tp, int fd, const kl_addr_t *dst, const char *buf, size_t len)
{
    if (sendto(fd, buf, len, 0, &dst->u.sa, dst->len) < 0) {
        tp->stats.send_errors++;
        return KL_EIO;
    }
    tp->stats.udp_tx++;
    return KL_OK;
}

/* ---- listeners ---- */

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
    for (kl_listener_t *l = tp->listeners; l != NULL; l = l->next) {
        if (l->kind == kind && l->addr.u.sa.sa_family == family)
            return l;
    }
    return NULL;
}

int kl_tp_listen(kl_tp_t *tp, const kl_conf_listen_t *cl, kl_listener_t **out)
{
    kl_listener_t *l;
    kl_addr_t a;
    int fd, one = 1, saved;
    socklen_t al;

    if (cl->transport != KL_TP_UDP && cl->transport != KL_TP_TCP) {
        errno = EPROTONOSUPPORT;
        return KL_EIO;
    }
    if (kl_tp_find_listener(tp, cl->transport, cl->address, cl->port) != NULL)
        return KL_EEXIST;
    if (kl_addr_from_str(cl->address, cl->port, &a) != KL_OK)
        return KL_EINVAL;
    fd = socket(a.u.sa.sa_family,
                (cl->transport == KL_TP_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK |
                    SOCK_CLOEXEC,
                0);
    if (fd < 0)
        return KL_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (tp->reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (a.u.sa.sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (cl->transport == KL_TP_UDP) {
        int sz = 4 * 1024 * 1024;

        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    }
    if (bind(fd, &a.u.sa, a.len) < 0 ||
        (cl->transport == KL_TP_TCP && listen(fd, 1024) < 0)) {
        saved = errno;
        close(fd);
        errno = saved;
        return KL_EIO;
    }
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
    getsockname(fd, &l->addr.u.sa, &al);
    l->addr.len = al;
    l->ev = event_new(tp->base, fd, EV_READ | EV_PERSIST,
                      cl->transport == KL_TP_UDP ? udp_read_cb : tcp_accept_cb, l);
    if (l->ev == NULL || event_add(l->ev, NULL) != 0) {
        if (l->ev != NULL)
            event_free(l->ev);
        close(fd);
        free(l);
        return KL_ENOMEM;
    }
    l->next = tp->listeners;
    tp->listeners = l;
    if (out != NULL)
        *out = l;
    return KL_OK;
}

void kl_tp_unlisten(kl_tp_t *tp, kl_listener_t *lst)
{
    kl_listener_t **pp = &tp->listeners;

    for (; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == lst) {
            *pp = lst->next;
            break;
        }
    }
    /* connections accepted by it live on, without it */
    for (kl_conn_t *c = tp->conns; c != NULL; c = c->next) {
        if (c->listener == lst)
            c->listener = NULL;
    }
    event_free(lst->ev);
    close(lst->fd);
    free(lst);
}

void kl_tp_free(kl_tp_t *tp)
{
    if (tp == NULL)
        return;
    while (tp->listeners != NULL)
        kl_tp_unlisten(tp, tp->listeners);
    while (tp->conns != NULL) {
        kl_conn_t *c = tp->conns;

        c->outgoing = false; /* no error callbacks at shutdown */
        conn_close(c, KL_OK);
    }
    kl_htab_free(&tp->by_peer);
    free(tp->udpbuf);
    free(tp);
}

/* ---- sending ---- */

static kl_conn_t *tp_conn_to(kl_tp_t *tp, const kl_addr_t *dst)
{
    char key[sizeof(struct sockaddr_in6) + 2];
    size_t kl = addr_key(dst, key);
    kl_hnode_t *hn = kl_htab_get(&tp->by_peer, key, kl);

    return hn != NULL ? kl_container_of(hn, kl_conn_t, hn) : NULL;
}

int kl_tp_send(kl_tp_t *tp, kl_tp_kind_t kind, const kl_addr_t *dst, const char *buf, size_t len)
{
    if (kind == KL_TP_UDP) {
        kl_listener_t *l = kl_tp_any_listener(tp, KL_TP_UDP, dst->u.sa.sa_family);

        if (l == NULL)
            return KL_ENOENT;
        return udp_sendto(tp, l->fd, dst, buf, len);
    }
    if (kind == KL_TP_TCP) {
        kl_conn_t *c = tp_conn_to(tp, dst);

        if (c == NULL) {
            if (tp->nconns >= tp->limits.max_connections) {
                tp->stats.conns_rejected++;
                return KL_EBUSY;
            }
            c = tcp_connect(tp, dst);
            if (c == NULL)
                return KL_EIO;
        }
        return conn_send(c, buf, len);
    }
    return KL_EINVAL;
}

int kl_tp_reply(kl_tp_t *tp, const kl_tp_src_t *src, const kl_addr_t *dst, const char *buf,
                size_t len)
{
    if (src->kind == KL_TP_UDP) {
        bool found = false;

        for (kl_listener_t *l = tp->listeners; l != NULL; l = l->next) {
            if (l == src->listener) {
                found = true;
                break;
            }
        }
        if (found)
            return udp_sendto(tp, src->listener->fd, dst, buf, len);
        return kl_tp_send(tp, KL_TP_UDP, dst, buf, len);
    }
    if (src->conn != NULL && src->conn->open)
        return conn_send(src->conn, buf, len);
    return kl_tp_send(tp, src->kind, dst, buf, len);
}
