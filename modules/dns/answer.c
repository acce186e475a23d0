/* DNS answer handling (see answer.h). */
#include "modules/dns/answer.h"

#include "core/errors.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <netdb.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t rd32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Skips one encoded name at <p>. Returns the bytes it takes, or -1. */
static long skip_name(const unsigned char *p, const unsigned char *abuf, int alen)
{
    char *name = NULL;
    long enclen = 0;

    if (ares_expand_name(p, abuf, alen, &name, &enclen) != ARES_SUCCESS)
        return -1;
    ares_free_string(name);
    return enclen;
}

int kl_dns_answer_ttls(const unsigned char *abuf, int alen, uint32_t *ttl, uint32_t *neg)
{
    const unsigned char *p, *end;
    unsigned qd, an, ns;
    uint32_t min = UINT32_MAX, nmin = 0;

    if (abuf == NULL || alen < 12)
        return KL_EPROTO;
    end = abuf + alen;
    qd = rd16(abuf + 4);
    an = rd16(abuf + 6);
    ns = rd16(abuf + 8);
    p = abuf + 12;
    for (unsigned i = 0; i < qd; i++) {
        long l = skip_name(p, abuf, alen);

        if (l < 0 || end - p < l + 4)
            return KL_EPROTO;
        p += l + 4;
    }
    for (unsigned i = 0; i < an + ns; i++) {
        long l = skip_name(p, abuf, alen);
        uint16_t type, rdlen;
        uint32_t t;

        if (l < 0 || end - p < l + 10)
            return KL_EPROTO;
        p += l;
        type = rd16(p);
        t = rd32(p + 4) & 0x7fffffffu; /* RFC 2181 §8: the top bit set means 0 */
        rdlen = rd16(p + 8);
        p += 10;
        if (end - p < rdlen)
            return KL_EPROTO;
        if (i < an) {
            if (t < min)
                min = t;
        } else if (type == T_SOA) {
            const unsigned char *r = p;
            long l1 = skip_name(r, abuf, alen), l2;

            if (l1 < 0 || l1 > rdlen)
                return KL_EPROTO;
            l2 = skip_name(r + l1, abuf, alen);
            if (l2 < 0 || l1 + l2 + 20 > rdlen)
                return KL_EPROTO;
            {
                uint32_t minimum = rd32(r + l1 + l2 + 16);

                nmin = t < minimum ? t : minimum;
            }
        }
        p += rdlen;
    }
    *ttl = min == UINT32_MAX ? 0 : min;
    *neg = nmin;
    return KL_OK;
}

/* A or AAAA records: the addresses of the hostent c-ares builds (4 or 16
 * bytes each, h_length says which). */
static int parse_addrs(const unsigned char *abuf, int alen, bool v6, kl_dns_answer_t *out)
{
    struct hostent *he = NULL;
    int rc = v6 ? ares_parse_aaaa_reply(abuf, alen, &he, NULL, NULL)
                : ares_parse_a_reply(abuf, alen, &he, NULL, NULL);

    if (rc == ARES_ENODATA)
        rc = ARES_SUCCESS;
    else if (rc == ARES_SUCCESS && he != NULL && he->h_length == (v6 ? 16 : 4))
        for (char **a = he->h_addr_list; a != NULL && *a != NULL && out->n < KL_DNS_MAX_RECORDS;
             a++) {
            kl_dns_rr_t *r = &out->rr[out->n++];

            r->family = v6 ? 6 : 4;
            memcpy(r->addr, *a, (size_t)he->h_length);
        }
    if (he != NULL)
        ares_free_hostent(he);
    return rc == ARES_SUCCESS ? KL_OK : KL_EPROTO;
}

int kl_dns_answer_parse(kl_dns_type_t type, const unsigned char *abuf, int alen,
                        kl_dns_answer_t *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (kl_dns_answer_ttls(abuf, alen, &out->ttl, &out->neg_ttl) != KL_OK)
        return KL_EPROTO;
    if (rd16(abuf + 6) == 0)
        return KL_OK; /* no records (NODATA) */
    switch (type) {
    case KL_DNS_T_A:
    case KL_DNS_T_AAAA:
        return parse_addrs(abuf, alen, type == KL_DNS_T_AAAA, out);
    case KL_DNS_T_SRV: {
        struct ares_srv_reply *srv = NULL;

        rc = ares_parse_srv_reply(abuf, alen, &srv);
        if (rc == ARES_ENODATA)
            return KL_OK;
        if (rc != ARES_SUCCESS)
            return KL_EPROTO;
        for (struct ares_srv_reply *s = srv; s != NULL && out->n < KL_DNS_MAX_RECORDS;
             s = s->next) {
            kl_dns_rr_t *r = &out->rr[out->n++];

            r->priority = s->priority;
            r->weight = s->weight;
            r->port = s->port;
            snprintf(r->target, sizeof(r->target), "%s", s->host != NULL ? s->host : "");
        }
        ares_free_data(srv);
        return KL_OK;
    }
    case KL_DNS_T_NAPTR: {
        struct ares_naptr_reply *na = NULL;

        rc = ares_parse_naptr_reply(abuf, alen, &na);
        if (rc == ARES_ENODATA)
            return KL_OK;
        if (rc != ARES_SUCCESS)
            return KL_EPROTO;
        for (struct ares_naptr_reply *x = na; x != NULL && out->n < KL_DNS_MAX_RECORDS;
             x = x->next) {
            kl_dns_rr_t *r = &out->rr[out->n++];

            r->order = x->order;
            r->preference = x->preference;
            snprintf(r->flags, sizeof(r->flags), "%s", x->flags ? (char *)x->flags : "");
            snprintf(r->service, sizeof(r->service), "%s", x->service ? (char *)x->service : "");
            snprintf(r->replacement, sizeof(r->replacement), "%s",
                     x->replacement ? x->replacement : "");
        }
        ares_free_data(na);
        return KL_OK;
    }
    }
    return KL_EINVAL;
}
