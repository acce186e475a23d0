/* What keel takes from a DNS answer (RFC 3263 lookups): the records it
 * asked for, parsed by c-ares, and the TTLs c-ares 1.18 does not return for
 * SRV and NAPTR records (the smallest TTL of the answer section, and for a
 * negative answer the SOA minimum of the authority section, RFC 2308).
 * Pure functions over the wire bytes: no state, fuzzed by fuzz_dns_answer. */
#ifndef KL_MODULES_DNS_ANSWER_H
#define KL_MODULES_DNS_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KL_DNS_MAX_RECORDS 32

typedef enum {
    KL_DNS_T_A = 1,
    KL_DNS_T_AAAA = 28,
    KL_DNS_T_SRV = 33,
    KL_DNS_T_NAPTR = 35,
} kl_dns_type_t;

typedef struct kl_dns_rr {
    /* A / AAAA */
    int family;
    unsigned char addr[16];
    /* SRV */
    uint16_t priority, weight, port;
    char target[256];
    /* NAPTR */
    uint16_t order, preference;
    char flags[16], service[32], replacement[256];
} kl_dns_rr_t;

typedef struct kl_dns_answer {
    kl_dns_rr_t rr[KL_DNS_MAX_RECORDS];
    size_t n;
    uint32_t ttl;     /* smallest TTL in the answer section (0 when there is none) */
    uint32_t neg_ttl; /* negative answer: min(SOA TTL, SOA minimum); 0 when no SOA */
} kl_dns_answer_t;

/* Parses the answer <abuf> (<alen> bytes) to a query of <type>. Returns
 * KL_OK (records in <out>, possibly none), or KL_EPROTO when the message is
 * malformed. Never reads outside <abuf>. */
int kl_dns_answer_parse(kl_dns_type_t type, const unsigned char *abuf, int alen,
                        kl_dns_answer_t *out);

/* The TTLs of <abuf>: *<ttl> the smallest of the answer section, *<neg> the
 * negative TTL from the authority section's SOA. KL_OK or KL_EPROTO. */
int kl_dns_answer_ttls(const unsigned char *abuf, int alen, uint32_t *ttl, uint32_t *neg);

#endif
