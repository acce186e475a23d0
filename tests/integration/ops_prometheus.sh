#!/usr/bin/env bash
# A real Prometheus server scrapes keel's /metrics; after a set of calls
# (zone-a answers after ringing 300 ms, zone-b answers 486 Busy Here), the
# ASR, NER and setup-time queries evaluated through Prometheus' HTTP API
# match the calls the test made.
#   ASR   = sum(keel_calls_answered_total) / sum(keel_calls_seized_total)
#   NER   = 1 - (sum(keel_calls_network_failures_total) or vector(0)) / sum(keel_calls_seized_total)
#   setup = histogram_quantile(0.5, sum by (le) (keel_call_setup_seconds_bucket{phase="answer"}))
# (over a window, an operator puts increase(...[5m]) around each counter;
# the test's whole life fits in one scrape history, so the totals are the
# window. A counter series appears with its first increment: with no
# network failure yet there is no series, hence the "or vector(0)".)
source "$(dirname "$0")/lib/common.sh"
command -v prometheus >/dev/null || fail "prometheus is not installed (scripts/setup installs it)"

port=$(free_port); pa=$(free_port); pb=$(free_port); ADMIN_PORT=$(free_port); pport=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    admin="$ADMIN_PORT"
start_uas uasa "$pa" uas_call_slow.xml
start_uas uasb "$pb" uas_486.xml
start_keel "$TMP/keel.yaml"

cat >"$TMP/prometheus.yml" <<YAML
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: keel
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ["127.0.0.1:$ADMIN_PORT"]
YAML
promtool check config "$TMP/prometheus.yml" >/dev/null || fail "promtool rejects the scrape config"
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/tsdb" \
    --web.listen-address="127.0.0.1:$pport" >"$TMP/prometheus.log" 2>&1 &
PROM_PID=$!
PIDS+=("$PROM_PID")

# promql QUERY: the value of an instant query with one result, or "none"
promql() {
    curl -sS --max-time 5 "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" \
        | python3 -c 'import json,sys
d=json.load(sys.stdin)
assert d["status"]=="success", d
r=d["data"]["result"]
print(r[0]["value"][1] if len(r)==1 else "none")'
}
prom_ready() { curl -sf --max-time 2 "http://127.0.0.1:$pport/-/ready" >/dev/null; }
wait_until 30 prom_ready || fail "prometheus did not get ready"
target_up() { [ "$(promql 'up{job="keel"}')" = 1 ]; }
wait_until 15 target_up || fail "prometheus does not scrape keel: $(curl -s "http://127.0.0.1:$pport/api/v1/targets")"
pass "prometheus scrapes keel's admin listener"

n=40
run_uac uac "127.0.0.1:$port" uac_call_or_busy.xml -s 1000 -m $n -r 20 -d 200 -timeout 40s \
    || fail "sipp uac: not every call ended as scripted (rc=$?): $(tail -5 "$TMP/uac.log")"
sleep 1.5
answered=$(uas_count uasa INVITE_Recv); busy=$(uas_count uasb INVITE_Recv)
echo "calls: $n, answered by zone-a: $answered, busy on zone-b: $busy"
[ $((answered + busy)) -eq $n ] || fail "the servers got $((answered + busy)) calls, not $n"
[ "$answered" -gt 0 ] && [ "$busy" -gt 0 ] || fail "split $answered/$busy: the ASR is not tested"

# the counters are final: wait until Prometheus has scraped them
seized_all() { [ "$(promql 'sum(keel_calls_seized_total)')" = "$n" ] \
    && [ "$(promql 'sum(keel_call_setup_seconds_count{phase="answer"})')" = "$answered" ]; }
wait_until 15 seized_all || fail "prometheus has sum(keel_calls_seized_total)=$(promql 'sum(keel_calls_seized_total)'), not $n"

asr=$(promql 'sum(keel_calls_answered_total) / sum(keel_calls_seized_total)')
ner=$(promql '1 - (sum(keel_calls_network_failures_total) or vector(0)) / sum(keel_calls_seized_total)')
p50=$(promql 'histogram_quantile(0.5, sum by (le) (keel_call_setup_seconds_bucket{phase="answer"}))')
busy_seen=$(promql 'sum(keel_call_final_responses_total{code="486"})')
echo "prometheus: ASR=$asr NER=$ner setup p50=${p50}s 486s=$busy_seen"
python3 - "$asr" "$answered" "$n" <<'PY' || fail "ASR from prometheus is $asr, the test made $answered answered of $n"
import sys
asr, a, n = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sys.exit(0 if abs(asr - a / n) < 1e-9 else 1)
PY
[ "$ner" = 1 ] || fail "NER is $ner: no call failed for the network (486 is the callee's answer)"
[ "$busy_seen" = "$busy" ] || fail "prometheus counts $busy_seen 486s, zone-b sent $busy"
# zone-a answers 300 ms after the INVITE: the median falls in the (0.25, 0.5] bucket
python3 -c 'import sys; v=float(sys.argv[1]); sys.exit(0 if 0.25 < v <= 0.5 else 1)' "$p50" \
    || fail "setup time p50 is ${p50}s, zone-a answers after 0.3 s"
pass "ASR $asr = $answered/$n, NER 1, setup p50 ${p50}s in (0.25, 0.5] as the servers were scripted"

stop_pid "$PROM_PID"
stop_keel
