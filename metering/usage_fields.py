"""The fields of a customer's pending-usage hash in Redis: written by meter.lua (names built
here), read by the flush and by /v1/usage. One place knows the format."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


def usage_field(*, day: date, product: str, key_id: int) -> str:
    return f"d|{day.isoformat()}|{product}|{key_id}"


def last_used_field(*, key_id: int) -> str:
    return f"t|{key_id}"


@dataclass
class UsageBatch:
    """A usage hash, parsed: calls per (key id, product, ISO day) and last use per key (epoch s)."""

    calls: dict[tuple[int, str, str], int] = field(default_factory=dict)
    last_used: dict[int, int] = field(default_factory=dict)


def usage_batch_parse(raw: dict) -> UsageBatch:
    """Parse HGETALL output (bytes or str); unknown fields such as the flush id are skipped."""
    batch = UsageBatch()
    for name, value in raw.items():
        parts = (name.decode() if isinstance(name, bytes) else name).split("|")
        if parts[0] == "d" and len(parts) == 4:
            key = (int(parts[3]), parts[2], parts[1])
            batch.calls[key] = batch.calls.get(key, 0) + int(value)
        elif parts[0] == "t" and len(parts) == 2:
            batch.last_used[int(parts[1])] = int(value)
    return batch
