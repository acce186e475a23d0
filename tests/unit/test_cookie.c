/* Unit tests for sip/cookie and sip/branch: signed Record-Route cookies,
 * branches that name their worker. */
#include "sip/cookie.h"
#include "sip/branch.h"
#include "core/errors.h"
#include "core/htab.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char secret[] = "0123456789abcdef0123456789abcdef";

static int encode(const char *zone, const char *dest, const char *key, char *out, size_t cap)
{
    kl_cookie_t c = {.flags = 1, .issued = 1795585862u};

    snprintf(c.zone, sizeof(c.zone), "%s", zone);
    snprintf(c.dest, sizeof(c.dest), "%s", dest);
    return kl_cookie_encode(&c, key, strlen(key), out, cap);
}

static void test_cookie__round_trip(void **state)
{
    char tok[KL_COOKIE_MAX];
    const char *keys[] = {secret};
    kl_cookie_t out;
    int n = encode("zone-b", "sip:10.0.0.7:5061;transport=tcp", secret, tok, sizeof(tok));

    (void)state;
    assert_true(n > 0);
    assert_int_equal(kl_cookie_decode(tok, (size_t)n, keys, 1, &out), KL_OK);
    assert_string_equal(out.zone, "zone-b");
    assert_string_equal(out.dest, "sip:10.0.0.7:5061;transport=tcp");
    assert_int_equal(out.flags, 1);
    assert_int_equal(out.issued, 1795585862u);
    /* only URI-parameter-safe characters (RFC 3261 paramchar) */
    for (int i = 0; i < n; i++)
        assert_non_null(
            strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tok[i]));
}

static void test_cookie__tampering_refused(void **state)
{
    char tok[KL_COOKIE_MAX];
    const char *keys[] = {secret};
    kl_cookie_t out;
    int n = encode("zone-a", "sip:10.0.0.1", secret, tok, sizeof(tok));

    (void)state;
    for (int i = 0; i < n; i++) {
        char saved = tok[i];
        int rc;

        tok[i] = saved == 'A' ? 'B' : 'A';
        rc = kl_cookie_decode(tok, (size_t)n, keys, 1, &out);
        assert_true(rc == KL_EPERM || rc == KL_EINVAL);
        tok[i] = saved;
    }
}

static void test_cookie__wrong_and_rotated_secret(void **state)
{
    char tok[KL_COOKIE_MAX];
    const char *other[] = {"another-secret-0123456789"};
    const char *rotated[] = {"new-secret-0123456789abcdef", secret};
    kl_cookie_t out;
    int n = encode("zone-a", "sip:10.0.0.1", secret, tok, sizeof(tok));

    (void)state;
    assert_int_equal(kl_cookie_decode(tok, (size_t)n, other, 1, &out), KL_EPERM);
    assert_int_equal(kl_cookie_decode(tok, (size_t)n, rotated, 2, &out), KL_OK);
}

static void test_cookie__garbage(void **state)
{
    const char *keys[] = {secret};
    kl_cookie_t out;
    char big[2000];

    (void)state;
    assert_int_equal(kl_cookie_decode("", 0, keys, 1, &out), KL_EINVAL);
    assert_int_equal(kl_cookie_decode("A", 1, keys, 1, &out), KL_EINVAL);
    assert_int_equal(kl_cookie_decode("AAAAforged", 10, keys, 1, &out), KL_EINVAL);
    assert_int_equal(kl_cookie_decode("!!!!", 4, keys, 1, &out), KL_EINVAL);
    memset(big, 'A', sizeof(big));
    assert_int_equal(kl_cookie_decode(big, sizeof(big), keys, 1, &out), KL_EINVAL);
}

static void test_cookie__too_long_names(void **state)
{
    char zone[100], tok[KL_COOKIE_MAX];
    kl_cookie_t c;

    (void)state;
    memset(zone, 'z', sizeof(zone));
    memset(&c, 0, sizeof(c));
    memcpy(c.zone, zone, sizeof(c.zone) - 1);
    assert_true(kl_cookie_encode(&c, secret, strlen(secret), tok, sizeof(tok)) > 0);
    assert_int_equal(kl_cookie_encode(&c, secret, strlen(secret), tok, 10), KL_ETOOBIG);
}

static void test_branch__unique_and_names_worker(void **state)
{
    enum { N = 100000 };
    kl_branch_gen_t g;
    kl_htab_t seen;
    char(*b)[64] = calloc(N, 64);
    kl_hnode_t *nodes = calloc(N, sizeof(*nodes));

    (void)state;
    assert_non_null(b);
    assert_non_null(nodes);
    kl_branch_gen_init(&g, 7);
    assert_int_equal(kl_htab_init(&seen, N), KL_OK);
    for (int i = 0; i < N; i++) {
        int n = kl_branch_make(&g, b[i], sizeof(b[i]));

        assert_true(n > 0);
        assert_memory_equal(b[i], "z9hG4bK", 7);
        assert_int_equal(kl_branch_worker(b[i], (size_t)n), 7);
        assert_null(kl_htab_get(&seen, b[i], (size_t)n));
        kl_htab_add(&seen, &nodes[i], b[i], (size_t)n);
    }
    assert_int_equal(kl_branch_worker("z9hG4bK-12804-1--1", 18), -1);
    assert_int_equal(kl_branch_worker("z9hG4bKk0", 9), -1);
    kl_htab_free(&seen);
    free(nodes);
    free(b);
}

static void test_branch__generators_differ(void **state)
{
    kl_branch_gen_t a, b;
    char x[64], y[64], t[32];

    (void)state;
    kl_branch_gen_init(&a, 0);
    kl_branch_gen_init(&b, 0);
    kl_branch_make(&a, x, sizeof(x));
    kl_branch_make(&b, y, sizeof(y));
    assert_string_not_equal(x, y); /* two instances do not collide */
    assert_int_equal(kl_branch_tag(&a, t, sizeof(t)), 16);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookie__round_trip),
        cmocka_unit_test(test_cookie__tampering_refused),
        cmocka_unit_test(test_cookie__wrong_and_rotated_secret),
        cmocka_unit_test(test_cookie__garbage),
        cmocka_unit_test(test_cookie__too_long_names),
        cmocka_unit_test(test_branch__unique_and_names_worker),
        cmocka_unit_test(test_branch__generators_differ),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
