/* Branches and tags keel generates.
 *
 * A branch is "z9hG4bK" (RFC 3261 §8.1.1.7) + "k" + the owning worker in two
 * hex digits + "." + 16 hex digits unique in the process and unguessable
 * across instances: a per-worker 64-bit counter mixed with a random key
 * from RAND_bytes (SipHash-like rounds), so no RAND_bytes call per branch.
 * Worker thread only (the generator is per worker). */
#ifndef KL_SIP_BRANCH_H
#define KL_SIP_BRANCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct kl_branch_gen {
    uint64_t k0, k1;
    uint64_t counter;
    unsigned worker;
} kl_branch_gen_t;

void kl_branch_gen_init(kl_branch_gen_t *g, unsigned worker);

/* Writes a new branch (NUL-terminated). Returns its length or KL_ETOOBIG. */
int kl_branch_make(kl_branch_gen_t *g, char *out, size_t outcap);

/* The worker a branch of ours names, or -1 when it is not one of ours. */
int kl_branch_worker(const char *branch, size_t len);

/* A tag for To headers keel answers with: 16 hex digits. Returns length. */
int kl_branch_tag(kl_branch_gen_t *g, char *out, size_t outcap);

#endif
