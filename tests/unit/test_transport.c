/* transport/: UDP and TCP on real loopback sockets, one event base per test,
 * driven in bounded loops (at most ~2 s each). */
#include "transport/transport.h"

#include "core/errors.h"

#include <event2/event.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXMSG  16
#define LOOP_MS 2000

typedef struct msg {
    char *buf;
    size_t len;
    int status;
    kl_tp_src_t src;
} msg_t;

typedef struct t {
    struct event_base *base;
    struct event *tick;
    kl_tp_t *tp;
    kl_conf_transport_t lim;
    msg_t msgs[MAXMSG];
    int nmsgs;
    int nerrs;
    int last_err;
    kl_addr_t err_peer;
    const char *reply; /* sent back with kl_tp_reply from inside on_msg */
    kl_conn_t *kept;   /* kl_conn_ref'd by on_msg when keep is set */
    kl_tp_src_t kept_src;
    bool keep;
    bool check_seq; /* messages carry "Call-ID: seq<n>", n = 0, 1, ... in order */
    int seq_bad;
    size_t total;
} t_t;

#define RESP200 "SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
#define RESP400 "SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
#define REQ(cid)                                                                                   \
    "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK" cid             \
    "\r\nCall-ID: " cid "\r\nContent-Length: 4\r\n\r\nbody"

static void on_msg(void *arg, const kl_tp_src_t *src, char *buf, size_t len, int status)
{
    t_t *t = arg;

    if (t->check_seq) {
        char want[32];

        snprintf(want, sizeof(want), "Call-ID: seq%d\r\n", t->nmsgs);
        if (status != KL_OK || memmem(buf, len, want, strlen(want)) == NULL)
            t->seq_bad++;
    }
    t->total += len;
    if (t->nmsgs >= MAXMSG) {
        t->nmsgs++;
    } else {
        msg_t *m = &t->msgs[t->nmsgs++];

        m->buf = malloc(len + 1);
        memcpy(m->buf, buf, len);
        m->buf[len] = '\0';
        m->len = len;
        m->status = status;
        m->src = *src;
        m->src.conn = NULL; /* borrowed for the call only */
    }
    if (t->keep && src->conn != NULL && t->kept == NULL) {
        t->kept = kl_conn_ref(src->conn);
        t->kept_src = *src;
    }
    if (t->reply != NULL)
        assert_int_equal(kl_tp_reply(t->tp, src, &src->peer, t->reply, strlen(t->reply)), KL_OK);
}

static void on_err(void *arg, kl_tp_kind_t kind, const kl_addr_t *peer, int err)
{
    t_t *t = arg;

    assert_int_equal(kind, KL_TP_TCP);
    t->nerrs++;
    t->last_err = err;
    t->err_peer = *peer;
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static t_t *t_new(uint32_t max_msg, unsigned max_conns, uint32_t header_ms, uint32_t idle_ms)
{
    t_t *t = calloc(1, sizeof(*t));
    struct timeval tv = {0, 10000};

    assert_non_null(t);
    t->base = event_base_new();
    assert_non_null(t->base);
    t->lim.max_message_size = max_msg;
    t->lim.max_connections = max_conns;
    t->lim.header_timeout = header_ms;
    t->lim.idle_timeout = idle_ms;
    t->tp = kl_tp_new(t->base, &t->lim, false, on_msg, on_err, t);
    assert_non_null(t->tp);
    t->tick = event_new(t->base, -1, EV_PERSIST, tick_cb, NULL);
    event_add(t->tick, &tv);
    return t;
}

static t_t *t_default(void)
{
    return t_new(65536, 64, 10000, 300000);
}

static void t_free(t_t *t)
{
    kl_tp_free(t->tp);
    kl_conn_unref(t->kept); /* after kl_tp_free: the husk outlives the transport */
    event_free(t->tick);
    assert_int_equal(event_base_get_num_events(t->base, EVENT_BASE_COUNT_ADDED), 0);
    event_base_free(t->base);
    for (int i = 0; i < t->nmsgs && i < MAXMSG; i++)
        free(t->msgs[i].buf);
    free(t);
}

/* Runs the loop until cond(t, ctx) holds or LOOP_MS pass. */
static bool t_run(t_t *t, bool (*cond)(t_t *, void *), void *ctx)
{
    uint64_t end = now_ms() + LOOP_MS;

    while (!cond(t, ctx)) {
        if (now_ms() > end)
            return false;
        event_base_loop(t->base, EVLOOP_ONCE);
    }
    return true;
}

/* Runs the loop for <ms> whatever happens (lets partial writes arrive). */
static void t_spin(t_t *t, unsigned ms)
{
    uint64_t end = now_ms() + ms;

    while (now_ms() < end)
        event_base_loop(t->base, EVLOOP_ONCE);
}

static bool cond_msgs(t_t *t, void *ctx)
{
    return t->nmsgs >= *(int *)ctx;
}

static bool cond_errs(t_t *t, void *ctx)
{
    (void)ctx;
    return t->nerrs > 0;
}

static kl_listener_t *t_listen(t_t *t, kl_tp_kind_t kind, const char *addr)
{
    kl_conf_listen_t cl = {.transport = kind, .address = (char *)addr, .port = 0};
    kl_listener_t *l = NULL;

    assert_int_equal(kl_tp_listen(t->tp, &cl, &l), KL_OK);
    assert_non_null(l);
    assert_int_not_equal(kl_addr_port(kl_listener_addr(l)), 0);
    return l;
}

/* A client socket connected to <l>, non-blocking. */
static int client_connect(const kl_addr_t *a)
{
    int fd = socket(a->u.sa.sa_family, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(connect(fd, &a->u.sa, a->len), 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static void client_write(int fd, const char *s, size_t len)
{
    assert_int_equal(send(fd, s, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* What a client socket got so far, and whether it saw EOF. */
typedef struct rx {
    int fd;
    char buf[8192];
    size_t len;
    bool eof;
    bool reset;
    size_t want;
} rx_t;

static void rx_poll(rx_t *r)
{
    while (!r->eof && r->len < sizeof(r->buf) - 1) {
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - 1 - r->len, MSG_DONTWAIT);

        if (n > 0) {
            r->len += (size_t)n;
            r->buf[r->len] = '\0';
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            r->reset = n < 0;
            r->eof = true;
        }
        break;
    }
}

/* Reads and counts whatever is there. */
static void sink_poll(int fd, size_t *got)
{
    char b[16384];
    ssize_t n;

    while ((n = recv(fd, b, sizeof(b), MSG_DONTWAIT)) > 0)
        *got += (size_t)n;
}

static bool cond_rx_eof(t_t *t, void *ctx)
{
    (void)t;
    rx_poll(ctx);
    return ((rx_t *)ctx)->eof;
}

static bool cond_rx_len(t_t *t, void *ctx)
{
    rx_t *r = ctx;

    (void)t;
    rx_poll(r);
    return r->len >= r->want || r->eof;
}

/* ---- UDP ---- */

static void udp_roundtrip(t_t *t, const char *host, int family)
{
    kl_listener_t *l = t_listen(t, KL_TP_UDP, host);
    int fd = socket(family, SOCK_DGRAM, 0);
    kl_addr_t me;
    socklen_t ml = sizeof(me.u.ss);
    rx_t r = {.want = strlen(RESP200)};
    const char *req = REQ("u1");

    assert_true(fd >= 0);
    assert_int_equal(kl_listener_kind(l), KL_TP_UDP);
    assert_ptr_equal(kl_tp_any_listener(t->tp, KL_TP_UDP, family), l);
    assert_ptr_equal(kl_tp_find_listener(t->tp, KL_TP_UDP, host, 0), l);
    assert_int_equal(connect(fd, &kl_listener_addr(l)->u.sa, kl_listener_addr(l)->len), 0);
    getsockname(fd, &me.u.sa, &ml);
    me.len = ml;
    t->reply = RESP200;
    assert_int_equal(send(fd, req, strlen(req), 0), (ssize_t)strlen(req));
    int want = 1;
    assert_true(t_run(t, cond_msgs, &want));
    assert_int_equal(t->msgs[0].status, KL_OK);
    assert_string_equal(t->msgs[0].buf, req);
    assert_int_equal(t->msgs[0].src.kind, KL_TP_UDP);
    assert_ptr_equal(t->msgs[0].src.listener, l);
    assert_true(kl_addr_eq(&t->msgs[0].src.peer, &me));
    r.fd = fd;
    assert_true(t_run(t, cond_rx_len, &r));
    assert_string_equal(r.buf, RESP200);
    assert_int_equal(kl_tp_stats(t->tp)->udp_rx, 1);
    assert_int_equal(kl_tp_stats(t->tp)->udp_tx, 1);

    /* kl_tp_send UDP goes out of the listener of the destination's family */
    r.len = 0;
    assert_int_equal(kl_tp_send(t->tp, KL_TP_UDP, &me, "ping", 4), KL_OK);
    r.want = 4;
    assert_true(t_run(t, cond_rx_len, &r));
    assert_string_equal(r.buf, "ping");
    close(fd);
}

static void test_transport__udp_datagram_and_reply(void **state)
{
    t_t *t = t_default();

    (void)state;
    udp_roundtrip(t, "127.0.0.1", AF_INET);
    t_free(t);
}

static void test_transport__udp_too_big_dropped(void **state)
{
    t_t *t = t_new(512, 64, 10000, 300000);
    kl_listener_t *l = t_listen(t, KL_TP_UDP, "127.0.0.1");
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    char big[513];
    const char *req = REQ("u2");
    int want = 1;

    (void)state;
    memset(big, 'x', sizeof(big));
    assert_int_equal(
        sendto(fd, big, sizeof(big), 0, &kl_listener_addr(l)->u.sa, kl_listener_addr(l)->len),
        (ssize_t)sizeof(big));
    assert_int_equal(
        sendto(fd, req, strlen(req), 0, &kl_listener_addr(l)->u.sa, kl_listener_addr(l)->len),
        (ssize_t)strlen(req));
    assert_true(t_run(t, cond_msgs, &want));
    assert_int_equal(t->nmsgs, 1);
    assert_string_equal(t->msgs[0].buf, req);
    assert_int_equal(kl_tp_stats(t->tp)->too_big, 1);
    close(fd);
    t_free(t);
}

static void test_transport__udp_ipv6(void **state)
{
    t_t *t = t_default();
    kl_conf_listen_t cl = {.transport = KL_TP_UDP, .address = "::1", .port = 0};
    int rc;

    (void)state;
    rc = kl_tp_listen(t->tp, &cl, NULL);
    if (rc != KL_OK) {
        t_free(t);
        skip();
    }
    kl_tp_unlisten(t->tp, kl_tp_find_listener(t->tp, KL_TP_UDP, "::1", 0));
    udp_roundtrip(t, "::1", AF_INET6);
    t_free(t);
}

static void test_transport__listen_errors(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    kl_conf_listen_t cl = {.transport = KL_TP_TCP, .address = "127.0.0.1", .port = 0};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sin);

    (void)state;
    (void)l;
    assert_int_equal(kl_tp_listen(t->tp, &cl, NULL), KL_EEXIST);
    cl.address = "not-an-ip";
    assert_int_equal(kl_tp_listen(t->tp, &cl, NULL), KL_EINVAL);
    /* a UDP port someone else holds: KL_EIO, errno says why */
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    getsockname(fd, (struct sockaddr *)&sin, &sl);
    cl.transport = KL_TP_UDP;
    cl.address = "127.0.0.1";
    cl.port = ntohs(sin.sin_port);
    errno = 0;
    assert_int_equal(kl_tp_listen(t->tp, &cl, NULL), KL_EIO);
    assert_int_equal(errno, EADDRINUSE);
    close(fd);
    t_free(t);
}

/* ---- TCP ---- */

static void test_transport__tcp_pipelined(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    const char *two = REQ("p1") "\r\n" REQ("p2");
    int want = 2;

    (void)state;
    client_write(fd, two, strlen(two));
    assert_true(t_run(t, cond_msgs, &want));
    assert_int_equal(t->nmsgs, 2);
    assert_int_equal(t->msgs[0].status, KL_OK);
    assert_string_equal(t->msgs[0].buf, REQ("p1"));
    assert_string_equal(t->msgs[1].buf, REQ("p2"));
    assert_ptr_equal(t->msgs[0].src.listener, l);
    assert_int_equal(t->msgs[0].src.kind, KL_TP_TCP);
    assert_int_equal(kl_tp_stats(t->tp)->tcp_rx, 2);
    assert_int_equal(kl_tp_stats(t->tp)->conns_accepted, 1);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_split_message(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    const char *m = REQ("split");
    size_t len = strlen(m), cut1 = 40, cut2 = len - 2; /* mid Via line; mid body */
    int want = 1;

    (void)state;
    client_write(fd, m, cut1);
    t_spin(t, 30);
    assert_int_equal(t->nmsgs, 0);
    client_write(fd, m + cut1, cut2 - cut1);
    t_spin(t, 30);
    assert_int_equal(t->nmsgs, 0);
    client_write(fd, m + cut2, len - cut2);
    assert_true(t_run(t, cond_msgs, &want));
    assert_int_equal(t->nmsgs, 1);
    assert_int_equal(t->msgs[0].len, len);
    assert_string_equal(t->msgs[0].buf, m);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_byte_by_byte(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    const char *m = REQ("bytes") REQ("more");
    int want = 2;

    (void)state;
    for (size_t i = 0; i < strlen(m); i++) {
        client_write(fd, m + i, 1);
        event_base_loop(t->base, EVLOOP_NONBLOCK);
    }
    assert_true(t_run(t, cond_msgs, &want));
    assert_string_equal(t->msgs[0].buf, REQ("bytes"));
    assert_string_equal(t->msgs[1].buf, REQ("more"));
    close(fd);
    t_free(t);
}

/* Hundreds of messages of varied sizes in one stream, written as fast as the
 * socket takes them: they straddle reads and the scratch buffer's end. */
static void test_transport__tcp_many_pipelined(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    enum { N = 600 };
    size_t cap = N * 2400, len = 0, off = 0, expect = 0;
    char *all = malloc(cap);
    size_t got = 0, want = N * strlen(RESP200);
    uint64_t end = now_ms() + LOOP_MS;

    (void)state;
    for (int i = 0; i < N; i++) {
        size_t body = (size_t)(i * 37) % 2000;
        int n = snprintf(all + len, cap - len,
                         "%sMESSAGE sip:a SIP/2.0\r\nCall-ID: seq%d\r\nContent-Length: %zu\r\n\r\n",
                         i % 50 == 0 ? "\r\n" : "", i, body);

        expect += (size_t)n - (i % 50 == 0 ? 2 : 0) + body;
        len += (size_t)n;
        memset(all + len, 'a' + i % 26, body);
        len += body;
    }
    t->check_seq = true;
    t->reply = RESP200;
    while ((off < len || t->nmsgs < N) && now_ms() < end) {
        if (off < len) {
            ssize_t n = send(fd, all + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

            if (n > 0)
                off += (size_t)n;
        }
        event_base_loop(t->base, EVLOOP_NONBLOCK);
        sink_poll(fd, &got); /* keep reading the 200s so neither side blocks */
    }
    assert_int_equal(t->nmsgs, N);
    assert_int_equal(t->seq_bad, 0);
    assert_int_equal(t->total, expect);
    while (got < want && now_ms() < end + LOOP_MS) {
        event_base_loop(t->base, EVLOOP_NONBLOCK);
        sink_poll(fd, &got);
    }
    assert_int_equal(got, want);
    assert_int_equal(kl_tp_stats(t->tp)->tcp_tx, N);
    free(all);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_reply_same_connection(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd, .want = 2 * strlen(RESP200)};
    const char *two = REQ("r1") REQ("r2");

    (void)state;
    t->reply = RESP200;
    client_write(fd, two, strlen(two));
    assert_true(t_run(t, cond_rx_len, &r));
    assert_false(r.eof);
    assert_string_equal(r.buf, RESP200 RESP200);
    assert_int_equal(kl_tp_stats(t->tp)->tcp_tx, 2);
    assert_int_equal(kl_tp_stats(t->tp)->conns_opened, 0);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_missing_cl_closes(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd};
    const char *bad = "OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\nmore bytes after it";

    (void)state;
    t->reply = RESP400;
    client_write(fd, bad, strlen(bad));
    assert_true(t_run(t, cond_rx_eof, &r));
    assert_false(r.reset);
    assert_string_equal(r.buf, RESP400);
    assert_int_equal(t->nmsgs, 1);
    assert_int_equal(t->msgs[0].status, KL_EPROTO);
    assert_string_equal(t->msgs[0].buf, "OPTIONS sip:a SIP/2.0\r\nCall-ID: x\r\n\r\n");
    assert_int_equal(kl_tp_stats(t->tp)->framing_errors, 1);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_junk_closes(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    int fd2 = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd}, r2 = {.fd = fd2};

    (void)state;
    client_write(fd, "\x16\x03\x01\x02\x00", 5); /* TLS to a TCP port */
    assert_true(t_run(t, cond_rx_eof, &r));
    client_write(fd2, "GET / HTTP/1.1\r\nHost: x\r\n", 25);
    assert_true(t_run(t, cond_rx_eof, &r2));
    assert_int_equal(t->nmsgs, 2);
    assert_int_equal(t->msgs[0].status, KL_EPROTO);
    assert_int_equal(t->msgs[1].status, KL_EPROTO);
    assert_int_equal(kl_tp_stats(t->tp)->framing_errors, 2);
    close(fd);
    close(fd2);
    t_free(t);
}

static void test_transport__tcp_too_big_closes(void **state)
{
    t_t *t = t_new(1024, 64, 10000, 300000);
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    int fd2 = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd}, r2 = {.fd = fd2};
    const char *hdr = "MESSAGE sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n";
    char body[5000], endless[2048];

    (void)state;
    t->reply = "SIP/2.0 513 Message Too Large\r\nContent-Length: 0\r\n\r\n";
    memset(body, 'b', sizeof(body));
    client_write(fd, hdr, strlen(hdr));
    client_write(fd, body, sizeof(body));
    assert_true(t_run(t, cond_rx_eof, &r));
    assert_string_equal(r.buf, t->reply);
    assert_int_equal(t->msgs[0].status, KL_ETOOBIG);
    assert_string_equal(t->msgs[0].buf, hdr);

    /* a header section that never ends */
    memset(endless, 'h', sizeof(endless));
    memcpy(endless, "OPTIONS sip:a SIP/2.0\r\nX: ", 26);
    t->reply = NULL;
    client_write(fd2, endless, sizeof(endless));
    assert_true(t_run(t, cond_rx_eof, &r2));
    assert_int_equal(t->nmsgs, 2);
    assert_int_equal(t->msgs[1].status, KL_ETOOBIG);
    assert_int_equal(kl_tp_stats(t->tp)->too_big, 2);
    close(fd);
    close(fd2);
    t_free(t);
}

static bool cond_rejected(t_t *t, void *ctx)
{
    (void)ctx;
    return kl_tp_stats(t->tp)->conns_rejected >= 1;
}

static void test_transport__tcp_max_connections(void **state)
{
    t_t *t = t_new(65536, 2, 10000, 300000);
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd[3];
    rx_t r = {0};
    rx_t r0 = {0};

    (void)state;
    for (int i = 0; i < 3; i++) {
        fd[i] = client_connect(kl_listener_addr(l));
        /* accepted in order: let each one in before the next */
        t_spin(t, 20);
    }
    assert_true(t_run(t, cond_rejected, NULL));
    r.fd = fd[2];
    assert_true(t_run(t, cond_rx_eof, &r));
    assert_int_equal(kl_tp_stats(t->tp)->conns_accepted, 2);
    assert_int_equal(kl_tp_stats(t->tp)->conns_rejected, 1);
    /* the first two still work */
    r0.fd = fd[0];
    rx_poll(&r0);
    assert_false(r0.eof);
    t->reply = RESP200;
    client_write(fd[1], REQ("c2"), strlen(REQ("c2")));
    r0.fd = fd[1];
    r0.want = strlen(RESP200);
    assert_true(t_run(t, cond_rx_len, &r0));
    assert_string_equal(r0.buf, RESP200);
    for (int i = 0; i < 3; i++)
        close(fd[i]);
    t_free(t);
}

static void test_transport__tcp_header_timeout(void **state)
{
    t_t *t = t_new(65536, 64, 200, 300000);
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd};
    const char *half = "OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;bra";
    uint64_t start;

    (void)state;
    client_write(fd, half, strlen(half));
    start = now_ms();
    assert_true(t_run(t, cond_rx_eof, &r));
    assert_true(now_ms() - start >= 150);
    assert_int_equal(kl_tp_stats(t->tp)->header_timeouts, 1);
    assert_int_equal(t->nmsgs, 0);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_idle_timeout(void **state)
{
    t_t *t = t_new(65536, 64, 10000, 200);
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd};

    (void)state;
    assert_true(t_run(t, cond_rx_eof, &r));
    assert_int_equal(kl_tp_stats(t->tp)->idle_timeouts, 1);
    assert_int_equal(kl_tp_stats(t->tp)->header_timeouts, 0);
    close(fd);
    t_free(t);
}

static void test_transport__tcp_keepalive_ping_pong(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    rx_t r = {.fd = fd, .want = 2};
    int want = 1;

    (void)state;
    client_write(fd, "\r\n\r\n", 4);
    assert_true(t_run(t, cond_rx_len, &r));
    assert_string_equal(r.buf, "\r\n");
    /* a single CRLF between messages is skipped, no pong */
    client_write(fd, "\r\n" REQ("after"), strlen("\r\n" REQ("after")));
    assert_true(t_run(t, cond_msgs, &want));
    assert_string_equal(t->msgs[0].buf, REQ("after"));
    rx_poll(&r);
    assert_int_equal(r.len, 2);
    close(fd);
    t_free(t);
}

/* A plain listening socket standing for an upstream server. */
static int server_listen(kl_addr_t *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t al = sizeof(a->u.ss);

    assert_int_equal(kl_addr_from_str("127.0.0.1", 0, a), KL_OK);
    assert_int_equal(bind(fd, &a->u.sa, a->len), 0);
    assert_int_equal(listen(fd, 8), 0);
    getsockname(fd, &a->u.sa, &al);
    a->len = al;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

typedef struct acc {
    int lfd;
    int fd;
} acc_t;

static bool cond_accept(t_t *t, void *ctx)
{
    acc_t *a = ctx;

    (void)t;
    a->fd = accept(a->lfd, NULL, NULL);
    if (a->fd >= 0)
        fcntl(a->fd, F_SETFL, fcntl(a->fd, F_GETFL) | O_NONBLOCK);
    return a->fd >= 0;
}

static void test_transport__tcp_send_outgoing(void **state)
{
    t_t *t = t_default();
    kl_addr_t up;
    acc_t a = {.lfd = server_listen(&up), .fd = -1};
    rx_t r = {.want = strlen(REQ("o1") REQ("o2"))};
    int want = 1;

    (void)state;
    assert_int_equal(kl_tp_send(t->tp, KL_TP_TCP, &up, REQ("o1"), strlen(REQ("o1"))), KL_OK);
    /* queued while connecting, same connection */
    assert_int_equal(kl_tp_send(t->tp, KL_TP_TCP, &up, REQ("o2"), strlen(REQ("o2"))), KL_OK);
    assert_true(t_run(t, cond_accept, &a));
    r.fd = a.fd;
    assert_true(t_run(t, cond_rx_len, &r));
    assert_string_equal(r.buf, REQ("o1") REQ("o2"));
    assert_int_equal(kl_tp_stats(t->tp)->conns_opened, 1);
    assert_int_equal(kl_tp_stats(t->tp)->tcp_tx, 2);

    /* what the server answers is framed and delivered like any stream */
    client_write(a.fd, "SIP/2.0 200 OK\r\nl: 2\r\n\r\nok", 26);
    assert_true(t_run(t, cond_msgs, &want));
    assert_int_equal(t->msgs[0].status, KL_OK);
    assert_string_equal(t->msgs[0].buf, "SIP/2.0 200 OK\r\nl: 2\r\n\r\nok");
    assert_null(t->msgs[0].src.listener);
    assert_true(kl_addr_eq(&t->msgs[0].src.peer, &up));
    assert_int_equal(t->nerrs, 0);
    assert_int_equal(kl_tp_stats(t->tp)->framing_errors, 0);
    close(a.fd);
    close(a.lfd);
    t_free(t);
}

static void test_transport__tcp_send_refused(void **state)
{
    t_t *t = t_default();
    kl_addr_t dead;
    int fd = server_listen(&dead);
    int rc;

    (void)state;
    close(fd); /* nobody listens there now */
    rc = kl_tp_send(t->tp, KL_TP_TCP, &dead, REQ("x"), strlen(REQ("x")));
    assert_int_equal(rc, KL_OK);
    assert_int_equal(t->nerrs, 0); /* never from inside kl_tp_send */
    assert_true(t_run(t, cond_errs, NULL));
    t_spin(t, 50);
    assert_int_equal(t->nerrs, 1);
    assert_int_equal(t->last_err, KL_EIO);
    assert_true(kl_addr_eq(&t->err_peer, &dead));
    t_free(t);
}

static bool cond_conn_closed(t_t *t, void *ctx)
{
    (void)ctx;
    return !kl_conn_is_open(t->kept);
}

static void test_transport__tcp_reply_after_close_reconnects(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    kl_addr_t via;
    acc_t a = {.lfd = server_listen(&via), .fd = -1};
    rx_t r = {.want = strlen(RESP200)};
    int want = 1;

    (void)state;
    t->keep = true;
    client_write(fd, REQ("k1"), strlen(REQ("k1")));
    assert_true(t_run(t, cond_msgs, &want));
    assert_non_null(t->kept);
    assert_true(kl_conn_is_open(t->kept));
    close(fd);
    assert_true(t_run(t, cond_conn_closed, NULL));
    /* RFC 3261 §18.2.2: the connection is gone, a new one to the Via address */
    t->kept_src.conn = t->kept;
    assert_int_equal(kl_tp_reply(t->tp, &t->kept_src, &via, RESP200, strlen(RESP200)), KL_OK);
    assert_true(t_run(t, cond_accept, &a));
    r.fd = a.fd;
    assert_true(t_run(t, cond_rx_len, &r));
    assert_string_equal(r.buf, RESP200);
    assert_int_equal(kl_tp_stats(t->tp)->conns_opened, 1);
    close(a.fd);
    close(a.lfd);
    t_free(t); /* unrefs the kept connection after the transport is gone */
}

static void test_transport__tcp_unlisten_keeps_connections(void **state)
{
    t_t *t = t_default();
    kl_listener_t *l = t_listen(t, KL_TP_TCP, "127.0.0.1");
    int fd = client_connect(kl_listener_addr(l));
    int want = 1;

    (void)state;
    t_spin(t, 20);
    kl_tp_unlisten(t->tp, l);
    assert_null(kl_tp_any_listener(t->tp, KL_TP_TCP, AF_INET));
    client_write(fd, REQ("u"), strlen(REQ("u")));
    assert_true(t_run(t, cond_msgs, &want));
    assert_null(t->msgs[0].src.listener);
    close(fd);
    t_free(t);
}

static void test_transport__addr_helpers(void **state)
{
    kl_addr_t a, b;
    char s[64];

    (void)state;
    assert_int_equal(kl_addr_from_str("127.0.0.1", 5060, &a), KL_OK);
    assert_int_equal(kl_addr_to_str(&a, s, sizeof(s)), KL_OK);
    assert_string_equal(s, "127.0.0.1:5060");
    assert_int_equal(kl_addr_from_str("::1", 5061, &a), KL_OK);
    assert_int_equal(kl_addr_to_str(&a, s, sizeof(s)), KL_OK);
    assert_string_equal(s, "[::1]:5061");
    assert_int_equal(kl_addr_host(&a, s, sizeof(s)), KL_OK);
    assert_string_equal(s, "::1");
    assert_int_equal(kl_addr_port(&a), 5061);
    assert_int_equal(kl_addr_from_str("[::1]", 5061, &b), KL_OK);
    assert_true(kl_addr_eq(&a, &b));
    assert_int_equal(kl_addr_from_str("[::1]", 5062, &b), KL_OK);
    assert_false(kl_addr_eq(&a, &b));
    assert_int_equal(kl_addr_from_str("example.com", 1, &b), KL_EINVAL);
    assert_int_equal(kl_addr_from_str("[::1", 1, &b), KL_EINVAL);
    assert_int_equal(kl_addr_from_str("1.2.3", 1, &b), KL_EINVAL);
    assert_int_equal(kl_addr_to_str(&a, s, 4), KL_ERANGE);
    assert_string_equal(kl_tp_kind_name(KL_TP_TCP), "tcp");
    assert_string_equal(kl_tp_kind_via(KL_TP_UDP), "UDP");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_transport__addr_helpers),
        cmocka_unit_test(test_transport__udp_datagram_and_reply),
        cmocka_unit_test(test_transport__udp_too_big_dropped),
        cmocka_unit_test(test_transport__udp_ipv6),
        cmocka_unit_test(test_transport__listen_errors),
        cmocka_unit_test(test_transport__tcp_pipelined),
        cmocka_unit_test(test_transport__tcp_split_message),
        cmocka_unit_test(test_transport__tcp_byte_by_byte),
        cmocka_unit_test(test_transport__tcp_many_pipelined),
        cmocka_unit_test(test_transport__tcp_reply_same_connection),
        cmocka_unit_test(test_transport__tcp_missing_cl_closes),
        cmocka_unit_test(test_transport__tcp_junk_closes),
        cmocka_unit_test(test_transport__tcp_too_big_closes),
        cmocka_unit_test(test_transport__tcp_max_connections),
        cmocka_unit_test(test_transport__tcp_header_timeout),
        cmocka_unit_test(test_transport__tcp_idle_timeout),
        cmocka_unit_test(test_transport__tcp_keepalive_ping_pong),
        cmocka_unit_test(test_transport__tcp_send_outgoing),
        cmocka_unit_test(test_transport__tcp_send_refused),
        cmocka_unit_test(test_transport__tcp_reply_after_close_reconnects),
        cmocka_unit_test(test_transport__tcp_unlisten_keeps_connections),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
