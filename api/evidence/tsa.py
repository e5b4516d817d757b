"""RFC 3161 time-stamp tokens for ledger checkpoints (rfc3161-client; HTTP with the standard library)."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from core.errors import ShopfloorError


class TimestampError(ShopfloorError):
    """A timestamp authority that cannot be reached, or a token that does not verify."""


def request_token(url: str, message: bytes, timeout_s: float = 10.0) -> bytes:
    """Ask the TSA at `url` to time-stamp SHA-256(message); returns the DER TimeStampResp as received."""
    from rfc3161_client import HashAlgorithm, PKIStatus, TimestampRequestBuilder, decode_timestamp_response

    req = (TimestampRequestBuilder().data(message).hash_algorithm(HashAlgorithm.SHA256)
           .cert_request(cert_request=True).build())
    http = urllib.request.Request(url, data=req.as_bytes(), headers={"Content-Type": "application/timestamp-query"})
    try:
        with urllib.request.urlopen(http, timeout=timeout_s) as r:  # noqa: S310 - the plant's own TSA URL
            body: bytes = r.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TimestampError(f"timestamp authority {url}: {exc}; check the URL or run without --tsa-url") from exc
    try:
        resp = decode_timestamp_response(body)
    except ValueError as exc:
        raise TimestampError(f"timestamp authority {url}: answer is not an RFC 3161 response ({exc})") from exc
    if resp.status not in (PKIStatus.GRANTED, PKIStatus.GRANTED_WITH_MODS):
        raise TimestampError(f"timestamp authority {url}: request refused (status {resp.status})")
    return body


def verify_token(token: bytes, message: bytes, root_pem: Path) -> datetime:
    """The token's time when it verifies for `message` against the TSA's root certificate; else TimestampError."""
    from cryptography import x509
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    try:
        root = x509.load_pem_x509_certificate(root_pem.read_bytes())
    except (OSError, ValueError) as exc:
        raise ShopfloorError(f"{root_pem}: not a PEM certificate ({exc})") from exc
    try:
        resp = decode_timestamp_response(token)
        VerifierBuilder().add_root_certificate(root).build().verify_message(resp, message)
    except (ValueError, VerificationError) as exc:
        raise TimestampError(f"RFC 3161 token does not verify for this checkpoint ({exc})") from exc
    return resp.tst_info.gen_time
