#!/usr/bin/env bash
# Panic mode (DESIGN.md "Resilience semantics", issue 6 "Degraded and panic
# modes", Envoy's panic threshold): when nothing in a cluster is healthy,
# keel routes anyway instead of answering every call 503, on evidence that
# may be about the probes, not the servers. Here the health checks accept
# only 404 while the servers answer OPTIONS 200: every destination is
# marked down, yet every call goes through (counted in
# keel_cluster_panic_total, logged once per 1000), the zones count as
# degraded (keel_zone_degraded), and /v1/state says so. A reload that
# accepts 200 brings them up: no more panic routing.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() {
    python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml.new" "$port" \
        zone=zone-a:50:127.0.0.1:$pa zone=zone-b:50:127.0.0.1:$pb \
        interval=1s timeout=500ms rise=2 fall=3 window=0ms admin="$ADMIN_PORT" "$@" &&
        mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"
}
conf accept=404
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
all_down() { [ "$(m keel_destination_up)" = 0 ]; }
all_up() { [ "$(m keel_destination_up)" = 2 ]; }
wait_until 8 all_down || fail "the destinations were not marked down (probes answered 200, accept [404])"

# ---- nothing healthy: route anyway ----
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 40 -r 20 -d 100 -timeout 30s \
    || fail "with every destination down, calls failed instead of panic routing: $(tail -5 "$TMP/uac1.log")"
scrape "$TMP/p1.prom"
e() { metric "$TMP/p1.prom" "$@"; }
panics=$(e keel_cluster_panic_total cluster=voice)
echo "40 calls with nothing healthy: panics=$panics, zone-a $(e keel_calls_answered_total zone=zone-a), zone-b $(e keel_calls_answered_total zone=zone-b)"
[ "${panics%.*}" -ge 40 ] || fail "keel_cluster_panic_total is $panics after 40 calls routed in panic"
[ "$(e keel_calls_answered_total zone=zone-a)" -ge 10 ] && [ "$(e keel_calls_answered_total zone=zone-b)" -ge 10 ] \
    || fail "panic routing did not share by weight"
grep -q "event=cluster_panic cluster=voice" "$TMP/keel.log" || fail "panic routing not logged"
[ "$(e keel_zone_degraded zone=zone-a)" = 1 ] && [ "$(e keel_zone_degraded zone=zone-b)" = 1 ] \
    || fail "keel_zone_degraded is not 1 for zones with no healthy destination"
pass "every destination down: 40 of 40 calls routed anyway (panic), zones degraded"

admin_get /v1/state >"$TMP/state.json" # judged at the end

# ---- healthy again: no panic ----
conf
kill -HUP "$KEEL_PID"
wait_until 8 all_up || fail "the destinations did not come up once 200 was accepted"
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 40 -r 20 -d 100 -timeout 30s \
    || fail "calls failed with healthy destinations: $(tail -5 "$TMP/uac2.log")"
scrape "$TMP/p2.prom"
[ "$(metric "$TMP/p2.prom" keel_cluster_panic_total cluster=voice)" = "$panics" ] \
    || fail "panic routing went on with healthy destinations"
[ "$(metric "$TMP/p2.prom" keel_zone_degraded)" = 0 ] || fail "zones still degraded when healthy"
pass "healthy again: no panic routing, not degraded"
# /v1/state: degraded and panic per zone, and bulkhead occupancy (issue 6:
# "exported as metrics and in /v1/state"; "/v1/state shows ... bulkhead
# occupancy"); the key names are not specified: any key naming them.
# The state saved while everything was down:
python3 - "$TMP/state.json" <<'PY' || fail "/v1/state does not show degraded/panic mode or bulkhead occupancy per zone (see above)"
import json, sys
st = json.load(open(sys.argv[1]))
bad = []
for c in st["clusters"]:
    for z in c["zones"]:
        keys = {k.lower(): v for k, v in z.items()}
        deg = [v for k, v in keys.items() if "degraded" in k]
        pan = [v for k, v in keys.items() if "panic" in k] + \
              [v for k, v in c.items() if "panic" in k.lower()]
        occ = [k for k in keys if "bulkhead" in k or "occupancy" in k or "limits" in k]
        if not deg or not any(deg):
            bad.append("zone %s: no degraded flag set (keys: %s)" % (z["name"], sorted(z)))
        if not pan or not any(pan):
            bad.append("zone %s / cluster %s: no panic state shown" % (z["name"], c["name"]))
        if not occ:
            bad.append("zone %s: no bulkhead occupancy" % z["name"])
for b in bad:
    print("missing in /v1/state:", b)
sys.exit(1 if bad else 0)
PY
pass "/v1/state shows degraded and panic mode and bulkhead occupancy"

stop_keel
