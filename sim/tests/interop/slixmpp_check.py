#!/usr/bin/env python3
"""Interop check: a real XMPP library (slixmpp 1.x) against `hmsim serve imp`.

Run by sim/tests/interop_slixmpp.rs. Logs in alice (two resources) and bob over plaintext
c2s, exchanges messages with XEP-0184 receipts and XEP-0085 chat states, checks XEP-0280
carbons on alice's second resource, an XEP-0199 ping and an XEP-0045 room (bob invites
alice, both get a groupchat message), then connects as an XEP-0114 component with the right
secret (accepted) and a wrong one (refused), and opens, uses and closes a hybrid session
(urn:hmsim:hybrid-session:0): opening it takes alice out of the room with status 333, and a
later invitation to her is dropped silently (spec 42). AXL is checked first with urllib:
listProcessNode, executeSQLQuery, and a 401 for bad credentials.

Prints one "ok: ..." line per passed step and "INTEROP OK" at the end; exits 1 with
"FAIL: ..." on the first failure. Everything is bounded: every wait has a timeout and the
whole run is capped at 60 s.
"""

import argparse
import asyncio
import base64
import logging
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

STEP_TIMEOUT = 10.0
OVERALL_TIMEOUT = 60.0
NS_SESSION = "urn:hmsim:hybrid-session:0"


class Failure(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def plaintext(xmpp):
    """The settings slixmpp needs for a plaintext stream to the fake (no TLS, PLAIN over TCP)."""
    xmpp.enable_plaintext = True
    xmpp.enable_starttls = False
    xmpp.enable_direct_tls = False


class Client(slixmpp.ClientXMPP):
    """A Jabber-like client that records what it receives."""

    def __init__(self, jid, password):
        super().__init__(jid, password)
        plaintext(self)
        for p in ("xep_0030", "xep_0045", "xep_0085", "xep_0184", "xep_0199", "xep_0280"):
            self.register_plugin(p)
        self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.started = asyncio.Event()
        self.failed_auth = asyncio.Event()
        self.inbox = asyncio.Queue()
        self.receipts = asyncio.Queue()
        self.states = asyncio.Queue()
        self.carbons_sent = asyncio.Queue()
        self.carbons_received = asyncio.Queue()
        self.invites = asyncio.Queue()
        self.room_messages = asyncio.Queue()
        self.room_presences = asyncio.Queue()
        self.add_event_handler("groupchat_invite", lambda m: self.invites.put_nowait(m))
        self.add_event_handler("groupchat_message", lambda m: self.room_messages.put_nowait(m))
        self.add_event_handler("groupchat_presence", lambda p: self.room_presences.put_nowait(p))
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", lambda _: self.failed_auth.set())
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("receipt_received", lambda m: self.receipts.put_nowait(m))
        self.add_event_handler("chatstate", lambda m: self.states.put_nowait(m))
        self.add_event_handler("carbon_sent", lambda m: self.carbons_sent.put_nowait(m))
        self.add_event_handler("carbon_received", lambda m: self.carbons_received.put_nowait(m))

    async def on_start(self, _event):
        self.send_presence()
        await self.get_roster(timeout=STEP_TIMEOUT)
        await self.plugin["xep_0280"].enable(timeout=STEP_TIMEOUT)
        self.started.set()

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"]:
            self.inbox.put_nowait(msg)


class Component(slixmpp.ComponentXMPP):
    """The connector's side of the component link."""

    def __init__(self, jid, secret):
        # Stanza errors on a component stream are in jabber:component:accept: slixmpp reads
        # them only with fix_error_ns (otherwise every condition looks like
        # feature-not-implemented).
        super().__init__(jid, secret, fix_error_ns=True)
        plaintext(self)
        self.started = asyncio.Event()
        self.ended = asyncio.Event()
        self.stream_errors = []
        self.inbox = asyncio.Queue()
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("stream_error", self.on_stream_error)
        self.add_event_handler("disconnected", lambda _: self.ended.set())
        self.add_event_handler("message", lambda m: self.inbox.put_nowait(m))

    def on_stream_error(self, err):
        cond = err["condition"] if "condition" in err.keys() else ""
        self.stream_errors.append(cond or str(err))
        self.ended.set()


async def wait(aw, what):
    try:
        return await asyncio.wait_for(aw, STEP_TIMEOUT)
    except asyncio.TimeoutError:
        raise Failure(f"timed out after {STEP_TIMEOUT:.0f}s waiting for {what}") from None


async def next_where(queue, pred, what):
    """The next item of `queue` satisfying `pred` (others are skipped)."""

    async def loop():
        while True:
            item = await queue.get()
            if pred(item):
                return item

    return await wait(loop(), what)


async def login(jid, password, host, port):
    c = Client(jid, password)
    c.connect(host, port)
    done = asyncio.ensure_future(c.started.wait())
    bad = asyncio.ensure_future(c.failed_auth.wait())
    finished, pending = await asyncio.wait({done, bad}, timeout=STEP_TIMEOUT,
                                           return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()
    if bad in finished:
        raise Failure(f"{jid}: authentication failed")
    if done not in finished:
        raise Failure(f"{jid}: no session within {STEP_TIMEOUT:.0f}s")
    ok(f"logged in as {c.boundjid.full}")
    return c


def session_iq(comp, domain, action, jid, iq_id):
    iq = comp.Iq()
    iq["type"] = "set"
    iq["id"] = iq_id
    iq["to"] = domain
    iq["from"] = comp.boundjid.bare
    iq.append(ET.fromstring(f"<session xmlns='{NS_SESSION}' action='{action}' jid='{jid}'/>"))
    return iq


NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def axl_post(args, op_xml, user, password):
    """POSTs a SOAP request to AXL with basic auth: (status, headers, parsed body or None)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soapenv:Envelope xmlns:soapenv="{NS_SOAP}" '
        'xmlns:ns="http://www.cisco.com/AXL/API/14.0"><soapenv:Header/>'
        f"<soapenv:Body>{op_xml}</soapenv:Body></soapenv:Envelope>"
    ).encode()
    req = urllib.request.Request(f"http://{args.host}:{args.axl_port}/axl/", data=body,
                                 method="POST")
    req.add_header("Content-Type", "text/xml; charset=utf-8")
    req.add_header("SOAPAction", "CUCM:DB ver=14.0")
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=STEP_TIMEOUT) as resp:
            return resp.status, resp.headers, ET.fromstring(resp.read())
    except urllib.error.HTTPError as e:
        data = e.read()
        try:
            parsed = ET.fromstring(data) if data else None
        except ET.ParseError:
            parsed = None
        return e.code, e.headers, parsed


def check_axl(args):
    """AXL over real HTTP (hyper): discovery works, bad credentials get 401."""
    status, _, doc = axl_post(
        args,
        "<ns:listProcessNode><searchCriteria><name>%</name></searchCriteria>"
        "<returnedTags><name/><processNodeRole/></returnedTags></ns:listProcessNode>",
        args.axl_user, args.axl_password)
    if status != 200 or doc is None:
        raise Failure(f"listProcessNode answered HTTP {status}")
    roles = [e.text for e in doc.iter("processNodeRole")]
    if roles != ["CUCM IM and Presence"]:
        raise Failure(f"listProcessNode roles {roles}")
    ok("AXL listProcessNode over HTTP")
    status, _, doc = axl_post(
        args, "<ns:executeSQLQuery><sql>SELECT userid, mailid FROM enduser ORDER BY userid"
        "</sql></ns:executeSQLQuery>", args.axl_user, args.axl_password)
    if status != 200 or doc is None:
        raise Failure(f"executeSQLQuery answered HTTP {status}")
    rows = {r.findtext("userid"): (r.findtext("mailid") or "") for r in doc.iter("row")}
    if rows.get("alice") != "alice@example.com" or rows.get("nomail", "x") != "":
        raise Failure(f"executeSQLQuery rows {rows}")
    ok("AXL executeSQLQuery over HTTP (user without mailid has an empty one)")
    status, headers, _ = axl_post(args, "<ns:listProcessNode/>", args.axl_user, "wrong")
    if status != 401 or not (headers.get("WWW-Authenticate") or "").startswith("Basic"):
        raise Failure(f"bad AXL credentials answered HTTP {status}")
    ok("AXL bad credentials refused with 401")


async def check(args):
    host, domain = args.host, args.domain
    alice_bare = f"alice@{domain}"
    bob_bare = f"bob@{domain}"
    clients = []
    comps = []
    try:
        await asyncio.get_running_loop().run_in_executor(None, check_axl, args)
        alice1 = await login(f"{alice_bare}/desk", args.alice_password, host, args.c2s_port)
        alice2 = await login(f"{alice_bare}/phone", args.alice_password, host, args.c2s_port)
        bob = await login(f"{bob_bare}/laptop", args.bob_password, host, args.c2s_port)
        clients = [alice1, alice2, bob]

        # Wrong password is refused.
        bad = Client(f"{bob_bare}/x", "not-the-password")
        bad.connect(host, args.c2s_port)
        await wait(bad.failed_auth.wait(), "SASL failure for a wrong password")
        bad.disconnect()
        ok("wrong password refused")

        # XEP-0199 ping to the server.
        await wait(bob.plugin["xep_0199"].send_ping(domain, timeout=STEP_TIMEOUT), "ping reply")
        ok("ping answered")

        # bob -> alice (bare): both of alice's resources get it; receipts come back.
        msg = bob.make_message(mto=alice_bare, mbody="hello alice", mtype="chat")
        msg["id"] = "m-bob-1"
        msg["request_receipt"] = True
        msg["chat_state"] = "active"
        msg.send()
        for c in (alice1, alice2):
            got = await next_where(c.inbox, lambda m: m["body"] == "hello alice",
                                   f"bob's message at {c.boundjid.full}")
            if got["from"].bare != bob_bare:
                raise Failure(f"message from {got['from']} instead of bob")
            if got["chat_state"] != "active":
                raise Failure(f"chat state {got['chat_state']!r} instead of 'active'")
        ok("message to a bare JID reached both of alice's resources, with its chat state")
        receipt = await next_where(bob.receipts, lambda m: m["receipt"] == "m-bob-1",
                                   "a delivery receipt for m-bob-1")
        if receipt["from"].bare != alice_bare:
            raise Failure(f"receipt from {receipt['from']}")
        ok("XEP-0184 receipt came back to bob")

        # Typing: alice composing -> bob.
        typing = alice1.make_message(mto=bob_bare, mtype="chat")
        typing["chat_state"] = "composing"
        typing.send()
        await next_where(bob.states, lambda m: m["chat_state"] == "composing",
                         "alice's composing state at bob")
        ok("XEP-0085 composing reached bob")

        # alice (desk) -> bob: bob gets it, alice's phone gets a sent carbon.
        reply = alice1.make_message(mto=bob_bare, mbody="hi bob", mtype="chat")
        reply["id"] = "m-alice-1"
        reply.send()
        await next_where(bob.inbox, lambda m: m["body"] == "hi bob", "alice's reply at bob")
        carbon = await next_where(
            alice2.carbons_sent,
            lambda m: m["carbon_sent"]["body"] == "hi bob",
            "a sent carbon of alice's reply at alice/phone",
        )
        if carbon["carbon_sent"]["to"].bare != bob_bare:
            raise Failure(f"sent carbon addressed to {carbon['carbon_sent']['to']}")
        ok("alice's second resource got a XEP-0280 sent carbon")

        # bob -> alice/desk (full JID): alice's phone gets a received carbon.
        direct = bob.make_message(mto=f"{alice_bare}/desk", mbody="just desk", mtype="chat")
        direct.send()
        await next_where(alice1.inbox, lambda m: m["body"] == "just desk", "message at alice/desk")
        await next_where(
            alice2.carbons_received,
            lambda m: m["carbon_received"]["body"] == "just desk",
            "a received carbon at alice/phone",
        )
        ok("alice's second resource got a XEP-0280 received carbon")

        # XEP-0045 group chat (spec 42): bob creates an ad-hoc room and invites alice; her desk
        # joins on the invitation and a groupchat message reaches both occupants.
        room = f"team@conference.{domain}"
        await wait(bob.plugin["xep_0045"].join_muc_wait(room, "bob", timeout=STEP_TIMEOUT),
                   "bob's own presence in the new room")
        bob.plugin["xep_0045"].invite(room, alice_bare, reason="spec 42")
        inv = await next_where(alice1.invites, lambda m: True, "bob's invitation at alice/desk")
        if inv["from"].bare != room:
            raise Failure(f"invitation from {inv['from']}, not from the room")
        await wait(alice1.plugin["xep_0045"].join_muc_wait(room, "alice", timeout=STEP_TIMEOUT),
                   "alice's own presence in the room")
        bob.send_message(mto=room, mbody="hello room", mtype="groupchat")
        for c in (alice1, bob):
            got = await next_where(c.room_messages, lambda m: m["body"] == "hello room",
                                   f"the groupchat message at {c.boundjid.full}")
            if got["from"].full != f"{room}/bob":
                raise Failure(f"groupchat message from {got['from']}, not {room}/bob")
        ok("XEP-0045 room created, invitation delivered, groupchat reached both occupants")

        # XEP-0114 component with a wrong secret: refused with not-authorized.
        wrong = Component(args.component_jid, "wrong-" + args.secret)
        comps.append(wrong)
        wrong.connect(host, args.component_port)
        await wait(wrong.ended.wait(), "the refusal of a wrong component secret")
        if wrong.started.is_set():
            raise Failure("a component with a wrong secret was accepted")
        if wrong.stream_errors and "not-authorized" not in wrong.stream_errors:
            raise Failure(f"wrong secret gave stream errors {wrong.stream_errors}")
        ok(f"component with a wrong secret refused ({wrong.stream_errors or 'closed'})")

        # The right secret.
        comp = Component(args.component_jid, args.secret)
        comps.append(comp)
        comp.connect(host, args.component_port)
        await wait(comp.started.wait(), "the component handshake")
        ok("component handshake accepted")

        session_jid = f"{alice_bare}/hm-webex"
        res = await wait(session_iq(comp, domain, "start", session_jid, "s1").send(
            timeout=STEP_TIMEOUT), "the session start result")
        if res["type"] != "result":
            raise Failure(f"session start answered {res}")
        ok(f"hybrid session started for {session_jid}")

        # Spec 42 (b): alice switched to Webex, so she is out of the ad-hoc room at once, with
        # XEP-0045 status 333 (removed by the service).
        gone = await next_where(
            bob.room_presences,
            lambda p: p["from"].full == f"{room}/alice" and p["type"] == "unavailable",
            "alice's removal from the room at bob")
        codes = {int(c) for c in gone["muc"]["status_codes"]}
        if 333 not in codes:
            raise Failure(f"alice removed with status codes {sorted(codes)}, not 333")
        ok("alice left the group chat when her hybrid session opened (status 333)")

        # Spec 42 (a): an invitation to a user on Webex is dropped silently: no invitation,
        # and no error to the inviter.
        bob.plugin["xep_0045"].invite(room, alice_bare)
        await asyncio.sleep(1.0)
        if not alice1.invites.empty():
            raise Failure("alice, on Webex, got an invitation")
        ok("invitation to alice on Webex dropped silently")

        try:
            await wait(session_iq(comp, domain, "start", f"nobody@{domain}/hm", "s2").send(
                timeout=STEP_TIMEOUT), "the unknown-user refusal")
            raise Failure("a session for an unknown user was accepted")
        except IqError as e:
            cond = e.iq["error"]["condition"]
            if cond != "item-not-found":
                raise Failure(f"unknown user refused with {cond!r}, not item-not-found")
        ok("session for an unknown user refused with item-not-found")

        # The session is a device of alice: bob's message fans out to it.
        fan = bob.make_message(mto=alice_bare, mbody="to every device", mtype="chat")
        fan.send()
        got = await next_where(comp.inbox, lambda m: m["body"] == "to every device",
                               "bob's message on the component session")
        if got["to"].full != session_jid:
            raise Failure(f"session message addressed to {got['to']}, not {session_jid}")
        ok("bob's message reached the hybrid session, addressed to its full JID")

        # The connector sends as the session: bob gets it, alice's Jabber gets a carbon.
        out = comp.make_message(mto=bob_bare, mfrom=session_jid, mbody="from webex",
                                mtype="chat")
        out.send()
        got = await next_where(bob.inbox, lambda m: m["body"] == "from webex",
                               "the session's message at bob")
        if got["from"].full != session_jid:
            raise Failure(f"session message came from {got['from']}")
        await next_where(alice1.carbons_sent,
                         lambda m: m["carbon_sent"]["body"] == "from webex",
                         "a sent carbon of the session's message at alice/desk")
        ok("message sent as the session reached bob, with a carbon to alice's Jabber")

        res = await wait(session_iq(comp, domain, "stop", session_jid, "s3").send(
            timeout=STEP_TIMEOUT), "the session stop result")
        if res["type"] != "result":
            raise Failure(f"session stop answered {res}")
        ok("hybrid session stopped")
    finally:
        for c in clients + comps:
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001 - best effort cleanup
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--domain", default="example.com")
    ap.add_argument("--c2s-port", type=int, required=True)
    ap.add_argument("--component-port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--component-jid", default="hm.example.com")
    ap.add_argument("--alice-password", default="alice-pw")
    ap.add_argument("--bob-password", default="bob-pw")
    ap.add_argument("--axl-port", type=int, required=True)
    ap.add_argument("--axl-user", default="hmsim-axl")
    ap.add_argument("--axl-password", default="axl-Secret-0")
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    print(f"slixmpp {slixmpp.__version__}", flush=True)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(asyncio.wait_for(check(args), OVERALL_TIMEOUT))
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    except asyncio.TimeoutError:
        print(f"FAIL: the whole check took over {OVERALL_TIMEOUT:.0f}s", flush=True)
        return 1
    except (IqError, IqTimeout) as e:
        print(f"FAIL: unexpected IQ failure: {e!r}", flush=True)
        return 1
    except Exception as e:  # noqa: BLE001 - any other failure is a failed check
        print(f"FAIL: {type(e).__name__}: {e}", flush=True)
        return 1
    print("INTEROP OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
