"""API key format (README "The metered API"): `sk_live_` (or `sk_test_` for a test-mode key),
56 hex of randomness, 8 hex CRC32.

Whether a key is in test mode is the key row's `is_test`, not its prefix: `sk_test_` keys issued
before test mode existed are live keys and keep working as such.

The checksum lets us reject a mistyped or made-up key without touching any store, and the
fixed shape lets leak scanners recognise our keys, as GitHub's tokens do.
"""
from __future__ import annotations

import hashlib
import re
import secrets
import zlib

LIVE_PREFIX = "sk_live_"
TEST_PREFIX = "sk_test_"
RANDOM_HEX = 56
KEY_PATTERN = re.compile(r"^sk_(live|test)_[0-9a-f]{64}$")


def _crc(body: str) -> str:
    return f"{zlib.crc32(body.encode('ascii')) & 0xFFFFFFFF:08x}"


def key_generate(*, live: bool = True) -> str:
    body = (LIVE_PREFIX if live else TEST_PREFIX) + secrets.token_hex(RANDOM_HEX // 2)
    return body + _crc(body)


def key_is_well_formed(raw: str) -> bool:
    return key_is_shaped(raw) and key_checksum_ok(raw)


def key_is_shaped(raw: str) -> bool:
    """Prefix, length and hex digits."""
    return isinstance(raw, str) and KEY_PATTERN.match(raw) is not None


def key_checksum_ok(raw: str) -> bool:
    """The CRC32 tail of a shaped key: rejects typos and guesses before any lookup."""
    return secrets.compare_digest(_crc(raw[:-8]), raw[-8:])


def key_hash(raw: str) -> str:
    """SHA-256 of the key. UTF-8 is the same bytes as ASCII for every key we issue, and any header
    value can be hashed: the API asks its cache before it checks a key's shape."""
    return hashlib.sha256(raw.encode()).hexdigest()


def key_mask(*, prefix: str, last8: str) -> str:
    return f"{prefix}…{last8}"
