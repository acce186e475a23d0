/* Unit tests for upstream/health: probe scheduling, jitter, rise/fall
 * hysteresis, timeouts, accepted codes, passive down. A fake clock: every
 * call gets its time, nothing sleeps. */
#include "upstream/health.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static int accept_codes[] = {200, 404, 405, 483};

static kl_conf_health_t conf_default(void)
{
    return (kl_conf_health_t){
        .interval = 5000,
        .timeout = 2000,
        .rise = 2,
        .fall = 3,
        .accept = accept_codes,
        .naccept = 4,
        .enabled = true,
    };
}

/* Waits for the next probe, sends it, and answers it <code> 10 ms later
 * (0: no answer, so it times out). <now> moves with the fake clock. */
static kl_health_change_t probe(kl_health_t *h, const kl_conf_health_t *c, int code, uint64_t *now)
{
    *now = kl_health_next_ms(h);
    assert_true(kl_health_due(h, *now));
    kl_health_probe_sent(h, c, *now, 0x80000000u);
    assert_false(kl_health_due(h, *now));
    if (code == 0) {
        *now = kl_health_next_ms(h);
        return kl_health_check_timeout(h, c, *now);
    }
    *now += 10;
    return kl_health_result(h, c, code, *now);
}

static void test_health__starts_up_first_probe_after_interval(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;

    (void)state;
    kl_health_init(&h, &c, 1000, 0);
    assert_true(kl_health_is_up(&h));
    assert_false(h.in_flight);
    assert_int_equal(h.next_ms, 1000 + 4500); /* rand 0: the low end of ±10% */
    assert_false(kl_health_due(&h, 5499));
    assert_true(kl_health_due(&h, 5500));
    assert_true(kl_health_due(&h, 9000)); /* late timers still probe */
}

static void test_health__jitter_within_ten_percent(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t lo = UINT64_MAX, hi = 0;
    uint32_t r = 12345;

    (void)state;
    kl_health_init(&h, &c, 0, UINT32_MAX);
    assert_true(h.next_ms >= 4500 && h.next_ms <= 5500);
    for (int i = 0; i < 10000; i++) {
        uint64_t d;

        r = r * 1103515245u + 12345u;
        kl_health_probe_sent(&h, &c, 100000, r);
        d = h.next_ms - 100000;
        assert_true(d >= 4500 && d <= 5500);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
        kl_health_result(&h, &c, 200, 100010);
    }
    /* the whole range is used, not one fixed offset */
    assert_true(lo < 4550);
    assert_true(hi > 5450);
    /* the deadline is the probe's own timeout */
    kl_health_probe_sent(&h, &c, 200000, 7);
    assert_int_equal(h.deadline_ms, 202000);
    assert_int_equal(kl_health_next_ms(&h), 202000);
}

static void test_health__fall_minus_one_failures_stay_up(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 503, &now), KL_HEALTH_NONE);
    assert_true(kl_health_is_up(&h));
    assert_int_equal(h.consec_fail, 2);
    /* one success restores a failure's worth: two more are not enough */
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_true(kl_health_is_up(&h));
}

static void test_health__fall_failures_go_down(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_WENT_DOWN);
    assert_false(kl_health_is_up(&h));
    assert_int_equal(h.changed_ms, now);
    /* further failures change nothing */
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_false(kl_health_is_up(&h));
    assert_int_equal(h.probes, 4);
    assert_int_equal(h.failures, 4);
}

static void test_health__rise_successes_go_up(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    assert_int_equal(kl_health_force_down(&h, now), KL_HEALTH_WENT_DOWN);
    /* rise - 1 successes stay down */
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_NONE);
    assert_false(kl_health_is_up(&h));
    /* a failure while coming back starts over */
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_NONE);
    assert_false(kl_health_is_up(&h));
    /* rise in a row go up, and then at full health: fall failures to go down */
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_WENT_UP);
    assert_true(kl_health_is_up(&h));
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_WENT_DOWN);
}

/* Another worker's prober said up: up at once, at full health (fall
 * failures to go down again); already up: no change. */
static void test_health__force_up_from_the_prober(void **state)
{
    kl_conf_health_t c = conf_default(); /* rise 2, fall 3 */
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    assert_int_equal(kl_health_force_up(&h, &c, now), KL_HEALTH_NONE);
    assert_int_equal(kl_health_force_down(&h, now), KL_HEALTH_WENT_DOWN);
    now = 7000;
    assert_int_equal(kl_health_force_up(&h, &c, now), KL_HEALTH_WENT_UP);
    assert_true(kl_health_is_up(&h));
    assert_int_equal(h.changed_ms, 7000);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_WENT_DOWN);
}

static void test_health__flapping_never_changes_state(void **state)
{
    kl_conf_health_t c = conf_default(); /* rise 2, fall 3 */
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    /* up, answering every other probe, starting with a failure */
    kl_health_init(&h, &c, now, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(probe(&h, &c, i % 2 ? 200 : 500, &now), KL_HEALTH_NONE);
    assert_true(kl_health_is_up(&h));
    /* the same with timeouts as the failures */
    for (int i = 0; i < 100; i++)
        assert_int_equal(probe(&h, &c, i % 2 ? 200 : 0, &now), KL_HEALTH_NONE);
    assert_true(kl_health_is_up(&h));

    /* down, answering every other probe, starting with a success */
    kl_health_force_down(&h, now);
    for (int i = 0; i < 100; i++)
        assert_int_equal(probe(&h, &c, i % 2 ? 500 : 200, &now), KL_HEALTH_NONE);
    assert_false(kl_health_is_up(&h));
}

static void test_health__sustained_net_failures_go_down(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    /* HAProxy's counter: failing two probes out of three is sustained
     * failure even though fall (3) never come in a row */
    kl_health_init(&h, &c, now, 0);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_WENT_DOWN);
}

static void test_health__timeouts_count_as_failures(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    now = h.next_ms;
    kl_health_probe_sent(&h, &c, now, 0);
    /* not late yet: nothing happens, the probe stays in flight */
    assert_int_equal(kl_health_check_timeout(&h, &c, now + 1999), KL_HEALTH_NONE);
    assert_true(h.in_flight);
    assert_false(kl_health_due(&h, now + 1999));
    assert_int_equal(kl_health_check_timeout(&h, &c, now + 2000), KL_HEALTH_NONE);
    assert_false(h.in_flight);
    assert_int_equal(h.consec_fail, 1);
    assert_int_equal(h.last_code, 0);
    /* a reply to the timed-out probe is ignored */
    assert_int_equal(kl_health_result(&h, &c, 200, now + 2500), KL_HEALTH_NONE);
    assert_int_equal(h.consec_fail, 1);
    assert_int_equal(h.probes, 1);
    /* a reply later than the deadline, before the timer ran, is a timeout */
    now = h.next_ms;
    kl_health_probe_sent(&h, &c, now, 0);
    assert_int_equal(kl_health_result(&h, &c, 200, now + 2001), KL_HEALTH_NONE);
    assert_int_equal(h.consec_fail, 2);
    /* the third timeout marks it down */
    assert_int_equal(probe(&h, &c, 0, &now), KL_HEALTH_WENT_DOWN);
    /* no probe in flight: nothing to time out */
    assert_int_equal(kl_health_check_timeout(&h, &c, now + 100000), KL_HEALTH_NONE);
}

static void test_health__accepted_codes(void **state)
{
    kl_conf_health_t c = conf_default();
    static const int pass[] = {200, 404, 405, 483};
    static const int fail[] = {0, 100, 180, 202, 408, 480, 486, 500, 503, 504, 603};
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++)
        assert_true(kl_health_accepts(&c, pass[i]));
    for (size_t i = 0; i < sizeof(fail) / sizeof(fail[0]); i++)
        assert_false(kl_health_accepts(&c, fail[i]));

    /* each accepted code brings a down destination back ... */
    for (size_t i = 0; i < sizeof(pass) / sizeof(pass[0]); i++) {
        kl_health_init(&h, &c, now, 0);
        kl_health_force_down(&h, now);
        assert_int_equal(probe(&h, &c, pass[i], &now), KL_HEALTH_NONE);
        assert_int_equal(probe(&h, &c, pass[i], &now), KL_HEALTH_WENT_UP);
    }
    /* ... and every other code takes an up one down */
    kl_health_init(&h, &c, now, 0);
    assert_int_equal(probe(&h, &c, 500, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 486, &now), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 503, &now), KL_HEALTH_WENT_DOWN);
    assert_int_equal(h.last_code, 503);
}

static void test_health__down_keeps_being_probed(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0, before;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    probe(&h, &c, 500, &now);
    probe(&h, &c, 500, &now);
    probe(&h, &c, 500, &now);
    assert_false(kl_health_is_up(&h));
    for (int i = 0; i < 20; i++) {
        before = now;
        assert_int_equal(probe(&h, &c, 0, &now), KL_HEALTH_NONE);
        /* timed out 2 s after it was sent; the next is due ~5 s after that send */
        assert_true(h.next_ms > before && h.next_ms - (now - 2000) >= 4500);
        assert_true(h.next_ms - (now - 2000) <= 5500);
    }
    assert_int_equal(h.probes, 23);
}

static void test_health__detection_within_fall_intervals_plus_timeout(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0, died;

    (void)state;
    kl_health_init(&h, &c, now, 1000); /* 1000 % 1001: the longest jitter */
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_NONE);
    died = now + 1; /* it dies right after answering */
    for (;;) {
        now = kl_health_next_ms(&h);
        if (kl_health_due(&h, now)) {
            kl_health_probe_sent(&h, &c, now, 1000);
            continue;
        }
        if (kl_health_check_timeout(&h, &c, now) == KL_HEALTH_WENT_DOWN)
            break;
    }
    /* 3 probes at most 5.5 s apart, the last one's 2 s timeout */
    assert_true(now - died <= 3 * 5500 + 2000);
}

static void test_health__force_down_on_transport_loss(void **state)
{
    kl_conf_health_t c = conf_default();
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    now = h.next_ms;
    kl_health_probe_sent(&h, &c, now, 0);
    assert_int_equal(kl_health_force_down(&h, now + 5), KL_HEALTH_WENT_DOWN);
    assert_false(kl_health_is_up(&h));
    assert_int_equal(h.changed_ms, now + 5);
    assert_int_equal(kl_health_force_down(&h, now + 6), KL_HEALTH_NONE);
    /* the probe in flight still counts, and rise passes bring it back */
    assert_int_equal(kl_health_result(&h, &c, 200, now + 10), KL_HEALTH_NONE);
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_WENT_UP);
}

static void test_health__reload_changes_rise_and_fall(void **state)
{
    kl_conf_health_t c = conf_default(), c2;
    kl_health_t h;
    uint64_t now = 0;

    (void)state;
    kl_health_init(&h, &c, now, 0);
    c2 = c;
    c2.fall = 1;
    c2.rise = 5;
    /* with fall 1 the first failure marks it down */
    assert_int_equal(probe(&h, &c2, 500, &now), KL_HEALTH_WENT_DOWN);
    for (int i = 0; i < 4; i++)
        assert_int_equal(probe(&h, &c2, 200, &now), KL_HEALTH_NONE);
    /* back to rise 2: the count is clamped below rise, one more pass is enough */
    assert_int_equal(probe(&h, &c, 200, &now), KL_HEALTH_WENT_UP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health__starts_up_first_probe_after_interval),
        cmocka_unit_test(test_health__jitter_within_ten_percent),
        cmocka_unit_test(test_health__fall_minus_one_failures_stay_up),
        cmocka_unit_test(test_health__fall_failures_go_down),
        cmocka_unit_test(test_health__rise_successes_go_up),
        cmocka_unit_test(test_health__flapping_never_changes_state),
        cmocka_unit_test(test_health__sustained_net_failures_go_down),
        cmocka_unit_test(test_health__timeouts_count_as_failures),
        cmocka_unit_test(test_health__accepted_codes),
        cmocka_unit_test(test_health__down_keeps_being_probed),
        cmocka_unit_test(test_health__detection_within_fall_intervals_plus_timeout),
        cmocka_unit_test(test_health__force_down_on_transport_loss),
        cmocka_unit_test(test_health__force_up_from_the_prober),
        cmocka_unit_test(test_health__reload_changes_rise_and_fall),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
