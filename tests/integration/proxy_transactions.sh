#!/usr/bin/env bash
# Transaction details, with hand-written servers: a retransmitted INVITE is
# absorbed (the server sees one), the forwarded INVITE carries keel's Via,
# Record-Route with a cookie, Max-Forwards 69, received/rport on the
# caller's Via and the caller's bytes otherwise untouched; a late 200 after
# failover still reaches the caller; a forged or tampered cookie gets 403;
# a ring timeout answers 408 and CANCELs the ringing branch.
source "$(dirname "$0")/lib/common.sh"

port=$(free_port); pa=$(free_port); pb=$(free_port)
python3 "$LIB_DIR/proxyconf.py" "$TMP/keel.yaml" "$port" "127.0.0.1:$pa" "127.0.0.1:$pb" \
    prefer_local=true attempt_timeout=600ms ring_timeout=2s
start_keel "$TMP/keel.yaml"

python3 - "$port" "$pa" "$pb" <<'PY'
import sys, time
from sip import Udp, Server, request, check
port, pa, pb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
A, B = Server(pa), Server(pb)
u = Udp(port)

def recv_skip100(t=1.0):
    end = time.time() + t
    while time.time() < end:
        r = u.recv(max(0.01, end - time.time()))
        if r is None or r.code != 100:
            return r
    return None
ruri = "sip:+15550001@127.0.0.1:%d" % port

# --- forwarded bytes, and a retransmission absorbed
inv = request("INVITE", ruri, local_port=u.local_port, rport=True, branch="retx1",
              headers=[("X-Custom", "MiXeD Case"), ("Content-Type", "application/sdp")],
              body="v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
inv = inv.replace(b"Max-Forwards: 70", b"max-forwards: 70")
u.send(inv)
r = u.recv(1)
check(r is not None and r.code == 100, "100 Trying at once")
req, raw, addr = A.recv_method("INVITE")
check(req is not None, "zone-a gets the INVITE")
A.reply(req, addr, 180, "Ringing")
r = recv_skip100()
check(r is not None and r.code == 180, "180 relayed (%r)" % r)
u.send(inv)  # retransmissions of the INVITE: keel answers them with the 180
u.send(inv)
r = recv_skip100()
check(r is not None and r.code == 180, "a retransmitted INVITE gets the last provisional again")
vias = req.all("Via")
check(vias[0].startswith("SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK" % port), "keel's Via on top: " + vias[0])
check("received=127.0.0.1" in vias[1] and ("rport=%d" % u.local_port) in vias[1], "received/rport on the caller's Via: " + vias[1])
rr = req.all("Record-Route")
check(len(rr) == 1 and "127.0.0.1:%d" % port in rr[0] and ";lr" in rr[0] and "kc=" in rr[0], "Record-Route with cookie: %s" % rr)
check(req.get("Max-Forwards") == "69", "Max-Forwards decremented")
check(b"X-Custom: MiXeD Case\r\n" in raw, "unknown header untouched")
check(raw.endswith(b"m=audio 4000 RTP/AVP 0\r\n"), "body untouched")
# keel's own Timer A retransmissions carry its branch; a forwarded copy of the
# caller's retransmission would carry a new one
end = time.time() + 1.0
others = 0
while time.time() < end:
    again, _, _ = A.recv_method("INVITE", max(0.01, end - time.time()))
    if again is not None and again.all("Via")[0] != vias[0]:
        others += 1
check(others == 0, "retransmitted INVITEs absorbed: zone-a saw one transaction")
while u.recv(0.2) is not None:  # the 180s sent again for the retransmissions
    pass
A.reply(req, addr, 200, "OK", extra=[("Content-Type", "application/sdp")], body=b"v=0\r\n")
r = recv_skip100()
check(r is not None and r.code == 200 and len(r.all("Via")) == 1, "200 relayed, keel's Via removed")
cookie_rr = r.get("Record-Route")
check(cookie_rr is not None and "kc=" in cookie_rr, "the 200 carries keel's Record-Route")
totag = r.get("To").split("tag=")[1]
fromtag = inv.split(b"tag=")[1].split(b"\r\n")[0].decode()
cid = r.get("Call-ID")

def indialog(method, route, cseq):
    return request(method, "sip:srv@127.0.0.1:%d" % pa, local_port=u.local_port, call_id=cid,
                   cseq="%d %s" % (cseq, method), to_tag=totag, from_tag=fromtag,
                   headers=[("Route", route)]).replace(b"To: <sip:srv@", b"To: <sip:+15550001@")

# ACK and BYE routed by the cookie
u.send(indialog("ACK", cookie_rr, 1))
ack, _, _ = A.recv_method("ACK")
check(ack is not None, "ACK for the 200 routed by cookie")
u.send(indialog("BYE", cookie_rr, 2))
bye, _, baddr = A.recv_method("BYE")
check(bye is not None and bye.get("Route") is None, "BYE routed by cookie, keel's Route popped")
A.reply(bye, baddr, 200, "OK", to_tag=None)
r = recv_skip100()
check(r is not None and r.code == 200, "200 to BYE relayed")

# forged and tampered cookies
tok = cookie_rr.split("kc=")[1].split(">")[0].split(";")[0]
bad = tok[:-2] + ("A" if tok[-2] != "A" else "B") + tok[-1]
r = u.ask(indialog("BYE", cookie_rr.replace(tok, bad), 3))
check(r is not None and r.code == 403, "tampered cookie: 403")
r = u.ask(indialog("BYE", "<sip:127.0.0.1:%d;lr;kc=AAAAforged>" % port, 4))
check(r is not None and r.code == 403, "forged cookie: 403")
r = u.ask(indialog("BYE", "<sip:127.0.0.1:%d;lr>" % port, 5))
check(r is not None and r.code == 403, "no cookie: 403")
check(A.recv(0.5)[0] is None, "nothing forged reached zone-a")

# --- a late 200 on an abandoned branch is still forwarded
inv2 = request("INVITE", ruri, local_port=u.local_port, branch="late1")
u.send(inv2)
reqa, _, addra = A.recv_method("INVITE")
check(reqa is not None, "late: zone-a gets the INVITE and stays silent")
reqb, _, addrb = B.recv_method("INVITE", 2)
check(reqb is not None, "late: after attempt_timeout zone-b gets it")
B.reply(reqb, addrb, 180, "Ringing", to_tag="b1")
A.reply(reqa, addra, 200, "OK", to_tag="a1")
got = []
end = time.time() + 2
while time.time() < end:
    r = u.recv(0.3)
    if r is not None:
        got.append(r)
codes = [x.code for x in got]
check(200 in codes and any("tag=a1" in x.get("To") for x in got if x.code == 200), "late 200 from zone-a forwarded to the caller (%s)" % codes)
check(all(x < 300 for x in codes), "the late 200 is the call's answer: no other final (%s)" % codes)
c, _, caddr = B.recv_method("CANCEL", 2)
check(c is not None, "zone-b, still ringing, is CANCELled")
while u.recv(0.3) is not None:  # the 200 to the CANCEL
    pass

# --- ring timeout: 408 to the caller, CANCEL to the branch, no failover
time.sleep(0.5)
for srv in (A, B):  # what the earlier scenarios left queued
    while srv.recv(0.1)[0] is not None:
        pass
inv3 = request("INVITE", ruri, local_port=u.local_port, branch="ring1")
u.send(inv3)
req3, _, addr3 = A.recv_method("INVITE")
A.reply(req3, addr3, 180, "Ringing", to_tag="r1")
t0 = time.time()
final = None
while time.time() - t0 < 5:
    r = u.recv(0.5)
    if r is not None and r.code >= 200:
        final = r
        break
check(final is not None and final.code == 408, "ring timeout: 408 to the caller (%r)" % final)
check(1.5 < time.time() - t0 < 3.5, "after ring_timeout (2 s): %.1f s" % (time.time() - t0))
c3, _, _ = A.recv_method("CANCEL", 1)
check(c3 is not None, "the ringing branch is CANCELled")
check(B.recv_method("INVITE", 0.5)[0] is None, "no failover after a ring timeout")
PY
stop_keel
