/* libFuzzer harness for DNS answer handling (modules/dns/answer.h): the
 * bytes of one DNS message, as a resolver would send them, parsed as the
 * answer to each query type keel asks (A, AAAA, SRV, NAPTR), and their
 * TTLs (the answer section's smallest, the SOA minimum of a negative
 * answer). The parse must never read outside the message, and what it
 * returns must be sound: records within bounds, strings terminated.
 * Links keel_core. */
#include "modules/dns/answer.h"
#include "core/errors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const kl_dns_type_t types[] = {KL_DNS_T_A, KL_DNS_T_AAAA, KL_DNS_T_SRV, KL_DNS_T_NAPTR};

static void check(const kl_dns_answer_t *a)
{
    if (a->n > KL_DNS_MAX_RECORDS)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const kl_dns_rr_t *r = &a->rr[i];

        /* terminated within their buffers (strnlen reads no further) */
        if (strnlen(r->target, sizeof(r->target)) == sizeof(r->target) ||
            strnlen(r->flags, sizeof(r->flags)) == sizeof(r->flags) ||
            strnlen(r->service, sizeof(r->service)) == sizeof(r->service) ||
            strnlen(r->replacement, sizeof(r->replacement)) == sizeof(r->replacement))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static kl_dns_answer_t a;
    unsigned char *buf;
    uint32_t ttl = 0, neg = 0;
    int rc;

    if (size > 65535)
        return 0;
    /* an exact-size copy: ASan catches a read one byte past the message */
    buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    rc = kl_dns_answer_ttls(buf, (int)size, &ttl, &neg);
    if (rc != KL_OK && rc != KL_EPROTO)
        abort();
    if ((ttl | neg) & 0x80000000u)
        abort(); /* RFC 2181 §8: a TTL is 31 bits */
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        rc = kl_dns_answer_parse(types[t], buf, (int)size, &a);
        if (rc == KL_OK)
            check(&a);
        else if (rc != KL_EPROTO)
            abort();
    }
    free(buf);
    return 0;
}
