/* Unit tests for sip/rtpstat: the P-RTP-Stat report and the MOS estimate. */
#include "sip/rtpstat.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static bool parse(const char *v, kl_rtpstat_t *st)
{
    return kl_rtpstat_parse(v, strlen(v), st);
}

static void test_rtpstat__cisco_report(void **state)
{
    kl_rtpstat_t st;

    (void)state;
    assert_true(parse("PS=1000,OS=160000,PR=980,OR=156800,PL=20,JI=15,LA=40,DU=20", &st));
    assert_int_equal(st.received, 980);
    assert_int_equal(st.lost, 20);
    assert_true(st.have_jitter && st.jitter_ms == 15);
    assert_true(st.have_latency && st.latency_ms == 40);
    assert_true(kl_rtpstat_loss(&st) > 0.0199 && kl_rtpstat_loss(&st) < 0.0201);
}

/* Spaces, semicolons, keys keel does not know, and a negative loss (a
 * report counting duplicates) are taken as they come. */
static void test_rtpstat__separators_unknown_keys_negative_loss(void **state)
{
    kl_rtpstat_t st;

    (void)state;
    assert_true(parse(" PS=10; XX=7, PR=500 ,PL=-3 EN=G711 JI=2", &st));
    assert_int_equal(st.received, 500);
    assert_int_equal(st.lost, 0);
    assert_true(st.jitter_ms == 2);
    assert_false(st.have_latency);
}

/* Without PR and PL there is no report; junk never crashes or counts. */
static void test_rtpstat__incomplete_or_junk(void **state)
{
    static const char *const bad[] = {"",         "PS=1000,OS=160000", "PR=abc,PL=1",
                                      "PR=1,PL=", "PR==1,PL=1",        "PR=1234567890123456,PL=1",
                                      "=,=,=,PR", "PRX=5,PLX=1",       "PR=-5,PL=1"};
    kl_rtpstat_t st;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(parse(bad[i], &st));
    /* not NUL-terminated: only <len> bytes are read */
    assert_false(kl_rtpstat_parse("PR=1,PL=1", 5, &st));
}

/* The simplified E-model's landmarks: a clean G.711 call is about 4.4, 5 %
 * loss with 20 ms jitter falls below toll quality (4.0), 20 % is bad (below
 * 2.6), and it never leaves 1..4.5. */
static void test_rtpstat__mos(void **state)
{
    kl_rtpstat_t st;
    double clean, lossy, bad, awful;

    (void)state;
    assert_true(parse("PR=1000,PL=0,JI=0,LA=0", &st));
    clean = kl_rtpstat_mos(&st);
    assert_true(parse("PR=950,PL=50,JI=20,LA=40", &st));
    lossy = kl_rtpstat_mos(&st);
    assert_true(parse("PR=800,PL=200,JI=30,LA=100", &st));
    bad = kl_rtpstat_mos(&st);
    assert_true(parse("PR=10,PL=990,JI=500,LA=2000", &st));
    awful = kl_rtpstat_mos(&st);
    printf("mos clean %.2f, 5%% loss %.2f, 20%% loss %.2f, 99%% loss %.2f\n", clean, lossy, bad,
           awful);
    assert_true(clean > 4.3 && clean <= 4.5);
    assert_true(lossy < 4.0 && lossy > 3.5);
    assert_true(bad < 2.6 && bad >= 1.0);
    assert_true(awful == 1.0);
    assert_true(clean > lossy && lossy > bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtpstat__cisco_report),
        cmocka_unit_test(test_rtpstat__separators_unknown_keys_negative_loss),
        cmocka_unit_test(test_rtpstat__incomplete_or_junk),
        cmocka_unit_test(test_rtpstat__mos),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
