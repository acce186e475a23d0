/* Unit tests for upstream/limiter: the token bucket (burst, rate, exact
 * refill, no overflow over a simulated year) and the per-source table
 * (independent sources, LRU eviction, checked against a model). */
#include "core/limiter.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define YEAR_MS (365ull * 24 * 3600 * 1000)

static void test_limiter__burst_then_rate(void **state)
{
    kl_bucket_t b;
    int ok = 0;

    (void)state;
    kl_bucket_init(&b, 10, 20, 1000);
    for (int i = 0; i < 20; i++)
        assert_true(kl_bucket_take(&b, 1, 1000));
    assert_false(kl_bucket_take(&b, 1, 1000));
    /* one token per 100 ms after that */
    assert_false(kl_bucket_take(&b, 1, 1099));
    assert_true(kl_bucket_take(&b, 1, 1100));
    assert_false(kl_bucket_take(&b, 1, 1100));
    for (uint64_t t = 1101; t <= 2100; t++)
        ok += kl_bucket_take(&b, 1, t);
    assert_int_equal(ok, 10);
    /* all or nothing */
    kl_bucket_init(&b, 10, 20, 0);
    assert_false(kl_bucket_take(&b, 21, 0));
    assert_true(kl_bucket_take(&b, 15, 0));
    assert_false(kl_bucket_take(&b, 6, 0));
    assert_int_equal(kl_bucket_tokens(&b, 0), 5);
}

static void test_limiter__refill_over_time(void **state)
{
    kl_bucket_t b;

    (void)state;
    kl_bucket_init(&b, 3, 6, 0);
    assert_true(kl_bucket_take(&b, 6, 0));
    /* 3 per second is one per 333.3 ms: the thousandths are kept */
    assert_int_equal(kl_bucket_tokens(&b, 333), 0);
    assert_int_equal(kl_bucket_tokens(&b, 334), 1);
    assert_int_equal(kl_bucket_tokens(&b, 1000), 3);
    assert_int_equal(kl_bucket_wait_ms(&b, 4, 1000), 334);
    assert_int_equal(kl_bucket_wait_ms(&b, 3, 1000), 0);
    assert_int_equal(kl_bucket_wait_ms(&b, 7, 1000), UINT64_MAX);
    /* never past the burst */
    assert_int_equal(kl_bucket_tokens(&b, 60000), 6);
    /* a clock that goes back adds nothing and does not rewind */
    assert_true(kl_bucket_take(&b, 6, 60000));
    assert_int_equal(kl_bucket_tokens(&b, 50000), 0);
    assert_int_equal(kl_bucket_tokens(&b, 60334), 1);
}

static void test_limiter__unlimited_and_default_burst(void **state)
{
    kl_bucket_t b;

    (void)state;
    kl_bucket_init(&b, 0, 0, 0);
    for (int i = 0; i < 1000; i++)
        assert_true(kl_bucket_take(&b, 1000000, 0));
    assert_int_equal(kl_bucket_wait_ms(&b, 5, 0), 0);
    /* burst 0: one second's worth */
    kl_bucket_init(&b, 50, 0, 0);
    assert_int_equal(kl_bucket_tokens(&b, 0), 50);
    /* a reload lowers the burst: tokens are capped, then refill at the new rate */
    kl_bucket_configure(&b, 5, 10, 0);
    assert_int_equal(kl_bucket_tokens(&b, 0), 10);
    assert_true(kl_bucket_take(&b, 10, 0));
    assert_int_equal(kl_bucket_tokens(&b, 1000), 5);
    /* from unlimited to limited starts full */
    kl_bucket_init(&b, 0, 0, 0);
    kl_bucket_configure(&b, 5, 10, 100);
    assert_int_equal(kl_bucket_tokens(&b, 100), 10);
}

static void test_limiter__no_drift_or_overflow_over_a_year(void **state)
{
    kl_bucket_t b;
    uint64_t got = 0, t = 0, n, step = 3600007; /* an odd hour, so thousandths carry */

    (void)state;
    /* drained greedily every step: it never fills, so every token the rate
     * made in a year must have been handed out, exactly */
    kl_bucket_init(&b, 997, 10000000, 0);
    assert_true(kl_bucket_take(&b, 10000000, 0));
    while (t + step <= YEAR_MS) {
        t += step;
        for (uint32_t n = 1u << 23; n > 0; n >>= 1)
            while (kl_bucket_take(&b, n, t))
                got += n;
    }
    assert_int_equal(got, t * 997 / 1000);
    assert_int_equal(kl_bucket_tokens(&b, t), 0);

    /* the largest rate and burst, idle for a year: full, not wrapped */
    kl_bucket_init(&b, UINT32_MAX, UINT32_MAX, 0);
    assert_true(kl_bucket_take(&b, UINT32_MAX, 0));
    assert_int_equal(kl_bucket_tokens(&b, YEAR_MS), UINT32_MAX);
    assert_true(kl_bucket_take(&b, UINT32_MAX, YEAR_MS));
    assert_false(kl_bucket_take(&b, 1, YEAR_MS));
    /* a gap where elapsed x rate would wrap to 2^32 thousandths */
    kl_bucket_init(&b, UINT32_MAX, UINT32_MAX, 0);
    assert_true(kl_bucket_take(&b, UINT32_MAX, 0));
    assert_int_equal(kl_bucket_tokens(&b, UINT64_MAX - UINT32_MAX), UINT32_MAX);
    /* a clock reading late in its range */
    kl_bucket_init(&b, 7, 7, UINT64_MAX - YEAR_MS);
    assert_true(kl_bucket_take(&b, 7, UINT64_MAX - YEAR_MS));
    assert_int_equal(kl_bucket_tokens(&b, UINT64_MAX), 7);

    /* a slow rate in 7 s steps for a year: 21 a step, no more, no less */
    kl_bucket_init(&b, 3, 21, 0);
    got = 0;
    n = 0;
    for (t = 7000; t <= YEAR_MS; t += 7000, n++)
        got += kl_bucket_take(&b, 21, t) ? 21 : 0;
    assert_false(kl_bucket_take(&b, 1, t - 7000));
    assert_int_equal(got, n * 21);
}

static void test_limiter__srclimit_sources_are_independent(void **state)
{
    kl_srclimit_t *t = kl_srclimit_new(16, 42);
    const uint8_t a[4] = {192, 0, 2, 1}, b[4] = {192, 0, 2, 2};
    const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, [15] = 1};

    (void)state;
    assert_non_null(t);
    for (int i = 0; i < 4; i++)
        assert_true(kl_srclimit_take(t, a, 4, 2, 4, 0));
    assert_false(kl_srclimit_take(t, a, 4, 2, 4, 0));
    /* another source has its own bucket */
    assert_true(kl_srclimit_take(t, b, 4, 2, 4, 0));
    assert_true(kl_srclimit_take(t, v6, 16, 2, 4, 0));
    assert_int_equal(kl_srclimit_count(t), 3);
    /* a's refills at its rate */
    assert_false(kl_srclimit_take(t, a, 4, 2, 4, 499));
    assert_true(kl_srclimit_take(t, a, 4, 2, 4, 500));
    assert_false(kl_srclimit_take(t, a, 4, 2, 4, 500));
    /* a reload that raises the rate applies to known sources, tokens kept */
    assert_false(kl_srclimit_take(t, a, 4, 1000, 2000, 501));
    assert_true(kl_srclimit_take(t, a, 4, 1000, 2000, 502));
    /* rate 0: unlimited, nothing stored */
    for (int i = 0; i < 100; i++)
        assert_true(kl_srclimit_take(t, "x", 1, 0, 0, 0));
    assert_int_equal(kl_srclimit_count(t), 3);
    kl_srclimit_free(t);
    kl_srclimit_free(NULL);
    assert_null(kl_srclimit_new(0, 1));
}

static void test_limiter__srclimit_evicts_least_recently_used(void **state)
{
    kl_srclimit_t *t = kl_srclimit_new(2, 7);

    (void)state;
    assert_non_null(t);
    /* A and B spend their single token */
    assert_true(kl_srclimit_take(t, "A", 1, 1, 1, 0));
    assert_true(kl_srclimit_take(t, "B", 1, 1, 1, 0));
    /* A is used again (refused), so B is now the oldest */
    assert_false(kl_srclimit_take(t, "A", 1, 1, 1, 10));
    assert_true(kl_srclimit_take(t, "C", 1, 1, 1, 20)); /* evicts B */
    assert_int_equal(kl_srclimit_count(t), 2);
    assert_int_equal(kl_srclimit_evictions(t), 1);
    /* A kept its empty bucket; B comes back new, evicting C, the oldest */
    assert_false(kl_srclimit_take(t, "A", 1, 1, 1, 30));
    assert_true(kl_srclimit_take(t, "B", 1, 1, 1, 40));
    assert_false(kl_srclimit_take(t, "A", 1, 1, 1, 50));
    assert_true(kl_srclimit_take(t, "C", 1, 1, 1, 60)); /* evicts B */
    assert_int_equal(kl_srclimit_evictions(t), 3);
    assert_int_equal(kl_srclimit_count(t), 2);
    /* long keys: told apart past the stored bytes by hash and length */
    {
        char k1[40], k2[40];

        memset(k1, 'k', sizeof(k1));
        memcpy(k2, k1, sizeof(k2));
        k2[39] = 'z';
        assert_true(kl_srclimit_take(t, k1, sizeof(k1), 1, 1, 100));
        assert_false(kl_srclimit_take(t, k1, sizeof(k1), 1, 1, 100));
        assert_true(kl_srclimit_take(t, k2, sizeof(k2), 1, 1, 100));
        assert_false(kl_srclimit_take(t, k1, sizeof(k1), 1, 1, 100));
        assert_true(kl_srclimit_take(t, k1, 39, 1, 1, 100));
    }
    kl_srclimit_free(t);
}

/* The reference: an array in LRU order (0 = most recent) of keys and their
 * tokens, for a frozen clock (no refill). */
typedef struct {
    int key;
    int tokens;
} model_entry_t;

static bool model_take(model_entry_t *m, size_t *n, size_t cap, int key, int burst)
{
    size_t i;
    model_entry_t e;

    i = 0;
    while (i < *n && m[i].key != key)
        i++;
    if (i == *n) {
        if (*n == cap)
            (*n)--; /* drop the least recent */
        e = (model_entry_t){.key = key, .tokens = burst};
        i = *n;
        (*n)++;
    } else {
        e = m[i];
    }
    memmove(&m[1], &m[0], i * sizeof(m[0]));
    m[0] = e;
    if (m[0].tokens == 0)
        return false;
    m[0].tokens--;
    return true;
}

static void test_limiter__srclimit_matches_lru_model(void **state)
{
    enum { CAP = 13, KEYS = 64, OPS = 200000 };
    model_entry_t m[CAP];
    size_t n = 0;
    uint32_t r = 1;
    kl_srclimit_t *t = kl_srclimit_new(CAP, 0x5eed);

    (void)state;
    assert_non_null(t);
    for (int op = 0; op < OPS; op++) {
        int key;
        uint32_t wire;
        bool want, got;

        r = r * 1664525u + 1013904223u;
        /* skewed: a few hot keys and a long tail, so both hits and evictions */
        key = (r >> 16) % 4 ? (int)((r >> 8) % 8) : (int)((r >> 8) % KEYS);
        wire = (uint32_t)key * 2654435761u;
        want = model_take(m, &n, CAP, key, 3);
        got = kl_srclimit_take(t, &wire, sizeof(wire), 1, 3, 0);
        assert_int_equal(got, want);
        assert_int_equal(kl_srclimit_count(t), n);
    }
    assert_true(kl_srclimit_evictions(t) > 1000);
    kl_srclimit_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limiter__burst_then_rate),
        cmocka_unit_test(test_limiter__refill_over_time),
        cmocka_unit_test(test_limiter__unlimited_and_default_burst),
        cmocka_unit_test(test_limiter__no_drift_or_overflow_over_a_year),
        cmocka_unit_test(test_limiter__srclimit_sources_are_independent),
        cmocka_unit_test(test_limiter__srclimit_evicts_least_recently_used),
        cmocka_unit_test(test_limiter__srclimit_matches_lru_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
