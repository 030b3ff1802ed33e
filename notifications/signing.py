"""Webhook signatures: `Tollbooth-Signature: t=<unix>,v1=<hex>` (Stripe's scheme).

v1 is the hex HMAC-SHA256 of "<t>.<body>" under a signing secret. While a rolled secret is in
its grace period, the header carries one v1 per valid secret, so a receiver still holding the
old secret keeps verifying.
"""
from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Tollbooth-Signature"
TOLERANCE_SECONDS = 300


def signature_compute(*, secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(*, secrets: list[str], timestamp: int, body: bytes) -> str:
    parts = [f"t={timestamp}"]
    parts += [f"v1={signature_compute(secret=s, timestamp=timestamp, body=body)}" for s in secrets]
    return ",".join(parts)


def signature_verify(*, header: str, body: bytes, secret: str, tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> bool:
    """What a receiver does (the README shows the same recipe): any v1 matching, and a fresh t."""
    try:
        pairs = [part.split("=", 1) for part in header.split(",")]
        timestamp = int(next(value for key, value in pairs if key == "t"))
    except (ValueError, StopIteration):
        return False
    expected = signature_compute(secret=secret, timestamp=timestamp, body=body)
    matches = any(key == "v1" and hmac.compare_digest(value, expected) for key, value in pairs)
    return matches and abs((now if now is not None else time.time()) - timestamp) <= tolerance
