#!/usr/bin/env python3
"""A Jabber user and a Webex user talk through the real connector (hmsim's real mode).

Run by run.sh once `hmsim serve kms|cloud|imp` and the `connector` are up on loopback:

- Bob uses Jabber: slixmpp logs him in to the fake IM and Presence node over XMPP c2s.
- Alice uses Webex: she logs in to the fake cloud's REST API, opens its event WebSocket,
  waits until Control Hub shows her assigned to the connector, opens the 1:1 space with Bob,
  fetches the space key (the cloud relays to the KMS), encrypts with jwcrypto (JWE dir +
  A256GCM, kid = the key URI) and posts.
- The connector decrypts Alice's message and sends it from her Hybrid Message session on IM&P:
  Bob's Jabber shows it. Bob answers; the connector encrypts the answer with the space key and
  posts it for him: Alice's WebSocket delivers it and she decrypts it.

Prints each step; "REAL MODE OK" and exit 0 at the end; "FAIL: ..." and exit 1 otherwise.
Every wait is bounded (the whole run by --timeout). Needs `pip install slixmpp jwcrypto`.
The cloud's API is documented in fakes/src/cloud/mod.rs (`cargo doc -p fakes`).
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import sys
import time

try:
    import slixmpp
    from jwcrypto import jwe, jwk
    from jwcrypto.common import json_encode
except ImportError as missing:
    print(f"talk.py: {missing}: pip install slixmpp jwcrypto", file=sys.stderr)
    sys.exit(3)

STEP_TIMEOUT = 20.0
# A WebSocket frame larger than this is refused: the cloud's events are a few KiB.
FRAME_BYTES_MAX = 1 << 20
# HTTP answers larger than this are refused (a user view or an activity list).
BODY_BYTES_MAX = 1 << 20


class Failure(Exception):
    pass


def say(who, what):
    print(f"[{time.strftime('%H:%M:%S')}] {who:<6} {what}", flush=True)


async def bounded(aw, what, limit=STEP_TIMEOUT):
    try:
        return await asyncio.wait_for(aw, limit)
    except asyncio.TimeoutError:
        raise Failure(f"timed out after {limit:.0f} s waiting for {what}") from None


# ----- Webex: REST over HTTP/1.1 and the event WebSocket (RFC 6455), standard library only --


async def http(args, method, path, token=None, body=None):
    """One request on a fresh connection; returns (status, JSON body or None)."""
    reader, writer = await asyncio.open_connection(args.host, args.cloud_port)
    try:
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {args.host}", "Connection: close",
                f"Content-Length: {len(data)}", "Content-Type: application/json"]
        if token:
            head.append(f"Authorization: Bearer {token}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        await writer.drain()
        raw = await reader.read(BODY_BYTES_MAX + 4096)
        while len(raw) <= BODY_BYTES_MAX:
            more = await reader.read(BODY_BYTES_MAX)
            if not more:
                break
            raw += more
    finally:
        writer.close()
    header, _, payload = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    if any(l.lower().startswith("transfer-encoding:") and "chunked" in l.lower() for l in lines):
        payload = unchunk(payload)
    return status, (json.loads(payload) if payload.strip() else None)


def unchunk(payload):
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2:]
    return out


class EventSocket:
    """The cloud's event WebSocket (`GET /v1/events`): one JSON text frame per event."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, args, token):
        reader, writer = await asyncio.open_connection(args.host, args.cloud_port)
        key = base64.b64encode(os.urandom(16)).decode()
        head = ["GET /v1/events HTTP/1.1", f"Host: {args.host}", "Upgrade: websocket",
                "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                f"Sec-WebSocket-Key: {key}", f"Authorization: Bearer {token}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        await writer.drain()
        answer = await reader.readuntil(b"\r\n\r\n")
        status = answer.split(b"\r\n")[0].decode()
        if " 101 " not in status + " ":
            raise Failure(f"WebSocket upgrade refused: {status}")
        return cls(reader, writer)

    async def next_event(self):
        """The next event (a dict); answers pings on the way."""
        while True:
            opcode, payload = await self.frame()
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x9:
                self.send(0xA, payload)
            elif opcode == 0x8:
                raise Failure("the cloud closed Alice's event WebSocket")

    async def frame(self):
        b0, b1 = await self.reader.readexactly(2)
        size = b1 & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        if size > FRAME_BYTES_MAX:
            raise Failure(f"WebSocket frame of {size} bytes")
        mask = await self.reader.readexactly(4) if b1 & 0x80 else b"\0\0\0\0"
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(await self.reader.readexactly(size)))
        return b0 & 0x0F, data

    def send(self, opcode, payload):
        """A client frame (masked, as RFC 6455 requires of clients); payloads here are small."""
        mask = os.urandom(4)
        body = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body)

    def close(self):
        self.writer.close()


def encrypt(key_uri, key_b64, text):
    key = jwk.JWK(kty="oct", k=key_b64)
    token = jwe.JWE(text.encode(), json_encode({"alg": "dir", "enc": "A256GCM", "kid": key_uri}))
    token.add_recipient(key)
    return token.serialize(compact=True)


def decrypt(key_b64, compact):
    token = jwe.JWE(algs=["dir", "A256GCM"])
    token.deserialize(compact, jwk.JWK(kty="oct", k=key_b64))
    return token.payload.decode()


# ----- Jabber: slixmpp ---------------------------------------------------------------------


class Jabber(slixmpp.ClientXMPP):
    """Bob's Jabber client: plaintext c2s (the fake IM&P offers no TLS)."""

    def __init__(self, jid, password):
        super().__init__(jid, password)
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.started = asyncio.Event()
        self.inbox = asyncio.Queue()
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)

    async def on_start(self, _event):
        self.send_presence()
        self.started.set()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.inbox.put_nowait(msg)


# ----- the conversation --------------------------------------------------------------------


async def wait_assigned(args, alice):
    """Waits until Control Hub shows Alice served by the connector node."""
    deadline = time.monotonic() + args.assign_timeout
    last_note = 0.0
    while True:
        status, view = await http(args, "GET", f"/v1/admin/users/{alice}", args.admin_token)
        if status == 200 and view.get("assigned_to") == args.node:
            say("webex", f"Control Hub: {alice} is {view.get('state')}, served by {args.node}")
            return
        now = time.monotonic()
        if now > deadline:
            raise Failure(f"Control Hub did not assign {alice} to {args.node} within "
                          f"{args.assign_timeout:.0f} s (last view: {status} {view})")
        if now - last_note >= 10:
            state = view.get("state") if isinstance(view, dict) else status
            say("webex", f"waiting for Control Hub to assign {alice} to {args.node} "
                         f"(now: {state}, assigned to {view.get('assigned_to') if isinstance(view, dict) else None})")
            last_note = now
        await asyncio.sleep(0.5)


async def webex_login(args):
    status, login = await http(args, "POST", "/v1/login", None,
                               {"email": args.alice, "password": args.alice_password})
    if status != 200:
        raise Failure(f"Alice's Webex login: {status} {login}")
    say("webex", f"{args.alice} logged in to the Webex cloud (REST)")
    ws = await bounded(EventSocket.open(args, login["token"]), "Alice's event WebSocket")
    say("webex", f"{args.alice} opened the event WebSocket")
    return login["token"], ws


async def alice_posts(args, token, text):
    """Opens the 1:1 space with Bob, fetches its key, posts `text` encrypted; returns the key."""
    status, space = await http(args, "POST", "/v1/spaces", token,
                               {"kind": "direct", "members": [args.alice, args.bob]})
    if status not in (200, 201):
        raise Failure(f"creating the space: {status} {space}")
    status, key = await http(args, "POST", "/v1/kms/keys", token, {"uri": space["key_uri"]})
    if status != 200:
        raise Failure(f"fetching the space key: {status} {key}")
    say("webex", f"space {space['space_id']}, key {space['key_uri']} (from the KMS via the cloud)")
    body = {"verb": "post", "encrypted_text": encrypt(space["key_uri"], key["key"], text)}
    status, posted = await http(args, "POST", f"/v1/spaces/{space['space_id']}/activities",
                                token, body)
    if status != 201:
        raise Failure(f"posting: {status} {posted}")
    say("webex", f"{args.alice} -> {args.bob}: {text!r} (posted encrypted)")
    return key["key"]


async def alice_receives(args, ws, key):
    while True:
        event = await ws.next_event()
        activity = event.get("activity") or {}
        if event.get("type") == "activity" and activity.get("actor") == args.bob \
                and activity.get("encrypted_text"):
            return decrypt(key, activity["encrypted_text"])


async def conversation(args):
    bob = Jabber(args.bob, args.bob_password)
    bob.connect(host=args.host, port=args.c2s_port)
    try:
        await bounded(bob.started.wait(), "Bob's Jabber login over c2s")
        say("jabber", f"{args.bob} logged in to IM and Presence (XMPP c2s, slixmpp)")
        token, ws = await webex_login(args)
        await wait_assigned(args, args.alice)
        key = await alice_posts(args, token, "Hi Bob, Alice here on Webex")
        msg = await bounded(bob.inbox.get(), "Alice's message to reach Bob's Jabber")
        say("jabber", f"{args.bob} got from {msg['from']}: {msg['body']!r}")
        if msg["body"] != "Hi Bob, Alice here on Webex":
            raise Failure(f"Bob got {msg['body']!r}")
        reply = "Hi Alice, Bob here on Jabber"
        bob.send_message(mto=args.alice, mbody=reply, mtype="chat")
        say("jabber", f"{args.bob} -> {args.alice}: {reply!r}")
        got = await bounded(alice_receives(args, ws, key), "Bob's answer on Alice's WebSocket")
        say("webex", f"{args.alice} got from {args.bob}: {got!r} (decrypted with the space key)")
        if got != reply:
            raise Failure(f"Alice got {got!r}")
        ws.close()
    finally:
        bob.disconnect()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cloud-port", type=int, default=18443)
    p.add_argument("--c2s-port", type=int, default=15222)
    p.add_argument("--admin-token", default="admin-Secret-9")
    p.add_argument("--node", default="exp-a-1", help="the connector node serving Alice")
    p.add_argument("--alice", default="alice@example.com")
    p.add_argument("--alice-password", default="alice-Secret-3")
    p.add_argument("--bob", default="bob@example.com")
    p.add_argument("--bob-password", default="bob-Secret-4")
    p.add_argument("--assign-timeout", type=float, default=390.0,
                   help="seconds to wait for Control Hub (registration delay up to 5 min)")
    p.add_argument("--timeout", type=float, default=480.0, help="bound on the whole run")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    try:
        asyncio.run(asyncio.wait_for(conversation(args), args.timeout))
    except asyncio.TimeoutError:
        print(f"FAIL: the conversation took over {args.timeout:.0f} s", flush=True)
        return 1
    except (Failure, OSError, asyncio.IncompleteReadError) as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    print("REAL MODE OK: a Jabber user and a Webex user talked through the connector",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
