"""Small SIP test client for keel's integration tests: builds requests,
sends them over UDP or TCP on loopback and parses what comes back."""
import random
import socket
import time


def rand(n=10):
    return "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))


class Response:
    def __init__(self, raw):
        self.raw = raw
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        self.start = lines[0]
        parts = self.start.split(" ", 2)
        self.code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            self.headers.append((name.strip(), value.strip()))

    def get(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def __repr__(self):
        return "<%s>" % self.start


def request(method="OPTIONS", ruri="sip:127.0.0.1", port=5060, transport="UDP",
            local_port=None, headers=None, body=b"", call_id=None, cseq=None,
            max_forwards=70, omit=(), rport=True, content_length=None, to_tag=None,
            from_tag=None, branch=None):
    """Builds a request as bytes. <omit> lists header names to leave out."""
    lp = local_port or 5999
    call_id = call_id or rand(16) + "@test"
    cseq_method = method
    cseq = cseq if cseq is not None else "1 " + cseq_method
    hdrs = [
        ("Via", "SIP/2.0/%s 127.0.0.1:%d;branch=z9hG4bK%s%s" % (
            transport, lp, branch or rand(12), ";rport" if rport else "")),
        ("Max-Forwards", str(max_forwards)),
        ("From", "<sip:tester@127.0.0.1>;tag=%s" % (from_tag or rand(8))),
        ("To", "<%s>%s" % (ruri, ";tag=" + to_tag if to_tag else "")),
        ("Call-ID", call_id),
        ("CSeq", cseq),
        ("Contact", "<sip:tester@127.0.0.1:%d>" % lp),
        ("User-Agent", "keel-tests"),
    ]
    hdrs = [(n, v) for n, v in hdrs if n not in omit and v is not None]
    for h in headers or []:
        hdrs.append(h)
    if isinstance(body, str):
        body = body.encode()
    cl = len(body) if content_length is None else content_length
    if "Content-Length" not in omit:
        hdrs.append(("Content-Length", str(cl)))
    text = "%s %s SIP/2.0\r\n" % (method, ruri)
    text += "".join("%s: %s\r\n" % h for h in hdrs)
    return text.encode() + b"\r\n" + body


class Udp:
    def __init__(self, port, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_DGRAM)
        self.s.bind((host, 0))
        self.local_port = self.s.getsockname()[1]
        self.dst = (host, port)

    def send(self, data):
        self.s.sendto(data, self.dst)

    def recv(self, timeout=2.0):
        """Next datagram as a Response, or None after <timeout> seconds."""
        self.s.settimeout(timeout)
        try:
            data, _ = self.s.recvfrom(70000)
        except socket.timeout:
            return None
        return Response(data)

    def ask(self, data, timeout=2.0, skip_provisional=True):
        self.send(data)
        end = time.time() + timeout
        while True:
            left = end - time.time()
            if left <= 0:
                return None
            r = self.recv(left)
            if r is None or not (skip_provisional and 100 <= r.code < 200):
                return r

    def close(self):
        self.s.close()


class Tcp:
    def __init__(self, port, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.s = socket.socket(fam, socket.SOCK_STREAM)
        self.s.settimeout(3)
        self.s.connect((host, port))
        self.local_port = self.s.getsockname()[1]
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def recv(self, timeout=2.0):
        """Next framed message as a Response; None on timeout; raises EOFError
        when the peer closed with nothing buffered."""
        end = time.time() + timeout
        while True:
            idx = self.buf.find(b"\r\n\r\n")
            if idx >= 0:
                head = self.buf[:idx].decode("utf-8", "replace")
                cl = 0
                for line in head.split("\r\n")[1:]:
                    n, _, v = line.partition(":")
                    if n.strip().lower() in ("content-length", "l"):
                        cl = int(v.strip())
                total = idx + 4 + cl
                if len(self.buf) >= total:
                    msg, self.buf = self.buf[:total], self.buf[total:]
                    return Response(msg)
            left = end - time.time()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return None
            if not data:
                if self.buf:
                    msg, self.buf = self.buf, b""
                    return Response(msg)
                raise EOFError("closed")
            self.buf += data

    def closed(self, timeout=2.0):
        """True when the peer closes the connection within <timeout>."""
        end = time.time() + timeout
        while time.time() < end:
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def ask(self, data, timeout=2.0, skip_provisional=True):
        self.send(data)
        end = time.time() + timeout
        while True:
            r = self.recv(max(0.01, end - time.time()))
            if r is None or not (skip_provisional and 100 <= r.code < 200):
                return r

    def close(self):
        self.s.close()


def check(cond, what):
    if not cond:
        raise SystemExit("FAIL: " + what)
    print("ok: " + what)


class Server:
    """A platform server on UDP whose answers the test writes by hand."""

    def __init__(self, port=0, host="127.0.0.1"):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((host, port))
        self.port = self.s.getsockname()[1]

    def recv(self, timeout=2.0):
        """(Request, bytes, addr) or (None, None, None)."""
        self.s.settimeout(timeout)
        try:
            data, addr = self.s.recvfrom(70000)
        except socket.timeout:
            return None, None, None
        return Response(data), data, addr

    def recv_method(self, method, timeout=2.0):
        end = time.time() + timeout
        while time.time() < end:
            r, data, addr = self.recv(max(0.01, end - time.time()))
            if r is not None and r.start.startswith(method + " "):
                return r, data, addr
        return None, None, None

    def reply(self, req, addr, code, reason, to_tag="srv1", extra=(), body=b""):
        lines = ["SIP/2.0 %d %s" % (code, reason)]
        for n, v in req.headers:
            if n.lower() in ("via", "v", "record-route"):
                lines.append("%s: %s" % (n, v))
        for n, v in req.headers:
            if n.lower() in ("from", "f", "call-id", "i", "cseq"):
                lines.append("%s: %s" % (n, v))
        to = req.get("To") or req.get("t")
        if to_tag and ";tag=" not in to:
            to += ";tag=" + to_tag
        lines.append("To: " + to)
        lines.append("Contact: <sip:srv@127.0.0.1:%d>" % self.port)
        for h in extra:
            lines.append("%s: %s" % h)
        lines.append("Content-Length: %d" % len(body))
        self.s.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, addr)

    def close(self):
        self.s.close()
