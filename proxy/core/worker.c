#include "core/worker.h"

#include "core/conf.h"
#include "core/errors.h"
#include "core/module.h"
#include "core/stats.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <stdlib.h>
#include <time.h>

uint64_t kl_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void worker_adopt_pending(kl_worker_t *w)
{
    const kl_conf_t *next;

    pthread_mutex_lock(&w->lock);
    next = w->pending;
    w->pending = NULL;
    pthread_mutex_unlock(&w->lock);
    const kl_conf_t *old;

    if (next == NULL)
        return;
    if (w->hooks != NULL && w->hooks->reload != NULL)
        w->hooks->reload(w, w->conf, next);
    /* modules run with w->conf already the new snapshot (they may read its
     * other sections); the old one stays alive until they are done */
    old = w->conf;
    w->conf = next;
    for (int i = 0; kl_modules[i] != NULL; i++) {
        if (kl_modules[i]->reload != NULL)
            kl_modules[i]->reload(w, old->mod_conf[i], next->mod_conf[i]);
    }
    kl_conf_unref(old);
    kl_log(KL_LOG_INFO, &w->log, "event=config_adopted version=%llu",
           (unsigned long long)next->version);
}

static void worker_wake_cb(evutil_socket_t fd, short what, void *arg)
{
    kl_worker_t *w = arg;
    bool stopping;
    void (*fn)(kl_worker_t *, void *);
    void *carg;
    kl_post_t *posts;

    (void)fd;
    (void)what;
    worker_adopt_pending(w);
    pthread_mutex_lock(&w->lock);
    stopping = w->stopping;
    fn = w->call_fn;
    carg = w->call_arg;
    posts = w->posts;
    w->posts = NULL;
    w->posts_tail = &w->posts;
    w->nposts = 0;
    pthread_mutex_unlock(&w->lock);
    while (posts != NULL) {
        kl_post_t *next = posts->next;

        if (!stopping)
            posts->run(w, posts);
        free(posts);
        posts = next;
    }
    if (fn != NULL) {
        fn(w, carg);
        pthread_mutex_lock(&w->lock);
        w->call_fn = NULL;
        w->call_done = true;
        pthread_cond_broadcast(&w->call_cv);
        pthread_mutex_unlock(&w->lock);
    }
    if (stopping)
        event_base_loopbreak(w->base);
}

kl_worker_t *kl_worker_new(unsigned id, const kl_conf_t *conf, const kl_worker_hooks_t *hooks)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    kl_worker_t *w;

    /* libevent's cross-thread event_active needs its locking turned on
     * before any base exists. */
    pthread_once(&once, (void (*)(void))evthread_use_pthreads);
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->id = id;
    w->hooks = hooks;
    w->posts_tail = &w->posts;
    w->log.worker = (int)id;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->started_cv, NULL);
    pthread_cond_init(&w->call_cv, NULL);
    w->stats = kl_stats_new();
    if (w->stats == NULL)
        goto fail;
    w->base = event_base_new();
    if (w->base == NULL)
        goto fail;
    w->wake = event_new(w->base, -1, 0, worker_wake_cb, w);
    if (w->wake == NULL)
        goto fail;
    w->conf = kl_conf_ref(conf);
    return w;
fail:
    kl_worker_free(w);
    return NULL;
}

static int worker_start(kl_worker_t *w)
{
    int rc = KL_OK;
    int i;

    for (i = 0; kl_modules[i] != NULL; i++) {
        if (kl_modules[i]->init == NULL)
            continue;
        rc = kl_modules[i]->init(w, w->conf->mod_conf[i]);
        if (rc != KL_OK)
            break;
    }
    if (rc == KL_OK && w->hooks != NULL && w->hooks->start != NULL)
        rc = w->hooks->start(w);
    if (rc != KL_OK) {
        /* stop what started, in reverse */
        while (--i >= 0) {
            if (kl_modules[i]->stop != NULL)
                kl_modules[i]->stop(w);
        }
    }
    return rc;
}

static void worker_finish(kl_worker_t *w)
{
    int n = 0;

    if (w->hooks != NULL && w->hooks->stop != NULL)
        w->hooks->stop(w);
    while (kl_modules[n] != NULL)
        n++;
    while (--n >= 0) {
        if (kl_modules[n]->stop != NULL)
            kl_modules[n]->stop(w);
    }
}

static void *worker_main(void *arg)
{
    kl_worker_t *w = arg;
    int rc = worker_start(w);

    /* running from before kl_worker_spawn returns, so a kl_worker_call
     * right after it waits for the loop instead of failing */
    pthread_mutex_lock(&w->lock);
    w->start_rc = rc;
    w->started = true;
    w->running = rc == KL_OK;
    pthread_cond_signal(&w->started_cv);
    pthread_mutex_unlock(&w->lock);
    if (rc != KL_OK)
        return NULL;
    kl_log(KL_LOG_INFO, &w->log, "event=worker_started");
    event_base_dispatch(w->base);
    pthread_mutex_lock(&w->lock);
    w->running = false;
    pthread_cond_broadcast(&w->call_cv);
    pthread_mutex_unlock(&w->lock);
    worker_finish(w);
    kl_log(KL_LOG_INFO, &w->log, "event=worker_stopped");
    return NULL;
}

int kl_worker_spawn(kl_worker_t *w)
{
    int rc;

    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return KL_ERR;
    w->threaded = true;
    pthread_mutex_lock(&w->lock);
    while (!w->started)
        pthread_cond_wait(&w->started_cv, &w->lock);
    rc = w->start_rc;
    pthread_mutex_unlock(&w->lock);
    if (rc != KL_OK) {
        pthread_join(w->thread, NULL);
        w->threaded = false;
    }
    return rc;
}

void kl_worker_adopt(kl_worker_t *w, const kl_conf_t *conf)
{
    const kl_conf_t *old;

    pthread_mutex_lock(&w->lock);
    old = w->pending;
    w->pending = kl_conf_ref(conf);
    pthread_mutex_unlock(&w->lock);
    kl_conf_unref(old);
    event_active(w->wake, EV_READ, 0);
}

int kl_worker_call(kl_worker_t *w, void (*fn)(kl_worker_t *w, void *arg), void *arg)
{
    pthread_mutex_lock(&w->lock);
    /* another caller's call first */
    while (w->call_fn != NULL && !w->stopping && w->running)
        pthread_cond_wait(&w->call_cv, &w->lock);
    if (w->stopping || !w->running) {
        pthread_mutex_unlock(&w->lock);
        return KL_ERR;
    }
    w->call_fn = fn;
    w->call_arg = arg;
    w->call_done = false;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wake, EV_READ, 0);
    pthread_mutex_lock(&w->lock);
    while (!w->call_done && w->running)
        pthread_cond_wait(&w->call_cv, &w->lock);
    if (!w->call_done) {
        w->call_fn = NULL;
        pthread_mutex_unlock(&w->lock);
        return KL_ERR;
    }
    pthread_mutex_unlock(&w->lock);
    return KL_OK;
}

int kl_worker_post(kl_worker_t *w, kl_post_t *post)
{
    post->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->stopping || (!post->control && w->nposts >= KL_WORKER_POSTS_MAX)) {
        w->posts_dropped++;
        pthread_mutex_unlock(&w->lock);
        free(post);
        return KL_ERR;
    }
    *w->posts_tail = post;
    w->posts_tail = &post->next;
    w->nposts++;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wake, EV_READ, 0);
    return KL_OK;
}

void kl_worker_stop(kl_worker_t *w)
{
    pthread_mutex_lock(&w->lock);
    w->stopping = true;
    pthread_mutex_unlock(&w->lock);
    event_active(w->wake, EV_READ, 0);
}

void kl_worker_join(kl_worker_t *w)
{
    if (w->threaded) {
        pthread_join(w->thread, NULL);
        w->threaded = false;
    }
}

void kl_worker_free(kl_worker_t *w)
{
    if (w == NULL)
        return;
    while (w->posts != NULL) {
        kl_post_t *next = w->posts->next;

        free(w->posts);
        w->posts = next;
    }
    if (w->wake != NULL)
        event_free(w->wake);
    if (w->base != NULL)
        event_base_free(w->base);
    kl_conf_unref(w->pending);
    kl_conf_unref(w->conf);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->started_cv);
    pthread_cond_destroy(&w->call_cv);
    kl_stats_free(w->stats);
    free(w);
}
