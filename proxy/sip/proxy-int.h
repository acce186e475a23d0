/* Internals shared by sip/proxy.c (front door), sip/forward.c (building the
 * bytes keel sends) and sip/txn.c (transactions and serial failover). Not an
 * API: nothing outside sip/ includes it. */
#ifndef KL_SIP_PROXY_INT_H
#define KL_SIP_PROXY_INT_H

#include "sip/proxy.h"
#include "sip/branch.h"
#include "sip/route.h"
#include "core/htab.h"

#include <event2/event.h>
#include <event2/event_struct.h>

/* RFC 3261 timer values (ms) */
#define KL_T1         500
#define KL_T2         4000
#define KL_T4         5000
#define KL_TXN_LINGER (64 * KL_T1) /* Timer B/F/H/D/L/M scale */

typedef struct kl_ptx kl_ptx_t;
typedef struct kl_ctx kl_ctx_t;
typedef struct kl_dialog kl_dialog_t;
typedef struct kl_probe kl_probe_t;
typedef struct kl_admission kl_admission_t;

#define KL__PROBE_TICK_MS 100 /* the policy's tick: probes, timeouts, ejections */
#define KL__DEAD_MAX      64  /* destinations declared dead awaiting their calls' failover */

#define KL__DIALOG_MAX     200000                /* calls remembered at once */
#define KL__DIALOG_MAX_AGE (12ull * 3600 * 1000) /* a call with no BYE seen: forgotten */

/* A client transaction: one attempt of a proxied request at one target. It
 * outlives its kl_ptx_t when abandoned (failover, CANCEL), to ACK a late
 * final, CANCEL a late 1xx and let a late 2xx through. */
struct kl_ctx {
    kl_hnode_t hn; /* in p->clients, by key */
    char key[96];  /* branch + "|" + method class */
    char branch[80];
    kl_ptx_t *ptx;   /* the transaction, while this is its current attempt */
    kl_ptx_t *owner; /* the transaction, while it lives (abandoned attempts too) */
    kl_proxy_t *p;
    kl_target_t target;
    bool has_target;
    char *req; /* the request as sent (for retransmission, CANCEL, ACK) */
    size_t reqlen;
    bool invite;
    bool provisional; /* a 1xx arrived */
    bool final;       /* a final arrived */
    bool cancel_sent;
    bool cancel_pending; /* CANCEL as soon as a 1xx arrives */
    bool reported;       /* the outcome went to the router */
    bool initial_invite; /* an INVITE that creates a call (not a re-INVITE) */
    bool in_flight;      /* counted in keel_transactions_in_flight */
    bool delayed;        /* an injected delay holds the first send (t_retrans) */
    kl_class_t cls;      /* the request's traffic class */
    unsigned retrans_ms;
    struct event t_retrans;                   /* Timer A / E */
    struct event t_attempt;                   /* attempt timeout, then Timer C; then linger */
    struct kl_ctx *next_active, *prev_active; /* p->active list (transport errors) */
};

/* A proxy transaction: the server transaction of a request and its serial
 * attempts. */
struct kl_ptx {
    kl_hnode_t hn; /* in p->servers */
    char key[200];
    kl_proxy_t *p;
    const kl_conf_t *conf; /* the snapshot it started with (keeps a ref) */
    kl_sip_msg_t *req;     /* the request as received; freed when final */
    kl_tp_src_t src;       /* where it came from (conn ref held) */
    kl_addr_t reply_to;
    kl_class_t cls;
    kl_method_t method;
    kl_plan_t *plan;
    const kl_conf_cluster_t *cluster;
    kl_ctx_t *cur;          /* the attempt in progress, or NULL */
    kl_ctx_t *branches[12]; /* every attempt still alive, for late 2xx */
    unsigned nbranches;
    unsigned attempts;
    bool cancelled;
    bool final_sent;
    bool acked;
    bool record_route;
    int best_code;  /* best final so far (§16.7), 0 none */
    int final_code; /* the final sent to the caller */
    char *best;     /* its bytes, our Via already popped */
    size_t bestlen;
    char *last; /* the last response sent to the caller, for retransmissions */
    size_t lastlen;
    unsigned g_ms;         /* Timer G interval */
    struct event t_server; /* Timer G (UDP final retransmission) */
    struct event t_life;   /* lifetime after the final (H / I / J / L) */
    char call_id[128];
    uint64_t start_ms;    /* when the request arrived */
    bool rang;            /* an 18x was forwarded (setup time recorded) */
    int failover_cause;   /* why the next attempt is a failover (-1: it is not) */
    char failed_zone[64]; /* the zone of the attempt that last failed */
    char dlg_zone[64];    /* in-dialog: the dialog's zone (cookie) */
    bool dlg_to_caller;   /* in-dialog: sent back toward the caller */
};

struct kl_proxy {
    kl_worker_t *w;
    kl_proxy_stats_t stats;
    kl_proxy_stats_t logged;
    struct event *summary;
    char server_hdr[64];

    const kl_router_ops_t *rops;
    void *router;
    kl_branch_gen_t gen;
    kl_htab_t servers;     /* kl_ptx_t by server key */
    kl_htab_t clients;     /* kl_ctx_t by branch|class */
    kl_ctx_t *active;      /* client transactions waiting on a target */
    uint64_t failovers[4]; /* by cause: [0] code, [1] timeout, [2] transport, [3] none left */
    kl_htab_t dialogs;     /* kl_dialog_t by Call-ID */
    kl_dialog_t *dlg_head, *dlg_tail;
    size_t ndialogs;
    /* the cookie secret of the previous snapshot, accepted until prev_until */
    char *prev_secret;
    uint64_t prev_until_ms;

    kl_htab_t probes; /* kl_probe_t by branch */
    kl_probe_t *probes_list;
    struct event *probe_timer;
    kl_tick_out_t *tick_out;
    void *dead[KL__DEAD_MAX]; /* destinations whose calls move elsewhere at the next tick */
    size_t ndead;
    kl_admission_t *adm;
    unsigned reply_oc_percent; /* set around a shedding 503: RFC 7339 feedback */
};

/* ---- admission.c ---- */
struct kl_stats;
kl_admission_t *kl__admission_new(const kl_conf_t *conf);
void kl__admission_free(kl_admission_t *a);
void kl__admission_reload(kl_admission_t *a, const kl_conf_t *conf);
void kl__admission_tick(kl_proxy_t *p, uint64_t now_ms);
/* A User-Agent on the scanner list: drop silently. */
bool kl__admission_scanner(kl_proxy_t *p, const kl_sip_msg_t *m);
/* An emergency call: urn:service:sos* or a configured number. */
bool kl__admission_emergency(const kl_conf_t *conf, const kl_sip_msg_t *m);
/* A new request of class <cls> from <src>: KL_OK, or KL_EBUSY with the
 * 503 reason phrase in *<reason>. */
int kl__admission_check(kl_proxy_t *p, const kl_tp_src_t *src, const kl_sip_msg_t *m,
                        kl_class_t cls, const char **reason);
/* The reduction (percent) keel asks of callers that support RFC 7339 while
 * it sheds class <cls>; 0 when it does not shed. */
unsigned kl__admission_oc(const kl_proxy_t *p, kl_class_t cls);
void kl__admission_collect(const kl_proxy_t *p, struct kl_stats *into);

/* ---- probe.c ---- */
int kl__probe_init(kl_proxy_t *p);
void kl__probe_shutdown(kl_proxy_t *p);
/* A response whose top Via branch is <branch>: true when it answered a probe. */
bool kl__probe_response(kl_proxy_t *p, const char *branch, int code);
void kl__probe_tp_error(kl_proxy_t *p, kl_tp_kind_t kind, const kl_addr_t *peer);

/* ---- dialog.c ---- */
/* A 2xx to an initial INVITE through <t>: the call is counted in its zone
 * and destination until its BYE, or until it is forgotten. */
void kl__dialog_start(kl_proxy_t *p, const char *call_id, const kl_target_t *t, kl_class_t cls,
                      uint64_t now_ms);
/* A BYE or its 2xx, in <zone>, from the platform's side or the caller's:
 * counts the media quality report it carries (sip/rtpstat.h), if any. */
void kl__dialog_quality(kl_proxy_t *p, const kl_sip_msg_t *m, const char *zone, bool from_platform);
/* The BYE of <call_id>: true when this worker knew the call (it ended here). */
bool kl__dialog_end(kl_proxy_t *p, const char *call_id, size_t len, uint64_t now_ms);
void kl__dialog_expire(kl_proxy_t *p, uint64_t now_ms);
void kl__dialog_free_all(kl_proxy_t *p);

/* ---- metric label helpers (proxy.c) ---- */
const char *kl__method_label(kl_method_t m); /* "INVITE"... or "OTHER" */
const char *kl__code_label(int code);        /* "1xx".."6xx" */
/* A bounded metrics token from one of keel's own reason phrases. */
void kl__reason_token(const char *reason, char *out, size_t cap);

/* ---- proxy.c ---- */
void kl__proxy_reply(kl_proxy_t *p, const kl_tp_src_t *src, const kl_sip_msg_t *m, int code,
                     const char *reason, const char *extra);
void kl__proxy_reply_addr(const kl_sip_msg_t *m, const kl_tp_src_t *src, kl_addr_t *dst);
bool kl__proxy_is_self(const kl_conf_t *conf, const char *host, const char *port);

/* ---- forward.c ---- */

/* Our Via and Record-Route for sending over <kind> to <dst>'s family. */
int kl__fwd_local(kl_proxy_t *p, kl_tp_kind_t kind, int family, char *host, size_t hostlen,
                  uint16_t *port);

typedef struct kl_fwd_opts {
    const char *branch;
    kl_tp_kind_t out_kind;
    int out_family;
    const kl_tp_src_t *src; /* where the request came from */
    bool record_route;
    const char *rr_zone; /* for the cookie */
    const char *rr_dest;
    bool pop_own_routes;
} kl_fwd_opts_t;

/* Builds the forwarded request: our Via on top, received/rport on the
 * caller's Via, Max-Forwards decremented (70 added), keel's own Route
 * entries popped, Record-Route with the cookie. Returns a new buffer
 * (*<out>, *<outlen>) or an error. */
int kl__fwd_request(kl_proxy_t *p, const kl_sip_msg_t *m, const kl_fwd_opts_t *o, char **out,
                    size_t *outlen);

/* The response with our top Via removed, into a new buffer. */
int kl__fwd_response(const kl_sip_msg_t *m, char **out, size_t *outlen);

/* CANCEL for a client INVITE as sent (<req>), and the hop-by-hop ACK for a
 * non-2xx final <resp>. New buffers. */
int kl__fwd_cancel(const char *req, size_t reqlen, char **out, size_t *outlen);
int kl__fwd_ack(const char *req, size_t reqlen, const kl_sip_msg_t *resp, char **out,
                size_t *outlen);

/* Is the URI value (a Route entry, "<sip:...;lr>") one of keel's own? When
 * it is and carries a cookie, the cookie token is returned in <tok>. */
bool kl__fwd_route_is_self(kl_proxy_t *p, const char *val, size_t len, const char **tok,
                           size_t *toklen);

/* ---- txn.c ---- */
int kl__txn_init(kl_proxy_t *p);
void kl__txn_shutdown(kl_proxy_t *p);
/* A new request (no To tag): server transaction, route, attempts. */
void kl__txn_new_request(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m);
/* Retransmission / ACK / CANCEL matching. Returns true when consumed. */
bool kl__txn_match_request(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m);
/* A response: client transaction matching and failover. */
void kl__txn_response(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m);
void kl__txn_tp_error(kl_proxy_t *p, kl_tp_kind_t kind, const kl_addr_t *peer);
/* Destination <dest> (a policy handle) was declared dead: its attempts in
 * progress, ringing calls included, move to the next destination at the
 * next flush (kl__txn_dead_flush, from the probe tick). */
void kl__txn_dest_dead(kl_proxy_t *p, void *dest);
void kl__txn_dead_flush(kl_proxy_t *p);
/* An in-dialog request to a known target: forwarded through a transaction. */
/* <zone>: the dialog's (from the cookie); <to_caller>: the request goes back
 * toward the caller (for the media report on a BYE's 2xx). */
void kl__txn_in_dialog(kl_proxy_t *p, const kl_tp_src_t *src, kl_sip_msg_t *m, kl_target_t *t,
                       const char *zone, bool to_caller);

#endif
