#include "upstream/registry.h"

#include "core/errors.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KEY_STACK 512

/* The index key is "zone\0uri": no separator a zone name could contain. */
typedef struct key_buf {
    char stack[KEY_STACK];
    char *p;
    size_t len;
} key_buf_t;

static int key_make(key_buf_t *k, const char *zone, const char *uri)
{
    size_t zl = strlen(zone), ul = strlen(uri);

    k->len = zl + 1 + ul;
    k->p = k->len + 1 <= sizeof(k->stack) ? k->stack : malloc(k->len + 1);
    if (k->p == NULL)
        return KL_ENOMEM;
    memcpy(k->p, zone, zl + 1);
    memcpy(k->p + zl + 1, uri, ul + 1);
    return KL_OK;
}

static void key_done(key_buf_t *k)
{
    if (k->p != k->stack)
        free(k->p);
    k->p = NULL;
}

static uint16_t default_port(kl_tp_kind_t tp)
{
    return tp == KL_TP_TLS ? 5061 : 5060;
}

int kl_registry_init(kl_registry_t *reg)
{
    memset(reg, 0, sizeof(*reg));
    return kl_htab_init(&reg->index, 64);
}

static void state_free(kl_dest_state_t *s)
{
    free(s->children);
    free(s->child_prio);
    free(s->child_weight);
    /* zone and uri live in the key allocation that zone points to */
    free(s->zone);
    free(s);
}

void kl_registry_free(kl_registry_t *reg)
{
    kl_dest_state_t *s = reg->head;

    while (s != NULL) {
        kl_dest_state_t *next = s->next;

        state_free(s);
        s = next;
    }
    reg->head = NULL;
    reg->count = 0;
    kl_htab_free(&reg->index);
}

kl_dest_state_t *kl_registry_find(const kl_registry_t *reg, const char *zone, const char *uri)
{
    key_buf_t k;
    kl_hnode_t *hn;

    if (zone == NULL || uri == NULL || key_make(&k, zone, uri) != KL_OK)
        return NULL;
    hn = kl_htab_get(&reg->index, k.p, k.len);
    key_done(&k);
    return hn != NULL ? kl_container_of(hn, kl_dest_state_t, hn) : NULL;
}

/* A new state with refs 0, indexed and listed; up, not ramping. */
static kl_dest_state_t *state_new(kl_registry_t *reg, const char *zone, const char *uri)
{
    size_t zl = strlen(zone), ul = strlen(uri);
    kl_dest_state_t *s = calloc(1, sizeof(*s));
    char *key = malloc(zl + 1 + ul + 1);

    if (s == NULL || key == NULL) {
        free(s);
        free(key);
        return NULL;
    }
    memcpy(key, zone, zl + 1);
    memcpy(key + zl + 1, uri, ul + 1);
    s->zone = key;
    s->uri = key + zl + 1;
    s->up = true;
    kl_breaker_init(&s->breaker, 0);
    kl_htab_add(&reg->index, &s->hn, key, zl + 1 + ul);
    s->next = reg->head;
    if (reg->head != NULL)
        reg->head->prev = s;
    reg->head = s;
    reg->count++;
    return s;
}

static void state_remove(kl_registry_t *reg, kl_dest_state_t *s)
{
    kl_htab_del(&reg->index, &s->hn);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        reg->head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    reg->count--;
    state_free(s);
}

int kl_registry_get(kl_registry_t *reg, const char *zone, const kl_conf_dest_t *d,
                    kl_dest_state_t **out)
{
    kl_dest_state_t *s = kl_registry_find(reg, zone, d->uri);
    uint16_t port = d->port != 0 ? d->port : default_port(d->transport);

    if (s == NULL) {
        s = state_new(reg, zone, d->uri);
        if (s == NULL)
            return KL_ENOMEM;
    }
    s->transport = d->transport;
    s->is_name = d->host != NULL && !d->host_is_ip && strcasecmp(d->host, "localhost") != 0;
    if (d->host != NULL && strcasecmp(d->host, "localhost") == 0)
        /* "localhost" needs no resolver; other names wait for the dns module */
        s->routable = kl_addr_from_str("127.0.0.1", port, &s->addr) == KL_OK;
    else
        s->routable =
            d->host_is_ip && d->host != NULL && kl_addr_from_str(d->host, port, &s->addr) == KL_OK;
    /* keel has no TLS or WebSocket client yet: such a destination is never
     * chosen (it would only fail as a transport error) */
    if (d->transport == KL_TP_TLS || d->transport == KL_TP_WS)
        s->routable = false;
    s->refs++;
    *out = s;
    return KL_OK;
}

int kl_registry_parse_uri(const char *uri, kl_addr_t *addr, kl_tp_kind_t *tp)
{
    const char *s = uri, *h, *e;
    char host[64];
    size_t hl;
    unsigned long port = 0;
    kl_tp_kind_t kind = KL_TP_UDP;
    kl_addr_t a;

    if (strncasecmp(s, "sips:", 5) == 0) {
        s += 5;
        kind = KL_TP_TLS;
    } else if (strncasecmp(s, "sip:", 4) == 0) {
        s += 4;
    } else {
        return KL_EINVAL;
    }
    if (*s == '[') {
        h = ++s;
        e = strchr(s, ']');
        if (e == NULL)
            return KL_EINVAL;
        s = e + 1;
    } else {
        h = s;
        while (*s != '\0' && *s != ':' && *s != ';')
            s++;
        e = s;
    }
    hl = (size_t)(e - h);
    if (hl == 0 || hl >= sizeof(host))
        return KL_EINVAL;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (*s == ':') {
        char *end;

        if (s[1] < '0' || s[1] > '9')
            return KL_EINVAL;
        port = strtoul(s + 1, &end, 10);
        if (port == 0 || port > 65535)
            return KL_EINVAL;
        s = end;
    }
    while (*s == ';') {
        const char *p = ++s;
        size_t pl;

        while (*s != '\0' && *s != ';')
            s++;
        pl = (size_t)(s - p);
        if (pl > 10 && strncasecmp(p, "transport=", 10) == 0) {
            static const char *const names[] = {"udp", "tcp", "tls", "ws"};
            const char *t = p + 10;
            size_t tl = pl - 10;
            int k = -1;

            for (int i = 0; i < 4; i++) {
                if (strlen(names[i]) == tl && strncasecmp(t, names[i], tl) == 0)
                    k = i;
            }
            if (k < 0)
                return KL_EINVAL;
            kind = (kl_tp_kind_t)k;
        }
    }
    if (*s != '\0')
        return KL_EINVAL;
    if (kl_addr_from_str(host, port != 0 ? (uint16_t)port : default_port(kind), &a) != KL_OK)
        return KL_EINVAL;
    *addr = a;
    *tp = kind;
    return KL_OK;
}

int kl_registry_get_uri(kl_registry_t *reg, const char *zone, const char *uri,
                        kl_dest_state_t **out)
{
    kl_dest_state_t *s = kl_registry_find(reg, zone, uri);
    kl_addr_t addr;
    kl_tp_kind_t tp;

    if (s != NULL) {
        s->refs++;
        *out = s;
        return KL_OK;
    }
    if (kl_registry_parse_uri(uri, &addr, &tp) != KL_OK)
        return KL_EINVAL;
    s = state_new(reg, zone, uri);
    if (s == NULL)
        return KL_ENOMEM;
    s->addr = addr;
    s->transport = tp;
    /* no TLS or WebSocket client yet: never sent in the clear instead */
    s->routable = tp != KL_TP_TLS && tp != KL_TP_WS;
    s->refs = 1;
    *out = s;
    return KL_OK;
}

void kl_dest_state_ref(kl_dest_state_t *s)
{
    s->refs++;
}

void kl_registry_set_children(kl_registry_t *reg, kl_dest_state_t *g, kl_dest_state_t **c,
                              uint16_t *prio, uint16_t *weight, size_t n)
{
    kl_dest_state_t **old = g->children;
    size_t nold = g->nchildren;

    g->children = c;
    g->nchildren = n;
    free(g->child_prio);
    free(g->child_weight);
    g->child_prio = prio;
    g->child_weight = weight;
    for (size_t i = 0; i < n; i++)
        c[i]->group = g;
    for (size_t i = 0; i < nold; i++) {
        bool kept = false;

        for (size_t j = 0; j < n && !kept; j++)
            kept = c[j] == old[i];
        if (!kept && old[i]->group == g)
            old[i]->group = NULL;
        kl_registry_unref(reg, old[i]);
    }
    free(old);
}

void kl_registry_unref(kl_registry_t *reg, kl_dest_state_t *s)
{
    if (s == NULL || --s->refs > 0)
        return;
    if (s->nchildren > 0 || s->children != NULL)
        kl_registry_set_children(reg, s, NULL, NULL, NULL, 0);
    state_remove(reg, s);
}

void kl_registry_each(const kl_registry_t *reg, void (*fn)(void *arg, kl_dest_state_t *s),
                      void *arg)
{
    for (kl_dest_state_t *s = reg->head; s != NULL; s = s->next)
        fn(arg, s);
}
