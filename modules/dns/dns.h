/* The dns module's configuration (DESIGN.md "DNS"): resolver tiers tried in
 * order, timeouts, hedging, serve-stale. Resolution itself arrives with the
 * DNS issue; the section is validated now so operators' files stay stable. */
#ifndef KL_MODULES_DNS_H
#define KL_MODULES_DNS_H

#include "core/module.h"

#include <stddef.h>
#include <stdint.h>

typedef struct kl_dns_server {
    char *addr; /* as written: "127.0.0.1:5353", "[::1]:53", "10.0.0.2" */
    char host[64];
    uint16_t port;
} kl_dns_server_t;

typedef struct kl_dns_tier {
    char *name;
    char **servers;
    size_t nservers;
    kl_dns_server_t *parsed;
} kl_dns_tier_t;

typedef struct kl_dns_conf {
    kl_dns_tier_t *tiers; /* none: /etc/resolv.conf */
    size_t ntiers;
    uint32_t timeout;     /* ms, 500 */
    uint32_t hedge_after; /* ms, 150 */
    unsigned max_fails;   /* 2 */
    uint32_t max_stale;   /* ms, 1 h */
} kl_dns_conf_t;

extern const kl_module_t kl_dns_module;

struct kl_worker;
struct kl_stats;
/* Adds the resolvers' gauges of worker <w> into <into> (worker thread). */
void kl_dns_collect(struct kl_worker *w, struct kl_stats *into);

#endif
