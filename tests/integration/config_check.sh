#!/usr/bin/env bash
# keel --check-config: ok for the documented default; a misspelt key names
# file:line:column, the key and a suggestion, and exits 1. keel refuses to
# start on a bad file. --version and --help work.
source "$(dirname "$0")/lib/common.sh"

out=$("$KEEL_BIN" --check-config "$KEEL_SRC/conf/keel.yaml" 2>&1) || fail "conf/keel.yaml rejected: $out"
[ "$out" = "ok" ] || fail "expected ok, got: $out"
pass "conf/keel.yaml: ok"

for f in "$KEEL_SRC"/conf/examples/*.yaml; do
    [ -f "$f" ] || continue
    out=$("$KEEL_BIN" --check-config "$f" 2>&1) || fail "$f rejected: $out"
    pass "$(basename "$f"): ok"
done

# misspell "weight" on the first zone
python3 - "$KEEL_SRC/conf/keel.yaml" "$TMP/bad.yaml" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
lines = open(src).read().split("\n")
for i, l in enumerate(lines):
    s = l.lstrip()
    if s.startswith("weight:") and "zones" in "\n".join(lines[:i]):
        lines[i] = l.replace("weight:", "weigth:", 1)
        line, col = i + 1, len(l) - len(s) + 1
        break
open(dst, "w").write("\n".join(lines))
open(dst + ".where", "w").write("%d:%d" % (line, col))
PY
where=$(cat "$TMP/bad.yaml.where")
rc=0
out=$("$KEEL_BIN" --check-config "$TMP/bad.yaml" 2>&1) || rc=$?
echo "$out"
[ $rc -eq 1 ] || fail "exit code $rc, expected 1"
echo "$out" | grep -q "$TMP/bad.yaml:$where" || fail "error does not name $TMP/bad.yaml:$where"
echo "$out" | grep -q "weigth" || fail "error does not name the key"
echo "$out" | grep -qi "did you mean.*weight" || fail "no did-you-mean suggestion"
pass "misspelt key: file:line:column, key, suggestion, exit 1"

cat >"$TMP/junk.yaml" <<'YAML'
listen:
  - { transport: udp, address: 127.0.0.1, port: 5060abc }
YAML
rc=0
out=$("$KEEL_BIN" --check-config "$TMP/junk.yaml" 2>&1) || rc=$?
[ $rc -eq 1 ] || fail "5060abc accepted"
echo "$out" | grep -q "junk.yaml:2:.*listen\[0\].port" || fail "5060abc: error does not name listen[0].port with its place: $out"
pass "port 5060abc rejected with its place"

rc=0
"$KEEL_BIN" -c "$TMP/bad.yaml" >"$TMP/start.log" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "keel started on a bad file"
grep -q "weigth" "$TMP/start.log" || fail "keel did not say why it refused to start"
pass "keel refuses to start on a bad file"

rc=0
"$KEEL_BIN" --check-config "$TMP/does-not-exist.yaml" >"$TMP/nofile.log" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "a missing file: exit $rc"
pass "a missing file is an error"

"$KEEL_BIN" --version | grep -q "^keel [0-9]" || fail "--version"
"$KEEL_BIN" --help | grep -q -- "--check-config" || fail "--help"
rc=0
"$KEEL_BIN" --bogus >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || fail "an unknown option: exit $rc, expected 2"
pass "--version, --help, unknown option"
