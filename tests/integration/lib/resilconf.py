"""resilconf.py OUT PORT key=value...: writes a keel config for the
resilience tests (issue 6), modelled on proxyconf.py but exposing the
resilience keys of DESIGN.md "Configuration". udp+tcp on 127.0.0.1:PORT,
cluster voice (default route), and optionally cluster chat (MESSAGE).

Zones, in order (repeat the key; DEST is host:port or a sip: URI, with an
optional *W for its weight):
  zone=NAME:WEIGHT:DEST[,DEST...]        zones of cluster voice
  chat_zone=NAME:WEIGHT:DEST[,DEST...]   zones of cluster chat; when given,
                                         MESSAGE is routed to it, else
                                         MESSAGE goes to voice like the rest
  limits.NAME=calls:10,chat:5,...        zone NAME's limits (bulkheads), in
                                         both clusters when both name it

Cluster keys (applied to both clusters; a key not given is left out, so
keel's default applies):
  prefer_local=true|false   (node.zone is node_zone=, default zone-a)
  max_attempts= attempt_timeout= ring_timeout= codes=408,500,503,504
  retry_percent= retry_min=                       retry_budget
  health=true|false interval= timeout= rise= fall= accept=200,404
  consecutive_failures= failure_percent= min_requests= outlier_interval=
  base_ejection= max_ejection= max_ejected_percent=   outlier
  window= aggression= min_weight_percent=             slow_start

Admission (top level; left out when not given): new_calls_per_s=
  per_source_rate= per_source_burst= scanners=UA,UA emergency=911,112
  max_cpu_percent=

Other keys: log=info|debug, secret=COOKIE_SECRET, admin=PORT (admin
listener on 127.0.0.1), token=SECRET, faults=true|false, workers=N."""
import sys

out, port = sys.argv[1], int(sys.argv[2])
zones, chat_zones, limits, opt = [], [], {}, {}
for kv in sys.argv[3:]:
    k, _, v = kv.partition("=")
    if k == "zone":
        zones.append(v)
    elif k == "chat_zone":
        chat_zones.append(v)
    elif k.startswith("limits."):
        limits[k[len("limits."):]] = v
    else:
        opt[k] = v
if not zones:
    sys.exit("resilconf.py: at least one zone=NAME:WEIGHT:DEST")


def uri(d):
    return d if d.startswith("sip") else "sip:" + d


def dest_yaml(d):
    w = None
    if "*" in d:
        d, w = d.rsplit("*", 1)
    return "{ uri: \"%s\"%s }" % (uri(d), ", weight: %s" % w if w else "")


def flow_map(pairs):
    return "{ " + ", ".join("%s: %s" % p for p in pairs) + " }"


def section(name, keys):
    """name: { key: value, ... } from the options given, or '' when none."""
    pairs = [(yk, opt[ok]) for ok, yk in keys if ok in opt]
    for i, (yk, v) in enumerate(pairs):
        if yk in ("accept", "codes"):
            pairs[i] = (yk, "[" + ", ".join(v.split(",")) + "]")
    return "    %s: %s\n" % (name, flow_map(pairs)) if pairs else ""


def cluster_yaml(name, zspecs):
    y = "  - name: %s\n" % name
    if "prefer_local" in opt:
        y += "    prefer_local: %s\n" % opt["prefer_local"]
    y += section("failover", [("max_attempts", "max_attempts"),
                              ("attempt_timeout", "attempt_timeout"),
                              ("ring_timeout", "ring_timeout"), ("codes", "codes")])
    y += section("retry_budget", [("retry_percent", "percent"), ("retry_min", "min")])
    y += section("health", [("health", "enabled"), ("interval", "interval"),
                            ("timeout", "timeout"), ("rise", "rise"), ("fall", "fall"),
                            ("accept", "accept")])
    y += section("outlier", [("consecutive_failures", "consecutive_failures"),
                             ("failure_percent", "failure_percent"),
                             ("min_requests", "min_requests"),
                             ("outlier_interval", "interval"),
                             ("base_ejection", "base_ejection"),
                             ("max_ejection", "max_ejection"),
                             ("max_ejected_percent", "max_ejected_percent")])
    y += section("slow_start", [("window", "window"), ("aggression", "aggression"),
                                ("min_weight_percent", "min_weight_percent")])
    y += "    zones:\n"
    for spec in zspecs:
        zname, weight, dests = spec.split(":", 2)
        # host:port pairs contain ':' too: split the destinations on ','
        y += "      - name: %s\n        weight: %s\n" % (zname, weight)
        if zname in limits:
            y += "        limits: %s\n" % flow_map(
                [tuple(p.split(":", 1)) for p in limits[zname].split(",")])
        y += "        destinations:\n"
        for d in dests.split(","):
            y += "          - %s\n" % dest_yaml(d)
    return y


yaml = """node: {{ id: test, zone: {node_zone} }}
workers: {workers}
log: {{ level: {log} }}
cookie_secret: "{secret}"
domains: [cc.example.com]
listen:
  - {{ transport: udp, address: 127.0.0.1, port: {port} }}
  - {{ transport: tcp, address: 127.0.0.1, port: {port} }}
""".format(node_zone=opt.get("node_zone", "zone-a"), workers=opt.get("workers", "1"),
           log=opt.get("log", "info"),
           secret=opt.get("secret", "integration-test-secret-0123456789"), port=port)
if "admin" in opt:
    yaml += "admin: {{ address: 127.0.0.1, port: {}, token: \"{}\", faults: {} }}\n".format(
        opt["admin"], opt.get("token", ""), opt.get("faults", "false"))
adm = []
if "new_calls_per_s" in opt:
    adm.append(("new_calls_per_s", opt["new_calls_per_s"]))
src = [(k, opt["per_source_" + k]) for k in ("rate", "burst") if "per_source_" + k in opt]
if src:
    adm.append(("per_source", flow_map(src)))
if "scanners" in opt:
    adm.append(("scanner_user_agents", "[" + ", ".join(opt["scanners"].split(",")) + "]"))
if "emergency" in opt:
    adm.append(("emergency", "{ numbers: [" + ", ".join('"%s"' % n for n in opt["emergency"].split(","))
                + "] }"))
if "max_cpu_percent" in opt:
    adm.append(("max_cpu_percent", opt["max_cpu_percent"]))
if adm:
    yaml += "admission: %s\n" % flow_map(adm)
if chat_zones:
    yaml += "routes:\n  - { match: { method: [MESSAGE] }, cluster: chat }\n  - { cluster: voice }\n"
yaml += "clusters:\n" + cluster_yaml("voice", zones)
if chat_zones:
    yaml += cluster_yaml("chat", chat_zones)
open(out, "w").write(yaml)
