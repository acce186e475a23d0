/* Unit tests for upstream/budget: the retry budget's rate limit (10 s ring of
 * 1 s buckets) and concurrency limit, with a fake clock. */
#include "upstream/budget.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static const kl_conf_retry_budget_t conf = {.percent = 20, .min = 3};

/* <rate> requests per second for <seconds>, every attempt failing at once
 * (fast 503s) and each request trying up to 3 attempts. Returns the
 * failovers, and in <late> those of the seconds from <from> on. */
static uint64_t total_outage(kl_budget_t *b, unsigned rate, unsigned seconds, unsigned from,
                             uint64_t *late)
{
    uint64_t retries = 0;

    *late = 0;
    for (unsigned s = 0; s < seconds; s++) {
        for (unsigned k = 0; k < rate; k++) {
            uint64_t now = (uint64_t)s * 1000 + (uint64_t)k * 1000 / rate;

            kl_budget_on_request(b, now);
            for (int attempt = 2; attempt <= 3; attempt++) {
                if (!kl_budget_try_retry(b, &conf, 1000, now))
                    break;
                kl_budget_retry_done(b); /* failed again at once */
                retries++;
                if (s >= from)
                    (*late)++;
            }
        }
    }
    return retries;
}

static void test_budget__total_outage_bounded_to_percent_plus_min(void **state)
{
    kl_budget_t b;
    uint64_t retries, late;

    (void)state;
    /* 100 requests/s: about 20 + 3 failovers per second once warm */
    kl_budget_init(&b, 0);
    retries = total_outage(&b, 100, 60, 20, &late);
    assert_true(late >= 40 * 23 * 95 / 100);
    assert_true(late <= 40 * 23 * 102 / 100);
    /* attempts per request, first 10 s included */
    assert_true((6000 + retries) * 100 <= 6000 * 125);
    assert_int_equal(b.retries_total, retries);
    assert_true(b.denied_rate > 0);
    assert_int_equal(b.denied_inflight, 0);

    /* 300 requests/s: the 1.25 attempts per call of the issue, with room */
    kl_budget_init(&b, 0);
    retries = total_outage(&b, 300, 30, 10, &late);
    assert_true((20 * 300 + late) * 100 <= 20 * 300 * 122);
    assert_true((9000 + retries) * 100 <= 9000 * 125);
}

static void test_budget__min_per_second_without_requests(void **state)
{
    kl_budget_t b;

    (void)state;
    kl_budget_init(&b, 0);
    assert_int_equal(kl_budget_rate_left(&b, &conf, 0), 30);
    for (int i = 0; i < 30; i++) {
        assert_true(kl_budget_try_retry(&b, &conf, 0, (uint64_t)i * 100));
        kl_budget_retry_done(&b);
    }
    assert_false(kl_budget_try_retry(&b, &conf, 0, 3000));
    assert_false(kl_budget_try_retry(&b, &conf, 0, 9999));
    assert_int_equal(b.denied_rate, 2);
    assert_int_equal(kl_budget_rate_left(&b, &conf, 9999), 0);
    /* second 0 leaves the window at 10 s: its 10 failovers are free again */
    assert_int_equal(kl_budget_rate_left(&b, &conf, 10000), 10);
    assert_true(kl_budget_try_retry(&b, &conf, 0, 10000));
    kl_budget_retry_done(&b);
}

static void test_budget__window_slides_per_second(void **state)
{
    kl_budget_t b;

    (void)state;
    kl_budget_init(&b, 0);
    for (int i = 0; i < 100; i++)
        kl_budget_on_request(&b, 500);
    /* 20% of 100 + 3 x 10 */
    assert_int_equal(kl_budget_rate_left(&b, &conf, 500), 50);
    for (int i = 0; i < 50; i++) {
        assert_true(kl_budget_try_retry(&b, &conf, 1000, 600));
        kl_budget_retry_done(&b);
    }
    assert_false(kl_budget_try_retry(&b, &conf, 1000, 600));
    assert_false(kl_budget_try_retry(&b, &conf, 1000, 9999));
    /* requests and failovers of second 0 leave together */
    assert_int_equal(kl_budget_rate_left(&b, &conf, 10000), 30);
    assert_int_equal(b.win_requests, 0);
    /* a clock that goes back counts in the current second */
    kl_budget_on_request(&b, 5000);
    assert_int_equal(b.win_requests, 1);
    /* a jump longer than the window empties it */
    kl_budget_on_request(&b, 3600000);
    assert_int_equal(b.win_requests, 1);
    assert_int_equal(b.win_retries, 0);
    assert_int_equal(kl_budget_rate_left(&b, &conf, 3600000), 30);
}

static void test_budget__concurrency_cap(void **state)
{
    kl_budget_t b;

    (void)state;
    kl_budget_init(&b, 0);
    for (int i = 0; i < 10000; i++)
        kl_budget_on_request(&b, 0); /* plenty of rate budget */
    /* 20% of 10 in flight is 2: the minimum, 3, applies */
    for (int i = 0; i < 3; i++)
        assert_true(kl_budget_try_retry(&b, &conf, 10, 0));
    assert_false(kl_budget_try_retry(&b, &conf, 10, 0));
    assert_int_equal(b.denied_inflight, 1);
    kl_budget_retry_done(&b);
    assert_true(kl_budget_try_retry(&b, &conf, 10, 0));
    /* 20% of 100 in flight is 20 */
    for (int i = 3; i < 20; i++)
        assert_true(kl_budget_try_retry(&b, &conf, 100, 0));
    assert_int_equal(b.active, 20);
    assert_false(kl_budget_try_retry(&b, &conf, 100, 0));
    assert_false(kl_budget_try_retry(&b, &conf, 99, 0));
    for (int i = 0; i < 25; i++)
        kl_budget_retry_done(&b); /* more done than started stays at 0 */
    assert_int_equal(b.active, 0);
    /* both limits bind: in-flight room is no use past the rate */
    kl_budget_init(&b, 0);
    for (int i = 0; i < 30; i++) {
        assert_true(kl_budget_try_retry(&b, &conf, 100000, 0));
        kl_budget_retry_done(&b);
    }
    assert_false(kl_budget_try_retry(&b, &conf, 100000, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget__total_outage_bounded_to_percent_plus_min),
        cmocka_unit_test(test_budget__min_per_second_without_requests),
        cmocka_unit_test(test_budget__window_slides_per_second),
        cmocka_unit_test(test_budget__concurrency_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
