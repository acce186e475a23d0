#!/usr/bin/env bash
# docs/metrics.md, docs/config.md and conf/grafana/keel.json against a live
# keel:
#  - the dashboard is JSON Grafana imports as it is: a datasource template
#    variable, every panel with a unique id, a type, a gridPos inside the
#    24-column grid and not overlapping another, targets with an expr, and
#    the datasource variable as its datasource;
#  - every metric name in a dashboard expr or in the docs (code blocks and
#    inline code) is one keel exports, taken from a live scrape after calls
#    that make the labelled families appear (calls that fail over, a
#    rejected request, an injected fault, health probes, and a DNS-named
#    destination resolved through a blackholed primary and a dnsmasq
#    secondary, then served stale once dnsmasq is gone); histogram
#    _bucket/_sum/_count map to their family;
#    label names in matchers and by/on clauses exist on those families, and
#    label values matched with = occur in the scrape;
#  - with promtool: the cookbook's recording rules pass `promtool check
#    rules`, every cookbook query and dashboard expr parses, and
#    `promtool test rules` shows the ASR, NER, SER and SEER rules compute
#    what the docs say on a synthetic set of counters.
source "$(dirname "$0")/lib/common.sh"

DASH="$KEEL_SRC/conf/grafana/keel.json"
METRICS_MD="$KEEL_SRC/docs/metrics.md"
CONFIG_MD="$KEEL_SRC/docs/config.md"
for f in "$DASH" "$METRICS_MD" "$CONFIG_MD"; do
    [ -f "$f" ] || fail "$f is missing"
done

# ---- 1. the dashboard's structure ----
python3 - "$DASH" <<'PY' || fail "conf/grafana/keel.json is not an importable dashboard"
import json, sys

errors = []
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    print("not valid JSON: %s" % e)
    sys.exit(1)

def err(msg):
    errors.append(msg)

if "__inputs" in d:
    err("has __inputs: it would need the import wizard, not import as it is")
if not isinstance(d.get("schemaVersion"), int) or not 30 <= d["schemaVersion"] <= 39:
    err("schemaVersion %r: expected an integer around 36" % d.get("schemaVersion"))
if not isinstance(d.get("title"), str) or not d["title"]:
    err("no title")
tvars = d.get("templating", {}).get("list", [])
ds_vars = [v for v in tvars if v.get("type") == "datasource"]
if len(ds_vars) != 1 or ds_vars[0].get("query") != "prometheus":
    err("expected one template variable of type datasource with query prometheus")
ds_name = ds_vars[0].get("name") if ds_vars else "datasource"
want_ds = {"type": "prometheus", "uid": "${%s}" % ds_name}
for v in tvars:
    if v.get("type") == "query" and v.get("datasource") != want_ds:
        err("template variable %s: datasource %r, expected %r" % (v.get("name"), v.get("datasource"), want_ds))

panels = d.get("panels")
if not isinstance(panels, list) or not panels:
    err("no panels")
    panels = []
ids, rects = {}, []
for i, p in enumerate(panels):
    where = "panels[%d] (%s)" % (i, p.get("title"))
    pid = p.get("id")
    if not isinstance(pid, int) or isinstance(pid, bool):
        err("%s: id %r is not an integer" % (where, pid))
    elif pid in ids:
        err("%s: id %d already used by panels[%d]" % (where, pid, ids[pid]))
    else:
        ids[pid] = i
    if p.get("type") not in ("timeseries", "stat"):
        err("%s: type %r, expected timeseries or stat" % (where, p.get("type")))
    if not p.get("title"):
        err("%s: no title" % where)
    g = p.get("gridPos")
    if not isinstance(g, dict) or any(not isinstance(g.get(k), int) for k in "hwxy"):
        err("%s: gridPos %r needs integers h, w, x, y" % (where, g))
    else:
        if g["w"] < 1 or g["h"] < 1 or g["x"] < 0 or g["y"] < 0 or g["x"] + g["w"] > 24:
            err("%s: gridPos %r is outside the 24-column grid" % (where, g))
        for j, o in rects:
            if (g["x"] < o["x"] + o["w"] and o["x"] < g["x"] + g["w"] and
                    g["y"] < o["y"] + o["h"] and o["y"] < g["y"] + g["h"]):
                err("%s: gridPos overlaps panels[%d]" % (where, j))
        rects.append((i, g))
    if p.get("datasource") != want_ds:
        err("%s: datasource %r, expected %r" % (where, p.get("datasource"), want_ds))
    targets = p.get("targets")
    if not isinstance(targets, list) or not targets:
        err("%s: no targets" % where)
        continue
    refs = set()
    for t in targets:
        if not isinstance(t.get("expr"), str) or not t["expr"].strip():
            err("%s: a target without expr" % where)
        if not t.get("refId") or t.get("refId") in refs:
            err("%s: target refId %r missing or repeated" % (where, t.get("refId")))
        refs.add(t.get("refId"))
        if t.get("datasource") != want_ds:
            err("%s: target %s datasource %r, expected %r" % (where, t.get("refId"), t.get("datasource"), want_ds))
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
pass "keel.json: valid JSON, datasource variable, unique panel ids, gridPos, targets"

# ---- 2. a live scrape with the labelled families present ----
command -v dnsmasq >/dev/null || fail "dnsmasq is not installed (scripts/setup installs dnsmasq-base)"
port=$(free_port); pa=$(free_port); pb=$(free_port); aport=$(free_port)
dport=$(free_port); bport=$(free_port); tport=$(free_port)
ADMIN_PORT=$aport
# zone-a (tried first: prefer_local) answers 503, zone-b answers: every call
# is a failover, a network failure, a 503 and a 200
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    prefer_local=true admin="$aport"
printf 'admin: { address: 127.0.0.1, port: %s, faults: true }\n' "$aport" >"$TMP/admin.yaml"
grep -v '^admin:' "$TMP/keel.yaml" >>"$TMP/admin.yaml" && mv "$TMP/admin.yaml" "$TMP/keel.yaml"
# the DNS families: a cluster no route uses, its one destination a name
# (dest.test, A record, TTL 5 s) resolved through a primary resolver that
# never answers (hedged to the secondary, then marked down) and a dnsmasq
# secondary; health checks off there, so nothing is sent to the target
cat >>"$TMP/keel.yaml" <<YAML
  - name: dns-check
    health: { enabled: false }
    zones:
      - name: zone-dns
        destinations:
          - { uri: "sip:dest.test:$tport" }
dns:
  tiers:
    - { name: primary, servers: ["127.0.0.1:$bport"] }
    - { name: secondary, servers: ["127.0.0.1:$dport"] }
YAML
python3 "$LIB_DIR/dnsconf.py" blackhole "$bport" &
PIDS+=("$!")
dnsmasq --no-daemon --port="$dport" --listen-address=127.0.0.1 --bind-interfaces \
    --no-resolv --no-hosts --local=/test/ --pid-file="$TMP/dnsmasq.pid" --local-ttl=5 \
    --host-record=dest.test,127.0.0.1 --log-queries --log-facility=- >>"$TMP/dnsmasq.log" 2>&1 &
DNS_PID=$!
PIDS+=("$DNS_PID")
wait_until 5 python3 "$LIB_DIR/dnsconf.py" query "$dport" dest.test A >/dev/null \
    || fail "dnsmasq did not come up on $dport"
start_uas uasa "$pa" uas_503.xml
start_uas uasb "$pb" uas_call_rtpstat.xml
start_keel "$TMP/keel.yaml"

# (with media reports on the BYE and its 200: the keel_rtp_* families)
run_uac uac "127.0.0.1:$port" uac_call_rtpstat.xml -s 1000 -m 2 -r 10 -d 200 -timeout 30s \
    || fail "sipp uac: not every call succeeded: $(tail -5 "$TMP/uac.log")"
# a request keel rejects itself (403, not one of its domains), and junk
python3 - "$port" <<'PY' || fail "keel did not reject a foreign domain with 403"
import sys
from sip import Udp, request
u = Udp(int(sys.argv[1]))
r = u.ask(request("INVITE", "sip:+15551234@elsewhere.example.net", local_port=u.local_port))
u.send(b"this is not SIP\r\n\r\n")
sys.exit(0 if r is not None and r.code == 403 else 1)
PY
# a game-day fault on zone-a and one more call through it (fault families)
code=$(curl -sS --max-time 10 -o "$TMP/fault.json" -w '%{http_code}' -X POST \
    -d '{"kind": "abort", "zone": "zone-a", "duration": "30s"}' "http://127.0.0.1:$aport/v1/faults") \
    || fail "POST /v1/faults failed"
[ "$code" = 201 ] || fail "POST /v1/faults answered $code: $(cat "$TMP/fault.json")"
run_uac uac2 "127.0.0.1:$port" uac_call.xml -s 1000 -m 1 -r 10 -d 200 -timeout 30s \
    || fail "sipp uac2: the call with a fault on zone-a failed: $(tail -5 "$TMP/uac2.log")"
# every resolver gone once the name has its target: past the TTL the answer
# is served stale; by then the first health probes (one interval, 5 s) went out
dns_is() {
    scrape "$TMP/dns.prom"
    [ "$(metric "$TMP/dns.prom" "$1" zone=zone-dns name="sip:dest.test:$tport")" = "$2" ]
}
wait_until 10 dns_is keel_dns_targets 1 || fail "dest.test not resolved: $(grep dns "$TMP/dns.prom")"
stop_pid "$DNS_PID"
probed() { grep -q '^keel_health_probes_total{' "$TMP/dns.prom"; }
wait_until 20 eval 'dns_is keel_dns_stale 1 && probed' \
    || fail "dest.test not served stale (or no health probe) 20 s after its resolver died: $(grep -E 'dns|probes' "$TMP/dns.prom")"
sleep 1
curl -sS --max-time 10 "http://127.0.0.1:$aport/metrics" >"$TMP/scrape.prom" || fail "GET /metrics failed"
for fam in keel_failovers_total keel_calls_network_failures_total keel_requests_rejected_total \
    keel_call_duration_seconds keel_faults_injected_total keel_fault_hits_total \
    keel_health_probes_total keel_dns_targets keel_dns_stale keel_dns_query_seconds \
    keel_dns_queries_total keel_dns_hedges_total keel_dns_resolver_up keel_dns_stale_answers_total; do
    grep -q "^# TYPE $fam " "$TMP/scrape.prom" || fail "the scrape has no $fam after the calls"
done

# ---- 3. every name used is exported ----
python3 - "$TMP/scrape.prom" "$DASH" "$METRICS_MD" "$CONFIG_MD" <<'PY' || fail "the docs or the dashboard use names keel does not export"
import json, re, sys

scrape, dash, docs = sys.argv[1], sys.argv[2], sys.argv[3:]
types, labels, values = {}, {}, {}
sample_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s')
lab_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
for line in open(scrape):
    if line.startswith("# TYPE "):
        _, _, name, typ = line.split()
        types[name] = typ
        labels.setdefault(name, set())
        continue
    if line.startswith("#"):
        continue
    m = sample_re.match(line)
    if not m:
        continue
    name = m.group(1)
    fam = name
    if fam not in types:
        for suf in ("_bucket", "_sum", "_count"):
            if name.endswith(suf) and types.get(name[: -len(suf)]) == "histogram":
                fam = name[: -len(suf)]
    for k, v in lab_re.findall(m.group(2) or ""):
        labels.setdefault(fam, set()).add(k)
        values.setdefault((fam, k), set()).add(v)

def family(name):
    if name in types:
        return name, False
    for suf in ("_bucket", "_sum", "_count"):
        base = name[: -len(suf)]
        if name.endswith(suf) and types.get(base) == "histogram":
            return base, suf == "_bucket"
    return None, False

# the PromQL (or prose) to look at, with where it came from
exprs = []
d = json.load(open(dash))
for p in d["panels"]:
    for t in p["targets"]:
        exprs.append(("keel.json panel %d (%s) %s" % (p["id"], p["title"], t["refId"]), t["expr"], True))
for v in d.get("templating", {}).get("list", []):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query")
    if isinstance(q, str) and "keel_" in q:
        exprs.append(("keel.json variable %s" % v.get("name"), q, True))
for doc in docs:
    text = open(doc).read()
    short = doc.split("/")[-2] + "/" + doc.split("/")[-1]
    for m in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S):
        line = text.count("\n", 0, m.start()) + 2
        exprs.append(("%s:%d (code block)" % (short, line), m.group(1), True))
    prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    for m in re.finditer(r"`([^`\n]*keel_[^`\n]*)`", prose):
        exprs.append(("%s (inline `%s`)" % (short, m.group(1)), m.group(1), False))

name_re = re.compile(r"(?<![A-Za-z0-9_:.$/-])(keel_[A-Za-z0-9_]+)(?![A-Za-z0-9_:(*])")
matcher_re = re.compile(r"(?<![A-Za-z0-9_:])(keel_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
clause_re = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
sel_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
generic = {"le", "instance", "job", "__name__"}
errors, used = [], set()
for where, text, is_promql in exprs:
    fams = set()
    for name in name_re.findall(text):
        fam, _ = family(name)
        if fam is None:
            errors.append("%s: %s is not exported by keel" % (where, name))
            continue
        fams.add(fam)
        used.add(fam)
    for name, sel in matcher_re.findall(text):
        fam, bucket = family(name)
        if fam is None:
            continue
        for k, op, v in sel_re.findall(sel):
            ok = labels.get(fam, set()) | ({"le"} if bucket else set()) | generic
            if k not in ok:
                errors.append("%s: %s has no label %s (it has: %s)" % (where, name, k, ", ".join(sorted(labels.get(fam, ()))) or "none"))
            elif op == "=" and "$" not in v and k not in generic and v not in values.get((fam, k), set()):
                errors.append("%s: %s{%s=\"%s\"}: no such value in the scrape (seen: %s)" % (where, name, k, v, ", ".join(sorted(values.get((fam, k), ())))))
    if is_promql and fams:
        union = set().union(*(labels.get(f, set()) for f in fams)) | generic
        for group in clause_re.findall(text):
            for k in [x.strip() for x in group.split(",") if x.strip()]:
                if k not in union:
                    errors.append("%s: label %s in by/on (...) is on none of %s" % (where, k, ", ".join(sorted(fams))))
for e in errors:
    print(e)
undocumented = sorted(f for f in types if f not in used)
if undocumented:
    print("note: exported but never named in the docs or the dashboard: " + ", ".join(undocumented))
print("%d expressions and mentions checked against %d exported families" % (len(exprs), len(types)))
sys.exit(1 if errors else 0)
PY
pass "every metric name, label and label value used in the docs and the dashboard is exported"

# ---- 4. PromQL syntax and the recording rules' arithmetic ----
if ! command -v promtool >/dev/null; then
    echo "skip: promtool is not installed (Debian package prometheus): PromQL not checked"
    stop_keel
    exit 0
fi
python3 - "$METRICS_MD" "$DASH" "$TMP" <<'PY' || fail "could not extract the rules and queries"
import json, re, sys

doc, dash, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(doc).read()
blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
rules = [b for b in blocks if b.lstrip().startswith("groups:")]
if len(rules) != 1:
    print("docs/metrics.md: expected one ```yaml block of recording rules (groups:), found %d" % len(rules))
    sys.exit(1)
open(tmp + "/rules.yml", "w").write(rules[0])

queries = []
for i, q in enumerate(re.findall(r"```promql\n(.*?)```", text, re.S)):
    queries.append(("doc_query_%d" % i, q.strip()))
for p in json.load(open(dash))["panels"]:
    for t in p["targets"]:
        e = t["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
        e = e.replace("$zone", ".*")
        queries.append(("dashboard_panel_%d_%s" % (p["id"], t["refId"]), e))
with open(tmp + "/queries.yml", "w") as f:
    f.write("groups:\n  - name: keel_docs_queries\n    rules:\n")
    for name, q in queries:
        f.write("      - record: keel_docs:%s\n        expr: %s\n" % (name, json.dumps(" ".join(q.split()))))
print("%d queries" % len(queries))
PY
out=$(promtool check rules "$TMP/rules.yml" 2>&1) || fail "promtool check rules on the cookbook's rules: $out"
pass "promtool check rules: the cookbook's recording rules ($(echo "$out" | grep -o 'SUCCESS: [0-9]* rules found' || echo ok))"
out=$(promtool check rules "$TMP/queries.yml" 2>&1) || fail "promtool: a cookbook query or dashboard expr does not parse: $out"
pass "promtool: every cookbook query and dashboard expr parses ($(echo "$out" | grep -o '[0-9]* rules found'))"

# Synthetic counters, one sample a minute, per minute: zone-a 8 seizures:
# 4 answered (3 x 200, 1 x 202), 1 x 302, 1 x 486, 1 x 503 and 1 timeout
# (2 network failures); zone-b 4 seizures, 4 x 480, never a failure.
#   zone-a: ASR 4/8 = 0.5, NER 1 - 2/8 = 0.75, SER 3/(8-1) = 3/7,
#           SEER (3 + 1)/(8-1) = 4/7
#   zone-b: ASR 0 and NER 1 (no series of their own: the "or ... * 0"),
#           SER 0, SEER 4/4 = 1
cat >"$TMP/rules_test.yml" <<'YAML'
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'keel_calls_seized_total{zone="zone-a",destination="sip:10.0.0.1:5060"}'
        values: '0+8x20'
      - series: 'keel_calls_answered_total{zone="zone-a",destination="sip:10.0.0.1:5060"}'
        values: '0+4x20'
      - series: 'keel_calls_network_failures_total{zone="zone-a",destination="sip:10.0.0.1:5060"}'
        values: '0+2x20'
      - series: 'keel_call_final_responses_total{zone="zone-a",destination="sip:10.0.0.1:5060",code="200"}'
        values: '0+3x20'
      - series: 'keel_call_final_responses_total{zone="zone-a",destination="sip:10.0.0.1:5060",code="202"}'
        values: '0+1x20'
      - series: 'keel_call_final_responses_total{zone="zone-a",destination="sip:10.0.0.1:5060",code="302"}'
        values: '0+1x20'
      - series: 'keel_call_final_responses_total{zone="zone-a",destination="sip:10.0.0.1:5060",code="486"}'
        values: '0+1x20'
      - series: 'keel_call_final_responses_total{zone="zone-a",destination="sip:10.0.0.1:5060",code="503"}'
        values: '0+1x20'
      - series: 'keel_calls_seized_total{zone="zone-b",destination="sip:10.0.1.1:5060"}'
        values: '0+4x20'
      - series: 'keel_call_final_responses_total{zone="zone-b",destination="sip:10.0.1.1:5060",code="480"}'
        values: '0+4x20'
    promql_expr_test:
      - expr: zone:keel_asr:ratio_rate5m
        eval_time: 10m
        exp_samples:
          - { labels: 'zone:keel_asr:ratio_rate5m{zone="zone-a"}', value: 0.5 }
          - { labels: 'zone:keel_asr:ratio_rate5m{zone="zone-b"}', value: 0 }
      - expr: zone:keel_ner:ratio_rate5m
        eval_time: 10m
        exp_samples:
          - { labels: 'zone:keel_ner:ratio_rate5m{zone="zone-a"}', value: 0.75 }
          - { labels: 'zone:keel_ner:ratio_rate5m{zone="zone-b"}', value: 1 }
      - expr: round(zone:keel_ser:ratio_rate5m * 7000)
        eval_time: 10m
        exp_samples:
          - { labels: '{zone="zone-a"}', value: 3000 }
          - { labels: '{zone="zone-b"}', value: 0 }
      - expr: round(zone:keel_seer:ratio_rate5m * 7000)
        eval_time: 10m
        exp_samples:
          - { labels: '{zone="zone-a"}', value: 4000 }
          - { labels: '{zone="zone-b"}', value: 7000 }
YAML
out=$(cd "$TMP" && promtool test rules rules_test.yml 2>&1) || fail "promtool test rules: the cookbook's rules do not compute ASR/NER/SER/SEER as documented: $out"
pass "promtool test rules: ASR, NER, SER and SEER rules give the documented ratios (and 0/1 for zones with no answers or no failures)"

stop_keel
