/* transport/framing.c: kl_frame_find() and the start-of-message checks. */
#include "transport/framing.h"

#include "core/errors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#define MAX 65536

#define HDRS                                                                                       \
    "INVITE sip:bob@example.com SIP/2.0\r\n"                                                       \
    "Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\n"                                           \
    "Call-ID: abc\r\n"

static int find(const char *s, size_t max, bool need_cl, kl_frame_t *f)
{
    memset(f, 0xa5, sizeof(*f));
    return kl_frame_find(s, strlen(s), max, need_cl, f);
}

static void test_framing__complete_message_with_body(void **state)
{
    const char *m = HDRS "Content-Length: 12\r\n\r\nhello world!";
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(m, MAX, true, &f), KL_OK);
    assert_int_equal(f.skip, 0);
    assert_int_equal(f.hdr_len, strlen(m) - 12);
    assert_int_equal(f.body_len, 12);
    assert_true(f.has_cl);
}

static void test_framing__header_incomplete(void **state)
{
    const char *m = HDRS "Content-Length: 12\r\n";
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(m, MAX, true, &f), KL_EINCOMPLETE);
    assert_int_equal(find(HDRS "Content-Len", MAX, true, &f), KL_EINCOMPLETE);
    assert_int_equal(find("", MAX, true, &f), KL_EINCOMPLETE);
    /* a CR without its LF is not the end yet */
    assert_int_equal(find(HDRS "l: 0\r\n\r", MAX, true, &f), KL_EINCOMPLETE);
}

static void test_framing__body_incomplete(void **state)
{
    const char *m = HDRS "Content-Length: 12\r\n\r\nhello";
    kl_frame_t f;

    (void)state;
    /* the header section is complete: OK, the caller waits for the body */
    assert_int_equal(find(m, MAX, true, &f), KL_OK);
    assert_int_equal(f.hdr_len, strlen(m) - 5);
    assert_int_equal(f.body_len, 12);
}

static void test_framing__compact_l(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HDRS "l: 5\r\n\r\nhello", MAX, true, &f), KL_OK);
    assert_int_equal(f.body_len, 5);
    assert_int_equal(find(HDRS "L:5\r\n\r\nhello", MAX, true, &f), KL_OK);
    assert_int_equal(f.body_len, 5);
    /* another one-letter header is not Content-Length */
    assert_int_equal(find(HDRS "i: x\r\n\r\n", MAX, true, &f), KL_EPROTO);
}

static void test_framing__space_before_colon_and_case(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HDRS "Content-Length : 12\r\n\r\n", MAX, true, &f), KL_OK);
    assert_int_equal(f.body_len, 12);
    assert_int_equal(find(HDRS "content-LENGTH\t:\t 7 \t\r\n\r\n", MAX, true, &f), KL_OK);
    assert_int_equal(f.body_len, 7);
    /* a header whose name only starts like it */
    assert_int_equal(find(HDRS "Content-Length-X: 3\r\n\r\n", MAX, true, &f), KL_EPROTO);
}

static void test_framing__missing_cl(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HDRS "\r\n", MAX, true, &f), KL_EPROTO);
    /* datagrams: optional */
    assert_int_equal(find(HDRS "\r\n", MAX, false, &f), KL_OK);
    assert_false(f.has_cl);
    assert_int_equal(f.body_len, 0);
}

static void test_framing__bad_cl(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HDRS "Content-Length: 12abc\r\n\r\n", MAX, true, &f), KL_EPROTO);
    assert_int_equal(find(HDRS "Content-Length: -1\r\n\r\n", MAX, true, &f), KL_EPROTO);
    assert_int_equal(find(HDRS "Content-Length: \r\n\r\n", MAX, false, &f), KL_EPROTO);
    assert_int_equal(find(HDRS "Content-Length: 1 2\r\n\r\n", MAX, true, &f), KL_EPROTO);
    assert_int_equal(find(HDRS "Content-Length: 0x10\r\n\r\n", MAX, true, &f), KL_EPROTO);
    assert_int_equal(find(HDRS "Content-Length: 99999999999999999999999\r\n\r\n", MAX, true, &f),
                     KL_EPROTO);
    assert_int_equal(find(HDRS "Content-Length: 2147483648\r\n\r\n", MAX, true, &f), KL_EPROTO);
    /* well formed but past the limit: too big, so the caller can say 513 */
    assert_int_equal(find(HDRS "Content-Length: 2147483647\r\n\r\n", MAX, true, &f), KL_ETOOBIG);
    /* leading zeros are still digits */
    assert_int_equal(find(HDRS "Content-Length: 0000000000000000000004\r\n\r\nabcd", MAX, true, &f),
                     KL_OK);
    assert_int_equal(f.body_len, 4);
}

static void test_framing__two_different_cls(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HDRS "Content-Length: 4\r\nl: 5\r\n\r\nabcde", MAX, true, &f), KL_EPROTO);
    /* the same value twice is only redundant */
    assert_int_equal(find(HDRS "Content-Length: 4\r\nl: 4\r\n\r\nabcd", MAX, true, &f), KL_OK);
    assert_int_equal(f.body_len, 4);
}

static void test_framing__leading_crlfs(void **state)
{
    const char *m = "\r\n\r\n\r\n" HDRS "l: 0\r\n\r\n";
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(m, MAX, true, &f), KL_OK);
    assert_int_equal(f.skip, 6);
    assert_int_equal(f.hdr_len, strlen(m) - 6);
    assert_int_equal(find("\r\n\r\n", MAX, true, &f), KL_EINCOMPLETE);
}

static void test_framing__lf_only(void **state)
{
    const char *m = "OPTIONS sip:a SIP/2.0\nVia: x\nContent-Length: 3\n\nabc";
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(m, MAX, true, &f), KL_OK);
    assert_int_equal(f.hdr_len, strlen(m) - 3);
    assert_int_equal(f.body_len, 3);
    /* mixed: a CRLF header section ended by a bare LF line */
    assert_int_equal(find("OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\n", MAX, true, &f), KL_OK);
    assert_int_equal(f.hdr_len, strlen("OPTIONS sip:a SIP/2.0\r\nl: 0\r\n\n"));
}

static void test_framing__folded_lines_ignored(void **state)
{
    kl_frame_t f;

    (void)state;
    assert_int_equal(find(HDRS "Subject: a\r\n b: 9\r\nl: 1\r\n\r\nx", MAX, true, &f), KL_OK);
    assert_int_equal(f.body_len, 1);
}

static void test_framing__too_big(void **state)
{
    char big[600];
    kl_frame_t f;

    (void)state;
    /* the header section alone past the limit, complete or not */
    memset(big, 'a', sizeof(big));
    memcpy(big, "OPTIONS sip:a SIP/2.0\r\nX: ", 26);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(find(big, 256, true, &f), KL_ETOOBIG);
    assert_int_equal(find(HDRS "l: 0\r\n\r\n", 64, true, &f), KL_ETOOBIG);
    /* header plus body past it */
    assert_int_equal(find(HDRS "l: 200\r\n\r\n", 256, true, &f), KL_ETOOBIG);
    /* exactly at the limit is fine */
    {
        const char *m = HDRS "l: 10\r\n\r\n";

        assert_int_equal(find(m, strlen(m) + 10, true, &f), KL_OK);
        assert_int_equal(find(m, strlen(m) + 9, true, &f), KL_ETOOBIG);
    }
}

static void test_framing__start_checks(void **state)
{
    (void)state;
    assert_true(kl_frame_start_byte_ok('I'));
    assert_true(kl_frame_start_byte_ok('S'));
    assert_false(kl_frame_start_byte_ok('\x16')); /* a TLS ClientHello */
    assert_false(kl_frame_start_byte_ok(' '));
    assert_false(kl_frame_start_byte_ok('\0'));
    assert_true(kl_frame_start_line_ok("INVITE sip:a@b SIP/2.0\r", 23));
    assert_true(kl_frame_start_line_ok("SIP/2.0 200 OK", 14));
    assert_true(kl_frame_start_line_ok("SIP/2.0 200", 11));
    assert_false(kl_frame_start_line_ok("GET / HTTP/1.1\r", 15));
    assert_false(kl_frame_start_line_ok("INVITE SIP/2.0", 14));
    assert_false(kl_frame_start_line_ok("hello", 5));
    assert_false(kl_frame_start_line_ok("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_framing__complete_message_with_body),
        cmocka_unit_test(test_framing__header_incomplete),
        cmocka_unit_test(test_framing__body_incomplete),
        cmocka_unit_test(test_framing__compact_l),
        cmocka_unit_test(test_framing__space_before_colon_and_case),
        cmocka_unit_test(test_framing__missing_cl),
        cmocka_unit_test(test_framing__bad_cl),
        cmocka_unit_test(test_framing__two_different_cls),
        cmocka_unit_test(test_framing__leading_crlfs),
        cmocka_unit_test(test_framing__lf_only),
        cmocka_unit_test(test_framing__folded_lines_ignored),
        cmocka_unit_test(test_framing__too_big),
        cmocka_unit_test(test_framing__start_checks),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
