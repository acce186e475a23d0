/* Unit tests for core/stats: metric series, merging across workers, and the
 * Prometheus text exposition (format 0.0.4). */
#include "core/stats.h"
#include "core/errors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_stats__counter_by_labels(void **state)
{
    kl_stats_t *s = kl_stats_new();
    const char *a[] = {"INVITE", "zone-a"}, *b[] = {"INVITE", "zone-b"};

    (void)state;
    kl_stats_add(s, KL_ST_REQUESTS_FORWARDED, a, 1);
    kl_stats_add(s, KL_ST_REQUESTS_FORWARDED, a, 2);
    kl_stats_add(s, KL_ST_REQUESTS_FORWARDED, b, 1);
    kl_stats_add(s, KL_ST_REQUESTS_FORWARDED, b, -5); /* a counter never goes down */
    assert_true(kl_stats_get(s, KL_ST_REQUESTS_FORWARDED, a) == 3);
    assert_true(kl_stats_get(s, KL_ST_REQUESTS_FORWARDED, b) == 1);
    assert_int_equal(kl_stats_count(s), 2);
    kl_stats_free(s);
}

static void test_stats__gauge_up_down_and_set(void **state)
{
    kl_stats_t *s = kl_stats_new();
    const char *l[] = {"zone-a", "call"};

    (void)state;
    kl_stats_add(s, KL_ST_CALLS_IN_FLIGHT, l, 1);
    kl_stats_add(s, KL_ST_CALLS_IN_FLIGHT, l, 1);
    kl_stats_add(s, KL_ST_CALLS_IN_FLIGHT, l, -1);
    assert_true(kl_stats_get(s, KL_ST_CALLS_IN_FLIGHT, l) == 1);
    kl_stats_set(s, KL_ST_CONFIG_VERSION, NULL, 7);
    assert_true(kl_stats_get(s, KL_ST_CONFIG_VERSION, NULL) == 7);
    kl_stats_clear_gauges(s);
    assert_true(kl_stats_get(s, KL_ST_CALLS_IN_FLIGHT, l) == 0);
    kl_stats_free(s);
}

static void test_stats__merge_sums_workers(void **state)
{
    kl_stats_t *w0 = kl_stats_new(), *w1 = kl_stats_new(), *all = kl_stats_new();
    const char *l[] = {"zone-a", "sip:127.0.0.1:5080"};
    const char *h[] = {"zone-a", "answer"};

    (void)state;
    kl_stats_add(w0, KL_ST_CALLS_SEIZED, l, 10);
    kl_stats_add(w1, KL_ST_CALLS_SEIZED, l, 5);
    kl_stats_observe(w0, KL_ST_CALL_SETUP, h, 0.2);
    kl_stats_observe(w1, KL_ST_CALL_SETUP, h, 4);
    assert_int_equal(kl_stats_merge(all, w0), KL_OK);
    assert_int_equal(kl_stats_merge(all, w1), KL_OK);
    assert_true(kl_stats_get(all, KL_ST_CALLS_SEIZED, l) == 15);
    assert_true(kl_stats_get(all, KL_ST_CALL_SETUP, h) == 2); /* observation count */
    kl_stats_free(w0);
    kl_stats_free(w1);
    kl_stats_free(all);
}

static void test_stats__render_format(void **state)
{
    kl_stats_t *s = kl_stats_new();
    const char *h[] = {"zone-a", "answer"};
    const char *m[] = {"INVITE"};
    size_t len = 0;
    char *t;

    (void)state;
    kl_stats_add(s, KL_ST_REQUESTS_RECEIVED, m, 3);
    kl_stats_observe(s, KL_ST_CALL_SETUP, h, 0.07); /* le 0.1 */
    kl_stats_observe(s, KL_ST_CALL_SETUP, h, 1000); /* +Inf only */
    t = kl_stats_render(s, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    assert_non_null(strstr(t, "# TYPE keel_sip_requests_received_total counter\n"
                              "keel_sip_requests_received_total{method=\"INVITE\"} 3\n"));
    assert_non_null(strstr(t, "# TYPE keel_call_setup_seconds histogram\n"));
    /* cumulative buckets */
    assert_non_null(strstr(
        t, "keel_call_setup_seconds_bucket{zone=\"zone-a\",phase=\"answer\",le=\"0.05\"} 0\n"));
    assert_non_null(strstr(
        t, "keel_call_setup_seconds_bucket{zone=\"zone-a\",phase=\"answer\",le=\"0.1\"} 1\n"));
    assert_non_null(strstr(
        t, "keel_call_setup_seconds_bucket{zone=\"zone-a\",phase=\"answer\",le=\"60\"} 1\n"));
    assert_non_null(strstr(
        t, "keel_call_setup_seconds_bucket{zone=\"zone-a\",phase=\"answer\",le=\"+Inf\"} 2\n"));
    assert_non_null(
        strstr(t, "keel_call_setup_seconds_count{zone=\"zone-a\",phase=\"answer\"} 2\n"));
    /* families without labels are always there; labelled ones only when used */
    assert_non_null(strstr(t, "\nkeel_config_version 0\n"));
    assert_null(strstr(t, "keel_failovers_total"));
    /* one HELP and one TYPE per family */
    {
        const char *first = strstr(t, "# TYPE keel_call_setup_seconds ");

        assert_null(strstr(first + 1, "# TYPE keel_call_setup_seconds "));
    }
    free(t);
    kl_stats_free(s);
}

static void test_stats__label_values_escaped(void **state)
{
    kl_stats_t *s = kl_stats_new();
    const char *l[] = {"zo\"ne\\x\ny", "sip:a"};
    char *t;

    (void)state;
    kl_stats_add(s, KL_ST_CALLS_SEIZED, l, 1);
    t = kl_stats_render(s, NULL);
    assert_non_null(t);
    assert_non_null(
        strstr(t, "keel_calls_seized_total{zone=\"zo\\\"ne\\\\x\\ny\",destination=\"sip:a\"} 1\n"));
    free(t);
    kl_stats_free(s);
}

static void test_stats__families_are_well_formed(void **state)
{
    (void)state;
    for (int i = 0; i < KL_ST_COUNT; i++) {
        const kl_stat_family_t *f = &kl_stat_families[i];
        size_t n;

        assert_non_null(f->name);
        assert_non_null(f->help);
        assert_true(strncmp(f->name, "keel_", 5) == 0);
        n = strlen(f->name);
        if (f->type == KL_STAT_COUNTER)
            assert_true(n > 6 && strcmp(f->name + n - 6, "_total") == 0);
        else
            assert_false(n > 6 && strcmp(f->name + n - 6, "_total") == 0);
        if (f->type == KL_STAT_HISTOGRAM) {
            assert_true(f->nbuckets > 0);
            for (unsigned b = 1; b < f->nbuckets; b++)
                assert_true(f->buckets[b] > f->buckets[b - 1]);
        }
        for (unsigned l = 0; l < f->nlabels; l++)
            assert_non_null(f->labels[l]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats__counter_by_labels),
        cmocka_unit_test(test_stats__gauge_up_down_and_set),
        cmocka_unit_test(test_stats__merge_sums_workers),
        cmocka_unit_test(test_stats__render_format),
        cmocka_unit_test(test_stats__label_values_escaped),
        cmocka_unit_test(test_stats__families_are_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
