"""Ed25519 keys (PEM) and DSSE envelopes around in-toto Statement v1 (PAE per the DSSE v1 specification)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core.errors import ShopfloorError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://shopfloor.dev/evidence/tier-evaluation/v1"


class SignatureError(ShopfloorError):
    """A signature, key or envelope that does not check out."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def keygen(out_dir: Path) -> tuple[Path, Path]:
    """Write signing.key (PKCS#8 PEM, mode 0600) and signing.pub (SubjectPublicKeyInfo PEM) into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    priv, pub = out_dir / "signing.key", out_dir / "signing.pub"
    if priv.exists():
        raise ShopfloorError(f"{priv} exists already; refusing to overwrite a signing key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(priv, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub.write_bytes(public_pem(key.public_key()))
    return priv, pub


def public_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def keyid(key: Ed25519PublicKey) -> str:
    """SHA-256 hex of the public key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the signing key: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path}: the signing key must be Ed25519 (`shopfloor evidence keygen` writes one)")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SignatureError(f"{path}: cannot read the public key: {exc.strerror or exc}") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise SignatureError(f"{path}: not a PEM public key (SubjectPublicKeyInfo) ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path}: the public key must be Ed25519")
    return key


def statement(subjects: dict[str, bytes], predicate: dict[str, Any]) -> dict[str, Any]:
    """in-toto Statement v1: every subject with its sha256, our predicate type, the predicate."""
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": n, "digest": {"sha256": hashlib.sha256(b).hexdigest()}}
                        for n, b in sorted(subjects.items())],
            "predicateType": PREDICATE_TYPE, "predicate": predicate}


def sign_envelope(payload: bytes, key: Ed25519PrivateKey, payload_type: str = PAYLOAD_TYPE) -> dict[str, Any]:
    """A DSSE envelope with one Ed25519 signature over PAE(payload_type, payload)."""
    sig = key.sign(pae(payload_type, payload))
    return {"payload": base64.b64encode(payload).decode(), "payloadType": payload_type,
            "signatures": [{"keyid": keyid(key.public_key()), "sig": base64.b64encode(sig).decode()}]}


def open_envelope(envelope: Any, key: Ed25519PublicKey, where: str) -> bytes:
    """The payload of a DSSE envelope if one of its signatures verifies with `key`; else SignatureError."""
    if not isinstance(envelope, dict) or not {"payload", "payloadType", "signatures"} <= envelope.keys():
        raise SignatureError(f"{where}: not a DSSE envelope (needs payload, payloadType, signatures)")
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        sigs = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
    except (ValueError, TypeError, KeyError) as exc:
        raise SignatureError(f"{where}: envelope fields are not valid base64 ({exc})") from exc
    message = pae(str(envelope["payloadType"]), payload)
    for sig in sigs:
        try:
            key.verify(sig, message)
            return payload
        except InvalidSignature:
            continue
    raise SignatureError(f"{where}: signature does not verify with the given public key "
                         f"(keyid {keyid(key)[:16]}...)")


def dumps(obj: Any) -> bytes:
    """Deterministic JSON (sorted keys, UTF-8)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode()
