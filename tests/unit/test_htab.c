/* Unit tests for core/htab: the worker's transaction tables. */
#include "core/htab.h"
#include "core/errors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

typedef struct item {
    kl_hnode_t hn;
    char key[32];
    int value;
} item_t;

static void test_htab__add_get_del(void **state)
{
    kl_htab_t t;
    item_t a = {.value = 1}, b = {.value = 2};

    (void)state;
    assert_int_equal(kl_htab_init(&t, 4), KL_OK);
    strcpy(a.key, "z9hG4bKa|I");
    strcpy(b.key, "z9hG4bKb|I");
    kl_htab_add(&t, &a.hn, a.key, strlen(a.key));
    kl_htab_add(&t, &b.hn, b.key, strlen(b.key));
    assert_ptr_equal(kl_htab_get(&t, "z9hG4bKa|I", 10), &a.hn);
    assert_ptr_equal(kl_htab_get(&t, "z9hG4bKb|I", 10), &b.hn);
    assert_null(kl_htab_get(&t, "z9hG4bKa|C", 10));
    assert_null(kl_htab_get(&t, "z9hG4bKa", 8));
    kl_htab_del(&t, &a.hn);
    assert_null(kl_htab_get(&t, "z9hG4bKa|I", 10));
    assert_ptr_equal(kl_htab_get(&t, "z9hG4bKb|I", 10), &b.hn);
    kl_htab_del(&t, &a.hn); /* not in the table: no effect */
    assert_int_equal(t.count, 1);
    kl_htab_free(&t);
}

static void test_htab__grows_and_finds_all(void **state)
{
    enum { N = 50000 };
    kl_htab_t t;
    item_t *items = calloc(N, sizeof(*items));

    (void)state;
    assert_non_null(items);
    assert_int_equal(kl_htab_init(&t, 16), KL_OK);
    for (int i = 0; i < N; i++) {
        snprintf(items[i].key, sizeof(items[i].key), "branch-%d", i);
        items[i].value = i;
        kl_htab_add(&t, &items[i].hn, items[i].key, strlen(items[i].key));
    }
    assert_int_equal(t.count, N);
    assert_true(t.nbuckets >= N);
    for (int i = 0; i < N; i++) {
        char k[32];
        kl_hnode_t *n;

        snprintf(k, sizeof(k), "branch-%d", i);
        n = kl_htab_get(&t, k, strlen(k));
        assert_non_null(n);
        assert_int_equal(kl_container_of(n, item_t, hn)->value, i);
    }
    for (int i = 0; i < N; i += 2)
        kl_htab_del(&t, &items[i].hn);
    assert_int_equal(t.count, N / 2);
    assert_null(kl_htab_get(&t, "branch-0", 8));
    assert_non_null(kl_htab_get(&t, "branch-1", 8));
    kl_htab_free(&t);
    free(items);
}

static void test_htab__newest_duplicate_wins(void **state)
{
    kl_htab_t t;
    item_t a = {.value = 1}, b = {.value = 2};

    (void)state;
    assert_int_equal(kl_htab_init(&t, 0), KL_OK);
    strcpy(a.key, "same");
    strcpy(b.key, "same");
    kl_htab_add(&t, &a.hn, a.key, 4);
    kl_htab_add(&t, &b.hn, b.key, 4);
    assert_ptr_equal(kl_htab_get(&t, "same", 4), &b.hn);
    kl_htab_del(&t, &b.hn);
    assert_ptr_equal(kl_htab_get(&t, "same", 4), &a.hn);
    kl_htab_free(&t);
    kl_htab_free(&t); /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_htab__add_get_del),
        cmocka_unit_test(test_htab__grows_and_finds_all),
        cmocka_unit_test(test_htab__newest_duplicate_wins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
