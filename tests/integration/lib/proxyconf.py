"""proxyconf.py OUT PORT ZONE_A_DEST ZONE_B_DEST [key=value...]: writes a keel
config for the proxy tests: udp+tcp on PORT, cluster voice with zone-a and
zone-b (one destination each, a URI or host:port), cluster chat on the same
destinations for MESSAGE. Options: prefer_local=true, attempt_timeout=500ms,
ring_timeout=3s, max_attempts=3, weight_a=50, weight_b=50, admin=PORT (admin
listener on 127.0.0.1:PORT), token=SECRET (admin bearer token),
secret=COOKIE_SECRET, extra_b=URI (a second destination in zone-b),
extra_a=URI (a second destination in zone-a), chat_a=URI and chat_b=URI (the
chat cluster's destinations instead of zone-a's and zone-b's), grace=DURATION
(cookie_secret_grace), workers=N."""
import sys

out, port, a, b = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
opt = dict(kv.split("=", 1) for kv in sys.argv[5:])


def uri(d):
    return d if d.startswith("sip") else "sip:" + d


yaml = """node: {{ id: test, zone: zone-a }}
workers: {workers}
log: {{ level: {log} }}
cookie_secret: "{secret}"
domains: [cc.example.com]
listen:
  - {{ transport: udp, address: 127.0.0.1, port: {port} }}
  - {{ transport: tcp, address: 127.0.0.1, port: {port} }}
routes:
  - {{ match: {{ method: [MESSAGE] }}, cluster: chat }}
  - {{ cluster: voice }}
clusters:
  - name: voice
    prefer_local: {prefer_local}
    failover: {{ max_attempts: {max_attempts}, attempt_timeout: {attempt_timeout}, ring_timeout: {ring_timeout} }}
    zones:
      - name: zone-a
        weight: {weight_a}
        destinations:
          - {{ uri: "{a}" }}{extra_a}
      - name: zone-b
        weight: {weight_b}
        destinations:
          - {{ uri: "{b}" }}{extra_b}
  - name: chat
    zones:
      - name: zone-a
        destinations:
          - {{ uri: "{chat_a}" }}
      - name: zone-b
        destinations:
          - {{ uri: "{chat_b}" }}
""".format(port=port, a=uri(a), b=uri(b),
           chat_a=uri(opt.get("chat_a", a)), chat_b=uri(opt.get("chat_b", b)),
           log=opt.get("log", "info"),
           workers=opt.get("workers", "1"),
           prefer_local=opt.get("prefer_local", "false"),
           max_attempts=opt.get("max_attempts", "3"),
           attempt_timeout=opt.get("attempt_timeout", "2s"),
           ring_timeout=opt.get("ring_timeout", "120s"),
           weight_a=opt.get("weight_a", "50"),
           weight_b=opt.get("weight_b", "50"),
           secret=opt.get("secret", "integration-test-secret-0123456789"),
           extra_b=('\n          - {{ uri: "{}" }}'.format(uri(opt["extra_b"]))
                    if "extra_b" in opt else ""),
           extra_a=('\n          - {{ uri: "{}" }}'.format(uri(opt["extra_a"]))
                    if "extra_a" in opt else ""))
if "grace" in opt:
    yaml += "cookie_secret_grace: {}\n".format(opt["grace"])
if "admin" in opt:
    yaml += "admin: {{ address: 127.0.0.1, port: {}, token: \"{}\" }}\n".format(
        opt["admin"], opt.get("token", ""))
open(out, "w").write(yaml)
