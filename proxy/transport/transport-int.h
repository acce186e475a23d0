/* transport/'s private structures, shared by transport.c (the kl_tp_t,
 * listener registry, send/reply dispatch), udp.c and tcp.c. Nothing outside
 * proxy/transport/ includes this. */
#ifndef KL_TRANSPORT_TRANSPORT_INT_H
#define KL_TRANSPORT_TRANSPORT_INT_H

#include "transport/transport.h"

#include "core/htab.h"
#include "core/log.h"

#include <event2/util.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct evbuffer;
struct mmsghdr;
struct iovec;

#define KL__UDP_BATCH        32     /* datagrams per recvmmsg() */
#define KL__ADDR_KEY_MAX     19     /* family + port + IPv6 address */
#define KL__SUMMARY_EVERY_MS 10000u /* at most one hostile-input summary line per this */

struct kl_listener {
    kl_tp_t *tp;
    kl_tp_kind_t kind;
    int fd;
    kl_addr_t addr;   /* bound address, with the real port */
    char address[64]; /* as configured */
    uint16_t port;    /* as configured (0: ephemeral) */
    bool wildcard;    /* bound to 0.0.0.0 or :: (accepted connections ask getsockname) */
    struct event *ev;
    struct event *pause; /* TCP: re-enables accept after EMFILE */
    kl_listener_t *next;
};

/* A TCP connection, accepted or opened. It is in tp->conns while open; refs
 * counts users besides the transport (kl_conn_ref). Closing frees the socket,
 * events and buffers; the struct lives until the last kl_conn_unref(). */
struct kl_conn {
    kl_tp_t *tp;
    int fd;
    unsigned refs;
    bool open;          /* false once closed: the struct is a husk for refs */
    bool outgoing;      /* keel opened it */
    bool connecting;    /* non-blocking connect in progress */
    bool closing;       /* framing broke: flush what the callback sent, then close */
    bool lingering;     /* write side shut down, reading and dropping until EOF */
    bool corked;        /* in the read callback: replies are batched, flushed at its end */
    bool in_map;        /* in tp->by_peer */
    bool peer_eof;      /* the peer shut down its side: close once our output is out */
    bool in_msg;        /* some bytes of a message (not keep-alive CRLFs) are buffered */
    bool start_checked; /* the current message's start line was checked */
    int pending_err;    /* failed (connect, write): closed by the timer on the next loop
                           turn, so that on_err never runs inside kl_tp_send/reply */
    size_t drained;     /* lingering: bytes read and dropped */
    kl_addr_t peer, local;
    kl_listener_t *listener; /* accepting listener; NULL when outgoing or unlistened */

    /* input: bytes of an incomplete message (the common case, whole messages
     * in one read, never touches it: they are framed in tp->rscratch) */
    char *rbuf;
    size_t rcap, rpos, rlen; /* unconsumed bytes are rbuf[rpos, rlen) */
    /* framing state of the message at rbuf + rpos, so a message arriving in
     * many reads is scanned once, not once per read */
    size_t scan;    /* header-end search resumes here (relative to the message) */
    size_t hdr_len; /* header section length once found, else 0 */
    size_t need;    /* whole message length once the header section is framed */

    uint64_t msg_start_ms; /* first byte of a message still incomplete; 0: none */
    uint64_t last_ms;      /* last byte read */
    uint64_t deadline_ms;  /* the timer is armed to fire at this time (0: not armed) */
    uint64_t born_ms;
    uint64_t close_ms; /* when closing or lingering started */

    struct evbuffer *out;
    struct event *rev, *wev, *timer;

    kl_hnode_t hn;
    char key[KL__ADDR_KEY_MAX];
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
    kl_log_ctx_t log;

    kl_listener_t *listeners;

    /* TCP */
    kl_conn_t *conns;
    unsigned nconns_in, nconns_out;
    kl_htab_t by_peer; /* open connections by peer address; newest wins */
    char *rscratch;    /* read buffer shared by all connections (never resized) */
    size_t rscratch_cap;

    /* UDP: KL__UDP_BATCH buffers of udp_slot bytes each */
    char *udp_bufs;
    size_t udp_slot;
    struct mmsghdr *udp_msgs;
    struct iovec *udp_iov;
    kl_addr_t *udp_peers;
    bool udp_no_mmsg; /* recvmmsg() unavailable: recvfrom() */
    int udp_busy;     /* inside udp read: buffers must not move */
    bool udp_resize;  /* kl_tp_set_limits() asked for bigger buffers while busy */

    /* ICMP errors read while sending: reported from the next loop turn, so
     * a report never re-enters the layer above from inside its own send */
    kl_addr_t icmp_pending[16];
    unsigned nicmp_pending;
    struct event *icmp_ev;

    kl_tp_stats_t stats;
    kl_tp_stats_t stats_logged; /* as of the last summary line */
    uint64_t summary_ms;
};

/* udp.c: reports the ICMP errors queued while sending */
void kl__udp_icmp_cb(evutil_socket_t fd, short what, void *arg);

/* transport.c */
uint64_t kl__tp_now_ms(void);
size_t kl__addr_key(const kl_addr_t *a, char *out);
/* Counts hostile input already in tp->stats and writes at most one NOTICE
 * summary line per KL__SUMMARY_EVERY_MS. */
void kl__tp_summary(kl_tp_t *tp);
bool kl__tp_has_listener(const kl_tp_t *tp, const kl_listener_t *lst);

/* udp.c */
int kl__udp_bufs_alloc(kl_tp_t *tp); /* (re)sizes for limits.max_message_size */
void kl__udp_bufs_free(kl_tp_t *tp);
void kl__udp_sockopts(int fd);
void kl__udp_read_cb(evutil_socket_t fd, short what, void *arg); /* arg: the listener */
int kl__udp_sendto(kl_tp_t *tp, kl_listener_t *l, const kl_addr_t *dst, const char *buf,
                   size_t len);

/* tcp.c */
int kl__tcp_bufs_alloc(kl_tp_t *tp);
void kl__tcp_accept_cb(evutil_socket_t fd, short what, void *arg); /* arg: the listener */
void kl__tcp_pause_cb(evutil_socket_t fd, short what, void *arg);  /* arg: the listener */
/* Queues <buf> on an open connection to <dst>, opening one if needed. */
int kl__tcp_send(kl_tp_t *tp, const kl_addr_t *dst, const char *buf, size_t len);
/* True when <c> can still carry a reply (open, not shutting down its write side). */
bool kl__conn_writable(const kl_conn_t *c);
int kl__conn_send(kl_conn_t *c, const char *buf, size_t len);
void kl__tcp_listener_gone(kl_tp_t *tp, const kl_listener_t *lst);
void kl__tcp_close_all(kl_tp_t *tp); /* shutdown: no on_err */

#endif
