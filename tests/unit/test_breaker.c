/* Unit tests for upstream/breaker: Envoy-style outlier detection with the
 * defaults of DESIGN.md, driven by a fake clock. */
#include "upstream/breaker.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static kl_conf_outlier_t conf_default(void)
{
    return (kl_conf_outlier_t){
        .consecutive_failures = 5,
        .failure_percent = 50,
        .min_requests = 20,
        .interval = 10000,
        .base_ejection = 30000,
        .max_ejection = 300000,
        .max_ejected_percent = 50,
    };
}

/* Records <n> failures; returns how many said "eject now". */
static int fail_n(kl_breaker_t *b, const kl_conf_outlier_t *c, int n, uint64_t now)
{
    int trips = 0;

    for (int i = 0; i < n; i++)
        trips += kl_breaker_record(b, c, true, now);
    return trips;
}

/* Ejects a closed breaker through the consecutive rule, alone in its zone. */
static void eject(kl_breaker_t *b, const kl_conf_outlier_t *c, uint64_t now)
{
    assert_int_equal(fail_n(b, c, 5, now), 1);
    assert_int_equal(kl_breaker_try_eject(b, c, now, 0, 1), KL_BREAKER_EJECTED);
}

/* Lets an ejection run out and fails the trial; returns when the new
 * ejection ends. */
static uint64_t fail_trial(kl_breaker_t *b, const kl_conf_outlier_t *c)
{
    uint64_t t = b->until_ms;

    assert_int_equal(kl_breaker_tick(b, c, t, 0, 1), KL_BREAKER_HALF_OPEN);
    assert_true(kl_breaker_allow(b, t));
    assert_int_equal(kl_breaker_on_trial_result(b, c, true, t + 5), KL_BREAKER_EJECTED);
    return b->until_ms;
}

static void test_breaker__four_failures_then_success_do_not_eject(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    for (int round = 0; round < 3; round++) {
        assert_int_equal(fail_n(&b, &c, 4, 100), 0);
        assert_false(kl_breaker_record(&b, &c, false, 100));
    }
    assert_int_equal(b.consecutive, 0);
    /* 12 failures of 15 results: a high share, but under min_requests */
    assert_int_equal(kl_breaker_tick(&b, &c, 10000, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.state, KL_BREAKER_CLOSED);
    assert_true(kl_breaker_allow(&b, 10000));
}

static void test_breaker__five_consecutive_failures_eject(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    assert_int_equal(fail_n(&b, &c, 4, 1000), 0);
    assert_true(kl_breaker_record(&b, &c, true, 1000));
    assert_int_equal(kl_breaker_try_eject(&b, &c, 1000, 0, 3), KL_BREAKER_EJECTED);
    assert_int_equal(b.state, KL_BREAKER_EJECTED);
    assert_int_equal(b.why, KL_BREAKER_WHY_CONSECUTIVE);
    assert_true(kl_breaker_is_ejected(&b));
    assert_false(kl_breaker_allow(&b, 1000));
    assert_int_equal(kl_breaker_remaining_ms(&b, 1000), 30000);
    assert_int_equal(kl_breaker_remaining_ms(&b, 21000), 10000);
    assert_int_equal(b.ejections, 1);
    /* try_eject on an ejected breaker does nothing */
    assert_int_equal(kl_breaker_try_eject(&b, &c, 1001, 0, 3), KL_BREAKER_NONE);
    /* late results of requests sent before the ejection are ignored */
    assert_false(kl_breaker_record(&b, &c, true, 1002));
    assert_int_equal(b.win_requests, 0);
}

static void test_breaker__consecutive_rule_applied_at_tick(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    /* the caller did not eject at record time: the next tick does */
    assert_int_equal(fail_n(&b, &c, 6, 500), 2);
    assert_int_equal(kl_breaker_tick(&b, &c, 1000, 0, 1), KL_BREAKER_EJECTED);
    assert_int_equal(b.why, KL_BREAKER_WHY_CONSECUTIVE);
}

static void test_breaker__failure_share_rule(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    /* 10 failures in 20 requests, never two in a row: 50% >= 50% */
    kl_breaker_init(&b, 0);
    for (int i = 0; i < 20; i++)
        assert_false(kl_breaker_record(&b, &c, i % 2 == 0, 100 + i));
    /* evaluated once per interval only */
    assert_int_equal(kl_breaker_tick(&b, &c, 9999, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(kl_breaker_tick(&b, &c, 10000, 0, 1), KL_BREAKER_EJECTED);
    assert_int_equal(b.why, KL_BREAKER_WHY_FAILURE_SHARE);

    /* the same share in 19 requests: not enough evidence */
    kl_breaker_init(&b, 0);
    for (int i = 0; i < 19; i++)
        kl_breaker_record(&b, &c, i % 2 == 0, 100 + i);
    assert_int_equal(b.win_failures, 10);
    assert_int_equal(kl_breaker_tick(&b, &c, 10000, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.state, KL_BREAKER_CLOSED);
    /* and the interval starts over: its results do not carry into the next */
    assert_int_equal(b.win_requests, 0);
    kl_breaker_record(&b, &c, true, 10001);
    assert_int_equal(kl_breaker_tick(&b, &c, 20000, 0, 1), KL_BREAKER_NONE);

    /* 9 failures in 20 requests: 45% < 50% */
    kl_breaker_init(&b, 0);
    for (int i = 0; i < 20; i++)
        kl_breaker_record(&b, &c, i % 2 == 0 && i < 18, 100 + i);
    assert_int_equal(b.win_failures, 9);
    assert_int_equal(kl_breaker_tick(&b, &c, 10000, 0, 1), KL_BREAKER_NONE);

    /* min_requests 0 still needs one request */
    c.min_requests = 0;
    kl_breaker_init(&b, 0);
    assert_int_equal(kl_breaker_tick(&b, &c, 10000, 0, 1), KL_BREAKER_NONE);
}

static void test_breaker__ejection_time_grows_and_is_capped(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;
    uint64_t t;

    (void)state;
    kl_breaker_init(&b, 0);
    eject(&b, &c, 1000);
    assert_int_equal(b.until_ms - b.ejected_ms, 30000);
    assert_int_equal(kl_breaker_next_ejection_ms(&b, &c), 60000);
    t = fail_trial(&b, &c);
    assert_int_equal(t - b.ejected_ms, 60000);
    assert_int_equal(b.why, KL_BREAKER_WHY_TRIAL);
    t = fail_trial(&b, &c);
    assert_int_equal(t - b.ejected_ms, 90000);
    for (unsigned m = 4; m <= 10; m++) {
        t = fail_trial(&b, &c);
        assert_int_equal(t - b.ejected_ms, 30000 * m);
    }
    /* capped at 300 s, and the multiplier stops growing there */
    for (int i = 0; i < 5; i++) {
        t = fail_trial(&b, &c);
        assert_int_equal(t - b.ejected_ms, 300000);
    }
    assert_int_equal(b.multiplier, 10);
    assert_int_equal(b.ejections, 15);
}

static void test_breaker__multiplier_decays_per_healthy_interval(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;
    uint64_t t;

    (void)state;
    kl_breaker_init(&b, 0);
    eject(&b, &c, 0);
    fail_trial(&b, &c);
    t = fail_trial(&b, &c);
    assert_int_equal(b.multiplier, 3);
    /* the trial succeeds: closed, multiplier kept */
    assert_int_equal(kl_breaker_tick(&b, &c, t, 0, 1), KL_BREAKER_HALF_OPEN);
    assert_true(kl_breaker_allow(&b, t));
    assert_int_equal(kl_breaker_on_trial_result(&b, &c, false, t), KL_BREAKER_CLOSED);
    assert_int_equal(b.multiplier, 3);
    /* one healthy interval: one off */
    assert_int_equal(kl_breaker_tick(&b, &c, t + 5000, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.multiplier, 3);
    assert_int_equal(kl_breaker_tick(&b, &c, t + 10000, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.multiplier, 2);
    /* the next ejection is 90 s (multiplier 2 + 1), not 120 s */
    t += 10000;
    eject(&b, &c, t + 1);
    assert_int_equal(b.until_ms - b.ejected_ms, 90000);
    assert_int_equal(b.multiplier, 3);
    /* intervals spent ejected do not decay it */
    assert_int_equal(kl_breaker_tick(&b, &c, t + 20001, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.multiplier, 3);
    assert_int_equal(kl_breaker_uneject(&b, t + 30001), KL_BREAKER_CLOSED);
    /* a late tick covering two intervals takes two off, down to 0 at most */
    assert_int_equal(kl_breaker_tick(&b, &c, t + 50001, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.multiplier, 1);
    assert_int_equal(kl_breaker_tick(&b, &c, t + 90001, 0, 1), KL_BREAKER_NONE);
    assert_int_equal(b.multiplier, 0);
    eject(&b, &c, t + 90002);
    assert_int_equal(b.until_ms - b.ejected_ms, 30000);
}

static void test_breaker__max_ejected_share_of_a_zone(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t a, b;

    (void)state;
    /* zone of 2 at 50%: the first goes, the second is blocked */
    kl_breaker_init(&a, 0);
    kl_breaker_init(&b, 0);
    assert_int_equal(fail_n(&a, &c, 5, 10), 1);
    assert_int_equal(kl_breaker_try_eject(&a, &c, 10, 0, 2), KL_BREAKER_EJECTED);
    assert_int_equal(fail_n(&b, &c, 5, 10), 1);
    assert_int_equal(kl_breaker_try_eject(&b, &c, 10, 1, 2), KL_BREAKER_NONE);
    assert_int_equal(b.state, KL_BREAKER_CLOSED);
    assert_true(kl_breaker_allow(&b, 10));
    assert_int_equal(kl_breaker_tick(&b, &c, 5000, 1, 2), KL_BREAKER_NONE);
    /* a destination kept in by the zone share is not healthy: no decay */
    b.multiplier = 2;
    assert_int_equal(kl_breaker_tick(&b, &c, 10000, 1, 2), KL_BREAKER_NONE);
    assert_int_equal(b.multiplier, 2);
    /* it keeps its run: once the zone has room again, the next failure trips */
    assert_true(kl_breaker_record(&b, &c, true, 10001));
    assert_int_equal(kl_breaker_try_eject(&b, &c, 10001, 0, 2), KL_BREAKER_EJECTED);

    /* zone of 1: its only destination may always be ejected */
    kl_breaker_init(&a, 0);
    fail_n(&a, &c, 5, 10);
    assert_int_equal(kl_breaker_try_eject(&a, &c, 10, 0, 1), KL_BREAKER_EJECTED);

    /* zone of 4 at 50%: two may go, not three */
    kl_breaker_init(&a, 0);
    fail_n(&a, &c, 5, 10);
    assert_int_equal(kl_breaker_try_eject(&a, &c, 10, 1, 4), KL_BREAKER_EJECTED);
    kl_breaker_init(&a, 0);
    fail_n(&a, &c, 5, 10);
    assert_int_equal(kl_breaker_try_eject(&a, &c, 10, 2, 4), KL_BREAKER_NONE);

    /* zone of 3 at 50%: one may go, a second would make it 67% (Envoy's
     * check of the share before ejecting would allow it) */
    kl_breaker_init(&a, 0);
    fail_n(&a, &c, 5, 10);
    assert_int_equal(kl_breaker_try_eject(&a, &c, 10, 1, 3), KL_BREAKER_NONE);
    assert_int_equal(kl_breaker_try_eject(&a, &c, 10, 0, 3), KL_BREAKER_EJECTED);

    /* the share rule obeys the zone share too */
    kl_breaker_init(&a, 0);
    for (int i = 0; i < 20; i++)
        kl_breaker_record(&a, &c, i % 2 == 0, 100);
    assert_int_equal(kl_breaker_tick(&a, &c, 10000, 1, 2), KL_BREAKER_NONE);
    assert_int_equal(a.state, KL_BREAKER_CLOSED);
}

static void test_breaker__half_open_admits_exactly_one(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    eject(&b, &c, 1000);
    /* not before the ejection is over */
    assert_int_equal(kl_breaker_tick(&b, &c, 30999, 0, 1), KL_BREAKER_NONE);
    assert_false(kl_breaker_allow(&b, 30999));
    assert_int_equal(kl_breaker_next_ms(&b, &c), 31000);
    assert_int_equal(kl_breaker_tick(&b, &c, 31000, 0, 1), KL_BREAKER_HALF_OPEN);
    assert_int_equal(b.state, KL_BREAKER_HALF_OPEN);
    assert_true(kl_breaker_is_ejected(&b)); /* still counts against its zone */
    assert_int_equal(kl_breaker_remaining_ms(&b, 31000), 0);
    assert_true(kl_breaker_allow(&b, 31000));
    for (int i = 0; i < 100; i++)
        assert_false(kl_breaker_allow(&b, 31001 + i));
    /* ticks while the trial is out change nothing */
    assert_int_equal(kl_breaker_tick(&b, &c, 45000, 0, 1), KL_BREAKER_NONE);
    assert_false(kl_breaker_allow(&b, 45000));
    /* results other than the trial's are ignored */
    assert_false(kl_breaker_record(&b, &c, false, 45001));
    assert_int_equal(b.state, KL_BREAKER_HALF_OPEN);
}

static void test_breaker__trial_success_closes(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    eject(&b, &c, 0);
    assert_int_equal(kl_breaker_on_trial_result(&b, &c, false, 10), KL_BREAKER_NONE);
    kl_breaker_tick(&b, &c, 30000, 0, 1);
    /* no trial admitted yet: nothing to report */
    assert_int_equal(kl_breaker_on_trial_result(&b, &c, false, 30000), KL_BREAKER_NONE);
    assert_true(kl_breaker_allow(&b, 30000));
    assert_int_equal(kl_breaker_on_trial_result(&b, &c, false, 30100), KL_BREAKER_CLOSED);
    assert_int_equal(b.state, KL_BREAKER_CLOSED);
    assert_int_equal(b.closed_ms, 30100);
    assert_false(kl_breaker_is_ejected(&b));
    for (int i = 0; i < 10; i++)
        assert_true(kl_breaker_allow(&b, 30101));
    /* it starts with a clean slate: four failures do not eject */
    assert_int_equal(fail_n(&b, &c, 4, 30200), 0);
}

static void test_breaker__trial_failure_reejects(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    eject(&b, &c, 0);
    kl_breaker_tick(&b, &c, 30000, 0, 1);
    assert_true(kl_breaker_allow(&b, 30000));
    /* re-ejected even though the zone is at its share: it was counted already */
    assert_int_equal(kl_breaker_on_trial_result(&b, &c, true, 32000), KL_BREAKER_EJECTED);
    assert_int_equal(b.state, KL_BREAKER_EJECTED);
    assert_int_equal(b.until_ms, 32000 + 60000);
    assert_false(kl_breaker_allow(&b, 32001));
    assert_int_equal(b.ejections, 2);
}

static void test_breaker__passing_probe_ends_ejection(void **state)
{
    kl_conf_outlier_t c = conf_default();
    kl_breaker_t b;

    (void)state;
    kl_breaker_init(&b, 0);
    assert_int_equal(kl_breaker_uneject(&b, 5), KL_BREAKER_NONE);
    eject(&b, &c, 0);
    assert_int_equal(kl_breaker_uneject(&b, 7000), KL_BREAKER_CLOSED);
    assert_true(kl_breaker_allow(&b, 7000));
    assert_int_equal(kl_breaker_remaining_ms(&b, 7000), 0);
    assert_int_equal(b.multiplier, 1);
    /* from half-open too, trial still out */
    eject(&b, &c, 8000);
    assert_int_equal(b.until_ms - b.ejected_ms, 60000);
    kl_breaker_tick(&b, &c, 68000, 0, 1);
    assert_true(kl_breaker_allow(&b, 68000));
    assert_int_equal(kl_breaker_uneject(&b, 68001), KL_BREAKER_CLOSED);
    /* the trial's late outcome is then ignored */
    assert_int_equal(kl_breaker_on_trial_result(&b, &c, true, 68002), KL_BREAKER_NONE);
    assert_int_equal(b.state, KL_BREAKER_CLOSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breaker__four_failures_then_success_do_not_eject),
        cmocka_unit_test(test_breaker__five_consecutive_failures_eject),
        cmocka_unit_test(test_breaker__consecutive_rule_applied_at_tick),
        cmocka_unit_test(test_breaker__failure_share_rule),
        cmocka_unit_test(test_breaker__ejection_time_grows_and_is_capped),
        cmocka_unit_test(test_breaker__multiplier_decays_per_healthy_interval),
        cmocka_unit_test(test_breaker__max_ejected_share_of_a_zone),
        cmocka_unit_test(test_breaker__half_open_admits_exactly_one),
        cmocka_unit_test(test_breaker__trial_success_closes),
        cmocka_unit_test(test_breaker__trial_failure_reejects),
        cmocka_unit_test(test_breaker__passing_probe_ends_ejection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
