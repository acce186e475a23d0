/* A fast non-cryptographic generator for load spreading and jitter
 * (probe schedules, SRV weights, probabilistic shedding). Its state is the
 * caller's (one per worker structure): no globals. Seed with RAND_bytes or
 * anything non-zero; never for branches, tags or cookies (OpenSSL's
 * RAND_bytes makes those). */
#ifndef KL_CORE_RAND_H
#define KL_CORE_RAND_H

#include <stdint.h>

/* xorshift64 (Marsaglia): the next value of *<state> (non-zero). */
static inline uint64_t kl_xorshift64(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    return x;
}

#endif
