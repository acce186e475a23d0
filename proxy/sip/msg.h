/* SIP messages: libosip2 parses the header section, keel keeps the bytes.
 *
 * kl_sip_msg_parse() copies the received bytes, indexes every header line
 * itself (name, value, offsets, compact forms folded to one id), checks
 * framing (Content-Length against the body, RFC 3261 §18.3) and hands
 * libosip2 the header section only: bodies stay raw bytes and never reach
 * osip's body or multipart code (DESIGN.md "Parsing and forwarding": the
 * known libosip2 5.3.0 leak and over-read sit there).
 * Single-threaded per message: a kl_sip_msg_t belongs to one worker. */
#ifndef KL_SIP_MSG_H
#define KL_SIP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <osipparser2/osip_parser.h>

typedef enum {
    KL_HDR_OTHER = 0,
    KL_HDR_VIA,     /* v */
    KL_HDR_FROM,    /* f */
    KL_HDR_TO,      /* t */
    KL_HDR_CALL_ID, /* i */
    KL_HDR_CSEQ,
    KL_HDR_MAX_FORWARDS,
    KL_HDR_CONTENT_LENGTH, /* l */
    KL_HDR_CONTENT_TYPE,   /* c */
    KL_HDR_ROUTE,
    KL_HDR_RECORD_ROUTE,
    KL_HDR_CONTACT, /* m */
    KL_HDR_USER_AGENT,
    KL_HDR_PROXY_REQUIRE,
    KL_HDR_REQUIRE,
    KL_HDR_SUPPORTED, /* k */
    KL_HDR_ALLOW,
    KL_HDR_RETRY_AFTER,
    KL_HDR_COUNT
} kl_hdr_id_t;

typedef enum {
    KL_M_OTHER = 0,
    KL_M_INVITE,
    KL_M_ACK,
    KL_M_BYE,
    KL_M_CANCEL,
    KL_M_OPTIONS,
    KL_M_REGISTER,
    KL_M_MESSAGE,
    KL_M_INFO,
    KL_M_UPDATE,
    KL_M_PRACK,
    KL_M_SUBSCRIBE,
    KL_M_NOTIFY,
    KL_M_REFER,
    KL_M_PUBLISH,
} kl_method_t;

/* One header line as received. A line may hold several comma-separated
 * values (Via, Route); continuation lines belong to the line before. */
typedef struct kl_sip_hdr {
    uint32_t off;       /* start of the line (the name) */
    uint32_t len;       /* through its CRLF, continuation lines included */
    uint32_t value_off; /* first byte of the value, leading whitespace skipped */
    uint32_t value_len; /* up to the final CRLF, trailing whitespace dropped */
    uint16_t name_len;
    uint8_t id; /* kl_hdr_id_t */
} kl_sip_hdr_t;

#define KL_SIP_MAX_HDRS 128

typedef struct kl_sip_msg {
    char *buf;       /* owned copy of the message, NUL-terminated at buf[len] */
    size_t len;      /* start line + headers + body (bytes past Content-Length dropped) */
    size_t hdr_len;  /* start line + header section through the blank line */
    size_t body_len; /* body = buf + hdr_len */
    kl_sip_hdr_t hdrs[KL_SIP_MAX_HDRS];
    size_t nhdrs;
    int first[KL_HDR_COUNT]; /* index of the first header of each id, -1 if absent */

    bool is_request;
    kl_method_t method;   /* request method, or the CSeq method of a response */
    int status;           /* response status code */
    osip_message_t *osip; /* the header section parsed by libosip2 */
} kl_sip_msg_t;

/* Why a message was refused, and how to answer if it can be answered. */
typedef struct kl_sip_verdict {
    int code;           /* 0: drop silently (junk, a response, an ACK); else 4xx/5xx to send */
    const char *reason; /* reason phrase saying what is wrong: "Bad Request - Missing Call-ID" */
    const char *why;    /* short log/metrics token: "junk", "missing_call_id", "bad_cseq" ... */
} kl_sip_verdict_t;

/* Initialises libosip2 once (parser_init, a silent trace function) before
 * any worker starts; kl_sip_shutdown() is its counterpart. Any thread. */
int kl_sip_init(void);
void kl_sip_shutdown(void);

/* Parses <len> bytes at <buf> (one datagram, or one framed stream message).
 * <stream>: Content-Length is mandatory and must match exactly.
 * Returns KL_OK with <m> filled (free with kl_sip_msg_free), or KL_EPROTO
 * with <v> saying whether and how to answer; <m> is then left empty but safe
 * to free. On KL_EPROTO for a request whose Via, From, To, Call-ID and CSeq
 * lines could be found, v->code is 400 (or 505, 513, 416) and the raw header
 * index in <m> is still usable by kl_sip_reply_raw(). */
int kl_sip_msg_parse(kl_sip_msg_t *m, const char *buf, size_t len, bool stream,
                     kl_sip_verdict_t *v);

/* Frees what <m> holds (not <m> itself). Accepts a zeroed or failed msg. */
void kl_sip_msg_free(kl_sip_msg_t *m);

/* Request checks of RFC 3261 §8.2 and §16.3 that need the parsed message:
 * SIP version (505), Request-URI scheme (sip, sips, tel, urn: else 416),
 * mandatory headers (Via, From, To, Call-ID, CSeq: 400 naming the header),
 * CSeq number and method = request method (400), Max-Forwards syntax (400)
 * and value 0 (483), Proxy-Require (420; the caller adds Unsupported). Returns KL_OK, or KL_EPROTO
 * with <v> filled. An ACK never gets an answer: v->code 0. */
int kl_sip_msg_check_request(const kl_sip_msg_t *m, kl_sip_verdict_t *v);

/* Response checks: a status line 100..699, Via, Call-ID, CSeq present.
 * Returns KL_OK or KL_EPROTO (responses are never answered). */
int kl_sip_msg_check_response(const kl_sip_msg_t *m);

/* Header access on the raw index. kl_sip_hdr_next returns the index of the
 * next header with <id> after index <after> (-1 to start), or -1. */
int kl_sip_hdr_next(const kl_sip_msg_t *m, kl_hdr_id_t id, int after);
/* The value of the first header with <id>, or NULL (*len set when found). */
const char *kl_sip_hdr_value(const kl_sip_msg_t *m, kl_hdr_id_t id, size_t *len);
/* Same by name, case-insensitive, compact forms included. */
int kl_sip_hdr_find_name(const kl_sip_msg_t *m, const char *name, int after);

/* Max-Forwards value, -1 when absent, -2 when malformed. */
int kl_sip_msg_max_forwards(const kl_sip_msg_t *m);

kl_method_t kl_sip_method_from_str(const char *s, size_t len);
const char *kl_sip_method_name(kl_method_t m); /* NULL for KL_M_OTHER */

/* ---- building messages keel originates ---- */

/* Builds a response to request <req> into <out>: status line, every Via line
 * of the request copied byte for byte (so the client matches it), From, To
 * (a To tag <to_tag> added when the request's To has none and <to_tag> is not
 * NULL), Call-ID, CSeq copied, then <extra> (complete header lines with CRLFs,
 * or NULL), Content-Length: 0. Works from the raw header index, so it can
 * answer a request libosip2 refused, or one missing a header (what is
 * there is copied). Returns the length written, or a negative KL_E*
 * (KL_ETOOBIG when <outcap> is too small, KL_EPROTO without a Via). */
int kl_sip_reply_raw(const kl_sip_msg_t *req, int code, const char *reason, const char *to_tag,
                     const char *extra, char *out, size_t outcap);

/* ---- splicing: forwarding edits the received bytes ---- */

typedef struct kl_splice {
    size_t off;      /* where, in the source buffer */
    size_t del;      /* bytes removed from there */
    const char *ins; /* bytes inserted there (may be NULL with inslen 0) */
    size_t inslen;
} kl_splice_t;

/* Writes <src> with <edits> applied (sorted by off, non-overlapping) into
 * <out>, then adjusts nothing else. Returns the length, or KL_ETOOBIG /
 * KL_EINVAL (unsorted or overlapping edits, or out of range). */
int kl_splice_apply(const char *src, size_t len, const kl_splice_t *edits, size_t nedits, char *out,
                    size_t outcap);

/* Edit helpers: each fills one kl_splice_t (to pass to kl_splice_apply) and
 * returns KL_OK or KL_ENOENT.
 * - first_value_range: the byte range of the first value of the first header
 *   with <id> (for a comma list "a, b" that is "a"; for one value per line,
 *   the whole line), with whether it is the line's only value. Used to pop
 *   the top Route or our own top Via.
 * - kl_sip_edit_pop_first: removes the first value of header <id> (the whole
 *   line when it is the only value; "a, " when the line has more).
 * - kl_sip_edit_max_forwards: replaces the Max-Forwards value with <value>
 *   (digits written into <scratch>, which must outlive the apply). */
int kl_sip_edit_pop_first(const kl_sip_msg_t *m, kl_hdr_id_t id, kl_splice_t *e);
int kl_sip_edit_max_forwards(const kl_sip_msg_t *m, int value, char scratch[8], kl_splice_t *e);

/* Range of the first value of the top header <id>: [*off, *off + *len). */
int kl_sip_first_value_range(const kl_sip_msg_t *m, kl_hdr_id_t id, size_t *off, size_t *len);

/* Offset where new top-most header lines go: right after the start line. */
size_t kl_sip_msg_headers_off(const kl_sip_msg_t *m);

#endif
