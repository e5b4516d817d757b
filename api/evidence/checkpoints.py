"""Signed checkpoints of the ingest-ledger chain heads, and their check against a ledger slice."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from api.evidence.signing import SignatureError, dumps, keyid, open_envelope, sign_envelope
from collector.ledger import LedgerEntry, hour_iso

CHECKPOINT_TYPE = "application/vnd.shopfloor.ledger-checkpoint+json"
CHECKPOINT_V1 = "https://shopfloor.dev/ledger-checkpoint/v1"


def heads(conn: Any) -> dict[str, dict[str, Any]]:
    """Every device's chain head now: position, entry hash, hour."""
    rows = conn.execute("""SELECT DISTINCT ON (device_id) device_id, chain_seq, entry_hash, hour FROM ingest_ledger
                           ORDER BY device_id, chain_seq DESC""").fetchall()
    return {str(r[0]): {"chain_seq": int(r[1]), "entry_hash": str(r[2]), "hour": hour_iso(r[3])} for r in rows}


def make_checkpoint(conn: Any, key: Ed25519PrivateKey, plant_id: str, now: datetime | None = None,
                    tsa_url: str | None = None) -> dict[str, Any]:
    """Sign the current chain heads, time-stamp the signed payload where a TSA is configured, store the checkpoint
    and return its envelope."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    h = heads(conn)
    body = {"_type": CHECKPOINT_V1, "plant_id": plant_id, "created_at": now.isoformat(), "heads": h}
    payload = dumps(body)
    env = sign_envelope(payload, key, CHECKPOINT_TYPE)
    token = None
    if tsa_url:
        from api.evidence.tsa import request_token

        token = request_token(tsa_url, payload)
    conn.execute("""INSERT INTO ledger_checkpoints (created_at, heads, envelope, keyid, tsa_token)
                    VALUES (%s, %s, %s, %s, %s)""", (now, json.dumps(h), json.dumps(env), keyid(key.public_key()), token))
    return env


def stored_tokens(conn: Any, since: datetime | None = None) -> list[dict[str, str]]:
    """RFC 3161 tokens of stored checkpoints: {payload_sha256, token (base64 DER)}."""
    import base64
    import hashlib

    rows = conn.execute("""SELECT envelope, tsa_token FROM ledger_checkpoints WHERE tsa_token IS NOT NULL
                           AND (%s::timestamptz IS NULL OR created_at >= %s) ORDER BY created_at, id""",
                        (since, since)).fetchall()
    out = []
    for env, tok in rows:
        e = env if isinstance(env, dict) else json.loads(env)
        out.append({"payload_sha256": hashlib.sha256(base64.b64decode(e["payload"])).hexdigest(),
                    "token": base64.b64encode(bytes(tok)).decode()})
    return out


def check_tokens(envelopes: list[Any], tokens: list[dict[str, str]], root: Any) -> tuple[list[str], str]:
    """Each RFC 3161 token against the checkpoint payload it names (with the TSA root certificate)."""
    import base64
    import hashlib

    from api.evidence.tsa import TimestampError, verify_token

    payloads = {}
    for env in envelopes:
        try:
            p = base64.b64decode(env["payload"])
        except (KeyError, ValueError, TypeError):
            continue
        payloads[hashlib.sha256(p).hexdigest()] = p
    problems: list[str] = []
    times: list[str] = []
    for i, t in enumerate(tokens, start=1):
        signed = payloads.get(t.get("payload_sha256", ""))
        if signed is None:
            problems.append(f"ledger/timestamps.jsonl line {i}: no checkpoint in the pack has this payload")
            continue
        try:
            times.append(verify_token(base64.b64decode(t["token"]), signed, root).isoformat())
        except TimestampError as exc:
            problems.append(f"ledger/timestamps.jsonl line {i}: {exc}")
    return problems, f"{len(times)} RFC 3161 tokens verified" + (f", latest {max(times)}" if times else "")


def stored_checkpoints(conn: Any, since: datetime | None = None) -> list[dict[str, Any]]:
    """Envelopes of stored checkpoints (oldest first), created at or after `since`."""
    rows = conn.execute("""SELECT envelope FROM ledger_checkpoints WHERE %s::timestamptz IS NULL OR created_at >= %s
                           ORDER BY created_at, id""", (since, since)).fetchall()
    return [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]


def check(envelopes: list[Any], key: Ed25519PublicKey, entries: list[LedgerEntry], where: str,
          plant_id: str | None = None) -> tuple[list[str], int]:
    """Problems, and how many device heads could be compared with an entry of the slice."""
    by_pos = {(e.device_id, e.chain_seq): e for e in entries}
    problems: list[str] = []
    compared = 0
    for i, env in enumerate(envelopes, start=1):
        at = f"{where} checkpoint {i}"
        try:
            body = json.loads(open_envelope(env, key, at))
        except SignatureError as exc:
            problems.append(str(exc))
            continue
        except ValueError:
            problems.append(f"{at}: payload is not JSON")
            continue
        if body.get("_type") != CHECKPOINT_V1 or not isinstance(body.get("heads"), dict):
            problems.append(f"{at}: not a ledger checkpoint")
            continue
        if plant_id is not None and body.get("plant_id") != plant_id:
            problems.append(f"{at}: checkpoint of plant {body.get('plant_id')!r}, pack is of {plant_id!r}")
        for dev, head in sorted(body["heads"].items()):
            e = by_pos.get((dev, int(head["chain_seq"])))
            if e is None:
                continue
            compared += 1
            if e.entry_hash != head["entry_hash"]:
                problems.append(f"{at} ({body.get('created_at')}): ledger of {dev} at chain position "
                                f"{head['chain_seq']} differs from the signed head (ledger rewritten since)")
    return problems, compared
