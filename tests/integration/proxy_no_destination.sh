#!/usr/bin/env bash
# Nowhere to send: a route whose destinations are all unusable gets keel's
# own 503 with Retry-After; a loop through keel itself ends in 482 or 483,
# never a storm.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port)
cat >"$TMP/keel.yaml" <<YAML
cookie_secret: "integration-test-secret-0123456789"
domains: [cc.example.com]
listen:
  - { transport: udp, address: 127.0.0.1, port: $port }
routes:
  - { match: { user_prefix: "loop" }, cluster: self }
  - { cluster: voice }
clusters:
  - name: voice
    zones:
      - { name: zone-a, destinations: [ { uri: "sip:platform.invalid" } ] }
  - name: self
    zones:
      - { name: zone-a, destinations: [ { uri: "sip:127.0.0.1:$port" } ] }
YAML
start_keel "$TMP/keel.yaml"

python3 - "$port" <<'PY'
import sys
from sip import Udp, request, check
port = int(sys.argv[1])
u = Udp(port)
r = u.ask(request("INVITE", "sip:+1555@cc.example.com", local_port=u.local_port), timeout=3)
check(r is not None and r.code == 503, "no usable destination: 503 (%r)" % r)
check(r.get("Retry-After") is not None, "with Retry-After")
r = u.ask(request("OPTIONS", "sip:loop1@cc.example.com", local_port=u.local_port, max_forwards=10), timeout=5)
check(r is not None and r.code in (482, 483), "a request routed back to keel ends in 482/483 (%r)" % r)
PY
stop_keel
