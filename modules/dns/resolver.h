/* The resolvers of one worker (DESIGN.md "DNS"): one c-ares channel per
 * server, on the worker's event base, because c-ares 1.18 remembers no dead
 * server; keel keeps each resolver's health itself. A query goes to the
 * first tier with a healthy resolver; unanswered after hedge_after it also
 * goes to the next tier, the first answer wins and late ones are ignored; a
 * failed resolver passes the query to the next tier at once. A resolver that
 * times out max_fails times in a row is down and probed every 2 s. Worker
 * thread only. */
#ifndef KL_MODULES_DNS_RESOLVER_H
#define KL_MODULES_DNS_RESOLVER_H

#include "modules/dns/dns.h"

#include <stdbool.h>
#include <stdint.h>

struct event_base;
struct kl_stats;
struct kl_log_ctx;

typedef struct kl_resolvers kl_resolvers_t;

/* The answer to a query: <status> is KL_OK (an answer, <abuf> set: records
 * or NODATA), KL_ENOENT (NXDOMAIN, <abuf> set) or KL_ETIMEDOUT / KL_ERR
 * (every resolver tried failed, <abuf> NULL). */
typedef void (*kl_dns_cb)(void *arg, int status, const unsigned char *abuf, int alen);

/* Returns new resolvers for <conf> (its tiers; none: 127.0.0.1:53) on
 * <base>, or NULL. <stats> and <log> are borrowed. */
kl_resolvers_t *kl_resolvers_new(struct event_base *base, const kl_dns_conf_t *conf,
                                 struct kl_stats *stats, const struct kl_log_ctx *log);

/* Cancels every query (their callbacks are not called) and frees. */
void kl_resolvers_free(kl_resolvers_t *r);

/* Asks <name> <type> (a kl_dns_type_t). <cb> is called exactly once, later,
 * unless kl_resolvers_free() comes first. Returns KL_OK or KL_ENOMEM (then
 * <cb> is never called). */
int kl_resolvers_query(kl_resolvers_t *r, const char *name, int type, kl_dns_cb cb, void *arg);

/* Probes down resolvers whose probe is due; call it about once a second. */
void kl_resolvers_tick(kl_resolvers_t *r, uint64_t now_ms);

/* Adds keel_dns_resolver_up for each resolver into <into>. */
void kl_resolvers_collect(const kl_resolvers_t *r, struct kl_stats *into);

#endif
