/* A worker: one thread, its own libevent base, sockets and transaction
 * tables (DESIGN.md "Threads and state"). Nothing in it is shared: other
 * threads reach a worker only through kl_worker_adopt() and kl_worker_stop(),
 * which are thread-safe.
 *
 * The worker keeps one reference to the snapshot it uses for new work; a
 * reload hands it a newer one, adopted at the top of a loop turn. */
#ifndef KL_CORE_WORKER_H
#define KL_CORE_WORKER_H

#include "core/conf-t.h"
#include "core/log.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct event;
struct kl_worker;
struct kl_stats;

/* What the layers above core hang on a worker. Set by the daemon before the
 * worker starts; called on the worker's thread. */
typedef struct kl_worker_hooks {
    /* After the base exists and before the loop runs. Returns KL_OK or an
     * error (the worker then does not start). */
    int (*start)(struct kl_worker *w);
    /* A new snapshot is being adopted: w->conf is still <old>. */
    void (*reload)(struct kl_worker *w, const kl_conf_t *old, const kl_conf_t *new_conf);
    /* Shutdown, after the loop ended: free everything start made. */
    void (*stop)(struct kl_worker *w);
} kl_worker_hooks_t;

typedef struct kl_worker {
    unsigned id;
    struct event_base *base;
    const kl_conf_t *conf; /* keeps a ref */
    kl_log_ctx_t log;      /* worker id set, call-id/zone NULL */
    const kl_worker_hooks_t *hooks;

    struct kl_tp *tp;       /* transport/ */
    struct kl_proxy *proxy; /* sip/ */
    void *router;           /* upstream/ */
    void *mod_state[KL_MAX_MODULES];
    void *hooks_state;      /* the daemon's own per-worker data (its hooks') */
    struct kl_stats *stats; /* core/stats.h: this worker's metric series */
    /* What the admin API asks of the layers above core (set by the daemon):
     * fills <into> with gauges read from live state (destinations, zones). */
    void (*collect)(struct kl_worker *w, struct kl_stats *into);

    /* cross-thread: guarded by lock */
    pthread_mutex_t lock;
    const kl_conf_t *pending; /* next snapshot to adopt, keeps a ref */
    bool stopping;
    void (*call_fn)(struct kl_worker *w, void *arg); /* kl_worker_call() in progress */
    void *call_arg;
    bool call_done;
    bool running; /* the loop runs */
    pthread_cond_t call_cv;
    struct event *wake;
    pthread_t thread;
    bool threaded;
    int start_rc; /* result of hooks->start, valid once started is true */
    bool started;
    pthread_cond_t started_cv;
} kl_worker_t;

/* Returns a new worker with its event base, holding a ref on <conf>. */
kl_worker_t *kl_worker_new(unsigned id, const kl_conf_t *conf, const kl_worker_hooks_t *hooks);

/* Runs hooks->start then the loop on a new thread. Returns when start has
 * finished on that thread: its result (KL_OK, or the start error, in which
 * case the thread has already ended). */
int kl_worker_spawn(kl_worker_t *w);

/* Hands <conf> to the worker (takes a new ref); the worker adopts it at the
 * top of its next loop turn. Any thread. */
void kl_worker_adopt(kl_worker_t *w, const kl_conf_t *conf);

/* Runs <fn>(<w>, <arg>) on the worker's thread at the top of its next loop
 * turn and waits until it has returned, so <fn> may read and write the
 * worker's state without locks. One call at a time per caller thread; not
 * from the worker's own thread. Returns KL_OK, or KL_ERR when the worker is
 * not running (then <fn> was not called). */
int kl_worker_call(kl_worker_t *w, void (*fn)(kl_worker_t *w, void *arg), void *arg);

/* Asks the loop to end; kl_worker_join() waits for it. Any thread. */
void kl_worker_stop(kl_worker_t *w);
void kl_worker_join(kl_worker_t *w);

/* Frees a stopped (joined) worker. Accepts NULL. */
void kl_worker_free(kl_worker_t *w);

/* Monotonic milliseconds. */
uint64_t kl_now_ms(void);

#endif
