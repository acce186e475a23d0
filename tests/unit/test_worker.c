/* Unit tests for core/worker's inbox (kl_worker_post): what one worker uses
 * to hand a response to the worker that owns its transaction. */
#include "core/conf.h"
#include "core/errors.h"
#include "core/worker.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/event.h>

#define NPOSTS 1000

typedef struct seen {
    unsigned order[NPOSTS];
    unsigned n;
    bool wrong_thread;
} seen_t;

typedef struct item {
    kl_post_t post;
    seen_t *seen;
    unsigned seq;
} item_t;

static void item_run(kl_worker_t *w, kl_post_t *post)
{
    item_t *it = (item_t *)post;

    if (!pthread_equal(pthread_self(), w->thread))
        it->seen->wrong_thread = true;
    if (it->seen->n < NPOSTS)
        it->seen->order[it->seen->n++] = it->seq;
}

static void barrier(kl_worker_t *w, void *arg)
{
    (void)w;
    (void)arg;
}

/* A worker with nothing to do leaves its loop: a long timer keeps it in,
 * as the daemon's listeners do. */
static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

static int hook_start(kl_worker_t *w)
{
    struct timeval tv = {3600, 0};
    struct event *ev = event_new(w->base, -1, EV_PERSIST, idle_cb, NULL);

    if (ev == NULL || event_add(ev, &tv) != 0)
        return KL_ENOMEM;
    w->hooks_state = ev;
    return KL_OK;
}

static void hook_stop(kl_worker_t *w)
{
    event_free(w->hooks_state);
}

static const kl_worker_hooks_t hooks = {.start = hook_start, .stop = hook_stop};

static kl_conf_t *conf_new(void)
{
    static const char y[] =
        "node: { id: t, zone: zone-a }\n"
        "cookie_secret: \"0123456789abcdef0123\"\n"
        "listen: [ { transport: udp, address: 127.0.0.1, port: 5060 } ]\n"
        "clusters:\n"
        "  - name: voice\n"
        "    zones:\n"
        "      - { name: zone-a, destinations: [ { uri: \"sip:10.0.0.1\" } ] }\n";
    kl_cfg_errs_t errs;
    kl_conf_t *c = kl_conf_load_buf("t.yaml", y, strlen(y), &errs);

    if (c == NULL)
        kl_cfg_errs_print(&errs, stderr);
    assert_non_null(c);
    return c;
}

static item_t *item_new(seen_t *seen, unsigned seq)
{
    item_t *it = calloc(1, sizeof(*it));

    assert_non_null(it);
    it->post.run = item_run;
    it->seen = seen;
    it->seq = seq;
    return it;
}

/* Posts from another thread run on the worker's thread, each once, in the
 * order they were posted. */
static void test_worker__posts_run_in_order_on_the_worker(void **state)
{
    kl_conf_t *c = conf_new();
    kl_worker_t *w = kl_worker_new(0, c, &hooks);
    seen_t seen = {0};

    (void)state;
    assert_non_null(w);
    assert_int_equal(kl_worker_spawn(w), KL_OK);
    for (unsigned i = 0; i < NPOSTS; i++)
        assert_int_equal(kl_worker_post(w, &item_new(&seen, i)->post), KL_OK);
    /* a call runs after every post queued before it */
    assert_int_equal(kl_worker_call(w, barrier, NULL), KL_OK);
    assert_int_equal(seen.n, NPOSTS);
    for (unsigned i = 0; i < NPOSTS; i++)
        assert_int_equal(seen.order[i], i);
    assert_false(seen.wrong_thread);
    assert_int_equal(w->posts_dropped, 0);
    kl_worker_stop(w);
    kl_worker_join(w);
    kl_worker_free(w);
    kl_conf_unref(c);
}

/* A stopping worker takes no post: it is freed at once (LeakSanitizer
 * checks) and counted. */
static void test_worker__post_to_stopped_worker_is_refused(void **state)
{
    kl_conf_t *c = conf_new();
    kl_worker_t *w = kl_worker_new(0, c, &hooks);
    seen_t seen = {0};

    (void)state;
    assert_int_equal(kl_worker_spawn(w), KL_OK);
    kl_worker_stop(w);
    kl_worker_join(w);
    assert_int_equal(kl_worker_post(w, &item_new(&seen, 1)->post), KL_ERR);
    assert_int_equal(w->posts_dropped, 1);
    assert_int_equal(seen.n, 0);
    kl_worker_free(w);
    kl_conf_unref(c);
}

/* Posts queued on a worker that never ran are freed with it, unrun. */
static void test_worker__queued_posts_freed_unrun(void **state)
{
    kl_conf_t *c = conf_new();
    kl_worker_t *w = kl_worker_new(0, c, &hooks);
    seen_t seen = {0};

    (void)state;
    for (unsigned i = 0; i < 10; i++)
        assert_int_equal(kl_worker_post(w, &item_new(&seen, i)->post), KL_OK);
    assert_int_equal(w->nposts, 10);
    kl_worker_free(w);
    assert_int_equal(seen.n, 0);
    kl_conf_unref(c);
}

/* The inbox is bounded: past KL_WORKER_POSTS_MAX queued posts a post is
 * refused, not queued without end. */
static void test_worker__inbox_is_bounded(void **state)
{
    kl_conf_t *c = conf_new();
    kl_worker_t *w = kl_worker_new(0, c, &hooks);
    seen_t seen = {0};

    (void)state;
    for (unsigned i = 0; i < KL_WORKER_POSTS_MAX; i++)
        assert_int_equal(kl_worker_post(w, &item_new(&seen, i)->post), KL_OK);
    assert_int_equal(kl_worker_post(w, &item_new(&seen, 0)->post), KL_ERR);
    assert_int_equal(w->posts_dropped, 1);
    kl_worker_free(w);
    kl_conf_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_worker__posts_run_in_order_on_the_worker),
        cmocka_unit_test(test_worker__post_to_stopped_worker_is_refused),
        cmocka_unit_test(test_worker__queued_posts_freed_unrun),
        cmocka_unit_test(test_worker__inbox_is_bounded),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
