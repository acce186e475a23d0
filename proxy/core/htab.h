/* An intrusive hash table keyed by strings: entries embed a kl_hnode_t and
 * own their key bytes; the table never allocates per entry. Buckets double
 * when the load passes 1. Single-threaded (a worker's own tables). */
#ifndef KL_CORE_HTAB_H
#define KL_CORE_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct kl_hnode {
    struct kl_hnode *next;
    uint64_t hash;
    const char *key; /* borrowed from the entry */
    size_t keylen;
} kl_hnode_t;

typedef struct kl_htab {
    kl_hnode_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
} kl_htab_t;

/* Returns KL_OK or KL_ENOMEM. */
int kl_htab_init(kl_htab_t *t, size_t initial);
/* Frees the buckets, not the entries. Accepts a zeroed table. */
void kl_htab_free(kl_htab_t *t);

uint64_t kl_hash(const char *key, size_t len);

/* Adds <n> with <key> (borrowed: it must live as long as the entry is in
 * the table). Duplicates are allowed; lookups find the newest. */
void kl_htab_add(kl_htab_t *t, kl_hnode_t *n, const char *key, size_t len);
kl_hnode_t *kl_htab_get(const kl_htab_t *t, const char *key, size_t len);
/* Removes <n> if it is in the table. */
void kl_htab_del(kl_htab_t *t, kl_hnode_t *n);

#define kl_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
