/* Stream framing for SIP over TCP/TLS (RFC 3261 §18.3), with no knowledge of
 * SIP beyond the start of a message, header lines and Content-Length.
 * Shared by transport/tcp.c and the UDP checks in sip/msg.c. */
#ifndef KL_TRANSPORT_FRAMING_H
#define KL_TRANSPORT_FRAMING_H

#include <stdbool.h>
#include <stddef.h>

typedef struct kl_frame {
    size_t skip;     /* leading CRLFs before the start line (keep-alives), to drop */
    size_t hdr_len;  /* bytes of the header section, through the blank line */
    size_t body_len; /* Content-Length */
    bool has_cl;     /* a Content-Length (or compact l:) header was found */
} kl_frame_t;

/* Looks for one message at the start of <buf>. Scans the whole header
 * section on every call: a stream reader should call it once the blank line
 * is known to be there (see tcp.c), not on every read.
 * Returns KL_OK with *<f> filled when the header section is complete (the
 * whole message is f->skip + f->hdr_len + f->body_len bytes; the body may not
 * all be there yet), KL_EINCOMPLETE when the header section is not complete
 * yet, KL_EPROTO when Content-Length is malformed, negative, repeated with
 * different values, or (<need_cl>, stream transports) missing, and
 * KL_ETOOBIG when the header section, or header section plus Content-Length,
 * exceeds <max>. A Content-Length value is digits with optional whitespace
 * around them; one past 2^31-1 is KL_EPROTO. The header name matches
 * case-insensitively, compact "l" included, with optional whitespace before
 * the colon. Any thread (no state). Bare-LF line ends
 * are accepted as the RFC's tolerant reading allows. */
int kl_frame_find(const char *buf, size_t len, size_t max, bool need_cl, kl_frame_t *f);

/* Cheap junk checks for streams, so that a peer speaking something else (TLS
 * to a TCP port, HTTP without a SIP-Version, binary) is cut off at once
 * instead of at the header timeout. kl_frame_start_byte_ok(): <ch> may begin
 * a message (a token character: a method name or "SIP/2.0").
 * kl_frame_start_line_ok(): <line> (without its LF; a trailing CR is
 * ignored) has the shape of a SIP request line ("METHOD SP uri SP SIP/2.0")
 * or status line ("SIP/2.0 SP code ..."). Neither judges anything further. */
bool kl_frame_start_byte_ok(char ch);
bool kl_frame_start_line_ok(const char *line, size_t len);

#endif
