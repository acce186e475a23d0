/* Record-Route cookies (DESIGN.md "Threads and state"): keel's Record-Route
 * carries ;kc=TOKEN naming the zone and destination of the dialog, signed
 * with HMAC-SHA256, so any keel instance sharing the secret can route an
 * in-dialog request with no state, and a forged or tampered token is refused.
 * Token = base64url (no padding) of: version(1) flags(1) issued(4, BE)
 * zone_len(1) zone dest_len(1) dest tag(16: HMAC-SHA256 truncated). Only
 * characters legal in a SIP URI parameter. Any thread. */
#ifndef KL_SIP_COOKIE_H
#define KL_SIP_COOKIE_H

#include <stddef.h>
#include <stdint.h>

typedef struct kl_cookie {
    char zone[64];
    char dest[256];
    uint8_t flags;   /* the caller side's transport kind */
    uint32_t issued; /* seconds since the epoch */
} kl_cookie_t;

#define KL_COOKIE_MAX 512 /* longest token, with the NUL */

/* Writes the token for <c> signed with <secret> into <out> (NUL-terminated).
 * Returns its length, or KL_ETOOBIG (names too long, or <outcap> short). */
int kl_cookie_encode(const kl_cookie_t *c, const char *secret, size_t secret_len, char *out,
                     size_t outcap);

/* Verifies <tok> against each of <secrets> (the current one first, then
 * previous ones still accepted) and fills <out>. Returns KL_OK, KL_EPERM
 * (bad signature) or KL_EINVAL (malformed). */
int kl_cookie_decode(const char *tok, size_t len, const char *const *secrets, size_t nsecrets,
                     kl_cookie_t *out);

#endif
