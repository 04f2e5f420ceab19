#!/usr/bin/env python3
"""Generates signing_fixtures.json, an independent computation (Python's
hashlib, json and the `cryptography` package, not Go) of what
caddymodule/webhook must produce:

  - RFC 7638 JWK thumbprints of Ed25519 keys and the kid ("ds_" + thumbprint),
    computed from the canonical JSON that json.dumps(sort_keys=True) builds;
  - Webhook-Signature header values (PROTOCOL.md section 7.1) for fixed seeds,
    timestamps and bodies: Ed25519 over "<t>.<raw body>", unpadded base64url.

Ed25519 signatures are deterministic, so Go must reproduce these bytes.
Run once and commit the output:  python3 make_fixtures.py > signing_fixtures.json
"""
import base64
import hashlib
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def public_x(seed):
    key = Ed25519PrivateKey.from_private_bytes(seed)
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return key, b64url(raw)


def thumbprint(x):
    canonical = json.dumps({"kty": "OKP", "crv": "Ed25519", "x": x}, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


# Seeds: RFC 8032 section 7.1 TEST 1..3, then seeds made from a counter.
seeds = [
    bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
    bytes.fromhex("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
    bytes.fromhex("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
] + [hashlib.sha256(b"durable-streams webhook fixture %d" % i).digest() for i in range(3)]

bodies = [
    b"",
    b'{"subscription_id":"sub-1","wake_id":"w_abc123","generation":7}',
    '{"path":"caf\u00e9/\u00fc","note":"line\\nbreak"}'.encode(),
]

out = {"keys": [], "signatures": []}
for i, seed in enumerate(seeds):
    key, x = public_x(seed)
    tp = thumbprint(x)
    out["keys"].append({"seed": seed.hex(), "x": x, "thumbprint": tp, "kid": "ds_" + tp})
    body = bodies[i % len(bodies)]
    t = 1778324210 + i
    sig = key.sign(b"%d." % t + body)
    out["signatures"].append({
        "seed": seed.hex(),
        "t": t,
        "body_hex": body.hex(),
        "header": "t=%d,kid=ds_%s,ed25519=%s" % (t, tp, b64url(sig)),
    })

print(json.dumps(out, indent=2))
