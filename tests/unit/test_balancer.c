/* Unit tests for upstream/balancer: smooth weighted round-robin and the
 * slow-start factor (time is a parameter). */
#include "upstream/balancer.h"
#include "core/errors.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static void distribution(const unsigned *w, size_t n)
{
    kl_swrr_t b;
    unsigned count[8] = {0}, total = 0;

    assert_int_equal(kl_swrr_init(&b, n), KL_OK);
    for (size_t i = 0; i < n; i++) {
        kl_swrr_set_weight(&b, i, w[i]);
        total += w[i];
    }
    for (int k = 0; k < 10000; k++) {
        int i = kl_swrr_pick(&b, NULL, NULL);

        assert_true(i >= 0);
        count[i]++;
    }
    for (size_t i = 0; i < n; i++) {
        double want = 10000.0 * w[i] / total;

        assert_true(fabs(count[i] - want) <= 200); /* within 2% of the picks */
    }
    kl_swrr_free(&b);
}

static void test_balancer__distribution(void **state)
{
    static const unsigned a[] = {5, 1, 1}, b[] = {50, 50}, c[] = {90, 10}, d[] = {1, 2, 3, 4};

    (void)state;
    distribution(a, 3);
    distribution(b, 2);
    distribution(c, 2);
    distribution(d, 4);
}

static void test_balancer__smooth(void **state)
{
    kl_swrr_t b;
    int seq[7];

    (void)state;
    assert_int_equal(kl_swrr_init(&b, 3), KL_OK);
    kl_swrr_set_weight(&b, 0, 5);
    for (int i = 0; i < 7; i++)
        seq[i] = kl_swrr_pick(&b, NULL, NULL);
    /* nginx's sequence for {5,1,1}: a a b a c a a */
    assert_int_equal(seq[0], 0);
    assert_int_equal(seq[1], 0);
    assert_int_equal(seq[2], 1);
    assert_int_equal(seq[3], 0);
    assert_int_equal(seq[4], 2);
    assert_int_equal(seq[5], 0);
    assert_int_equal(seq[6], 0);
    kl_swrr_free(&b);
}

static bool not_zero(void *arg, size_t i)
{
    (void)arg;
    return i != 0;
}

static void test_balancer__weight_zero_and_exclusion(void **state)
{
    kl_swrr_t b;
    unsigned c[3] = {0};

    (void)state;
    assert_int_equal(kl_swrr_init(&b, 3), KL_OK);
    kl_swrr_set_weight(&b, 0, 0);
    kl_swrr_set_weight(&b, 1, 3);
    kl_swrr_set_weight(&b, 2, 1);
    for (int k = 0; k < 4000; k++)
        c[kl_swrr_pick(&b, NULL, NULL)]++;
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 3000);
    assert_int_equal(c[2], 1000);
    /* excluding an item for some picks keeps the others' ratio */
    kl_swrr_set_weight(&b, 0, 2);
    c[0] = c[1] = c[2] = 0;
    for (int k = 0; k < 6000; k++) {
        int i = kl_swrr_pick(&b, (k % 2) ? not_zero : NULL, NULL);

        if (k % 2)
            assert_int_not_equal(i, 0); /* never the excluded one */
        c[i]++;
    }
    /* every eligible item keeps getting picks, in weight order */
    assert_true(c[1] > c[2] && c[2] >= 900 && c[0] >= 900);
    kl_swrr_set_weight(&b, 0, 0);
    kl_swrr_set_weight(&b, 1, 0);
    kl_swrr_set_weight(&b, 2, 0);
    assert_int_equal(kl_swrr_pick(&b, NULL, NULL), -1);
    kl_swrr_free(&b);
}

static void test_balancer__slowstart_factor(void **state)
{
    (void)state;
    assert_true(fabs(kl_slowstart_factor(1000, 1000, 30000, 1.0, 10) - 0.10) < 1e-9);
    assert_true(fabs(kl_slowstart_factor(16000, 1000, 30000, 1.0, 10) - 0.5) < 1e-9);
    assert_true(fabs(kl_slowstart_factor(16000, 1000, 30000, 2.0, 10) - sqrt(0.5)) < 1e-9);
    assert_true(fabs(kl_slowstart_factor(2000, 1000, 30000, 1.0, 10) - 0.10) < 1e-9);
    assert_true(kl_slowstart_factor(31000, 1000, 30000, 1.0, 10) == 1.0);
    assert_true(kl_slowstart_factor(5000, 0, 30000, 1.0, 10) == 1.0); /* not ramping */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_balancer__distribution),
        cmocka_unit_test(test_balancer__smooth),
        cmocka_unit_test(test_balancer__weight_zero_and_exclusion),
        cmocka_unit_test(test_balancer__slowstart_factor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
