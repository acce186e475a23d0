/* A worker's SIP transports: UDP sockets, TCP listeners and connections.
 *
 * transport/ moves bytes and frames streams; it never includes sip/. It hands
 * each complete message up through the callback it is given (a UDP datagram,
 * or one Content-Length-framed message cut from a TCP stream) and sends what
 * it is asked to. One kl_tp_t per worker, driven by that worker's event base;
 * none of this is thread-safe, all of it is called on the worker's thread. */
#ifndef KL_TRANSPORT_TRANSPORT_H
#define KL_TRANSPORT_TRANSPORT_H

#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>

struct event_base;
struct kl_log_ctx;

typedef struct kl_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
} kl_addr_t;

typedef struct kl_tp kl_tp_t;
typedef struct kl_listener kl_listener_t;
typedef struct kl_conn kl_conn_t;

/* Where a message came from, and so how to answer it. */
typedef struct kl_tp_src {
    kl_tp_kind_t kind;
    kl_addr_t peer;          /* source address and port as seen on the socket */
    kl_addr_t local;         /* the local address it arrived on */
    kl_listener_t *listener; /* UDP: the socket it arrived on; TCP: the listener that accepted
                                the connection, NULL for a connection keel opened */
    kl_conn_t *conn;         /* stream transports: borrowed for the callback only;
                                kl_conn_ref() to keep it */
} kl_tp_src_t;

/* Called once per message. <status> is KL_OK for a complete message (UDP:
 * the datagram as received, framing left to the caller; TCP: one message cut
 * by Content-Length, keep-alive CRLFs before it dropped);
 * KL_EPROTO when the stream broke framing (no or bad Content-Length on a
 * stream, junk where a start line should be) or KL_ETOOBIG past
 * max_message_size: <buf> then holds the header section read so far (maybe
 * empty) so the caller may still answer 400 / 513, and the transport closes
 * the connection when the callback returns, after flushing what was sent from
 * inside it. <buf> is writable, valid only during the call. */
typedef void (*kl_tp_msg_cb)(void *arg, const kl_tp_src_t *src, char *buf, size_t len, int status);

/* Called when a connection keel opened, or was asked to send on, fails
 * (refused, reset, timed out): everything queued for <peer> is dropped, so the
 * caller can fail its transactions over. Once per connection, <err> KL_EIO
 * (KL_ETIMEDOUT for a connect or header timeout). Always from the event loop,
 * never from inside kl_tp_send() or kl_tp_reply(): a failure found there
 * (even a connect refused at once) is reported on the next loop turn. A peer
 * that closes an idle connection cleanly is not an error. */
typedef void (*kl_tp_err_cb)(void *arg, kl_tp_kind_t kind, const kl_addr_t *peer, int err);

typedef struct kl_tp_stats {
    uint64_t udp_rx, udp_tx, tcp_rx, tcp_tx; /* messages */
    uint64_t conns_accepted, conns_opened, conns_closed;
    uint64_t conns_rejected;  /* max_connections reached */
    uint64_t framing_errors;  /* streams closed for broken framing */
    uint64_t too_big;         /* messages past max_message_size */
    uint64_t header_timeouts; /* slowloris: a message not complete in header_timeout */
    uint64_t idle_timeouts;
    uint64_t send_errors;
} kl_tp_stats_t;

/* Returns a new transport set on <base>, or NULL. <limits> is copied.
 * <reuseport>: set SO_REUSEPORT on listeners (several workers).
 * Limits: max_message_size bounds a datagram (larger ones are dropped and
 * counted) and a stream message (KL_ETOOBIG, then close). max_connections
 * bounds accepted connections (past it a new one is accepted and closed at
 * once) and, separately, connections keel opens (kl_tp_send: KL_EBUSY).
 * header_timeout: a stream message must be complete this long after its
 * first byte arrived (slowloris), and a connect must succeed within it.
 * idle_timeout: a connection with no input that long is closed. A timeout
 * of 0 disables it. */
kl_tp_t *kl_tp_new(struct event_base *base, const kl_conf_transport_t *limits, bool reuseport,
                   kl_tp_msg_cb on_msg, kl_tp_err_cb on_err, void *arg);

/* Closes every socket and frees everything (no on_err calls). Accepts NULL.
 * Connections still referenced (kl_conn_ref) are closed; their memory goes
 * at the last kl_conn_unref(). */
void kl_tp_free(kl_tp_t *tp);

/* The log context (worker id) of the transport's log lines; <ctx> is copied,
 * its strings borrowed. Default: worker -1. */
void kl_tp_set_log_ctx(kl_tp_t *tp, const struct kl_log_ctx *ctx);

/* Replaces the limits (reload). Existing connections keep running, under
 * the new timeouts. */
void kl_tp_set_limits(kl_tp_t *tp, const kl_conf_transport_t *limits);

/* Binds and starts a listener (UDP socket or TCP listener) for <l>. Returns
 * KL_OK and sets *<out> (may be NULL), KL_EEXIST if one for the same
 * transport/address/port exists, KL_EINVAL for an address that is not a
 * numeric literal, or KL_EIO with errno saying why (EADDRINUSE, EACCES;
 * EPROTONOSUPPORT for TLS/WS, not served here). Port 0 binds an ephemeral
 * port. UDP sockets get 4 MB buffers (as far as the kernel allows) and no
 * SO_REUSEADDR, so a second daemon on the same port fails to bind. */
int kl_tp_listen(kl_tp_t *tp, const kl_conf_listen_t *l, kl_listener_t **out);

/* Stops listening: a TCP listener stops accepting (its connections live on
 * until idle); a UDP socket closes. */
void kl_tp_unlisten(kl_tp_t *tp, kl_listener_t *lst);

/* The listener for transport/address/port, or NULL. */
kl_listener_t *kl_tp_find_listener(kl_tp_t *tp, kl_tp_kind_t kind, const char *address,
                                   uint16_t port);

/* The first listener of <kind> and <family> (AF_INET/AF_INET6), or NULL. */
kl_listener_t *kl_tp_any_listener(kl_tp_t *tp, kl_tp_kind_t kind, int family);

/* A listener's kind and bound address (with the real port when 0 was asked). */
kl_tp_kind_t kl_listener_kind(const kl_listener_t *lst);
const kl_addr_t *kl_listener_addr(const kl_listener_t *lst);

/* Answers on the way a request came: UDP from the socket it arrived on to
 * <dst> (the Via's received/rport address); TCP on src->conn when it is still
 * open, else on a connection to <dst> (RFC 3261 §18.2.2). <buf> is copied.
 * Returns KL_OK or a KL_E* error. */
int kl_tp_reply(kl_tp_t *tp, const kl_tp_src_t *src, const kl_addr_t *dst, const char *buf,
                size_t len);

/* Sends a request (or a stateless-forwarded response) to <dst> over <kind>:
 * UDP from the listener of the same family; TCP on an open connection to
 * <dst> or a new one (data queued until connected). <buf> is copied. Returns
 * KL_OK (queued or sent), or an error; a later failure comes through on_err. */
int kl_tp_send(kl_tp_t *tp, kl_tp_kind_t kind, const kl_addr_t *dst, const char *buf, size_t len);

/* Keeps a connection alive past the callback / releases it. Accept NULL.
 * A connection closed while referenced loses its socket at once; the memory
 * goes at the last unref, which may come after kl_tp_free().
 * kl_conn_is_open(): the connection can still carry a reply. */
kl_conn_t *kl_conn_ref(kl_conn_t *c);
void kl_conn_unref(kl_conn_t *c);
bool kl_conn_is_open(const kl_conn_t *c);

const kl_tp_stats_t *kl_tp_stats(const kl_tp_t *tp);

/* Address helpers. kl_addr_from_str() parses a numeric IPv4 or IPv6 literal
 * (brackets allowed) and a port; returns KL_OK or KL_EINVAL.
 * kl_addr_to_str() writes "1.2.3.4:5060" or "[::1]:5060"; kl_addr_host()
 * writes the address alone (no brackets). kl_addr_eq() compares address and
 * port. */
int kl_addr_from_str(const char *host, uint16_t port, kl_addr_t *out);
int kl_addr_to_str(const kl_addr_t *a, char *out, size_t outlen);
int kl_addr_host(const kl_addr_t *a, char *out, size_t outlen);
uint16_t kl_addr_port(const kl_addr_t *a);
bool kl_addr_eq(const kl_addr_t *a, const kl_addr_t *b);

const char *kl_tp_kind_name(kl_tp_kind_t kind); /* "udp", "tcp", ... */
const char *kl_tp_kind_via(kl_tp_kind_t kind);  /* "UDP", "TCP", "TLS", "WS" */

#endif
