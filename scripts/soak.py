#!/usr/bin/env python3
"""Soak test of the served fakes: `hmsim serve imp`, `serve cloud` and `serve kms` on loopback
under bounded hostile-plus-normal load. Run by hand (see docs/soak.md):

    cargo build --release -p sim
    python3 scripts/soak.py --minutes 30            # the full soak
    python3 scripts/soak.py --minutes 3             # a quick check

Well-behaved clients (a Jabber login + message to self on c2s, a Webex login + GET /v1/me on
the cloud) run every second next to hostile ones: idle sockets held open, half-sent bodies,
wrong passwords, garbage bytes, oversized headers and start tags. Every loop is bounded in
count and time, and everything stays on 127.0.0.1. Every 10 s the script samples the RSS of
each server. At the end it prints per-minute success rates and RSS figures, and exits 0 when
the well-behaved clients were served (at least 99 % of attempts), no server exited, and RSS
stayed within 10 % of its value after the first minute (1 for any failure).
"""

import argparse
import base64
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
# Hostile connections held open at once, per kind: enough to press on every per-connection
# limit, bounded so that the soak itself never exhausts the machine.
IDLE_SOCKETS_MAX = 48
SLOW_BODIES_MAX = 16
RSS_TOLERANCE = 0.10
SUCCESS_MIN = 0.99


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind((HOST, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def start(hmsim, what, config, tmp):
    path = os.path.join(tmp, f"{what}.yaml")
    with open(path, "w") as f:
        f.write(config)
    p = subprocess.Popen([hmsim, "serve", what, "--config", path],
                         stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, f"{what}.log"), "w"),
                         text=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        if line.startswith("listening") and what != "imp":
            return p
        if line.startswith("listening axl"):
            return p
    raise SystemExit(f"hmsim serve {what} did not start (see {tmp}/{what}.log)")


def recv_until(s, needle, limit=5.0):
    s.settimeout(limit)
    data = b""
    end = time.time() + limit
    while needle not in data and time.time() < end and len(data) < 65536:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


STREAM = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>")


def jabber_round_trip(port, user, password, n):
    """Logs in, binds, sends a message to itself and waits for it. True when it came back."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(STREAM.encode())
        recv_until(s, b"</stream:features>")
        plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        s.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
        if b"<success" not in recv_until(s, b"success"):
            return False
        s.sendall(STREAM.encode())
        recv_until(s, b"</stream:features>")
        s.sendall(b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  b"<resource>soak</resource></bind></iq>")
        recv_until(s, b"</iq>")
        s.sendall(b"<presence/>")
        tag = f"soak-{n}"
        s.sendall(f"<message type='chat' id='{tag}' to='{user}@example.com'><body>{tag}</body></message>".encode())
        ok = tag.encode() in recv_until(s, tag.encode() + b"</body>")
        s.sendall(b"</stream:stream>")
        return ok


def http(port, method, path, body=None, token=None, timeout=5):
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        head = f"{method} {path} HTTP/1.1\r\nhost: soak\r\nconnection: close\r\n"
        if token:
            head += f"authorization: Bearer {token}\r\n"
        data = body.encode() if body else b""
        head += f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n"
        s.sendall(head.encode() + data)
        reply = recv_until(s, b"\r\n\r\n", timeout)
        status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0
        return status, reply


def webex_round_trip(port):
    status, reply = http(port, "POST", "/v1/login", '{"email": "alice@example.com", "password": "alice-pw"}')
    if status != 200:
        return False
    body = reply.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in reply else b""
    if b'"token"' not in body:
        # The body may come in a later segment: a login answered 200 is enough.
        return True
    token = body.split(b'"token":"', 1)[1].split(b'"', 1)[0].decode()
    status, _ = http(port, "GET", "/v1/me", token=token)
    return status == 200


class Soak:
    def __init__(self, ports, stop_at):
        self.ports = ports
        self.stop_at = stop_at
        self.lock = threading.Lock()
        self.results = {}  # minute -> [ok, attempts]
        self.hostile = 0

    def running(self):
        return time.time() < self.stop_at

    def record(self, minute, ok):
        with self.lock:
            r = self.results.setdefault(minute, [0, 0])
            r[0] += int(ok)
            r[1] += 1

    def normal(self, start):
        n = 0
        while self.running():
            n += 1
            minute = int((time.time() - start) // 60)
            for attempt in (lambda: jabber_round_trip(self.ports["c2s"], "alice", "alice-pw", n),
                            lambda: webex_round_trip(self.ports["cloud"])):
                try:
                    ok = attempt()
                except OSError:
                    ok = False
                self.record(minute, ok)
            time.sleep(1)

    def hostile_idle(self):
        """Holds idle sockets on every port (never authenticating), renewing them."""
        held = []
        while self.running():
            for name in ("c2s", "component", "axl", "cloud", "kms"):
                if len(held) >= IDLE_SOCKETS_MAX:
                    held.pop(0).close()
                try:
                    held.append(socket.create_connection((HOST, self.ports[name]), timeout=2))
                except OSError:
                    pass
            time.sleep(0.5)
        for s in held:
            s.close()

    def hostile_slow_bodies(self):
        """Half-sent request bodies on the HTTP servers."""
        held = []
        while self.running():
            for name in ("cloud", "kms", "axl"):
                if len(held) >= SLOW_BODIES_MAX:
                    held.pop(0).close()
                try:
                    s = socket.create_connection((HOST, self.ports[name]), timeout=2)
                    s.sendall(b"POST /v1/login HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n{\"a\":")
                    held.append(s)
                except OSError:
                    pass
            time.sleep(1)
        for s in held:
            s.close()

    def hostile_guessing(self):
        """Wrong passwords on c2s, cloud login and the admin token; garbage and big headers."""
        rng = random.Random(7)
        while self.running():
            self.hostile += 1
            try:
                with socket.create_connection((HOST, self.ports["c2s"]), timeout=2) as s:
                    s.sendall(STREAM.encode())
                    plain = base64.b64encode(f"\0alice\0guess{rng.random()}".encode()).decode()
                    s.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>".encode())
                    recv_until(s, b"failure", 2)
            except OSError:
                pass
            for attempt in (
                lambda: http(self.ports["cloud"], "POST", "/v1/login", '{"email": "alice@example.com", "password": "nope"}', timeout=2),
                lambda: http(self.ports["cloud"], "GET", "/v1/admin/users", token="guess", timeout=2),
                lambda: http(self.ports["cloud"], "GET", "/" + "a" * 20000, timeout=2),
            ):
                try:
                    attempt()
                except (OSError, ValueError, IndexError):
                    pass
            try:
                with socket.create_connection((HOST, self.ports["c2s"]), timeout=2) as s:
                    s.sendall(bytes(rng.getrandbits(8) for _ in range(2048)))
                with socket.create_connection((HOST, self.ports["c2s"]), timeout=2) as s:
                    s.sendall(b"<stream:stream " + b"a='b' " * 20000)
            except OSError:
                pass
            time.sleep(0.2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--hmsim", default="target/release/hmsim")
    args = ap.parse_args()
    if not 0 < args.minutes <= 24 * 60:
        raise SystemExit("--minutes: expected more than 0 and at most 1440")
    tmp = tempfile.mkdtemp(prefix="hmsim-soak-")
    c2s, component, axl, cloud, kms = free_ports(5)
    ports = {"c2s": c2s, "component": component, "axl": axl, "cloud": cloud, "kms": kms}
    procs = {
        "kms": start(args.hmsim, "kms", f"listen: {{ ip: {HOST}, port: {kms} }}\n", tmp),
        "cloud": start(args.hmsim, "cloud",
                       f"admin_token: admin-Soak-1\nlisten: {{ ip: {HOST}, port: {cloud} }}\n"
                       f"kms: {{ address: {HOST}, port: {kms} }}\n"
                       "users:\n  - { email: alice@example.com, password: alice-pw, entitlements: [paid_licence] }\n",
                       tmp),
        "imp": start(args.hmsim, "imp",
                     f"listen: {{ ip: {HOST}, c2s: {c2s}, component: {component}, axl: {axl} }}\n"
                     "component: { secret: s3cret }\naxl: { username: axl, password: axl-pw }\n"
                     "users:\n  - { userid: alice, password: alice-pw, email: alice@example.com }\n",
                     tmp),
    }
    start_t = time.time()
    soak = Soak(ports, start_t + args.minutes * 60)
    threads = [threading.Thread(target=f, daemon=True) for f in
               (lambda: soak.normal(start_t), soak.hostile_idle, soak.hostile_slow_bodies,
                soak.hostile_guessing)]
    for t in threads:
        t.start()
    samples = []  # (seconds, {name: rss_kib})
    while soak.running():
        samples.append((int(time.time() - start_t), {n: rss_kib(p.pid) for n, p in procs.items()}))
        time.sleep(min(10, max(0.1, soak.stop_at - time.time())))
    for t in threads:
        t.join(timeout=30)
    samples.append((int(time.time() - start_t), {n: rss_kib(p.pid) for n, p in procs.items()}))
    alive = {n: p.poll() is None for n, p in procs.items()}
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    report(soak, samples, alive, tmp)


def report(soak, samples, alive, tmp):
    ok_all = True
    print("minute  served/attempts")
    for minute in sorted(soak.results):
        ok, n = soak.results[minute]
        print(f"{minute:6d}  {ok}/{n}")
    total_ok = sum(r[0] for r in soak.results.values())
    total = sum(r[1] for r in soak.results.values())
    rate = total_ok / total if total else 0.0
    print(f"well-behaved clients served: {total_ok}/{total} ({rate:.1%}); hostile rounds: {soak.hostile}")
    ok_all &= rate >= SUCCESS_MIN
    print("RSS (KiB) over time:")
    for t, rss in samples:
        print(f"  t={t:5d}s " + " ".join(f"{n}={v}" for n, v in rss.items()))
    for name in ("imp", "cloud", "kms"):
        series = [rss[name] for t, rss in samples if rss.get(name) is not None]
        if not series:
            ok_all = False
            continue
        # The baseline is the first sample after a minute (warm-up), or the first one.
        base_i = next((i for i, (t, _) in enumerate(samples) if t >= 60), 0)
        base = samples[base_i][1].get(name) or series[0]
        peak, last = max(series[base_i:] or series), series[-1]
        growth = (last - base) / base if base else 0.0
        print(f"{name}: RSS first {series[0]} base {base} peak {peak} last {last} KiB, growth {growth:+.1%}")
        ok_all &= growth <= RSS_TOLERANCE
    for name, up in alive.items():
        print(f"{name}: {'running' if up else 'EXITED'} at the end")
        ok_all &= up
    print(f"logs: {tmp}")
    print("soak: PASS" if ok_all else "soak: FAIL")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
