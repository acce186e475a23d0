#include "core/htab.h"

#include "core/errors.h"

#include <stdlib.h>
#include <string.h>

uint64_t kl_hash(const char *key, size_t len)
{
    /* FNV-1a, then a final mix so the low bits used for buckets are good */
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

int kl_htab_init(kl_htab_t *t, size_t initial)
{
    size_t n = 16;

    while (n < initial)
        n <<= 1;
    t->buckets = calloc(n, sizeof(*t->buckets));
    if (t->buckets == NULL)
        return KL_ENOMEM;
    t->nbuckets = n;
    t->count = 0;
    return KL_OK;
}

void kl_htab_free(kl_htab_t *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->nbuckets = 0;
    t->count = 0;
}

static void htab_grow(kl_htab_t *t)
{
    size_t n = t->nbuckets * 2;
    kl_hnode_t **b = calloc(n, sizeof(*b));

    if (b == NULL)
        return; /* keep the longer chains */
    for (size_t i = 0; i < t->nbuckets; i++) {
        kl_hnode_t *e = t->buckets[i];

        while (e != NULL) {
            kl_hnode_t *next = e->next;
            size_t j = e->hash & (n - 1);

            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

void kl_htab_add(kl_htab_t *t, kl_hnode_t *n, const char *key, size_t len)
{
    size_t i;

    if (t->count >= t->nbuckets)
        htab_grow(t);
    n->hash = kl_hash(key, len);
    n->key = key;
    n->keylen = len;
    i = n->hash & (t->nbuckets - 1);
    n->next = t->buckets[i];
    t->buckets[i] = n;
    t->count++;
}

kl_hnode_t *kl_htab_get(const kl_htab_t *t, const char *key, size_t len)
{
    uint64_t h = kl_hash(key, len);

    for (kl_hnode_t *e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->next) {
        if (e->hash == h && e->keylen == len && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

void kl_htab_del(kl_htab_t *t, kl_hnode_t *n)
{
    kl_hnode_t **pp = &t->buckets[n->hash & (t->nbuckets - 1)];

    for (; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            t->count--;
            return;
        }
    }
}
