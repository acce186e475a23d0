#include "sip/branch.h"

#include "core/errors.h"

#include <openssl/rand.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#define BRANCH_PREFIX     "z9hG4bKk"
#define BRANCH_PREFIX_LEN 8

void kl_branch_gen_init(kl_branch_gen_t *g, unsigned worker)
{
    uint64_t k[2];

    if (RAND_bytes((unsigned char *)k, sizeof(k)) != 1) {
        /* no entropy source: still unique within the process */
        k[0] = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
        k[1] = (uint64_t)(uintptr_t)g ^ 0xbf58476d1ce4e5b9ull;
    }
    g->k0 = k[0];
    g->k1 = k[1];
    g->counter = 0;
    g->worker = worker & 0xff;
}

/* A keyed bijection of the counter (splitmix64 steps around two random
 * keys): unique within the process, not predictable from outside. */
static uint64_t gen_next(kl_branch_gen_t *g)
{
    uint64_t x = ++g->counter ^ g->k0;

    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 31;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 29;
    return x ^ g->k1;
}

int kl_branch_make(kl_branch_gen_t *g, char *out, size_t outcap)
{
    int n = snprintf(out, outcap, BRANCH_PREFIX "%02x.%016llx", g->worker,
                     (unsigned long long)gen_next(g));

    return (n > 0 && (size_t)n < outcap) ? n : KL_ETOOBIG;
}

int kl_branch_tag(kl_branch_gen_t *g, char *out, size_t outcap)
{
    int n = snprintf(out, outcap, "%016llx", (unsigned long long)(gen_next(g) ^ g->k1));

    return (n > 0 && (size_t)n < outcap) ? n : KL_ETOOBIG;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int kl_branch_worker(const char *branch, size_t len)
{
    int hi, lo;

    if (len < BRANCH_PREFIX_LEN + 3 + 16 || memcmp(branch, BRANCH_PREFIX, BRANCH_PREFIX_LEN) != 0)
        return -1;
    hi = hexval(branch[BRANCH_PREFIX_LEN]);
    lo = hexval(branch[BRANCH_PREFIX_LEN + 1]);
    if (hi < 0 || lo < 0 || branch[BRANCH_PREFIX_LEN + 2] != '.')
        return -1;
    return hi * 16 + lo;
}
