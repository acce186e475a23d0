#include "modules/dns/dns.h"

#include "core/cfg.h"
#include "core/errors.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dns_server_parse(const char *s, kl_dns_server_t *out)
{
    unsigned char buf[16];
    const char *h = s, *colon = NULL;
    size_t hl;
    unsigned long port = 53;

    if (*s == '[') {
        const char *e = strchr(s, ']');

        if (e == NULL)
            return KL_EINVAL;
        h = s + 1;
        hl = (size_t)(e - h);
        if (e[1] == ':')
            colon = e + 1;
        else if (e[1] != '\0')
            return KL_EINVAL;
    } else {
        colon = strchr(s, ':');
        if (colon != NULL && strchr(colon + 1, ':') != NULL)
            colon = NULL; /* a bare IPv6 address */
        hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
    }
    if (hl == 0 || hl >= sizeof(out->host))
        return KL_EINVAL;
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    if (inet_pton(AF_INET, out->host, buf) != 1 && inet_pton(AF_INET6, out->host, buf) != 1)
        return KL_EINVAL;
    if (colon != NULL) {
        char *end;

        if (colon[1] < '0' || colon[1] > '9')
            return KL_EINVAL;
        port = strtoul(colon + 1, &end, 10);
        if (*end != '\0' || port == 0 || port > 65535)
            return KL_EINVAL;
    }
    out->port = (uint16_t)port;
    return KL_OK;
}

static int dns_tier_post(kl_cfg_ctx_t *ctx, yaml_node_t *node, void *elem)
{
    kl_dns_tier_t *t = elem;
    yaml_node_t *sn = kl_cfg_map_get(ctx, node, "servers");
    int rc = KL_OK;

    if (t->name == NULL)
        rc = kl_cfg_error(ctx, node, ".name", "a resolver tier needs a name");
    if (t->nservers == 0)
        return kl_cfg_error(ctx, sn != NULL ? sn : node, ".servers",
                            "a resolver tier needs at least one server");
    t->parsed = calloc(t->nservers, sizeof(*t->parsed));
    if (t->parsed == NULL)
        return kl_cfg_error(ctx, node, NULL, "out of memory");
    for (size_t i = 0; i < t->nservers; i++) {
        if (dns_server_parse(t->servers[i], &t->parsed[i]) != KL_OK) {
            char sfx[32];
            yaml_node_t *item =
                sn != NULL && sn->type == YAML_SEQUENCE_NODE
                    ? yaml_document_get_node(ctx->doc, sn->data.sequence.items.start[i])
                    : node;

            snprintf(sfx, sizeof(sfx), ".servers[%zu]", i);
            rc = kl_cfg_error(ctx, item, sfx,
                              "expected an IP address with an optional port (10.0.0.2:53, "
                              "[::1]:5353), got '%s'",
                              t->servers[i]);
        }
    }
    return rc;
}

static const kl_cfg_key_t tier_keys[] = {
    {.name = "name", .type = KL_CFG_STR, .off = offsetof(kl_dns_tier_t, name)},
    {.name = "servers",
     .type = KL_CFG_STRLIST,
     .off = offsetof(kl_dns_tier_t, servers),
     .count_off = offsetof(kl_dns_tier_t, nservers)},
    {0},
};

static const kl_cfg_key_t dns_keys[] = {
    {.name = "tiers",
     .type = KL_CFG_SEQ,
     .off = offsetof(kl_dns_conf_t, tiers),
     .sub = tier_keys,
     .elem_size = sizeof(kl_dns_tier_t),
     .count_off = offsetof(kl_dns_conf_t, ntiers),
     .custom = dns_tier_post},
    {.name = "timeout",
     .type = KL_CFG_DURATION,
     .off = offsetof(kl_dns_conf_t, timeout),
     .min = 10,
     .max = 60000},
    {.name = "hedge_after",
     .type = KL_CFG_DURATION,
     .off = offsetof(kl_dns_conf_t, hedge_after),
     .min = 0,
     .max = 60000},
    {.name = "max_fails",
     .type = KL_CFG_UINT,
     .off = offsetof(kl_dns_conf_t, max_fails),
     .min = 1,
     .max = 1000},
    {.name = "max_stale",
     .type = KL_CFG_DURATION,
     .off = offsetof(kl_dns_conf_t, max_stale),
     .min = 0,
     .max = 604800000},
    {0},
};

static void dns_conf_free(void *p)
{
    kl_dns_conf_t *c = p;

    if (c == NULL)
        return;
    for (size_t i = 0; i < c->ntiers; i++)
        free(c->tiers[i].parsed);
    kl_cfg_free(dns_keys, c);
    free(c);
}

static int dns_conf_parse(kl_cfg_ctx_t *ctx, yaml_node_t *node, void **out)
{
    kl_dns_conf_t *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return kl_cfg_error(ctx, node, NULL, "out of memory");
    c->timeout = 500;
    c->hedge_after = 150;
    c->max_fails = 2;
    c->max_stale = 3600000;
    if (node != NULL && kl_cfg_parse_map(ctx, node, dns_keys, c) != KL_OK) {
        dns_conf_free(c);
        return KL_EINVAL;
    }
    *out = c;
    return KL_OK;
}

const kl_module_t kl_dns_module = {
    .name = "dns",
    .conf_parse = dns_conf_parse,
    .conf_free = dns_conf_free,
};
