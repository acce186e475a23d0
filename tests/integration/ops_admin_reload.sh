#!/usr/bin/env bash
# The admin listener follows reloads like the SIP listeners do:
#  - moved to another port by POST /v1/reload: the answer still comes back
#    on the request's connection, the new port answers, the old one closes;
#  - removed and re-added by SIGHUP;
#  - moved to a port that is in use: the reload fails and changes nothing,
#    as for a SIP listener that cannot bind (400 naming the port, version
#    unchanged, counted as an error, admin still on its port);
#  - removed by POST /v1/reload: the answer comes back and keel keeps
#    running.
# The last two are checked independently and reported together.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port)
conf() { python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml.new" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" "$@" \
    && mv "$TMP/keel.yaml.new" "$TMP/keel.yaml"; }
http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 3 "http://127.0.0.1:$1$2" || true; }
conf admin="$ADMIN_PORT"
start_keel "$TMP/keel.yaml"

# ---- moved by POST ----
a2=$(free_port)
conf admin="$a2"
code=$(admin_code POST /v1/reload)
[ "$code" = 200 ] || fail "reload moving the admin listener: HTTP $code: $(cat "$TMP/admin.body")"
[ "$(http_code "$a2" /healthz)" = 200 ] || fail "the new admin port does not answer"
[ "$(http_code "$ADMIN_PORT" /healthz)" = 000 ] || fail "the old admin port still answers"
ADMIN_PORT=$a2
pass "admin moved by POST /v1/reload: answered on the old connection, new port up, old one closed"

# ---- removed and re-added by SIGHUP ----
conf
kill -HUP "$KEEL_PID"
gone() { [ "$(http_code "$ADMIN_PORT" /healthz)" = 000 ]; }
wait_until 5 gone || fail "the admin listener removed by SIGHUP still answers"
conf admin="$ADMIN_PORT"
kill -HUP "$KEEL_PID"
back() { [ "$(http_code "$ADMIN_PORT" /healthz)" = 200 ]; }
wait_until 5 back || fail "the admin listener re-added by SIGHUP does not answer"
v=$(admin_get /v1/state | json_eval 'j["config_version"]')
[ "$v" = 4 ] || fail "config_version $v after 3 reloads"
pass "admin removed and re-added by SIGHUP"

problems=()

# ---- moved to a busy port ----
busy=$(free_port)
python3 -c 'import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); time.sleep(30)' "$busy" &
holder=$!
PIDS+=("$holder")
sleep 0.3
conf admin="$busy"
code=$(admin_code POST /v1/reload)
body=$(cat "$TMP/admin.body")
v=$(admin_get /v1/state | json_eval 'j["config_version"]')
scrape "$TMP/m.prom"
errs=$(metric "$TMP/m.prom" keel_config_reloads_total result=error)
echo "reload to busy admin port $busy: HTTP $code $body; config_version now $v; reload errors $errs"
if [ "$code" != 400 ] || ! grep -q "$busy" <<<"$body"; then
    problems+=("a reload moving the admin listener to port $busy (in use) answered HTTP $code $body, expected 400 naming the port (a SIP listener that cannot bind fails the reload)")
fi
[ "$v" = 4 ] || problems+=("the reload to a busy admin port took effect: config_version $v, expected 4")
[ "$errs" = 1 ] || problems+=("the reload to a busy admin port is not counted as an error (keel_config_reloads_total{result=\"error\"} = $errs)")
[ "$(http_code "$ADMIN_PORT" /healthz)" = 200 ] || problems+=("the admin listener left its port $ADMIN_PORT")
stop_pid "$holder"
conf admin="$ADMIN_PORT"

# ---- removed by POST ----
conf
code=$(admin_code POST /v1/reload || true)
sleep 0.5
if ! kill -0 "$KEEL_PID" 2>/dev/null; then
    problems+=("keel died on POST /v1/reload of a file without an admin section (HTTP '$code'); log: $(grep -v 'config_adopted\|event=listening' "$TMP/keel.log" | tail -3 | tr '\n' ' ')")
    _pids_forget "$KEEL_PID"
else
    [ "$code" = 200 ] || problems+=("POST /v1/reload removing the admin listener answered HTTP '$code': $(cat "$TMP/admin.body")")
    [ "$(http_code "$ADMIN_PORT" /healthz)" = 000 ] || problems+=("the admin listener removed by POST still answers")
    python3 "$LIB_DIR/sipcheck.py" wait 127.0.0.1 "$port" || problems+=("keel stopped answering SIP after the admin listener was removed")
fi

if [ ${#problems[@]} -gt 0 ]; then
    printf 'FAIL: %s\n' "${problems[@]}" >&2
    exit 1
fi
pass "busy admin port: reload refused, nothing changed; admin removed by POST: answered, keel runs on"
stop_keel
