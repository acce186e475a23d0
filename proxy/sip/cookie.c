#include "sip/cookie.h"

#include "core/errors.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <string.h>

#define COOKIE_VERSION 1
#define COOKIE_TAG     16
#define COOKIE_RAW_MAX (1 + 1 + 4 + 1 + 63 + 1 + 255 + COOKIE_TAG)

static const char b64u[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64u_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0, i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];

        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
        out[o++] = b64u[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8);

        out[o++] = b64u[(v >> 18) & 63];
        out[o++] = b64u[(v >> 12) & 63];
        out[o++] = b64u[(v >> 6) & 63];
    }
    return o;
}

static int b64u_val(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Returns the decoded length or -1. */
static int b64u_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (n % 4 == 1)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = b64u_val(in[i]);

        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    /* leftover bits must be zero (canonical encoding only) */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (int)o;
}

static void cookie_tag(const char *secret, size_t secret_len, const uint8_t *data, size_t n,
                       uint8_t tag[COOKIE_TAG])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    HMAC(EVP_sha256(), secret, (int)secret_len, data, n, md, &mdlen);
    memcpy(tag, md, COOKIE_TAG);
}

int kl_cookie_encode(const kl_cookie_t *c, const char *secret, size_t secret_len, char *out,
                     size_t outcap)
{
    uint8_t raw[COOKIE_RAW_MAX];
    size_t zl = strnlen(c->zone, sizeof(c->zone)), dl = strnlen(c->dest, sizeof(c->dest));
    size_t n = 0, enc;

    if (zl > 63 || dl > 255)
        return KL_ETOOBIG;
    raw[n++] = COOKIE_VERSION;
    raw[n++] = c->flags;
    raw[n++] = (uint8_t)(c->issued >> 24);
    raw[n++] = (uint8_t)(c->issued >> 16);
    raw[n++] = (uint8_t)(c->issued >> 8);
    raw[n++] = (uint8_t)c->issued;
    raw[n++] = (uint8_t)zl;
    memcpy(raw + n, c->zone, zl);
    n += zl;
    raw[n++] = (uint8_t)dl;
    memcpy(raw + n, c->dest, dl);
    n += dl;
    cookie_tag(secret, secret_len, raw, n, raw + n);
    n += COOKIE_TAG;
    enc = (n * 4 + 2) / 3;
    if (enc + 1 > outcap)
        return KL_ETOOBIG;
    enc = b64u_encode(raw, n, out);
    out[enc] = '\0';
    return (int)enc;
}

int kl_cookie_decode(const char *tok, size_t len, const char *const *secrets, size_t nsecrets,
                     kl_cookie_t *out)
{
    uint8_t raw[COOKIE_RAW_MAX + 4];
    uint8_t tag[COOKIE_TAG];
    size_t zl, dl, body;
    int n;

    if (len == 0 || len > (COOKIE_RAW_MAX * 4 + 2) / 3)
        return KL_EINVAL;
    n = b64u_decode(tok, len, raw, sizeof(raw));
    if (n < 1 + 1 + 4 + 1 + 1 + COOKIE_TAG || raw[0] != COOKIE_VERSION)
        return KL_EINVAL;
    zl = raw[6];
    if (7 + zl + 1 > (size_t)n)
        return KL_EINVAL;
    dl = raw[7 + zl];
    body = 8 + zl + dl;
    if (body + COOKIE_TAG != (size_t)n)
        return KL_EINVAL;
    for (size_t i = 0; i < nsecrets; i++) {
        if (secrets[i] == NULL)
            continue;
        cookie_tag(secrets[i], strlen(secrets[i]), raw, body, tag);
        if (CRYPTO_memcmp(tag, raw + body, COOKIE_TAG) == 0) {
            memset(out, 0, sizeof(*out));
            out->flags = raw[1];
            out->issued = ((uint32_t)raw[2] << 24) | ((uint32_t)raw[3] << 16) |
                          ((uint32_t)raw[4] << 8) | raw[5];
            memcpy(out->zone, raw + 7, zl);
            memcpy(out->dest, raw + 8 + zl, dl);
            return KL_OK;
        }
    }
    return KL_EPERM;
}
