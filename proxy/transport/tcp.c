/* TCP: listeners, accepted and opened connections, stream framing
 * (RFC 3261 §18.3) and keep-alives (RFC 5626 §4.4.1).
 *
 * The hot path: a read lands in one scratch buffer shared by every
 * connection; whole messages are framed and handed up from there, and only
 * the tail of a message that is not complete yet is copied into the
 * connection's own buffer. Replies sent from inside the read callback are
 * corked and go out in one sendmsg() when it ends. The framing state of a
 * partial message (how far the blank line was searched, the frame once the
 * header section is complete) is kept, so a message that trickles in is
 * scanned once. Timers are lazy: one per connection, re-armed only when a
 * deadline moves earlier. */
#include "transport/transport.h"

#include "transport/framing.h"
#include "transport/transport-int.h"
#include "core/errors.h"
#include "core/log.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define TCP_SCRATCH      (64 * 1024)
#define TCP_READ_ROUNDS  4     /* reads per readiness callback, for fairness */
#define TCP_ACCEPT_BATCH 64    /* accepts per readiness callback */
#define TCP_RBUF_KEEP    16384 /* a connection's emptied buffer is kept up to this size */
#define TCP_LINGER_MS    2000u /* flushing a reply before a close, then reading to EOF */
#define TCP_LINGER_BYTES (256u * 1024u)
#define TCP_PAUSE_MS     100   /* accept() paused this long when out of descriptors */
#define TCP_CONNECT_MS   10000 /* connect timeout when header_timeout is 0 */
#define TCP_IOV          16
#define TCP_NO_DEADLINE  UINT64_MAX

static void conn_close(kl_conn_t *c, int err);
static void conn_flush(kl_conn_t *c);

int kl__tcp_bufs_alloc(kl_tp_t *tp)
{
    if (tp->rscratch != NULL)
        return KL_OK;
    tp->rscratch = malloc(TCP_SCRATCH);
    if (tp->rscratch == NULL)
        return KL_ENOMEM;
    tp->rscratch_cap = TCP_SCRATCH;
    return KL_OK;
}

/* Output queued past this is a peer that does not read: it is cut off. */
static size_t tcp_out_cap(const kl_tp_t *tp)
{
    size_t cap = (size_t)tp->limits.max_message_size * 16;

    return cap > 1024 * 1024 ? cap : 1024 * 1024;
}

static void conn_log(const kl_conn_t *c, const char *event, int err)
{
    char a[64];

    if (kl_log_level_get() < KL_LOG_DEBUG)
        return;
    kl_addr_to_str(&c->peer, a, sizeof(a));
    kl_log(KL_LOG_DEBUG, &c->tp->log, "event=%s transport=tcp peer=%s dir=%s err=%s", event, a,
           c->outgoing ? "out" : "in", kl_strerror(err));
}

/* ---- references ---- */

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
        free(c);
}

bool kl_conn_is_open(const kl_conn_t *c)
{
    return c != NULL && kl__conn_writable(c);
}

bool kl__conn_writable(const kl_conn_t *c)
{
    return c->open && !c->lingering && c->pending_err == 0;
}

/* ---- timers ---- */

static uint64_t conn_deadline(const kl_conn_t *c)
{
    const kl_conf_transport_t *lim = &c->tp->limits;

    if (c->closing || c->lingering)
        return c->close_ms + TCP_LINGER_MS;
    if (c->connecting)
        return c->born_ms + (lim->header_timeout != 0 ? lim->header_timeout : TCP_CONNECT_MS);
    if (c->msg_start_ms != 0)
        return lim->header_timeout != 0 ? c->msg_start_ms + lim->header_timeout : TCP_NO_DEADLINE;
    return lim->idle_timeout != 0 ? c->last_ms + lim->idle_timeout : TCP_NO_DEADLINE;
}

static void conn_arm_at(kl_conn_t *c, uint64_t at, uint64_t now)
{
    uint64_t ms = at > now ? at - now : 0;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};

    if (evtimer_add(c->timer, &tv) == 0)
        c->deadline_ms = at;
}

/* Makes sure the timer fires no later than the current deadline. A later
 * deadline is left to the timer callback, which re-checks and re-arms. */
static void conn_arm(kl_conn_t *c)
{
    uint64_t d = conn_deadline(c);

    if (d == TCP_NO_DEADLINE || (c->deadline_ms != 0 && c->deadline_ms <= d))
        return;
    conn_arm_at(c, d, kl__tp_now_ms());
}

/* Closes <c> on the next loop turn with <err>, so that a failure found while
 * sending never calls on_err from inside kl_tp_send() or kl_tp_reply(). */
static void conn_defer_close(kl_conn_t *c, int err)
{
    if (!c->open || c->pending_err != 0)
        return;
    c->pending_err = err;
    if (c->in_map) {
        kl_htab_del(&c->tp->by_peer, &c->hn);
        c->in_map = false;
    }
    event_del(c->rev);
    event_del(c->wev);
    event_active(c->timer, EV_TIMEOUT, 1);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_conn_t *c = arg;
    kl_tp_t *tp = c->tp;
    uint64_t now = kl__tp_now_ms(), d;

    (void)fd;
    (void)what;
    c->deadline_ms = 0;
    if (c->pending_err != 0) {
        conn_close(c, c->pending_err);
        return;
    }
    d = conn_deadline(c);
    if (d == TCP_NO_DEADLINE)
        return;
    if (now < d) {
        conn_arm_at(c, d, now);
        return;
    }
    if (c->closing || c->lingering) {
        conn_close(c, KL_OK);
    } else if (c->connecting) {
        conn_close(c, KL_ETIMEDOUT);
    } else if (c->msg_start_ms != 0) {
        tp->stats.header_timeouts++;
        kl__tp_summary(tp);
        conn_close(c, KL_ETIMEDOUT);
    } else {
        tp->stats.idle_timeouts++;
        conn_close(c, KL_OK);
    }
}

/* ---- output ---- */

/* Writes as much of the queue as the socket takes. Returns KL_OK or KL_EIO
 * (errno set); the caller decides how to close. */
static int conn_write_queue(kl_conn_t *c)
{
    while (evbuffer_get_length(c->out) > 0) {
        struct evbuffer_iovec v[TCP_IOV];
        struct iovec iov[TCP_IOV];
        struct msghdr mh;
        int nv = evbuffer_peek(c->out, -1, NULL, v, TCP_IOV);
        ssize_t n;

        if (nv > TCP_IOV)
            nv = TCP_IOV;
        for (int i = 0; i < nv; i++) {
            iov[i].iov_base = v[i].iov_base;
            iov[i].iov_len = v[i].iov_len;
        }
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)nv;
        n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return KL_OK;
            return KL_EIO;
        }
        evbuffer_drain(c->out, (size_t)n);
    }
    return KL_OK;
}

/* Broken framing or a peer that does not read: no more input; what is
 * queued goes out, then the write side is shut down (conn_linger). */
static void conn_start_closing(kl_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->close_ms = kl__tp_now_ms();
    if (c->in_map) {
        kl_htab_del(&c->tp->by_peer, &c->hn);
        c->in_map = false;
    }
    event_del(c->rev);
}

/* The reply is out: shut down our side and read until the peer's EOF, so
 * that bytes it sent after the broken message do not turn our close into a
 * reset that destroys the reply in its receive buffer. */
static void conn_linger(kl_conn_t *c)
{
    if (c->peer_eof || shutdown(c->fd, SHUT_WR) < 0) {
        conn_close(c, KL_OK);
        return;
    }
    c->lingering = true;
    c->close_ms = kl__tp_now_ms();
    event_add(c->rev, NULL);
    conn_arm(c);
}

static void conn_flush(kl_conn_t *c)
{
    if (!c->open || c->connecting || c->corked || c->pending_err != 0 || c->lingering)
        return;
    if (conn_write_queue(c) != KL_OK) {
        c->tp->stats.send_errors++;
        kl__tp_summary(c->tp);
        conn_close(c, KL_EIO);
        return;
    }
    if (evbuffer_get_length(c->out) > 0) {
        event_add(c->wev, NULL);
        return;
    }
    if (c->closing)
        conn_linger(c);
}

/* Queues or writes <buf> on <c>. Never closes <c> at once (its read buffer
 * may be what the caller is answering): a failure is deferred. */
static int conn_queue(kl_conn_t *c, const char *buf, size_t len)
{
    kl_tp_t *tp = c->tp;
    size_t queued = evbuffer_get_length(c->out);
    ssize_t n = 0;

    if (!kl__conn_writable(c))
        return KL_EIO;
    if (queued + len > tcp_out_cap(tp)) {
        tp->stats.send_errors++;
        kl__tp_summary(tp);
        conn_defer_close(c, KL_EIO);
        return KL_EIO;
    }
    if (queued == 0 && !c->corked && !c->connecting) {
        do
            n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            /* queued so that the deferred close reports it through on_err */
            evbuffer_add(c->out, buf, len);
            tp->stats.send_errors++;
            conn_defer_close(c, KL_EIO);
            return KL_OK;
        }
        if (n < 0)
            n = 0;
        if ((size_t)n == len)
            return KL_OK;
    }
    if (evbuffer_add(c->out, buf + n, len - (size_t)n) != 0)
        return KL_ENOMEM;
    if (!c->corked && !c->connecting)
        event_add(c->wev, NULL);
    return KL_OK;
}

int kl__conn_send(kl_conn_t *c, const char *buf, size_t len)
{
    int rc = conn_queue(c, buf, len);

    if (rc == KL_OK)
        c->tp->stats.tcp_tx++;
    return rc;
}

/* ---- closing ---- */

/* Closes <c> now: socket, events and buffers go; the struct stays while
 * referenced. on_err runs (once, the close happens once) when <err> is an
 * error and the connection was ours or had output queued that is lost. */
static void conn_close(kl_conn_t *c, int err)
{
    kl_tp_t *tp = c->tp;
    bool notify;
    kl_addr_t peer;

    if (!c->open)
        return;
    notify = err != KL_OK && tp->on_err != NULL && (c->outgoing || evbuffer_get_length(c->out) > 0);
    c->open = false;
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->timer);
    c->rev = c->wev = c->timer = NULL;
    close(c->fd);
    c->fd = -1;
    if (c->in_map) {
        kl_htab_del(&tp->by_peer, &c->hn);
        c->in_map = false;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        tp->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
    if (c->outgoing)
        tp->nconns_out--;
    else
        tp->nconns_in--;
    tp->stats.conns_closed++;
    evbuffer_free(c->out);
    c->out = NULL;
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = c->rpos = c->rlen = 0;
    conn_log(c, "tcp_close", err);
    peer = c->peer;
    if (notify) {
        c->refs++;
        tp->on_err(tp->arg, KL_TP_TCP, &peer, err);
        c->refs--;
    }
    if (c->refs == 0)
        free(c);
}

void kl__tcp_close_all(kl_tp_t *tp)
{
    kl_tp_err_cb on_err = tp->on_err;

    tp->on_err = NULL; /* shutting down: nobody to fail over */
    while (tp->conns != NULL)
        conn_close(tp->conns, KL_OK);
    tp->on_err = on_err;
}

void kl__tcp_listener_gone(kl_tp_t *tp, const kl_listener_t *lst)
{
    for (kl_conn_t *c = tp->conns; c != NULL; c = c->next) {
        if (c->listener == lst)
            c->listener = NULL;
    }
}

/* ---- input ---- */

static void conn_deliver(kl_conn_t *c, char *buf, size_t len, int status)
{
    kl_tp_t *tp = c->tp;
    kl_tp_src_t src;

    src.kind = KL_TP_TCP;
    src.peer = c->peer;
    src.local = c->local;
    src.listener = c->listener;
    src.conn = c;
    if (status == KL_OK)
        tp->stats.tcp_rx++;
    tp->on_msg(tp->arg, &src, buf, len, status);
}

static void conn_msg_reset(kl_conn_t *c)
{
    c->in_msg = false;
    c->start_checked = false;
    c->scan = c->hdr_len = c->need = 0;
    c->msg_start_ms = 0;
}

/* The stream is broken: hand up what there is with <status>, then close
 * after the reply (if any) is flushed. */
static void conn_fail(kl_conn_t *c, int status, char *buf, size_t len)
{
    kl_tp_t *tp = c->tp;

    if (status == KL_ETOOBIG)
        tp->stats.too_big++;
    else
        tp->stats.framing_errors++;
    kl__tp_summary(tp);
    conn_log(c, "tcp_framing_error", status);
    conn_start_closing(c);
    conn_deliver(c, buf, len, status);
    conn_msg_reset(c);
}

/* Resumes the search for the blank line that ends the header section of the
 * message at <m> (<avail> bytes), from c->scan. Checks the start line when
 * its LF shows up. Returns KL_OK with *<end> = header section length, or 0
 * when not found yet; KL_EPROTO when the start line is not one. */
static int conn_scan(kl_conn_t *c, const char *m, size_t avail, size_t *end)
{
    size_t i = c->scan;

    *end = 0;
    while (i < avail) {
        const char *nl = memchr(m + i, '\n', avail - i);
        size_t k;

        if (nl == NULL) {
            i = avail;
            break;
        }
        k = (size_t)(nl - m);
        if (!c->start_checked) {
            if (!kl_frame_start_line_ok(m, k))
                return KL_EPROTO;
            c->start_checked = true;
        }
        /* the LF at k ends a line; a blank line follows when the next
         * bytes are LF or CRLF. Not knowable yet: look at k again later. */
        if (k + 1 >= avail || (m[k + 1] == '\r' && k + 2 >= avail)) {
            i = k;
            break;
        }
        if (m[k + 1] == '\n') {
            *end = k + 2;
            break;
        }
        if (m[k + 1] == '\r' && m[k + 2] == '\n') {
            *end = k + 3;
            break;
        }
        i = k + 1;
    }
    c->scan = *end != 0 ? *end : i;
    return KL_OK;
}

/* Frames and delivers every complete message at <p> (<len> bytes). Returns
 * how many bytes were consumed; the rest is the start of a message (or of a
 * keep-alive) still incomplete. Stops when the connection closes or breaks. */
static size_t conn_frame(kl_conn_t *c, char *p, size_t len)
{
    size_t off = 0, max = c->tp->limits.max_message_size;

    while (off < len && c->open && !c->closing && c->pending_err == 0) {
        char *m = p + off;
        size_t avail = len - off, end;

        if (!c->in_msg) {
            if (m[0] == '\r' || m[0] == '\n') {
                if (avail >= 4 && memcmp(m, "\r\n\r\n", 4) == 0) {
                    off += 4;
                    conn_queue(c, "\r\n", 2); /* RFC 5626 §4.4.1: ping, pong */
                    continue;
                }
                if (avail < 4 && memcmp(m, "\r\n\r\n", avail) == 0)
                    break; /* perhaps the start of a ping */
                off += avail >= 2 && m[0] == '\r' && m[1] == '\n' ? 2 : 1;
                continue;
            }
            if (!kl_frame_start_byte_ok(m[0])) {
                conn_fail(c, KL_EPROTO, m, avail);
                return len;
            }
            c->in_msg = true;
        }
        if (c->need == 0) {
            kl_frame_t f;
            int rc;

            if (conn_scan(c, m, avail, &end) != KL_OK) {
                conn_fail(c, KL_EPROTO, m, avail);
                return len;
            }
            if (end == 0) {
                if (avail > max) {
                    conn_fail(c, KL_ETOOBIG, m, avail);
                    return len;
                }
                break;
            }
            rc = kl_frame_find(m, end, max, true, &f);
            if (rc != KL_OK) {
                conn_fail(c, rc == KL_ETOOBIG ? KL_ETOOBIG : KL_EPROTO, m, end);
                return len;
            }
            c->hdr_len = f.hdr_len;
            c->need = f.hdr_len + f.body_len;
        }
        if (avail < c->need)
            break;
        end = c->need;
        conn_msg_reset(c);
        conn_deliver(c, m, end, KL_OK);
        off += end;
    }
    return off;
}

/* Appends <len> bytes to the connection's own buffer. */
static int conn_buf_add(kl_conn_t *c, const char *data, size_t len)
{
    if (c->rcap - c->rlen < len && c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    if (c->rcap - c->rlen < len) {
        size_t ncap = c->rcap != 0 ? c->rcap * 2 : 4096;
        char *nb;

        if (ncap < c->rlen + len)
            ncap = c->rlen + len;
        nb = realloc(c->rbuf, ncap);
        if (nb == NULL)
            return KL_ENOMEM;
        c->rbuf = nb;
        c->rcap = ncap;
    }
    memcpy(c->rbuf + c->rlen, data, len);
    c->rlen += len;
    return KL_OK;
}

/* Frames <n> bytes just read into the scratch buffer. */
static void conn_input(kl_conn_t *c, char *data, size_t n)
{
    size_t used;

    if (c->rpos == c->rlen) {
        /* nothing buffered: frame in place, keep only an incomplete tail */
        used = conn_frame(c, data, n);
        if (!c->open || c->closing || c->pending_err != 0 || used == n)
            return;
        c->rpos = c->rlen = 0;
        if (conn_buf_add(c, data + used, n - used) != KL_OK)
            conn_defer_close(c, KL_ENOMEM);
        return;
    }
    if (conn_buf_add(c, data, n) != KL_OK) {
        conn_defer_close(c, KL_ENOMEM);
        return;
    }
    used = conn_frame(c, c->rbuf + c->rpos, c->rlen - c->rpos);
    if (!c->open)
        return;
    c->rpos += used;
    if (c->rpos == c->rlen) {
        c->rpos = c->rlen = 0;
        if (c->rcap > TCP_RBUF_KEEP) {
            free(c->rbuf);
            c->rbuf = NULL;
            c->rcap = 0;
        }
    }
}

/* Lingering: read and drop until EOF. */
static void conn_drain(kl_conn_t *c)
{
    kl_tp_t *tp = c->tp;

    for (;;) {
        ssize_t n = recv(c->fd, tp->rscratch, tp->rscratch_cap, MSG_DONTWAIT);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0 || (c->drained += (size_t)n) > TCP_LINGER_BYTES) {
            conn_close(c, KL_OK);
            return;
        }
    }
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_conn_t *c = arg;
    kl_tp_t *tp = c->tp;
    bool got = false;

    (void)what;
    kl_conn_ref(c);
    if (c->lingering) {
        conn_drain(c);
        goto out;
    }
    c->corked = true;
    for (int round = 0; round < TCP_READ_ROUNDS; round++) {
        ssize_t n = recv(fd, tp->rscratch, tp->rscratch_cap, MSG_DONTWAIT);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                c->corked = false;
                conn_close(c, KL_EIO);
            }
            break;
        }
        if (n == 0) {
            /* EOF: what is queued still goes out, then close */
            c->peer_eof = true;
            if (c->in_msg && !c->closing)
                conn_log(c, "tcp_eof_mid_message", KL_OK);
            conn_start_closing(c);
            break;
        }
        got = true;
        conn_input(c, tp->rscratch, (size_t)n);
        if (!c->open || c->closing || c->pending_err != 0 || (size_t)n < tp->rscratch_cap)
            break;
    }
    c->corked = false;
    if (!c->open)
        goto out;
    if (got) {
        c->last_ms = kl__tp_now_ms();
        if (c->in_msg && c->msg_start_ms == 0)
            c->msg_start_ms = c->last_ms;
    }
    conn_flush(c);
    if (c->open)
        conn_arm(c);
out:
    kl_conn_unref(c);
}

static void conn_write_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_conn_t *c = arg;

    (void)what;
    if (c->connecting) {
        int err = 0;
        socklen_t el = sizeof(err);
        socklen_t ll = sizeof(c->local.u.ss);

        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (err != 0) {
            errno = err;
            conn_close(c, KL_EIO);
            return;
        }
        c->connecting = false;
        c->last_ms = kl__tp_now_ms();
        if (getsockname(fd, &c->local.u.sa, &ll) == 0)
            c->local.len = ll;
        conn_log(c, "tcp_connected", KL_OK);
        event_add(c->rev, NULL);
    }
    conn_flush(c);
}

/* ---- connections ---- */

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
    c->born_ms = c->last_ms = kl__tp_now_ms();
    c->out = evbuffer_new();
    c->rev = event_new(tp->base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
    c->wev = event_new(tp->base, fd, EV_WRITE, conn_write_cb, c);
    c->timer = evtimer_new(tp->base, conn_timer_cb, c);
    if (c->out == NULL || c->rev == NULL || c->wev == NULL || c->timer == NULL) {
        if (c->rev != NULL)
            event_free(c->rev);
        if (c->wev != NULL)
            event_free(c->wev);
        if (c->timer != NULL)
            event_free(c->timer);
        if (c->out != NULL)
            evbuffer_free(c->out);
        free(c);
        return NULL;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->keylen = kl__addr_key(peer, c->key);
    kl_htab_add(&tp->by_peer, &c->hn, c->key, c->keylen);
    c->in_map = true;
    c->next = tp->conns;
    if (tp->conns != NULL)
        tp->conns->prev = c;
    tp->conns = c;
    if (outgoing)
        tp->nconns_out++;
    else
        tp->nconns_in++;
    return c;
}

void kl__tcp_pause_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_listener_t *l = arg;

    (void)fd;
    (void)what;
    event_add(l->ev, NULL);
}

void kl__tcp_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    kl_listener_t *l = arg;
    kl_tp_t *tp = l->tp;

    (void)what;
    for (int i = 0; i < TCP_ACCEPT_BATCH; i++) {
        kl_addr_t peer;
        socklen_t pl = sizeof(peer.u.ss);
        int fd = accept4(lfd, &peer.u.sa, &pl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        kl_conn_t *c;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* the pending connection stays readable: pause, don't spin */
                struct timeval tv = {0, TCP_PAUSE_MS * 1000};

                tp->stats.conns_rejected++;
                kl__tp_summary(tp);
                event_del(l->ev);
                evtimer_add(l->pause, &tv);
            }
            return;
        }
        peer.len = pl;
        if (tp->nconns_in >= tp->limits.max_connections) {
            tp->stats.conns_rejected++;
            kl__tp_summary(tp);
            close(fd);
            continue;
        }
        c = conn_new(tp, fd, &peer, false);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->listener = l;
        if (l->wildcard) {
            socklen_t ll = sizeof(c->local.u.ss);

            if (getsockname(fd, &c->local.u.sa, &ll) == 0)
                c->local.len = ll;
        } else {
            c->local = l->addr;
        }
        tp->stats.conns_accepted++;
        conn_log(c, "tcp_accept", KL_OK);
        event_add(c->rev, NULL);
        conn_arm(c);
    }
}

/* Opens a connection to <dst>. Returns it (connecting), or NULL with errno
 * set. *<failed> is set when the connect failed at once. */
static kl_conn_t *tcp_connect(kl_tp_t *tp, const kl_addr_t *dst, bool *failed)
{
    int fd = socket(dst->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    kl_conn_t *c;
    int rc, saved;

    *failed = false;
    if (fd < 0)
        return NULL;
    do
        rc = connect(fd, &dst->u.sa, dst->len);
    while (rc < 0 && errno == EINTR);
    if (rc < 0 && errno != EINPROGRESS)
        *failed = true;
    c = conn_new(tp, fd, dst, true);
    if (c == NULL) {
        saved = errno;
        close(fd);
        errno = saved;
        return NULL;
    }
    c->connecting = true;
    tp->stats.conns_opened++;
    conn_log(c, "tcp_connect", KL_OK);
    if (!*failed) {
        event_add(c->wev, NULL);
        conn_arm(c);
    }
    return c;
}

int kl__tcp_send(kl_tp_t *tp, const kl_addr_t *dst, const char *buf, size_t len)
{
    char key[KL__ADDR_KEY_MAX];
    size_t kl = kl__addr_key(dst, key);
    kl_hnode_t *hn = kl_htab_get(&tp->by_peer, key, kl);
    kl_conn_t *c;
    bool failed;
    int rc;

    if (dst->u.sa.sa_family != AF_INET && dst->u.sa.sa_family != AF_INET6)
        return KL_EINVAL;
    if (hn != NULL)
        return kl__conn_send(kl_container_of(hn, kl_conn_t, hn), buf, len);
    if (tp->nconns_out >= tp->limits.max_connections) {
        tp->stats.conns_rejected++;
        kl__tp_summary(tp);
        return KL_EBUSY;
    }
    c = tcp_connect(tp, dst, &failed);
    if (c == NULL) {
        tp->stats.send_errors++;
        return KL_EIO;
    }
    rc = kl__conn_send(c, buf, len);
    if (failed) /* refused at once: reported on the next loop turn, like a late failure */
        conn_defer_close(c, KL_EIO);
    return rc;
}
