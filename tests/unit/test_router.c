/* Unit tests for upstream/router: routes, zone order, serial failover
 * preferring another zone, reload keeping destination state by identity. */
#include "upstream/router.h"
#include "core/conf.h"
#include "core/errors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

#include <cmocka.h>

static kl_conf_t *conf_with(const char *clusters)
{
    char y[4096];
    kl_cfg_errs_t errs;
    kl_conf_t *c;

    snprintf(y, sizeof(y),
             "node: { id: t, zone: zone-a }\n"
             "cookie_secret: \"0123456789abcdef0123\"\n"
             "listen: [ { transport: udp, address: 127.0.0.1, port: 5060 } ]\n"
             "routes:\n"
             "  - { match: { method: [MESSAGE] }, cluster: chat }\n"
             "  - { match: { user_prefix: \"+1800\" }, cluster: tollfree }\n"
             "  - { cluster: voice }\n"
             "%s",
             clusters);
    c = kl_conf_load_buf("t.yaml", y, strlen(y), &errs);
    if (c == NULL)
        kl_cfg_errs_print(&errs, stderr);
    assert_non_null(c);
    return c;
}

static const char two_zones[] =
    "clusters:\n"
    "  - name: voice\n"
    "    retry_budget: { percent: 100, min: 100000 }\n"
    "    zones:\n"
    "      - { name: zone-a, weight: %d, destinations: [ { uri: \"sip:10.0.0.1\" }, { uri: "
    "\"sip:10.0.0.2\" } ] }\n"
    "      - { name: zone-b, weight: %d, destinations: [ { uri: \"sip:10.0.1.1\" } ] }\n"
    "%s"
    "  - name: chat\n"
    "    zones: [ { name: zone-a, destinations: [ { uri: \"sip:10.0.2.1\" } ] } ]\n"
    "  - name: tollfree\n"
    "    prefer_local: true\n"
    "    zones:\n"
    "      - { name: zone-b, destinations: [ { uri: \"sip:10.0.3.2\" } ] }\n"
    "      - { name: zone-a, destinations: [ { uri: \"sip:10.0.3.1\" } ] }\n";

static kl_conf_t *zones(int wa, int wb, const char *extra_zone)
{
    char c[2048];

    snprintf(c, sizeof(c), two_zones, wa, wb, extra_zone);
    return conf_with(c);
}

static const kl_route_req_t invite = {.method = "INVITE", .ruri_user = "+15551234"};

static void test_router__route_matching(void **state)
{
    kl_conf_t *c = zones(50, 50, "");
    kl_router_t *r = kl_router_new(c);
    kl_route_req_t msg = {.method = "MESSAGE", .cls = KL_CLASS_CHAT};
    kl_route_req_t tf = {.method = "INVITE", .ruri_user = "+18005550000"};
    kl_plan_t *p;

    (void)state;
    p = kl_router_ops.plan_new(r, &msg);
    assert_string_equal(kl_router_ops.plan_cluster(p)->name, "chat");
    kl_router_ops.plan_free(r, p);
    p = kl_router_ops.plan_new(r, &tf);
    assert_string_equal(kl_router_ops.plan_cluster(p)->name, "tollfree");
    kl_router_ops.plan_free(r, p);
    p = kl_router_ops.plan_new(r, &invite);
    assert_string_equal(kl_router_ops.plan_cluster(p)->name, "voice");
    kl_router_ops.plan_free(r, p);
    kl_router_free(r);
    kl_conf_unref(c);
}

static void split(int wa, int wb, int want_a_pct)
{
    kl_conf_t *c = zones(wa, wb, "");
    kl_router_t *r = kl_router_new(c);
    int a = 0;

    for (int i = 0; i < 10000; i++) {
        kl_plan_t *p = kl_router_ops.plan_new(r, &invite);
        kl_target_t t;

        assert_int_equal(kl_router_ops.plan_next(r, p, &t), KL_OK);
        a += strcmp(t.zone, "zone-a") == 0;
        kl_router_ops.release(r, &t);
        kl_router_ops.plan_free(r, p);
    }
    assert_true(abs(a - want_a_pct * 100) <= 200);
    kl_router_free(r);
    kl_conf_unref(c);
}

static void test_router__zone_split(void **state)
{
    (void)state;
    split(50, 50, 50);
    split(90, 10, 90);
}

static void test_router__failover_prefers_other_zone(void **state)
{
    kl_conf_t *c = zones(50, 50, "");
    kl_router_t *r = kl_router_new(c);

    (void)state;
    for (int i = 0; i < 100; i++) {
        kl_plan_t *p = kl_router_ops.plan_new(r, &invite);
        kl_target_t t1, t2, t3, t4;

        assert_int_equal(kl_router_ops.plan_next(r, p, &t1), KL_OK);
        assert_int_equal(kl_router_ops.plan_next(r, p, &t2), KL_OK);
        assert_string_not_equal(t1.zone, t2.zone);
        assert_int_equal(kl_router_ops.plan_next(r, p, &t3), KL_OK);
        assert_string_not_equal(t3.uri, t1.uri);
        assert_string_not_equal(t3.uri, t2.uri);
        assert_int_equal(kl_router_ops.plan_next(r, p, &t4), KL_ENOENT);
        kl_router_ops.release(r, &t1);
        kl_router_ops.release(r, &t2);
        kl_router_ops.release(r, &t3);
        kl_router_ops.plan_free(r, p);
    }
    kl_router_free(r);
    kl_conf_unref(c);
}

static void test_router__prefer_local_and_standby(void **state)
{
    kl_conf_t *c = zones(1, 0, "");
    kl_router_t *r = kl_router_new(c);
    kl_route_req_t tf = {.method = "INVITE", .ruri_user = "+18005550000"};

    (void)state;
    for (int i = 0; i < 20; i++) {
        kl_plan_t *p = kl_router_ops.plan_new(r, &tf);
        kl_target_t t;

        assert_int_equal(kl_router_ops.plan_next(r, p, &t), KL_OK);
        assert_string_equal(t.zone, "zone-a"); /* node.zone first */
        kl_router_ops.release(r, &t);
        kl_router_ops.plan_free(r, p);
    }
    for (int i = 0; i < 20; i++) {
        kl_plan_t *p = kl_router_ops.plan_new(r, &invite);
        kl_target_t t1, t2, t3;

        assert_int_equal(kl_router_ops.plan_next(r, p, &t1), KL_OK);
        assert_string_equal(t1.zone, "zone-a"); /* zone-b (weight 0) is standby */
        assert_int_equal(kl_router_ops.plan_next(r, p, &t2), KL_OK);
        assert_string_equal(t2.zone, "zone-b"); /* but takes the failover */
        assert_int_equal(kl_router_ops.plan_next(r, p, &t3), KL_OK);
        assert_string_equal(t3.zone, "zone-a");
        kl_router_ops.release(r, &t1);
        kl_router_ops.release(r, &t2);
        kl_router_ops.release(r, &t3);
        kl_router_ops.plan_free(r, p);
    }
    kl_router_free(r);
    kl_conf_unref(c);
}

typedef struct seen {
    unsigned n;
    unsigned in_flight;
    bool ramping_new;
    bool removed_kept;
} seen_t;

static void collect(void *arg, const kl_dest_info_t *d)
{
    seen_t *s = arg;

    s->n++;
    s->in_flight += d->in_flight;
    if (strcmp(d->uri, "sip:10.0.9.9") == 0 && d->slow_start_at != 0)
        s->ramping_new = true;
    if (strcmp(d->uri, "sip:10.0.1.1") == 0 && !d->in_config)
        s->removed_kept = true;
}

static void test_router__reload_keeps_state(void **state)
{
    kl_conf_t *c1 = zones(0, 1, "");
    kl_conf_t *c2 = conf_with("clusters:\n"
                              "  - name: voice\n"
                              "    zones:\n"
                              "      - { name: zone-a, destinations: [ { uri: \"sip:10.0.0.1\" }, "
                              "{ uri: \"sip:10.0.9.9\" } ] }\n"
                              "  - name: chat\n"
                              "    zones: [ { name: zone-a, destinations: [ { uri: "
                              "\"sip:10.0.2.1\" } ] } ]\n"
                              "  - name: tollfree\n"
                              "    zones: [ { name: zone-a, destinations: [ { uri: "
                              "\"sip:10.0.3.1\" } ] } ]\n");
    kl_router_t *r = kl_router_new(c1);
    kl_plan_t *p = kl_router_ops.plan_new(r, &invite);
    kl_target_t t, in_dialog;
    seen_t s = {0};

    (void)state;
    assert_int_equal(kl_router_ops.plan_next(r, p, &t), KL_OK);
    assert_string_equal(t.uri, "sip:10.0.1.1"); /* zone-b is the weighted one */
    kl_router_reload(r, c2);
    kl_router_each(r, collect, &s);
    assert_true(s.ramping_new);  /* added by the reload: slow-start */
    assert_true(s.removed_kept); /* removed, but an attempt still holds it */
    assert_int_equal(s.in_flight, 1);
    /* a dialog's cookie still finds the removed destination */
    assert_int_equal(kl_router_ops.lookup(r, "zone-b", "sip:10.0.1.1", &in_dialog), KL_OK);
    kl_router_ops.release(r, &in_dialog);
    kl_router_ops.release(r, &t);
    kl_router_ops.plan_free(r, p);
    /* an unknown but valid address (a dialog from before a restart) */
    assert_int_equal(kl_router_ops.lookup(r, "zone-x", "sip:192.0.2.7:5070", &in_dialog), KL_OK);
    assert_int_equal(ntohs(in_dialog.addr.u.in.sin_port), 5070);
    kl_router_ops.release(r, &in_dialog);
    assert_int_equal(kl_router_ops.lookup(r, "zone-x", "sip:host.example", &in_dialog), KL_ENOENT);
    memset(&s, 0, sizeof(s));
    kl_router_each(r, collect, &s);
    assert_int_equal(s.in_flight, 0);
    kl_router_free(r);
    kl_conf_unref(c1);
    kl_conf_unref(c2);
}

/* With the default budget (20%, 3/s) and every attempt failing, failovers
 * are bounded: about 20% of the requests plus 3 per second over 10 s. */
static void test_router__retry_budget_bounds_failovers(void **state)
{
    kl_conf_t *c =
        conf_with("clusters:\n"
                  "  - name: voice\n"
                  "    zones:\n"
                  "      - { name: zone-a, destinations: [ { uri: \"sip:10.0.0.1\" } ] }\n"
                  "      - { name: zone-b, destinations: [ { uri: \"sip:10.0.1.1\" } ] }\n"
                  "  - name: chat\n"
                  "    zones: [ { name: zone-a, destinations: [ { uri: \"sip:10.0.2.1\" } ] } ]\n"
                  "  - name: tollfree\n"
                  "    zones: [ { name: zone-b, destinations: [ { uri: \"sip:10.0.3.2\" } ] } ]\n");
    kl_router_t *r = kl_router_new(c);
    kl_route_req_t req = invite;
    int retries = 0, denied = 0;

    (void)state;
    req.now_ms = 1000000;
    for (int i = 0; i < 1000; i++) {
        kl_plan_t *p = kl_router_ops.plan_new(r, &req);
        kl_target_t t1, t2;
        int rc;

        assert_int_equal(kl_router_ops.plan_next(r, p, &t1), KL_OK);
        kl_router_ops.release(r, &t1);
        rc = kl_router_ops.plan_next(r, p, &t2);
        if (rc == KL_OK) {
            retries++;
            kl_router_ops.release(r, &t2);
        } else {
            assert_int_equal(rc, KL_EPERM);
            denied++;
        }
        kl_router_ops.plan_free(r, p);
    }
    /* 20% of 1000 requests + 3/s x 10 s */
    assert_in_range(retries, 200, 230);
    assert_int_equal(retries + denied, 1000);
    kl_router_free(r);
    kl_conf_unref(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_router__route_matching),
        cmocka_unit_test(test_router__zone_split),
        cmocka_unit_test(test_router__failover_prefers_other_zone),
        cmocka_unit_test(test_router__prefer_local_and_standby),
        cmocka_unit_test(test_router__reload_keeps_state),
        cmocka_unit_test(test_router__retry_budget_bounds_failovers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
