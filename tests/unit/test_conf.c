/* Unit tests for core/conf and core/cfg: the strict config loader. Every
 * error class names its line, column and key path. */
#include "core/conf.h"
#include "core/errors.h"
#include "modules/dns/dns.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char base[] = "cookie_secret: \"0123456789abcdef0123\"\n"
                           "listen:\n"
                           "  - { transport: udp, address: 127.0.0.1, port: 5060 }\n"
                           "clusters:\n"
                           "  - name: voice\n"
                           "    zones:\n"
                           "      - name: zone-a\n"
                           "        destinations:\n"
                           "          - { uri: \"sip:127.0.0.1:5080\" }\n";

static kl_conf_t *load(const char *yaml, kl_cfg_errs_t *errs)
{
    return kl_conf_load_buf("t.yaml", yaml, strlen(yaml), errs);
}

/* Loads <yaml>, expects failure with an error at line:col whose key and
 * message contain <key> and <msg>. */
static void expect_error(const char *yaml, int line, int col, const char *key, const char *msg)
{
    kl_cfg_errs_t errs;
    kl_conf_t *c = load(yaml, &errs);
    bool found = false;

    assert_null(c);
    assert_true(errs.n > 0);
    for (int i = 0; i < errs.n && i < KL_CFG_MAX_ERRS; i++) {
        const kl_cfg_err_t *e = &errs.e[i];

        if (e->line == line && e->col == col && strstr(e->key, key) != NULL &&
            strstr(e->msg, msg) != NULL)
            found = true;
    }
    if (!found) {
        for (int i = 0; i < errs.n && i < KL_CFG_MAX_ERRS; i++)
            fprintf(stderr, "got %d:%d %s: %s\n", errs.e[i].line, errs.e[i].col, errs.e[i].key,
                    errs.e[i].msg);
        fprintf(stderr, "wanted %d:%d %s: %s\n", line, col, key, msg);
    }
    assert_true(found);
}

static char *with(const char *extra)
{
    size_t n = strlen(base) + strlen(extra) + 1;
    char *s = malloc(n);

    assert_non_null(s);
    snprintf(s, n, "%s%s", base, extra);
    return s;
}

static void test_conf__default_file_loads(void **state)
{
    kl_cfg_errs_t errs;
    char path[512];
    const char *src = getenv("KEEL_SRC");
    kl_conf_t *c;

    (void)state;
    snprintf(path, sizeof(path), "%s/conf/keel.yaml", src != NULL ? src : ".");
    c = kl_conf_load(path, &errs);
    if (c == NULL)
        kl_cfg_errs_print(&errs, stderr);
    assert_non_null(c);
    assert_string_equal(c->node_zone, "zone-a");
    assert_int_equal(c->nlisten, 2);
    assert_int_equal(c->listen[1].transport, KL_TP_TCP);
    assert_int_equal(c->nclusters, 2);
    assert_int_equal(c->clusters[0].nzones, 2);
    assert_int_equal(c->clusters[0].zones[1].dests[0].port, 5081);
    assert_int_equal(c->nroutes, 2);
    assert_int_equal(c->routes[0].cluster, 1);
    assert_string_equal(c->routes[0].match.methods[0], "MESSAGE");
    kl_conf_unref(c);
}

static void test_conf__defaults_applied(void **state)
{
    kl_cfg_errs_t errs;
    kl_conf_t *c = load(base, &errs);
    const kl_conf_cluster_t *cl;
    const kl_dns_conf_t *dns;

    (void)state;
    assert_non_null(c);
    cl = &c->clusters[0];
    assert_int_equal(c->workers, 1);
    assert_int_equal(cl->failover.max_attempts, 3);
    assert_int_equal(cl->failover.attempt_timeout, 2000);
    assert_int_equal(cl->failover.ring_timeout, 120000);
    assert_int_equal(cl->failover.ncodes, 4);
    assert_int_equal(cl->failover.codes[2], 503);
    assert_int_equal(cl->health.interval, 5000);
    assert_int_equal(cl->health.timeout, 2000);
    assert_int_equal(cl->health.rise, 2);
    assert_int_equal(cl->health.fall, 3);
    assert_int_equal(cl->outlier.consecutive_failures, 5);
    assert_int_equal(cl->outlier.max_ejection, 300000);
    assert_int_equal(cl->slow_start.window, 30000);
    assert_int_equal(cl->zones[0].weight, 1);
    assert_int_equal(cl->zones[0].dests[0].weight, 1);
    assert_true(cl->zones[0].dests[0].host_is_ip);
    assert_int_equal(cl->zones[0].dests[0].transport, KL_TP_UDP);
    assert_int_equal(c->transport.max_message_size, 65536);
    assert_int_equal(c->transport.max_connections, 4096);
    assert_int_equal(c->transport.header_timeout, 10000);
    assert_int_equal(c->nroutes, 1); /* a default route to the first cluster */
    dns = c->mod_conf[0];
    assert_non_null(dns);
    assert_int_equal(dns->hedge_after, 150);
    assert_int_equal(dns->max_stale, 3600000);
    kl_conf_unref(c);
}

static void test_conf__unknown_key_did_you_mean(void **state)
{
    char *y = with("log: { levle: info }\n");

    (void)state;
    expect_error(y, 10, 8, "log.levle", "did you mean 'level'");
    free(y);
}

static void test_conf__nested_key_path(void **state)
{
    const char *y = "cookie_secret: \"0123456789abcdef0123\"\n"
                    "listen:\n"
                    "  - { transport: udp, address: 127.0.0.1, port: 5060 }\n"
                    "clusters:\n"
                    "  - name: voice\n"
                    "    zones:\n"
                    "      - name: zone-a\n"
                    "        destinations: [ { uri: \"sip:127.0.0.1:5080\" } ]\n"
                    "      - name: zone-b\n"
                    "        weigth: 5\n"
                    "        destinations: [ { uri: \"sip:127.0.0.1:5081\" } ]\n";

    (void)state;
    expect_error(y, 10, 9, "clusters[0].zones[1].weigth", "did you mean 'weight'");
}

static void test_conf__number_with_junk(void **state)
{
    const char *y = "cookie_secret: \"0123456789abcdef0123\"\n"
                    "listen:\n"
                    "  - { transport: udp, address: 127.0.0.1, port: 5060abc }\n";

    (void)state;
    expect_error(y, 3, 49, "listen[0].port", "'5060abc'");
}

static void test_conf__out_of_range(void **state)
{
    char *y = with("workers: 100\n");

    (void)state;
    expect_error(y, 10, 10, "workers", "out of range");
    free(y);
}

static void test_conf__wrong_type(void **state)
{
    char *y = with("domains: { a: b }\n");

    (void)state;
    expect_error(y, 10, 10, "domains", "expected a list");
    free(y);
}

static void test_conf__bad_duration(void **state)
{
    char *y = with("transport: { header_timeout: 5x }\n");

    (void)state;
    expect_error(y, 10, 30, "transport.header_timeout", "duration");
    free(y);
    y = with("transport: { header_timeout: 5 }\n");
    expect_error(y, 10, 30, "transport.header_timeout", "unit");
    free(y);
}

static void test_conf__bad_enum_and_bool(void **state)
{
    char *y = with("log: { level: loud }\n");

    (void)state;
    expect_error(y, 10, 15, "log.level", "err | warn | notice | info | debug");
    free(y);
    y = with("admin: { faults: yes }\n");
    expect_error(y, 10, 18, "admin.faults", "true or false");
    free(y);
}

static void test_conf__duplicate_zone_and_destination(void **state)
{
    const char *y = "cookie_secret: \"0123456789abcdef0123\"\n"
                    "listen:\n"
                    "  - { transport: udp, address: 127.0.0.1, port: 5060 }\n"
                    "clusters:\n"
                    "  - name: voice\n"
                    "    zones:\n"
                    "      - name: zone-a\n"
                    "        destinations:\n"
                    "          - { uri: \"sip:127.0.0.1:5080\" }\n"
                    "          - { uri: \"sip:127.0.0.1:5080\" }\n"
                    "      - name: zone-a\n"
                    "        destinations: [ { uri: \"sip:127.0.0.1:5081\" } ]\n";

    (void)state;
    expect_error(y, 10, 20, "clusters[0].zones[0].destinations[1].uri", "duplicate destination");
    expect_error(y, 11, 15, "clusters[0].zones[1].name", "duplicate zone");
}

static void test_conf__duplicate_cluster_and_map_key(void **state)
{
    char *y = with("  - name: voice\n"
                   "    zones: [ { name: z, destinations: [ { uri: \"sip:10.0.0.1\" } ] } ]\n");

    (void)state;
    expect_error(y, 10, 11, "clusters[1].name", "duplicate cluster");
    free(y);
    y = with("workers: 1\nworkers: 2\n");
    expect_error(y, 11, 1, "workers", "duplicate key");
    free(y);
}

static void test_conf__bad_uri(void **state)
{
    const char *y = "cookie_secret: \"0123456789abcdef0123\"\n"
                    "listen:\n"
                    "  - { transport: udp, address: 127.0.0.1, port: 5060 }\n"
                    "clusters:\n"
                    "  - name: voice\n"
                    "    zones:\n"
                    "      - name: zone-a\n"
                    "        destinations: [ { uri: \"http://x\" } ]\n";

    (void)state;
    expect_error(y, 8, 32, "destinations[0].uri", "sip:host");
}

static void test_conf__route_to_unknown_cluster(void **state)
{
    char *y = with("routes:\n  - { match: { method: [MESSAGE] }, cluster: chat }\n");

    (void)state;
    expect_error(y, 11, 46, "routes[0].cluster", "no cluster named 'chat'");
    free(y);
}

static void test_conf__health_timeout_below_interval(void **state)
{
    char *y = with("    health: { interval: 1s, timeout: 2s }\n");

    (void)state;
    expect_error(y, 10, 38, "clusters[0].health.timeout", "below health.interval");
    free(y);
}

static void test_conf__yaml_syntax_error(void **state)
{
    char *y = with("log: { level: info\n");

    (void)state;
    expect_error(y, 11, 1, "", "YAML syntax error");
    free(y);
}

static void test_conf__empty_and_missing_sections(void **state)
{
    kl_cfg_errs_t errs;

    (void)state;
    assert_null(load("", &errs));
    assert_true(errs.n == 1);
    assert_non_null(strstr(errs.e[0].msg, "empty"));
    assert_null(load("workers: 1\n", &errs));
    assert_true(errs.n >= 2); /* no listen, no clusters, no secret */
}

static void test_conf__several_errors_at_once(void **state)
{
    char *y = with("workers: 0\nlog: { level: loud }\nadmin: { port: x }\n");
    kl_cfg_errs_t errs;

    (void)state;
    assert_null(load(y, &errs));
    assert_int_equal(errs.n, 3);
    free(y);
}

static void test_conf__module_section_error(void **state)
{
    char *y = with("dns:\n  tiers:\n    - { name: p, servers: [\"not-an-ip\"] }\n  tmeout: 1s\n");

    (void)state;
    expect_error(y, 12, 28, "dns.tiers[0].servers[0]", "IP address");
    expect_error(y, 13, 3, "dns.tmeout", "did you mean 'timeout'");
    free(y);
}

static void test_conf__format_names_file_line_col(void **state)
{
    kl_cfg_errs_t errs;
    char line[1200];
    char *y = with("workers: abc\n");

    (void)state;
    assert_null(load(y, &errs));
    kl_cfg_err_format(&errs.e[0], line, sizeof(line));
    assert_non_null(strstr(line, "t.yaml:10:10: workers: "));
    free(y);
}

static void test_conf__refcount(void **state)
{
    kl_cfg_errs_t errs;
    kl_conf_t *a = load(base, &errs), *b = load(base, &errs);

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_true(b->version > a->version);
    assert_ptr_equal(kl_conf_ref(a), a);
    kl_conf_unref(a);
    kl_conf_unref(a); /* freed here: ASan would see a double free or a leak */
    kl_conf_unref(b);
    kl_conf_unref(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf__default_file_loads),
        cmocka_unit_test(test_conf__defaults_applied),
        cmocka_unit_test(test_conf__unknown_key_did_you_mean),
        cmocka_unit_test(test_conf__nested_key_path),
        cmocka_unit_test(test_conf__number_with_junk),
        cmocka_unit_test(test_conf__out_of_range),
        cmocka_unit_test(test_conf__wrong_type),
        cmocka_unit_test(test_conf__bad_duration),
        cmocka_unit_test(test_conf__bad_enum_and_bool),
        cmocka_unit_test(test_conf__duplicate_zone_and_destination),
        cmocka_unit_test(test_conf__duplicate_cluster_and_map_key),
        cmocka_unit_test(test_conf__bad_uri),
        cmocka_unit_test(test_conf__route_to_unknown_cluster),
        cmocka_unit_test(test_conf__health_timeout_below_interval),
        cmocka_unit_test(test_conf__yaml_syntax_error),
        cmocka_unit_test(test_conf__empty_and_missing_sections),
        cmocka_unit_test(test_conf__several_errors_at_once),
        cmocka_unit_test(test_conf__module_section_error),
        cmocka_unit_test(test_conf__format_names_file_line_col),
        cmocka_unit_test(test_conf__refcount),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
