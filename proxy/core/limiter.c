#include "core/limiter.h"

#include <stdlib.h>
#include <string.h>

#define LIMITER_NIL UINT32_MAX

static uint64_t bucket_cap(const kl_bucket_t *b)
{
    return (uint64_t)b->burst * 1000;
}

static void bucket_refill(kl_bucket_t *b, uint64_t now_ms)
{
    uint64_t elapsed, need, cap = bucket_cap(b);

    if (now_ms <= b->last_ms)
        return;
    elapsed = now_ms - b->last_ms;
    b->last_ms = now_ms;
    if (b->milli >= cap) {
        b->milli = cap;
        return;
    }
    need = cap - b->milli;
    /* compare before multiplying: elapsed x rate could overflow after a
     * long gap, and past need / rate ms the bucket is full anyway */
    if (elapsed > need / b->rate)
        b->milli = cap;
    else
        b->milli += elapsed * b->rate;
}

void kl_bucket_init(kl_bucket_t *b, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
    b->rate = rate;
    b->burst = burst ? burst : rate;
    b->last_ms = now_ms;
    b->milli = bucket_cap(b);
}

void kl_bucket_configure(kl_bucket_t *b, uint32_t rate, uint32_t burst, uint64_t now_ms)
{
    if (b->rate != 0)
        bucket_refill(b, now_ms);
    else
        b->milli = (uint64_t)(burst ? burst : rate) * 1000; /* was unlimited: start full */
    if (now_ms > b->last_ms)
        b->last_ms = now_ms;
    b->rate = rate;
    b->burst = burst ? burst : rate;
    if (b->milli > bucket_cap(b))
        b->milli = bucket_cap(b);
}

bool kl_bucket_take(kl_bucket_t *b, uint32_t n, uint64_t now_ms)
{
    uint64_t want = (uint64_t)n * 1000;

    if (b->rate == 0)
        return true;
    bucket_refill(b, now_ms);
    if (b->milli < want)
        return false;
    b->milli -= want;
    return true;
}

uint64_t kl_bucket_tokens(kl_bucket_t *b, uint64_t now_ms)
{
    if (b->rate == 0)
        return UINT64_MAX;
    bucket_refill(b, now_ms);
    return b->milli / 1000;
}

uint64_t kl_bucket_wait_ms(kl_bucket_t *b, uint32_t n, uint64_t now_ms)
{
    uint64_t want = (uint64_t)n * 1000;

    if (b->rate == 0)
        return 0;
    if (n > b->burst)
        return UINT64_MAX;
    bucket_refill(b, now_ms);
    if (b->milli >= want)
        return 0;
    return (want - b->milli + b->rate - 1) / b->rate;
}

/* ---- per-source table ---- */

typedef struct limiter_slot {
    uint64_t hash;
    uint32_t prev, next; /* LRU list by slot index: prev is more recent */
    bool used;
    uint8_t keylen; /* bytes kept in key[], at most KL_SRCLIMIT_KEY_MAX */
    uint32_t fulllen;
    uint8_t key[KL_SRCLIMIT_KEY_MAX];
    kl_bucket_t bucket;
} limiter_slot_t;

struct kl_srclimit {
    size_t capacity;
    size_t count;
    size_t mask;   /* slots - 1, slots a power of two */
    uint32_t head; /* most recently used */
    uint32_t tail; /* least recently used: evicted first */
    uint64_t k0, k1;
    uint64_t evictions;
    limiter_slot_t slots[];
};

static uint64_t limiter_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static void limiter_sipround(uint64_t v[4])
{
    v[0] += v[1];
    v[1] = limiter_rotl(v[1], 13);
    v[1] ^= v[0];
    v[0] = limiter_rotl(v[0], 32);
    v[2] += v[3];
    v[3] = limiter_rotl(v[3], 16);
    v[3] ^= v[2];
    v[0] += v[3];
    v[3] = limiter_rotl(v[3], 21);
    v[3] ^= v[0];
    v[2] += v[1];
    v[1] = limiter_rotl(v[1], 17);
    v[1] ^= v[2];
    v[2] = limiter_rotl(v[2], 32);
}

/* SipHash-1-3 (one compression round, three finalization rounds). */
static uint64_t limiter_hash(const kl_srclimit_t *t, const uint8_t *p, size_t len)
{
    uint64_t v[4] = {t->k0 ^ 0x736f6d6570736575ull, t->k1 ^ 0x646f72616e646f6dull,
                     t->k0 ^ 0x6c7967656e657261ull, t->k1 ^ 0x7465646279746573ull};
    uint64_t m, last = (uint64_t)len << 56;
    size_t i, full = len & ~(size_t)7;

    for (i = 0; i < full; i += 8) {
        m = 0;
        for (int k = 7; k >= 0; k--)
            m = (m << 8) | p[i + (size_t)k];
        v[3] ^= m;
        limiter_sipround(v);
        v[0] ^= m;
    }
    for (size_t k = 0; i + k < len; k++)
        last |= (uint64_t)p[i + k] << (8 * k);
    v[3] ^= last;
    limiter_sipround(v);
    v[0] ^= last;
    v[2] ^= 0xff;
    limiter_sipround(v);
    limiter_sipround(v);
    limiter_sipround(v);
    return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void limiter_unlink(kl_srclimit_t *t, uint32_t i)
{
    limiter_slot_t *s = &t->slots[i];

    if (s->prev != LIMITER_NIL)
        t->slots[s->prev].next = s->next;
    else
        t->head = s->next;
    if (s->next != LIMITER_NIL)
        t->slots[s->next].prev = s->prev;
    else
        t->tail = s->prev;
    s->prev = s->next = LIMITER_NIL;
}

static void limiter_push_front(kl_srclimit_t *t, uint32_t i)
{
    limiter_slot_t *s = &t->slots[i];

    s->prev = LIMITER_NIL;
    s->next = t->head;
    if (t->head != LIMITER_NIL)
        t->slots[t->head].prev = i;
    t->head = i;
    if (t->tail == LIMITER_NIL)
        t->tail = i;
}

/* Moves the entry in slot <from> to the empty slot <to>, keeping its place
 * in the LRU list. */
static void limiter_move(kl_srclimit_t *t, uint32_t from, uint32_t to)
{
    limiter_slot_t *s = &t->slots[to];

    *s = t->slots[from];
    if (s->prev != LIMITER_NIL)
        t->slots[s->prev].next = to;
    else
        t->head = to;
    if (s->next != LIMITER_NIL)
        t->slots[s->next].prev = to;
    else
        t->tail = to;
    t->slots[from].used = false;
}

/* Removes slot <i>'s entry, then shifts back the entries after it that
 * would otherwise become unreachable (no tombstones: probe chains stay as
 * short as the load allows). */
static void limiter_delete(kl_srclimit_t *t, uint32_t i)
{
    uint32_t j = i;

    limiter_unlink(t, i);
    t->slots[i].used = false;
    t->count--;
    for (;;) {
        uint32_t home;

        j = (uint32_t)((j + 1) & t->mask);
        if (!t->slots[j].used)
            break;
        home = (uint32_t)(t->slots[j].hash & t->mask);
        /* it stays if its home lies cyclically in (i, j] */
        if (i <= j ? (i < home && home <= j) : (i < home || home <= j))
            continue;
        limiter_move(t, j, i);
        i = j;
    }
}

kl_srclimit_t *kl_srclimit_new(size_t capacity, uint64_t seed)
{
    kl_srclimit_t *t;
    size_t slots = 8;

    if (capacity == 0 || capacity > ((size_t)1 << 30))
        return NULL;
    while (slots < capacity + capacity / 2) /* load at most 2/3 */
        slots <<= 1;
    t = calloc(1, sizeof(*t) + slots * sizeof(t->slots[0]));
    if (t == NULL)
        return NULL;
    t->capacity = capacity;
    t->mask = slots - 1;
    t->head = t->tail = LIMITER_NIL;
    /* splitmix64 of the seed, twice, for SipHash's two key halves */
    t->k0 = seed + 0x9e3779b97f4a7c15ull;
    t->k0 = (t->k0 ^ (t->k0 >> 30)) * 0xbf58476d1ce4e5b9ull;
    t->k0 = (t->k0 ^ (t->k0 >> 27)) * 0x94d049bb133111ebull;
    t->k0 ^= t->k0 >> 31;
    t->k1 = t->k0 + 0x9e3779b97f4a7c15ull;
    t->k1 = (t->k1 ^ (t->k1 >> 30)) * 0xbf58476d1ce4e5b9ull;
    t->k1 = (t->k1 ^ (t->k1 >> 27)) * 0x94d049bb133111ebull;
    t->k1 ^= t->k1 >> 31;
    return t;
}

void kl_srclimit_free(kl_srclimit_t *t)
{
    free(t);
}

bool kl_srclimit_take(kl_srclimit_t *t, const void *key, size_t keylen, uint32_t rate,
                      uint32_t burst, uint64_t now_ms)
{
    const uint8_t *k = key;
    size_t kept = keylen < KL_SRCLIMIT_KEY_MAX ? keylen : KL_SRCLIMIT_KEY_MAX;
    uint64_t h;
    uint32_t i;
    limiter_slot_t *s;

    if (rate == 0)
        return true;
    if (keylen > UINT32_MAX)
        keylen = UINT32_MAX;
    h = limiter_hash(t, k, keylen);
    for (i = (uint32_t)(h & t->mask); t->slots[i].used; i = (uint32_t)((i + 1) & t->mask)) {
        s = &t->slots[i];
        if (s->hash == h && s->fulllen == keylen && (kept == 0 || memcmp(s->key, k, kept) == 0)) {
            if (s->bucket.rate != rate || s->bucket.burst != (burst ? burst : rate))
                kl_bucket_configure(&s->bucket, rate, burst, now_ms);
            if (t->head != i) {
                limiter_unlink(t, i);
                limiter_push_front(t, i);
            }
            return kl_bucket_take(&s->bucket, 1, now_ms);
        }
    }
    if (t->count >= t->capacity) {
        limiter_delete(t, t->tail);
        t->evictions++;
        /* the shift may have moved entries: find the free slot again */
        i = (uint32_t)(h & t->mask);
        while (t->slots[i].used)
            i = (uint32_t)((i + 1) & t->mask);
    }
    s = &t->slots[i];
    s->used = true;
    s->hash = h;
    s->keylen = (uint8_t)kept;
    s->fulllen = (uint32_t)keylen;
    if (kept > 0)
        memcpy(s->key, k, kept);
    kl_bucket_init(&s->bucket, rate, burst, now_ms);
    limiter_push_front(t, i);
    t->count++;
    return kl_bucket_take(&s->bucket, 1, now_ms);
}

size_t kl_srclimit_count(const kl_srclimit_t *t)
{
    return t->count;
}

uint64_t kl_srclimit_evictions(const kl_srclimit_t *t)
{
    return t->evictions;
}
