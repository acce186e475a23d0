/* The SIP front door and proxy core of a worker (RFC 3261 §16).
 *
 * Every message a transport frames comes to kl_proxy_on_msg(): it is parsed
 * (sip/msg), checked (§8.2, §16.3), answered when it is for keel itself
 * (OPTIONS), refused when it would make keel an open relay, and otherwise
 * handed to the transaction layer. Worker thread only. */
#ifndef KL_SIP_PROXY_H
#define KL_SIP_PROXY_H

#include "core/worker.h"
#include "transport/transport.h"
#include "sip/msg.h"
#include "sip/route.h"

#include <stdint.h>

typedef struct kl_proxy kl_proxy_t;

/* Why messages were dropped or refused, counted per worker (hostile input is
 * counted, not logged one line per packet). */
typedef enum {
    KL_DROP_JUNK = 0,           /* not SIP at all */
    KL_DROP_BAD_RESPONSE,       /* a response that fails checks */
    KL_DROP_UNMATCHED_RESPONSE, /* a response for no transaction of ours */
    KL_DROP_BAD_ACK,            /* an ACK that fails checks (never answered) */
    KL_DROP_UNMATCHED_ACK,      /* an ACK for nothing we know */
    KL_DROP_FRAMING,            /* stream framing broken */
    KL_DROP_TOO_BIG,            /* past max_message_size */
    KL_DROP_SCANNER,            /* scanner User-Agent */
    KL_DROP_COUNT
} kl_drop_reason_t;

typedef struct kl_proxy_stats {
    uint64_t rx_requests;
    uint64_t rx_responses;
    uint64_t keepalives;
    uint64_t dropped[KL_DROP_COUNT];
    uint64_t replied[7];   /* local answers by class: [1]..[6] = 1xx..6xx */
    uint64_t bad_requests; /* answered 4xx/5xx by the sanity checks */
    uint64_t relay_denied; /* 403: not our domain and no route for it */
    uint64_t bad_cookies;  /* 403: forged or tampered Route cookie */
    uint64_t handed_off;   /* responses passed to the worker that owns them */
} kl_proxy_stats_t;

/* Returns a new proxy for worker <w> (which must already have w->tp set
 * before messages flow), or NULL. Reads w->conf. <ops> and <router> are the
 * routing policy (borrowed: they outlive the proxy). */
kl_proxy_t *kl_proxy_new(kl_worker_t *w, const kl_router_ops_t *ops, void *router);
void kl_proxy_free(kl_proxy_t *p);

/* The transport callbacks; <arg> is the kl_proxy_t. */
void kl_proxy_on_msg(void *arg, const kl_tp_src_t *src, char *buf, size_t len, int status);
void kl_proxy_on_tp_error(void *arg, kl_tp_kind_t kind, const kl_addr_t *peer, int err);

/* A new snapshot: rebuild what depends on it (self addresses, domains). */
void kl_proxy_reload(kl_proxy_t *p, const kl_conf_t *old_conf, const kl_conf_t *new_conf);

const kl_proxy_stats_t *kl_proxy_stats(const kl_proxy_t *p);

/* <dest> (a router destination) was declared dead outside this proxy's own
 * evidence (another worker's prober): its ringing and waiting calls move
 * on, as when this worker finds it dead. */
void kl_proxy_dest_dead(kl_proxy_t *p, void *dest);

/* Does a transaction still in progress (or lingering for retransmissions)
 * use <listener>? O(transactions): for reloads, not the data path. */
bool kl_proxy_uses_listener(const kl_proxy_t *p, const void *listener);

struct kl_stats;
/* Adds the series read from live state at scrape time (dropped messages,
 * overload control) into <into>. Worker thread. */
void kl_proxy_collect(const kl_proxy_t *p, struct kl_stats *into);
const char *kl_drop_reason_name(kl_drop_reason_t r);

#endif
