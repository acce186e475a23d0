/* Token buckets for admission control (DESIGN.md "Admission"): one bucket
 * for a global rate (new dialogs per second), and a fixed-size table of
 * per-source buckets.
 *
 * A bucket holds up to <burst> tokens and gains <rate> per second. Tokens
 * are counted in thousandths, so one millisecond adds exactly <rate> of
 * them: integer arithmetic with no rounding drift over any run, and a
 * refill that saturates before it multiplies, so no overflow after any gap
 * (a year of idleness included). A clock that goes back adds nothing.
 *
 * Time is a parameter. Nothing here is thread-safe: a bucket or a table
 * belongs to one worker. */
#ifndef KL_CORE_LIMITER_H
#define KL_CORE_LIMITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_bucket {
    uint64_t milli;   /* tokens x 1000 */
    uint64_t last_ms; /* time of the last refill */
    uint32_t rate;    /* tokens per second; 0: unlimited */
    uint32_t burst;   /* capacity in tokens */
} kl_bucket_t;

/* Starts <b> full. <rate> 0 makes a bucket that never refuses; <burst> 0
 * means one second's worth (<rate>). */
void kl_bucket_init(kl_bucket_t *b, uint32_t rate, uint32_t burst, uint64_t now_ms);

/* Changes <b>'s rate and burst (a reload) keeping its tokens, capped to the
 * new burst. */
void kl_bucket_configure(kl_bucket_t *b, uint32_t rate, uint32_t burst, uint64_t now_ms);

/* Takes <n> tokens if <b> has them all and returns true; otherwise takes
 * none and returns false. */
bool kl_bucket_take(kl_bucket_t *b, uint32_t n, uint64_t now_ms);

/* Whole tokens available now. UINT64_MAX for an unlimited bucket. */
uint64_t kl_bucket_tokens(kl_bucket_t *b, uint64_t now_ms);

/* Milliseconds until <n> tokens will be there (0: now), for Retry-After.
 * UINT64_MAX when <n> exceeds the burst: it never will. */
uint64_t kl_bucket_wait_ms(kl_bucket_t *b, uint32_t n, uint64_t now_ms);

/* Per-source buckets: a fixed-capacity open-addressing table (linear
 * probing, backward-shift deletion), keyed by a few bytes that name the
 * source (its IP address, in network order). When it is full, a new source
 * evicts the least recently used one: an entry that has been idle longest
 * is also the one most likely refilled to full, so little is lost. Keys
 * are hashed with SipHash-1-3 under the caller's random <seed>, so a
 * spoofing sender cannot aim its addresses at one probe chain.
 * Keys longer than KL_SRCLIMIT_KEY_MAX are told apart by their full hash,
 * their length and their first KL_SRCLIMIT_KEY_MAX bytes. */
#define KL_SRCLIMIT_KEY_MAX 32

typedef struct kl_srclimit kl_srclimit_t;

/* Returns a new table for up to <capacity> sources (1 .. 2^30), allocated
 * once, here; NULL on a bad capacity or no memory. Free with
 * kl_srclimit_free(). */
kl_srclimit_t *kl_srclimit_new(size_t capacity, uint64_t seed);

/* Frees <t>; accepts NULL. */
void kl_srclimit_free(kl_srclimit_t *t);

/* Takes one token from the bucket of source <key> (borrowed, <keylen>
 * bytes), creating it full with <rate>/<burst> on first sight; a bucket
 * whose <rate> or <burst> changed (a reload) is reconfigured in place.
 * Returns true if the request may pass. <rate> 0 means unlimited: true,
 * and the table is not touched. */
bool kl_srclimit_take(kl_srclimit_t *t, const void *key, size_t keylen, uint32_t rate,
                      uint32_t burst, uint64_t now_ms);

/* Sources in the table now. */
size_t kl_srclimit_count(const kl_srclimit_t *t);

/* Sources evicted to make room, ever. */
uint64_t kl_srclimit_evictions(const kl_srclimit_t *t);

#endif
