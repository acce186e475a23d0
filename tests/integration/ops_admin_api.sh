#!/usr/bin/env bash
# Every admin endpoint, and its errors: /healthz, /readyz (200, and 503 with
# the problem named when a cluster has no destination up), /metrics
# (content type of the 0.0.4 text format), GET /v1/state (the JSON shape),
# POST /v1/reload (config_version grows), zone and destination drain and
# undrain (404 for unknown ones), unknown paths 404, wrong methods 405 with
# Allow, and the bearer token on POSTs (401 without or with a wrong one).
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() { python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT" extra_b="127.0.0.1:$pb;transport=tcp" "$@"; }
conf
start_keel "$TMP/keel.yaml"
body() { cat "$TMP/admin.body"; }
header() { # header NAME: the value of a response header of the last admin_code
    python3 -c 'import sys
for l in open(sys.argv[1], encoding="latin-1"):
    k, _, v = l.partition(":")
    if k.strip().lower() == sys.argv[2].lower(): print(v.strip())' "$TMP/admin.headers" "$1"
}
is_json_error() { # the body is a JSON object with a non-empty "error" message
    body | json_eval 'isinstance(j.get("error"), str) and len(j["error"]) > 0' | grep -qx true
}
expect_code() { # expect_code WANT METHOD PATH [curl args...]
    local want=$1 got
    shift
    got=$(admin_code "$@")
    [ "$got" = "$want" ] || fail "$1 $2: HTTP $got, expected $want: $(body)"
}

# ---- health, readiness, metrics ----
expect_code 200 GET /healthz
[ "$(body | json_eval 'j["status"]')" = ok ] || fail "/healthz body: $(body)"
expect_code 200 GET /readyz
[ "$(body | json_eval 'j["ready"] is True and j["problems"] == []')" = true ] || fail "/readyz body: $(body)"
expect_code 200 GET /metrics
case "$(header Content-Type)" in
"text/plain; version=0.0.4"*) ;;
*) fail "/metrics Content-Type: $(header Content-Type)" ;;
esac
grep -q '^keel_build_info{version="[^"]*"} 1$' "$TMP/admin.body" || fail "no keel_build_info in /metrics"
grep -q '^keel_config_version 1$' "$TMP/admin.body" || fail "keel_config_version is not 1 at start"
expect_code 200 HEAD /metrics -I
pass "/healthz 200, /readyz 200 ready, /metrics 200 text/plain; version=0.0.4, HEAD 200"

# ---- /v1/state ----
expect_code 200 GET /v1/state
[ "$(header Content-Type)" = application/json ] || fail "/v1/state Content-Type: $(header Content-Type)"
body | python3 -c '
import json, sys
pa, pb = sys.argv[1], sys.argv[2]
j = json.load(sys.stdin)
def need(c, what):
    if not c:
        sys.exit("state: " + what + ": " + json.dumps(j)[:2000])
need(j["config_version"] == 1, "config_version is 1")
need([c["name"] for c in j["clusters"]] == ["voice", "chat"], "clusters voice and chat")
voice = j["clusters"][0]
need([z["name"] for z in voice["zones"]] == ["zone-a", "zone-b"], "voice has zone-a and zone-b")
uris = [[d["uri"] for d in z["destinations"]] for z in voice["zones"]]
need(uris == [["sip:127.0.0.1:" + pa], ["sip:127.0.0.1:" + pb, "sip:127.0.0.1:" + pb + ";transport=tcp"]],
     "the destinations as configured")
types = {"uri": str, "up": bool, "drained": bool, "in_flight": int, "dialogs": int,
         "attempts": int, "successes": int, "failures": int, "timeouts": int,
         "weight": int, "weight_in_force": (int, float)}
for z in voice["zones"]:
    need(z["drained"] is False, "zone not drained")
    for d in z["destinations"]:
        for k, t in types.items():
            need(k in d and isinstance(d[k], t) and not (t is int and isinstance(d[k], bool)),
                 "destination member %s of type %s" % (k, t))
        need(d["up"] is True and d["drained"] is False and d["in_flight"] == 0, "fresh destination")
        need(d["weight"] == 1 and d["weight_in_force"] == 1, "weight 1 in force")
' "$pa" "$pb" || fail "/v1/state shape"
pass "/v1/state: config_version, clusters[].zones[].destinations[] with health, weights, counters"

# ---- unknown paths, wrong methods ----
for p in / /nope /v1 /v1/state/x /v1/zones/zone-a /v1/zones/zone-a/destinations/x /metrics/x; do
    expect_code 404 GET "$p"
    is_json_error || fail "404 on $p is not a JSON error: $(body)"
done
for p in /healthz /readyz /metrics /v1/state; do
    expect_code 405 POST "$p"
    is_json_error || fail "405 on POST $p is not a JSON error: $(body)"
    case "$(header Allow)" in *GET*) ;; *) fail "405 on POST $p: Allow is '$(header Allow)'" ;; esac
    expect_code 405 DELETE "$p"
done
for p in /v1/reload /v1/zones/zone-a/drain /v1/zones/zone-a/undrain \
    "/v1/zones/zone-b/destinations/sip%3A127.0.0.1%3A$pb/drain"; do
    expect_code 405 GET "$p"
    [ "$(header Allow)" = POST ] || fail "405 on GET $p: Allow is '$(header Allow)'"
    is_json_error || fail "405 on GET $p is not a JSON error: $(body)"
    expect_code 405 PUT "$p"
    [ "$(header Allow)" = POST ] || fail "405 on PUT $p: Allow is '$(header Allow)'"
done
pass "unknown paths 404, wrong methods 405 with Allow, JSON error bodies"

# ---- drain and undrain: known and unknown zones and destinations ----
expect_code 404 POST /v1/zones/zone-x/drain
is_json_error || fail "unknown zone: not a JSON error: $(body)"
body | grep -q zone-x || fail "the 404 does not name the zone: $(body)"
expect_code 404 POST /v1/zones/zone-x/undrain
expect_code 404 POST "/v1/zones/zone-a/destinations/sip%3A127.0.0.1%3A1/drain"
is_json_error || fail "unknown destination: not a JSON error: $(body)"
# zone-b's destination is not in zone-a
expect_code 404 POST "/v1/zones/zone-a/destinations/sip%3A127.0.0.1%3A$pb/drain"
expect_code 200 POST /v1/zones/zone-a/drain
[ "$(body | json_eval 'j["drained"] is True and j["zone"] == "zone-a"')" = true ] || fail "drain body: $(body)"
admin_get /v1/state | json_eval 'j["clusters"][0]["zones"][0]["drained"]' | grep -qx true \
    || fail "/v1/state does not show zone-a drained"
scrape "$TMP/m.prom"
[ "$(metric "$TMP/m.prom" keel_zone_drained zone=zone-a)" = 1 ] || fail "keel_zone_drained{zone-a} is not 1"
expect_code 200 POST /v1/zones/zone-a/undrain
admin_get /v1/state | json_eval 'j["clusters"][0]["zones"][0]["drained"]' | grep -qx false \
    || fail "/v1/state still shows zone-a drained"
enc="sip%3A127.0.0.1%3A$pb%3Btransport%3Dtcp"
expect_code 200 POST "/v1/zones/zone-b/destinations/$enc/drain"
[ "$(body | json_eval 'j["destination"]')" = "sip:127.0.0.1:$pb;transport=tcp" ] || fail "drain body: $(body)"
admin_get /v1/state | json_eval '[d["drained"] for d in j["clusters"][0]["zones"][1]["destinations"]]' \
    | grep -qx '\[false, true\]' || fail "/v1/state does not show the one destination drained"
expect_code 200 POST "/v1/zones/zone-b/destinations/$enc/undrain"
admin_get /v1/state | json_eval '[d["drained"] for d in j["clusters"][0]["zones"][1]["destinations"]]' \
    | grep -qx '\[false, false\]' || fail "the destination is still drained"
pass "drain/undrain of a zone and a destination: 200 and visible in /v1/state; unknown ones 404"

# ---- reload; readiness with a cluster that has no destination up ----
expect_code 200 POST /v1/reload
[ "$(body | json_eval 'j["result"] == "ok" and j["config_version"] == 2')" = true ] || fail "reload body: $(body)"
[ "$(admin_get /v1/state | json_eval 'j["config_version"]')" = 2 ] || fail "/v1/state config_version is not 2"
scrape "$TMP/m.prom"
[ "$(metric "$TMP/m.prom" keel_config_version)" = 2 ] || fail "keel_config_version is not 2"
[ "$(metric "$TMP/m.prom" keel_config_reloads_total result=ok)" = 1 ] || fail "reloads ok is not 1"
# a .invalid name never resolves (RFC 6761): cluster chat has no destination up
conf chat_a=sip:chat-a.invalid chat_b=sip:chat-b.invalid
expect_code 200 POST /v1/reload
not_ready() { [ "$(admin_code GET /readyz)" = 503 ]; }
wait_until 5 not_ready || fail "/readyz is $(admin_code GET /readyz) with no chat destination up: $(body)"
[ "$(body | json_eval 'j["ready"] is False and any("chat" in p for p in j["problems"]) and len(j["problems"]) == 1')" = true ] \
    || fail "/readyz 503 body does not name cluster chat alone: $(body)"
conf
expect_code 200 POST /v1/reload
[ "$(body | json_eval 'j["config_version"]')" = 4 ] || fail "third reload: $(body)"
expect_code 200 GET /readyz
pass "POST /v1/reload 200 with config_version 2, 3, 4; /readyz 503 naming the cluster with no destination up, 200 again"

# ---- bearer token on POSTs ----
conf token=s3cret-token
expect_code 200 POST /v1/reload
expect_code 401 POST /v1/reload
is_json_error || fail "401 is not a JSON error: $(body)"
header WWW-Authenticate | grep -q '^Bearer' || fail "401 without WWW-Authenticate: Bearer"
expect_code 401 POST /v1/reload -H "Authorization: Bearer wrong-token"
expect_code 401 POST /v1/reload -H "Authorization: Bearer s3cret-toke"
expect_code 401 POST /v1/reload -H "Authorization: Bearer s3cret-token-and-more"
expect_code 401 POST /v1/reload -H "Authorization: Basic czNjcmV0LXRva2Vu"
expect_code 401 POST /v1/zones/zone-a/drain
expect_code 401 POST /v1/zones/zone-a/drain -H "Authorization: Bearer wrong-token"
admin_get /v1/state | json_eval 'j["clusters"][0]["zones"][0]["drained"]' | grep -qx false \
    || fail "an unauthorized drain drained zone-a"
[ "$(admin_get /v1/state | json_eval 'j["config_version"]')" = 5 ] || fail "an unauthorized reload reloaded"
expect_code 200 GET /metrics
expect_code 200 GET /v1/state
expect_code 200 GET /healthz
ADMIN_TOKEN=s3cret-token
expect_code 200 POST /v1/zones/zone-a/drain -H "Authorization: Bearer $ADMIN_TOKEN"
expect_code 200 POST /v1/zones/zone-a/undrain -H "Authorization: Bearer $ADMIN_TOKEN"
expect_code 200 POST /v1/reload -H "Authorization: Bearer $ADMIN_TOKEN"
[ "$(body | json_eval 'j["config_version"]')" = 6 ] || fail "authorized reload: $(body)"
expect_code 404 POST /v1/zones/zone-x/drain -H "Authorization: Bearer $ADMIN_TOKEN"
pass "token: POSTs 401 without, with a wrong or partial token and with Basic; 200 with it; GETs open"

# a SIP call still goes through after all that
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
run_uac uac "127.0.0.1:$port" uac_call.xml -s 1000 -m 4 -r 10 -d 100 -timeout 20s \
    || fail "calls after the admin calls failed: $(tail -5 "$TMP/uac.log")"
pass "calls still complete"

# an unknown path is 404 however deep it is (kept last: keel answers a path
# of more than 8 segments 400 "the path does not decode")
for p in /v1/zones/zone-a/destinations/x/drain/extra /a/b/c/d/e/f/g/h /a/b/c/d/e/f/g/h/i \
    /v1/zones/zone-a/destinations/x/y/z/drain/more; do
    expect_code 404 GET "$p"
    is_json_error || fail "404 on $p is not a JSON error: $(body)"
done
pass "deep unknown paths 404"
stop_keel
