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

/* Looks for one message at the start of <buf>.
 * Returns KL_OK with *<f> filled when the header section is complete (the
 * whole message is f->skip + f->hdr_len + f->body_len bytes; the body may not
 * all be there yet), KL_EINCOMPLETE when the header section is not complete
 * yet, KL_EPROTO when Content-Length is malformed, negative, repeated with
 * different values, or (<need_cl>, stream transports) missing, and
 * KL_ETOOBIG when the header section alone exceeds <max>. Bare-LF line ends
 * are accepted as the RFC's tolerant reading allows. */
int kl_frame_find(const char *buf, size_t len, size_t max, bool need_cl, kl_frame_t *f);

#endif
