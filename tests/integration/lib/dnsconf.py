"""dnsconf.py: keel configs and small DNS helpers for the DNS tests (issue 7).

  dnsconf.py OUT PORT key=value...
      writes a keel config: udp+tcp on 127.0.0.1:PORT, cluster voice with
      the zones given, and the dns: section (DESIGN.md "Configuration").

      zone=NAME:WEIGHT:URI[,URI...]   zones of cluster voice, in order
                                      (repeat the key); a URI may be a DNS
                                      name (sip:zone-b.test); host:port and
                                      sip: URIs both work; *W after a URI is
                                      its weight
      tier=NAME:SERVER[,SERVER...]    resolver tiers, in order (repeat the
                                      key); SERVER is ip:port
      dns_timeout= hedge_after= max_fails= max_stale=   the dns: keys
      max_attempts= attempt_timeout= ring_timeout=      failover
      interval= timeout= rise= fall=                    health
      consecutive_failures= base_ejection=              outlier
      window=                                           slow_start
      node_zone= (default: the first zone), workers=, log=, admin=PORT,
      listen6=true (a udp listener on [::1]:PORT too, to reach IPv6 targets)

  dnsconf.py blackhole PORT [LOG]
      a UDP socket on 127.0.0.1:PORT that reads every datagram and never
      answers (a blackholed resolver); runs until SIGTERM. With LOG, one
      line per query received: "UNIX_TIME TYPE NAME" (TYPE as a number).

  dnsconf.py servfail PORT [RCODE]
      a UDP socket on 127.0.0.1:PORT that answers every query at once with
      RCODE (default 2, SERVFAIL) and no records: a failing resolver.

  dnsconf.py proxy PORT UPSTREAM_PORT DROPFILE
      a UDP DNS forwarder on 127.0.0.1:PORT to 127.0.0.1:UPSTREAM_PORT that
      drops (never answers) the queries whose name is listed in DROPFILE
      (one name a line, read on every query; no file: nothing dropped): a
      resolver failing for some names only. Runs until SIGTERM.

  dnsconf.py query PORT NAME TYPE [OUT]
      sends one DNS query (TYPE: A, AAAA, SRV, NAPTR, NS) to 127.0.0.1:PORT,
      prints the rcode and the answer count; saves the reply's bytes in OUT
      when given. Exit 0 on a reply within 1 s, 1 otherwise.
"""
import os
import random
import signal
import socket
import struct
import sys
import time

TYPES = {"A": 1, "NS": 2, "SOA": 6, "AAAA": 28, "SRV": 33, "NAPTR": 35}


def query_bytes(name, qtype, qid):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        if label:
            q += bytes([len(label)]) + label.encode()
    return q + b"\0" + struct.pack("!HH", TYPES[qtype], 1)


def cmd_query(argv):
    port, name, qtype = int(argv[0]), argv[1], argv[2].upper()
    qid = random.randrange(65536)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    try:
        s.sendto(query_bytes(name, qtype, qid), ("127.0.0.1", port))
        while True:
            data, _ = s.recvfrom(65535)
            if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
                break
    except (socket.timeout, OSError) as e:
        print("no reply: %s" % e)
        return 1
    flags, _, an = struct.unpack("!HHH", data[2:8])
    print("rcode=%d answers=%d bytes=%d" % (flags & 0xF, an, len(data)))
    if len(argv) > 3:
        with open(argv[3], "wb") as f:
            f.write(data)
    return 0


def qname_type(d):
    """The first question of the DNS message <d>: (name, type), or None."""
    try:
        p, labels = 12, []
        while d[p]:
            labels.append(d[p + 1:p + 1 + d[p]].decode("ascii", "replace"))
            p += 1 + d[p]
        return ".".join(labels) or ".", struct.unpack("!H", d[p + 1:p + 3])[0]
    except (IndexError, struct.error):
        return None


def cmd_blackhole(argv):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(argv[0])))
    log = open(argv[1], "a", buffering=1) if len(argv) > 1 else None
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        d, _ = s.recvfrom(65535)
        if log is not None:
            q = qname_type(d)
            log.write("%.6f %s %s\n" % (time.time(), q[1] if q else "?", q[0] if q else "?"))


def cmd_servfail(argv):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", int(argv[0])))
    rcode = int(argv[1]) if len(argv) > 1 else 2
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        d, peer = s.recvfrom(65535)
        if len(d) < 12 or qname_type(d) is None:
            continue
        # the question echoed: header (QR, RD copied, RA, rcode), QDCOUNT 1
        p = 12
        while d[p]:
            p += 1 + d[p]
        flags = 0x8080 | (struct.unpack("!H", d[2:4])[0] & 0x0100) | rcode
        s.sendto(d[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + d[12:p + 5], peer)


def cmd_proxy(argv):
    import select
    port, up, dropfile = int(argv[0]), int(argv[1]), argv[2]
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", port))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", 0))
    pending = {}
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        r, _, _ = select.select([front, back], [], [])
        if front in r:
            d, peer = front.recvfrom(65535)
            q = qname_type(d)
            try:
                drop = {l.strip().rstrip(".").lower() for l in open(dropfile) if l.strip()}
            except OSError:
                drop = set()
            if q is None or q[0].lower() in drop:
                continue
            pending[d[:2] + q[0].lower().encode()] = peer
            back.sendto(d, ("127.0.0.1", up))
        if back in r:
            d, _ = back.recvfrom(65535)
            q = qname_type(d)
            peer = pending.pop(d[:2] + q[0].lower().encode(), None) if q else None
            if peer is not None:
                front.sendto(d, peer)


def uri(d):
    return d if d.startswith("sip") else "sip:" + d


def dest_yaml(d):
    w = None
    if "*" in d:
        d, w = d.rsplit("*", 1)
    return "{ uri: \"%s\"%s }" % (uri(d), ", weight: %s" % w if w else "")


def flow(pairs):
    return "{ " + ", ".join("%s: %s" % p for p in pairs) + " }"


def cmd_conf(argv):
    out, port = argv[0], int(argv[1])
    zones, tiers, opt = [], [], {}
    for kv in argv[2:]:
        k, _, v = kv.partition("=")
        if k == "zone":
            zones.append(v)
        elif k == "tier":
            tiers.append(v)
        else:
            opt[k] = v
    if not zones:
        sys.exit("dnsconf.py: at least one zone=NAME:WEIGHT:URI")

    def section(name, keys, indent="    "):
        pairs = [(yk, opt[ok]) for ok, yk in keys if ok in opt]
        return "%s%s: %s\n" % (indent, name, flow(pairs)) if pairs else ""

    y = "node: { id: test, zone: %s }\n" % opt.get("node_zone", zones[0].split(":", 1)[0])
    y += "workers: %s\n" % opt.get("workers", "1")
    y += "log: { level: %s }\n" % opt.get("log", "info")
    y += "cookie_secret: \"integration-test-secret-0123456789\"\n"
    y += "domains: [cc.example.com]\n"
    y += "listen:\n  - { transport: udp, address: 127.0.0.1, port: %d }\n" % port
    y += "  - { transport: tcp, address: 127.0.0.1, port: %d }\n" % port
    if opt.get("listen6") == "true":
        y += "  - { transport: udp, address: \"::1\", port: %d }\n" % port
    if "admin" in opt:
        y += "admin: { address: 127.0.0.1, port: %s }\n" % opt["admin"]
    if tiers or any(k in opt for k in ("dns_timeout", "hedge_after", "max_fails", "max_stale")):
        y += "dns:\n"
        if tiers:
            y += "  tiers:\n"
            for t in tiers:
                name, _, servers = t.partition(":")
                y += "    - { name: %s, servers: [%s] }\n" % (
                    name, ", ".join('"%s"' % s for s in servers.split(",")))
        for ok, yk in (("dns_timeout", "timeout"), ("hedge_after", "hedge_after"),
                       ("max_fails", "max_fails"), ("max_stale", "max_stale")):
            if ok in opt:
                y += "  %s: %s\n" % (yk, opt[ok])
    y += "clusters:\n  - name: voice\n"
    y += section("failover", [("max_attempts", "max_attempts"),
                              ("attempt_timeout", "attempt_timeout"),
                              ("ring_timeout", "ring_timeout")])
    y += section("health", [("interval", "interval"), ("timeout", "timeout"),
                            ("rise", "rise"), ("fall", "fall")])
    y += section("outlier", [("consecutive_failures", "consecutive_failures"),
                             ("base_ejection", "base_ejection")])
    y += section("slow_start", [("window", "window")])
    y += "    zones:\n"
    for spec in zones:
        zname, weight, dests = spec.split(":", 2)
        y += "      - name: %s\n        weight: %s\n        destinations:\n" % (zname, weight)
        for d in dests.split(","):
            y += "          - %s\n" % dest_yaml(d)
    with open(out, "w") as f:
        f.write(y)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "blackhole":
        sys.exit(cmd_blackhole(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "servfail":
        sys.exit(cmd_servfail(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "proxy":
        sys.exit(cmd_proxy(sys.argv[2:]))
    if len(sys.argv) > 1 and sys.argv[1] == "query":
        sys.exit(cmd_query(sys.argv[2:]))
    sys.exit(cmd_conf(sys.argv[1:]))
