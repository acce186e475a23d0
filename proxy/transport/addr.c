/* Socket address helpers: numeric literals only, no resolver. */
#include "transport/transport.h"

#include "core/errors.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int kl_addr_from_str(const char *host, uint16_t port, kl_addr_t *out)
{
    char h[64];
    size_t len;

    if (host == NULL || out == NULL)
        return KL_EINVAL;
    len = strlen(host);
    if (len >= sizeof(h))
        return KL_EINVAL;
    if (len >= 2 && host[0] == '[' && host[len - 1] == ']') {
        memcpy(h, host + 1, len - 2);
        h[len - 2] = '\0';
    } else {
        memcpy(h, host, len + 1);
    }
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, h, &out->u.in.sin_addr) == 1) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_port = htons(port);
        out->len = sizeof(out->u.in);
        return KL_OK;
    }
    if (inet_pton(AF_INET6, h, &out->u.in6.sin6_addr) == 1) {
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons(port);
        out->len = sizeof(out->u.in6);
        return KL_OK;
    }
    return KL_EINVAL;
}

int kl_addr_host(const kl_addr_t *a, char *out, size_t outlen)
{
    const void *src = a->u.sa.sa_family == AF_INET6 ? (const void *)&a->u.in6.sin6_addr
                                                    : (const void *)&a->u.in.sin_addr;

    if (outlen == 0)
        return KL_EINVAL;
    if (a->u.sa.sa_family != AF_INET && a->u.sa.sa_family != AF_INET6) {
        out[0] = '\0';
        return KL_EINVAL;
    }
    if (inet_ntop(a->u.sa.sa_family == AF_INET6 ? AF_INET6 : AF_INET, src, out,
                  (socklen_t)outlen) == NULL) {
        out[0] = '\0';
        return KL_EINVAL;
    }
    return KL_OK;
}

uint16_t kl_addr_port(const kl_addr_t *a)
{
    return ntohs(a->u.sa.sa_family == AF_INET6 ? a->u.in6.sin6_port : a->u.in.sin_port);
}

int kl_addr_to_str(const kl_addr_t *a, char *out, size_t outlen)
{
    char h[INET6_ADDRSTRLEN];
    int n;

    if (outlen == 0)
        return KL_EINVAL;
    if (kl_addr_host(a, h, sizeof(h)) != KL_OK) {
        snprintf(out, outlen, "?");
        return KL_EINVAL;
    }
    if (a->u.sa.sa_family == AF_INET6)
        n = snprintf(out, outlen, "[%s]:%u", h, kl_addr_port(a));
    else
        n = snprintf(out, outlen, "%s:%u", h, kl_addr_port(a));
    return n < 0 || (size_t)n >= outlen ? KL_ERANGE : KL_OK;
}

bool kl_addr_eq(const kl_addr_t *a, const kl_addr_t *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_port == b->u.in.sin_port &&
               a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    return false;
}

const char *kl_tp_kind_name(kl_tp_kind_t kind)
{
    static const char *const n[] = {"udp", "tcp", "tls", "ws"};

    return (unsigned)kind < 4 ? n[kind] : "?";
}

const char *kl_tp_kind_via(kl_tp_kind_t kind)
{
    static const char *const n[] = {"UDP", "TCP", "TLS", "WS"};

    return (unsigned)kind < 4 ? n[kind] : "?";
}
