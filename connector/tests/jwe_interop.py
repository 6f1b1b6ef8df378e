#!/usr/bin/env python3
"""Cross-checks connector::proto::jwe against jwcrypto, a real JOSE implementation.

Run by connector/tests/jwe_interop.rs as `python3 jwe_interop.py <dir>`:

1. reads <dir>/rust_tokens.json, written by the Rust test: cases made by our `encrypt`, each
   with its key as a JWK (`{"kty":"oct","k":...,"kid":...}`), the expected plaintext (base64url)
   and whether jwcrypto must accept ("ok") or refuse ("reject") it;
2. decrypts every case with jwcrypto (algorithms restricted to dir + A256GCM) and checks the
   plaintext and the protected header;
3. writes <dir>/python_tokens.json: tokens made by jwcrypto (dir/A256GCM, kid = key URI) with
   their keys and plaintexts, plus a few that the Rust side must refuse, for the Rust test to
   decrypt with our `decrypt`.

Exits non-zero with a message on the first disagreement. Needs `pip install jwcrypto`.
Randomness here (jwcrypto's keys and IVs) is fine: this runs outside the simulation.
"""

import base64
import json
import sys
from pathlib import Path

from jwcrypto import jwe, jwk
from jwcrypto.common import json_encode

ALGS = ["dir", "A256GCM"]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fail(message: str) -> None:
    print(f"jwe_interop.py: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def check_rust_tokens(cases: list) -> tuple[int, int]:
    accepted = rejected = 0
    for case in cases:
        name = case["name"]
        key = jwk.JWK(**case["jwk"])
        token = jwe.JWE(algs=ALGS)
        try:
            token.deserialize(case["token"], key)
        except Exception as error:  # jwcrypto raises several types; any refusal counts
            if case["expect"] == "reject":
                rejected += 1
                continue
            fail(f"{name}: jwcrypto refused our token: {type(error).__name__}: {error}")
        if case["expect"] == "reject":
            fail(f"{name}: jwcrypto accepted a token it must refuse")
        want = unb64url(case["plaintext_b64"])
        if token.payload != want:
            fail(f"{name}: plaintext differs: {token.payload!r} != {want!r}")
        # The header must be exactly the three members, in this order (we check the raw
        # segment too, since the AAD is the encoded segment).
        header_segment = case["token"].split(".")[0]
        header = json.loads(unb64url(header_segment))
        expected = {"alg": "dir", "enc": "A256GCM", "kid": case["jwk"]["kid"]}
        if header != expected or list(header) != ["alg", "enc", "kid"]:
            fail(f"{name}: protected header {header} != {expected}")
        accepted += 1
    return accepted, rejected


def make_python_tokens() -> list:
    out = []

    def add(name, key, plaintext, protected, expect="ok"):
        token = jwe.JWE(plaintext, protected=json_encode(protected), algs=ALGS)
        token.add_recipient(key)
        out.append(
            {
                "name": name,
                "jwk": json.loads(key.export(private_key=True)),
                "token": token.serialize(compact=True),
                "plaintext_b64": b64url(plaintext),
                "expect": expect,
            }
        )

    hosts = ["kms", "hds"]
    plaintexts = [
        b"hello from jwcrypto",
        "Gr\u00fc\u00dfe, \u4f60\u597d, \U0001f44b".encode("utf-8"),
        bytes(range(256)) * 4,
        json.dumps({"verb": "post", "object": {"displayName": "x" * 5000}}).encode(),
    ]
    for i, plaintext in enumerate(plaintexts):
        host = hosts[i % len(hosts)]
        kid = f"kms://{host}/keys/00000000-0000-4000-8000-{i:012d}"
        key = jwk.JWK.generate(kty="oct", size=256, kid=kid)
        header = {"alg": "dir", "enc": "A256GCM", "kid": kid}
        add(f"jwcrypto-{i}", key, plaintext, header)

    kid = "kms://kms/keys/00000000-0000-4000-8000-00000000abcd"
    key = jwk.JWK.generate(kty="oct", size=256, kid=kid)
    # Other member order and an extra member: legal JWE that we must accept.
    add(
        "jwcrypto-reordered-with-cty",
        key,
        b"reordered header",
        {"kid": kid, "cty": "text/plain", "enc": "A256GCM", "alg": "dir"},
    )
    # Legal JWE that our profile refuses: no kid, and another enc.
    add("jwcrypto-no-kid", key, b"no kid", {"alg": "dir", "enc": "A256GCM"}, "reject")
    key128 = jwk.JWK.generate(kty="oct", size=128, kid=kid)
    token = jwe.JWE(
        b"a128", protected=json_encode({"alg": "dir", "enc": "A128GCM", "kid": kid})
    )
    token.add_recipient(key128)
    out.append(
        {
            "name": "jwcrypto-a128gcm",
            # The Rust side needs a 32-byte key to build a SpaceKey; the enc check comes first.
            "jwk": json.loads(key.export(private_key=True)),
            "token": token.serialize(compact=True),
            "plaintext_b64": b64url(b"a128"),
            "expect": "reject",
        }
    )
    return out


def main() -> None:
    if len(sys.argv) != 2:
        fail("usage: jwe_interop.py <dir>")
    directory = Path(sys.argv[1])
    cases = json.loads((directory / "rust_tokens.json").read_text())["cases"]
    accepted, rejected = check_rust_tokens(cases)
    tokens = make_python_tokens()
    (directory / "python_tokens.json").write_text(json.dumps({"cases": tokens}, indent=1))
    from importlib.metadata import version

    print(
        f"jwcrypto {version('jwcrypto')}: decrypted {accepted} Rust tokens, "
        f"refused {rejected} tampered ones, wrote {len(tokens)} tokens"
    )


if __name__ == "__main__":
    main()
