#!/usr/bin/env bash
# Health-check hysteresis (DESIGN.md "Resilience semantics": rise/fall, the
# HAProxy counter). Three destinations answer every other probe, for about
# 12 probes each:
#   zone-a: 200, 503, 200, 503, ...  (a failing code)
#   zone-b: 200, silence, 200, ...   (a probe timeout)
#   zone-c: silent until keel marks it down, then 200, 503, 200, ...
# An up destination never sees `fall` (3) failures in a row, a down one
# never sees `rise` (2) passes in a row: none of them may change state.
# (Kamailio's dispatcher flipped a zone 14 times in 30 s on this.)
# WORKERS=N (resil_health_flap_workers: 2): the same with N workers, which
# share one health state: one probe per destination per interval, not N.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port); pc=$(free_port); ADMIN_PORT=$(free_port)
python3 "$LIB_DIR/resilconf.py" "$TMP/keel.yaml" "$port" \
    zone=zone-a:1:127.0.0.1:$pa zone=zone-b:1:127.0.0.1:$pb zone=zone-c:1:127.0.0.1:$pc \
    interval=1s timeout=500ms rise=2 fall=3 admin="$ADMIN_PORT" workers="${WORKERS:-1}"

# flap.py PORT FAIL(503|silent) LOG [SILENT_FLAG]: answers OPTIONS, every
# other distinct probe (by Via branch; a retransmission gets what its first
# copy got) with 200, the others with FAIL; while the file SILENT_FLAG
# exists it answers nothing (and counts nothing). One line per decision in
# LOG.
cat >"$TMP/flap.py" <<'PY'
import os, re, sys
import sip
port, fail, logf = int(sys.argv[1]), sys.argv[2], sys.argv[3]
flag = sys.argv[4] if len(sys.argv) > 4 else None
srv = sip.Server(port)
seen, n = {}, 0
log = open(logf, "a", buffering=1)
while True:
    req, data, addr = srv.recv(1.0)
    if req is None or not req.start.startswith("OPTIONS "):
        continue
    if flag and os.path.exists(flag):
        continue
    m = re.search(r"branch=([^;,\s]+)", req.get("Via") or req.get("v") or "")
    br = m.group(1) if m else data
    if br not in seen:
        seen[br] = 200 if n % 2 == 0 else fail
        n += 1
        log.write("%d %s\n" % (n, seen[br]))
    if seen[br] == 200:
        srv.reply(req, addr, 200, "OK")
    elif seen[br] == "503":
        srv.reply(req, addr, 503, "Service Unavailable")
PY
flapper() {
    python3 "$TMP/flap.py" "$@" &
    PIDS+=("$!")
}
touch "$TMP/c.silent"
flapper "$pa" 503 "$TMP/a.flap"
flapper "$pb" silent "$TMP/b.flap"
flapper "$pc" 503 "$TMP/c.flap" "$TMP/c.silent"
sleep 0.3
t_start=$SECONDS
start_keel "$TMP/keel.yaml"

m() { scrape "$TMP/m.prom"; metric "$TMP/m.prom" "$@"; }
up() { [ "$(m keel_destination_up zone="$1")" = "$2" ]; }

# zone-c first goes down (silent), then starts flapping
wait_until 8 up zone-c 0 || fail "zone-c, silent, was not marked down"
rm "$TMP/c.silent"
t_flap_c=$SECONDS

# ~12 probes each; the state sampled twice a second all along
flips=0
for ((i = 0; i < 22; i++)); do
    scrape "$TMP/s.prom"
    a=$(metric "$TMP/s.prom" keel_destination_up zone=zone-a)
    b=$(metric "$TMP/s.prom" keel_destination_up zone=zone-b)
    c=$(metric "$TMP/s.prom" keel_destination_up zone=zone-c)
    [ "$a$b$c" = 110 ] || { echo "sample $i: up zone-a=$a zone-b=$b zone-c=$c"; flips=$((flips + 1)); }
    sleep 0.5
done

scrape "$TMP/end.prom"
e() { metric "$TMP/end.prom" "$@"; }
for f in a b c; do
    echo "zone-$f probes answered as: $(awk '{print $2}' "$TMP/$f.flap" | tr '\n' ' ')"
done
na=$(wc -l <"$TMP/a.flap"); nb=$(wc -l <"$TMP/b.flap"); nc=$(wc -l <"$TMP/c.flap")
[ "$na" -ge 10 ] && [ "$nb" -ge 10 ] && [ "$nc" -ge 10 ] \
    || fail "too few probes to judge: zone-a $na, zone-b $nb, zone-c $nc (interval 1 s, $((SECONDS - t_flap_c)) s)"
# one prober: about one probe a second per destination, whatever the workers
most=$(((SECONDS - t_start) * 23 / 20 + 2))
[ "$na" -le "$most" ] && [ "$nb" -le "$most" ] && [ "$nc" -le "$most" ] \
    || fail "too many probes: zone-a $na, zone-b $nb, zone-c $nc in $((SECONDS - t_start)) s (interval 1 s, ${WORKERS:-1} workers)"
echo "probes: sent zone-a=$(e keel_health_probes_total zone=zone-a result=sent) answered=$(e keel_health_probes_total zone=zone-a result=answered);" \
    "zone-b sent=$(e keel_health_probes_total zone=zone-b result=sent) timeout=$(e keel_health_probes_total zone=zone-b result=timeout)"
[ "$(e keel_health_probes_total zone=zone-b result=timeout)" != 0 ] || fail "no probe timeout counted for zone-b"

[ "$(e keel_destination_health_changes_total zone=zone-a)" = 0 ] \
    || fail "zone-a (200/503 alternating) changed state $(e keel_destination_health_changes_total zone=zone-a) times"
[ "$(e keel_destination_health_changes_total zone=zone-b)" = 0 ] \
    || fail "zone-b (200/silence alternating) changed state $(e keel_destination_health_changes_total zone=zone-b) times"
[ "$(e keel_destination_health_changes_total zone=zone-c to=down)" = 1 ] \
    && [ "$(e keel_destination_health_changes_total zone=zone-c to=up)" = 0 ] \
    || fail "zone-c (down, then alternating) changed state: to=up $(e keel_destination_health_changes_total zone=zone-c to=up)"
! grep -E "event=destination_(down|up) zone=zone-(a|b)" "$TMP/keel.log" || fail "a state change of zone-a or zone-b was logged"
! grep -E "event=destination_up zone=zone-c" "$TMP/keel.log" || fail "zone-c was marked up"
[ "$flips" = 0 ] || fail "$flips samples of 22 saw a flapping destination change state"
pass "answering every other probe: $na, $nb and $nc probes, no state change (up stays up, down stays down)"
stop_keel
