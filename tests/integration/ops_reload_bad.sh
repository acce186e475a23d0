#!/usr/bin/env bash
# Reloads of broken files (SIGHUP and POST /v1/reload) while calls run:
# keel keeps serving on the old config (no call fails, nothing of the bad
# file takes effect), the log and the 400 body name file:line:column and the
# key, keel_config_reloads_total{result="error"} counts each one, and the
# next good file reloads normally.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() { # conf OUT [proxyconf options]
    local out=$1
    shift
    python3 "$LIB_DIR/proxyconf.py" "$out" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" admin="$ADMIN_PORT" "$@"
}
install() { cp "$1" "$TMP/keel.yaml.new" && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"; }
conf "$TMP/keel.yaml"
cp "$TMP/keel.yaml" "$TMP/good.yaml"
start_uas uasa "$pa" uas_call.xml
start_uas uasb "$pb" uas_call.xml
start_keel "$TMP/keel.yaml"
F="$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
state() { admin_get /v1/state | json_eval "$1"; }
# where FILE TEXT: line:column (1-based) of the first TEXT in FILE
where() { python3 -c 'import sys
for i, l in enumerate(open(sys.argv[1]), 1):
    c = l.find(sys.argv[2])
    if c >= 0:
        print("%d:%d" % (i, c + 1)); break' "$1" "$2"; }

# calls through keel the whole time the bad files come and go
run_uac uac1 "127.0.0.1:$port" uac_call.xml -s 1000 -m 80 -r 10 -d 500 -timeout 40s &
uac_pid=$!
PIDS+=("$uac_pid")
sleep 1

# ---- 1: a wrong type, by SIGHUP ----
conf "$TMP/bad1.yaml" weight_a=heavy
where1=$(where "$TMP/bad1.yaml" heavy)
install "$TMP/bad1.yaml"
kill -HUP "$KEEL_PID"
logged() { grep -q "event=reload_failed error=\"$1" "$TMP/keel.log"; }
wait_until 5 logged "$F:$where1: clusters\[0\].zones\[0\].weight: " \
    || fail "no reload_failed line naming $F:$where1 and the key: $(grep reload_failed "$TMP/keel.log")"
[ "$(m keel_config_reloads_total result=error)" = 1 ] || fail "reloads error = $(m keel_config_reloads_total result=error), expected 1"
[ "$(m keel_config_reloads_total result=ok)" = 0 ] || fail "a bad file counted as a reload ok"
[ "$(m keel_config_version)" = 1 ] || fail "config version moved on a bad file"
pass "SIGHUP with a wrong type: logged at $F:$where1 with the key, counted, version still 1"

# ---- 2: a YAML syntax error, by POST ----
conf "$TMP/bad2.yaml"
sed -i 's/^      - name: zone-b$/      - { name: zone-b/' "$TMP/bad2.yaml"
install "$TMP/bad2.yaml"
code=$(admin_code POST /v1/reload)
[ "$code" = 400 ] || fail "POST /v1/reload of a syntax error: HTTP $code: $(cat "$TMP/admin.body")"
err2=$(json_eval 'j["error"]' <"$TMP/admin.body")
[ "$(json_eval 'j["result"]' <"$TMP/admin.body")" = error ] || fail "400 body without result=error: $(cat "$TMP/admin.body")"
[[ "$err2" =~ ^"$F":[0-9]+:[0-9]+:\ .*YAML ]] || fail "400 error does not start with $F:line:column: $err2"
grep -qF "event=reload_failed error=\"$err2\"" "$TMP/keel.log" || fail "the log does not carry the same message: $err2"
[ "$(m keel_config_reloads_total result=error)" = 2 ] || fail "reloads error is not 2"
pass "POST with a YAML syntax error: 400 naming file:line:column, the same in the log, counted"

# ---- 3: new weights but an unknown key, by POST: nothing of it applies ----
conf "$TMP/bad3.yaml" weight_a=90 weight_b=10
sed -i 's/max_attempts: 3,/max_attempts: 3, max_atempts: 2,/' "$TMP/bad3.yaml"
where3=$(where "$TMP/bad3.yaml" max_atempts)
install "$TMP/bad3.yaml"
code=$(admin_code POST /v1/reload)
[ "$code" = 400 ] || fail "POST /v1/reload of an unknown key: HTTP $code: $(cat "$TMP/admin.body")"
err3=$(json_eval 'j["errors"][0]' <"$TMP/admin.body")
case "$err3" in
"$F:$where3: clusters[0].failover.max_atempts: "*) ;;
*) fail "400 error is not at $F:$where3 with the key path: $err3" ;;
esac
grep -qF "event=reload_failed error=\"$err3\"" "$TMP/keel.log" || fail "the log does not carry: $err3"
[ "$(m keel_config_reloads_total result=error)" = 3 ] || fail "reloads error is not 3"
[ "$(state 'j["config_version"]')" = 1 ] || fail "config_version moved"
[ "$(state '[z["weight"] for z in j["clusters"][0]["zones"]]')" = "[50, 50]" ] \
    || fail "the bad file's weights took effect: $(state '[z["weight"] for z in j["clusters"][0]["zones"]]')"
pass "POST with an unknown key: 400 at $F:$where3 naming clusters[0].failover.max_atempts; its weights not applied"

# ---- 4: a file that does not exist any more ----
rm -f "$F"
code=$(admin_code POST /v1/reload)
[ "$code" = 400 ] || fail "POST /v1/reload with no file: HTTP $code: $(cat "$TMP/admin.body")"
grep -qF "$F" "$TMP/admin.body" || fail "the 400 does not name the file: $(cat "$TMP/admin.body")"
[ "$(m keel_config_reloads_total result=error)" = 4 ] || fail "reloads error is not 4"
pass "POST with the file gone: 400 naming it, counted"

rc=0
wait "$uac_pid" || rc=$?
_pids_forget "$uac_pid"
[ $rc -eq 0 ] || fail "calls failed during the bad reloads (rc=$rc): $(tail -5 "$TMP/uac1.log")"
[ "$(stat uac1 "FailedCall(C)")" = 0 ] || fail "FailedCall $(stat uac1 "FailedCall(C)")"
[ "$(stat uac1 "SuccessfulCall(C)")" = 80 ] || fail "$(stat uac1 "SuccessfulCall(C)") of 80 calls succeeded"
pass "80 calls during 4 bad reloads: all succeeded"

# ---- the next good files reload ----
conf "$TMP/good2.yaml" weight_a=90 weight_b=10
install "$TMP/good2.yaml"
code=$(admin_code POST /v1/reload)
[ "$code" = 200 ] || fail "good reload after bad ones: HTTP $code: $(cat "$TMP/admin.body")"
[ "$(json_eval 'j["result"] == "ok" and j["config_version"] == 2' <"$TMP/admin.body")" = true ] \
    || fail "good reload body: $(cat "$TMP/admin.body")"
[ "$(state '[z["weight"] for z in j["clusters"][0]["zones"]]')" = "[90, 10]" ] || fail "the good weights did not apply"
install "$TMP/good.yaml"
kill -HUP "$KEEL_PID"
v3() { [ "$(m keel_config_version)" = 3 ]; }
wait_until 5 v3 || fail "SIGHUP with a good file: version $(m keel_config_version), expected 3"
[ "$(m keel_config_reloads_total result=ok)" = 2 ] || fail "reloads ok is not 2"
[ "$(m keel_config_reloads_total result=error)" = 4 ] || fail "reloads error moved on good reloads"
grep -q "event=reloaded version=3" "$TMP/keel.log" || fail "no reloaded line for version 3"
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 20 -r 20 -d 100 -timeout 20s \
    || fail "calls after the good reloads failed: $(tail -5 "$TMP/uac2.log")"
pass "good files reload after bad ones (POST: version 2, SIGHUP: version 3); calls complete"
stop_keel
