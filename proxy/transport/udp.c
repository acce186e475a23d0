/* UDP: one non-blocking socket per listen entry, read in batches with
 * recvmmsg(2), each datagram handed up as one message. */
#include "transport/transport.h"

#include "transport/transport-int.h"
#include "core/errors.h"
#include "core/log.h"

#include <event2/event.h>

#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* A burst of signalling should not starve the other sockets of the worker:
 * at most this many batches per readiness callback. */
#define UDP_BATCHES_PER_CB 4
#define UDP_SOCKBUF        (4 * 1024 * 1024)

void kl__udp_sockopts(int fd)
{
    int sz = UDP_SOCKBUF, one = 1;

    /* best effort: the kernel caps these at net.core.rmem_max / wmem_max */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
    /* ICMP errors (port unreachable: the server process died) come back on
     * the error queue with the address they were sent to, so a dead
     * destination fails over at once instead of after attempt_timeout.
     * One of the two fails for the socket's family: that is expected. */
    (void)setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof(one));
}

/* Reads the ICMP errors queued on <l> and reports each destination that
 * refused or could not be reached through on_err. */
static void udp_read_errqueue(kl_tp_t *tp, kl_listener_t *l, bool report)
{
    for (int i = 0; i < 64; i++) {
        char ctrl[512];
        char data[64];
        kl_addr_t dst;
        struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
        struct msghdr h = {.msg_name = &dst.u.ss,
                           .msg_namelen = sizeof(dst.u.ss),
                           .msg_iov = &iov,
                           .msg_iovlen = 1,
                           .msg_control = ctrl,
                           .msg_controllen = sizeof(ctrl)};
        int err = 0;

        if (recvmsg(l->fd, &h, MSG_ERRQUEUE | MSG_DONTWAIT) < 0)
            return;
        dst.len = h.msg_namelen;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c != NULL; c = CMSG_NXTHDR(&h, c)) {
            if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
                (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR)) {
                struct sock_extended_err ee;

                memcpy(&ee, CMSG_DATA(c), sizeof(ee));
                if (ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6)
                    err = (int)ee.ee_errno;
            }
        }
        if (!(err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH) ||
            h.msg_namelen == 0 || tp->on_err == NULL)
            continue;
        tp->stats.send_errors++;
        if (report) {
            tp->on_err(tp->arg, KL_TP_UDP, &dst, KL_EIO);
        } else if (tp->nicmp_pending < sizeof(tp->icmp_pending) / sizeof(tp->icmp_pending[0])) {
            tp->icmp_pending[tp->nicmp_pending++] = dst;
            if (tp->icmp_ev != NULL)
                event_active(tp->icmp_ev, EV_TIMEOUT, 0);
        }
    }
}

void kl__udp_icmp_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_tp_t *tp = arg;
    kl_addr_t pending[16];
    unsigned n = tp->nicmp_pending;

    (void)fd;
    (void)what;
    memcpy(pending, tp->icmp_pending, n * sizeof(pending[0]));
    tp->nicmp_pending = 0;
    for (unsigned i = 0; i < n && tp->on_err != NULL; i++)
        tp->on_err(tp->arg, KL_TP_UDP, &pending[i], KL_EIO);
}

void kl__udp_bufs_free(kl_tp_t *tp)
{
    free(tp->udp_bufs);
    free(tp->udp_msgs);
    free(tp->udp_iov);
    free(tp->udp_peers);
    tp->udp_bufs = NULL;
    tp->udp_msgs = NULL;
    tp->udp_iov = NULL;
    tp->udp_peers = NULL;
    tp->udp_slot = 0;
}

int kl__udp_bufs_alloc(kl_tp_t *tp)
{
    /* one byte more than the largest datagram accepted: a datagram that
     * fills a slot is too big (MSG_TRUNC says so as well) */
    size_t slot = (size_t)tp->limits.max_message_size + 1;
    char *bufs;

    if (tp->udp_busy > 0) {
        tp->udp_resize = true;
        return KL_OK;
    }
    if (slot == tp->udp_slot)
        return KL_OK;
    if (tp->udp_msgs == NULL) {
        tp->udp_msgs = calloc(KL__UDP_BATCH, sizeof(*tp->udp_msgs));
        tp->udp_iov = calloc(KL__UDP_BATCH, sizeof(*tp->udp_iov));
        tp->udp_peers = calloc(KL__UDP_BATCH, sizeof(*tp->udp_peers));
        if (tp->udp_msgs == NULL || tp->udp_iov == NULL || tp->udp_peers == NULL)
            return KL_ENOMEM;
    }
    bufs = malloc(slot * KL__UDP_BATCH);
    if (bufs == NULL)
        return KL_ENOMEM;
    free(tp->udp_bufs);
    tp->udp_bufs = bufs;
    tp->udp_slot = slot;
    return KL_OK;
}

static void udp_deliver(kl_tp_t *tp, kl_listener_t *l, char *buf, size_t n, bool trunc,
                        const kl_addr_t *peer)
{
    kl_tp_src_t src;

    if (trunc || n >= tp->udp_slot) {
        tp->stats.too_big++;
        kl__tp_summary(tp);
        return;
    }
    src.kind = KL_TP_UDP;
    src.peer = *peer;
    src.local = l->addr;
    src.listener = l;
    src.conn = NULL;
    tp->stats.udp_rx++;
    tp->on_msg(tp->arg, &src, buf, n, KL_OK);
}

/* One batch by recvmmsg(). Returns how many datagrams were read, 0 when the
 * socket is drained, or -1 when recvmmsg() is not available. */
static int udp_read_batch(kl_tp_t *tp, kl_listener_t *l)
{
    int n;

    for (int i = 0; i < KL__UDP_BATCH; i++) {
        struct msghdr *h = &tp->udp_msgs[i].msg_hdr;

        tp->udp_iov[i].iov_base = tp->udp_bufs + (size_t)i * tp->udp_slot;
        tp->udp_iov[i].iov_len = tp->udp_slot;
        memset(h, 0, sizeof(*h));
        h->msg_name = &tp->udp_peers[i].u.ss;
        h->msg_namelen = sizeof(tp->udp_peers[i].u.ss);
        h->msg_iov = &tp->udp_iov[i];
        h->msg_iovlen = 1;
    }
    n = recvmmsg(l->fd, tp->udp_msgs, KL__UDP_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0 && (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)) {
        /* a pending ICMP error: report it and read on */
        udp_read_errqueue(tp, l, true);
        return KL__UDP_BATCH;
    }
    if (n < 0)
        return errno == ENOSYS ? -1 : 0;
    for (int i = 0; i < n && kl__tp_has_listener(tp, l); i++) {
        struct msghdr *h = &tp->udp_msgs[i].msg_hdr;

        tp->udp_peers[i].len = h->msg_namelen;
        udp_deliver(tp, l, tp->udp_iov[i].iov_base, tp->udp_msgs[i].msg_len,
                    (h->msg_flags & MSG_TRUNC) != 0, &tp->udp_peers[i]);
    }
    return n;
}

/* The same by recvfrom(), one datagram at a time. */
static int udp_read_one(kl_tp_t *tp, kl_listener_t *l)
{
    kl_addr_t peer;
    socklen_t pl = sizeof(peer.u.ss);
    ssize_t n = recvfrom(l->fd, tp->udp_bufs, tp->udp_slot, MSG_DONTWAIT, &peer.u.sa, &pl);

    if (n < 0 && (errno == ECONNREFUSED || errno == EHOSTUNREACH || errno == ENETUNREACH)) {
        udp_read_errqueue(tp, l, true);
        return 1;
    }
    if (n < 0)
        return 0;
    peer.len = pl;
    udp_deliver(tp, l, tp->udp_bufs, (size_t)n, false, &peer);
    return 1;
}

void kl__udp_read_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_listener_t *l = arg;
    kl_tp_t *tp = l->tp;

    (void)fd;
    (void)what;
    /* the callback may unlisten <l> (reload from inside a message handler is
     * not expected, but a freed listener must not be read again) */
    tp->udp_busy++;
    for (int round = 0; round < UDP_BATCHES_PER_CB * KL__UDP_BATCH;) {
        int n;

        if (!tp->udp_no_mmsg) {
            n = udp_read_batch(tp, l);
            if (n < 0) {
                tp->udp_no_mmsg = true;
                continue;
            }
            round += KL__UDP_BATCH;
            if (n < KL__UDP_BATCH)
                break;
        } else {
            if (udp_read_one(tp, l) == 0)
                break;
            round++;
        }
        if (!kl__tp_has_listener(tp, l))
            break;
    }
    tp->udp_busy--;
    if (tp->udp_busy == 0 && tp->udp_resize) {
        tp->udp_resize = false;
        kl__udp_bufs_alloc(tp);
    }
}

int kl__udp_sendto(kl_tp_t *tp, kl_listener_t *l, const kl_addr_t *dst, const char *buf, size_t len)
{
    ssize_t n;

    for (int tries = 0;; tries++) {
        do
            n = sendto(l->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL, &dst->u.sa, dst->len);
        while (n < 0 && errno == EINTR);
        /* with IP_RECVERR an ICMP error about another destination is
         * reported by the next send on the socket: hand it to its owner
         * and send again, this datagram was not refused. The error is
         * reported from the next loop turn: a report from inside a send
         * would re-enter the transaction layer */
        if (n >= 0 || tries > 0 ||
            (errno != ECONNREFUSED && errno != EHOSTUNREACH && errno != ENETUNREACH))
            break;
        udp_read_errqueue(tp, l, false);
    }
    if (n < 0) {
        /* EAGAIN included: a full socket buffer drops, it never blocks */
        tp->stats.send_errors++;
        kl__tp_summary(tp);
        return KL_EIO;
    }
    tp->stats.udp_tx++;
    return KL_OK;
}
