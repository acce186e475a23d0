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

/* A message posted to a worker from another thread (kl_worker_post): the
 * poster allocates one block (with malloc) that starts with this header;
 * the worker runs <run> on its own thread, in posting order, then frees the
 * block. Blocks still queued when the worker stops are freed unrun. */
typedef struct kl_post {
    struct kl_post *next;
    void (*run)(struct kl_worker *w, struct kl_post *post);
    bool control; /* never refused for a full inbox (state the worker must not miss) */
} kl_post_t;

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
    kl_post_t *posts, **posts_tail; /* kl_worker_post() queue, FIFO */
    unsigned nposts;
    uint64_t posts_dropped; /* past KL_WORKER_POSTS_MAX */
    struct event *wake;
    pthread_t thread;
    bool threaded;
    int start_rc; /* result of hooks->start, valid once started is true */
    bool started;
    pthread_cond_t started_cv;
    /* every worker of the process, this one included, indexed by id; set by
     * the daemon before any worker starts and never changed after */
    struct kl_worker *const *peers;
    unsigned npeers;
} kl_worker_t;

#define KL_WORKER_POSTS_MAX 65536

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

/* Queues <post> for the worker's thread (see kl_post_t) and wakes it; never
 * waits. Any thread, the worker's own included. Returns KL_OK, or KL_ERR
 * when the worker is stopping or, unless post->control, its queue holds
 * KL_WORKER_POSTS_MAX posts (then <post> is freed, counted in posts_dropped). */
int kl_worker_post(kl_worker_t *w, kl_post_t *post);

/* Asks the loop to end; kl_worker_join() waits for it. Any thread. */
void kl_worker_stop(kl_worker_t *w);
void kl_worker_join(kl_worker_t *w);

/* Frees a stopped (joined) worker. Accepts NULL. */
void kl_worker_free(kl_worker_t *w);

/* Monotonic milliseconds. */
uint64_t kl_now_ms(void);

#endif
