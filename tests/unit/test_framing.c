/* Unit tests for transport/framing: Content-Length framing of streams. */
#include "transport/framing.h"
#include "core/errors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#define HEAD "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"

static int find(const char *s, bool need_cl, kl_frame_t *f)
{
    return kl_frame_find(s, strlen(s), 65536, need_cl, f);
}

static void test_framing__complete_with_body(void **state)
{
    kl_frame_t f;
    const char *s = HEAD "Content-Length: 4\r\n\r\nbody" HEAD;

    (void)state;
    assert_int_equal(find(s, true, &f), KL_OK);
    assert_int_equal(f.skip, 0);
    assert_int_equal(f.hdr_len, strlen(HEAD "Content-Length: 4\r\n\r\n"));
    assert_int_equal(f.body_len, 4);
    assert_true(f.has_cl);
}

static void test_framing__incomplete(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HEAD "Content-Len", true, &f), KL_EINCOMPLETE);
    assert_int_equal(find(HEAD "Content-Length: 4\r\n", true, &f), KL_EINCOMPLETE);
    /* the body may be incomplete: the caller compares lengths */
    assert_int_equal(find(HEAD "Content-Length: 400\r\n\r\nab", true, &f), KL_OK);
    assert_int_equal(f.body_len, 400);
}

static void test_framing__compact_and_spacing(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HEAD "l: 7\r\n\r\n", true, &f), KL_OK);
    assert_int_equal(f.body_len, 7);
    assert_int_equal(find(HEAD "content-length :  12 \r\n\r\n", true, &f), KL_OK);
    assert_int_equal(f.body_len, 12);
}

static void test_framing__bad_content_length(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HEAD "\r\n", true, &f), KL_EPROTO); /* missing on a stream */
    assert_int_equal(find(HEAD "\r\n", false, &f), KL_OK);
    assert_false(f.has_cl);
    assert_int_equal(find(HEAD "Content-Length: 12abc\r\n\r\n", true, &f), KL_EPROTO);
    assert_int_equal(find(HEAD "Content-Length: -1\r\n\r\n", true, &f), KL_EPROTO);
    assert_int_equal(find(HEAD "Content-Length: 99999999999\r\n\r\n", true, &f), KL_EPROTO);
    assert_int_equal(find(HEAD "Content-Length: 1\r\nl: 2\r\n\r\n", true, &f), KL_EPROTO);
    assert_int_equal(find(HEAD "Content-Length: 2\r\nl: 2\r\n\r\n", true, &f), KL_OK);
}

static void test_framing__leading_crlf_and_lf_only(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find("\r\n\r\n" HEAD "Content-Length: 0\r\n\r\n", true, &f), KL_OK);
    assert_int_equal(f.skip, 4);
    assert_int_equal(find("OPTIONS sip:a@b SIP/2.0\nl: 3\n\nabc", true, &f), KL_OK);
    assert_int_equal(f.body_len, 3);
}

static void test_framing__too_big(void **state)
{
    char big[3000];
    kl_frame_t f;

    (void)state;
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memcpy(big, HEAD, strlen(HEAD));
    assert_int_equal(kl_frame_find(big, strlen(big), 1024, true, &f), KL_ETOOBIG);
    assert_int_equal(kl_frame_find(HEAD "Content-Length: 5000\r\n\r\n",
                                   strlen(HEAD "Content-Length: 5000\r\n\r\n"), 1024, true, &f),
                     KL_ETOOBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing__complete_with_body),
        cmocka_unit_test(test_framing__incomplete),
        cmocka_unit_test(test_framing__compact_and_spacing),
        cmocka_unit_test(test_framing__bad_content_length),
        cmocka_unit_test(test_framing__leading_crlf_and_lf_only),
        cmocka_unit_test(test_framing__too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
