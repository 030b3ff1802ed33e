"""Writes of usage: the minute flush from Redis to Postgres, and direct counting when Redis is down."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone as dt_timezone

from django.db import IntegrityError, connection as db, transaction
from django.db.models import F, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from accounts.models import ApiKey, Customer

from . import connection
from .keyconfig import redis_config_key
from .models import UsageFlush, UsageRecord
from .usage_fields import usage_batch_parse

logger = logging.getLogger(__name__)

FLUSH_BATCH = 500
INFLIGHT_TTL_SECONDS = 7 * 86400
VERSION_TTL_SECONDS = 7 * 86400

_UPSERT = f"""
    INSERT INTO {UsageRecord._meta.db_table} (customer_id, api_key_id, product, day, calls, updated_at)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (customer_id, api_key_id, product, day)
    DO UPDATE SET calls = {UsageRecord._meta.db_table}.calls + EXCLUDED.calls, updated_at = EXCLUDED.updated_at
"""


def usage_add(
    *, customer_id: int, key_id: int | None, product: str, day: date, calls: int,
    last_used: datetime | None = None,
) -> None:
    """Count calls straight into Postgres (fail-open path and refunds of those calls)."""
    with transaction.atomic():
        _rows_upsert(customer_id, {(key_id, product, day): calls})
        if key_id is not None and calls > 0:
            _keys_touch({key_id: (calls, last_used or timezone.now())})


@dataclass(frozen=True)
class FlushReport:
    customers: int
    calls: int
    batches_skipped: int


def usage_flush() -> FlushReport:
    """Move every customer's pending Redis counters into UsageRecord, exactly once.

    Per customer: take the pending hash into an in-flight hash with a flush id (Lua, atomic),
    commit its rows together with a UsageFlush(flush_id) in one transaction, then drop the
    in-flight hash. A crash anywhere leaves the in-flight hash for the next run, which either
    finds its flush id committed (and just drops it) or applies it.
    """
    customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
    customers = calls = skipped = 0
    for start in range(0, len(customer_ids), FLUSH_BATCH):
        for customer_id, batch in _take(customer_ids[start:start + FLUSH_BATCH]):
            applied = usage_batch_apply(customer_id=customer_id, batch=batch)
            usage_batch_release(customer_id=customer_id, flush_id=batch["__id"])
            if applied is None:
                skipped += 1
            else:
                customers += 1
                calls += applied
    return FlushReport(customers=customers, calls=calls, batches_skipped=skipped)


def _take(customer_ids: list[int]) -> list[tuple[int, dict[str, str]]]:
    take = connection.script("flush_take")
    pipe = connection.redis_client().pipeline(transaction=False)
    for customer_id in customer_ids:
        take(
            keys=[connection.customer_key(customer_id, "pending"), connection.customer_key(customer_id, "inflight")],
            args=[uuid.uuid4().hex, INFLIGHT_TTL_SECONDS],
            client=pipe,
        )
    taken = []
    for customer_id, flat in zip(customer_ids, pipe.execute()):
        if flat:
            pairs = iter(item.decode() for item in flat)
            taken.append((customer_id, dict(zip(pairs, pairs))))
    return taken


def usage_batch_apply(*, customer_id: int, batch: dict[str, str]) -> int | None:
    """Commit one taken batch; None when this flush id was committed before."""
    parsed = usage_batch_parse(batch)
    calls = sum(parsed.calls.values())
    touches = {
        key_id: (sum(n for (k, _, _), n in parsed.calls.items() if k == key_id),
                 datetime.fromtimestamp(epoch, tz=dt_timezone.utc))
        for key_id, epoch in parsed.last_used.items()
    }
    try:
        with transaction.atomic():
            UsageFlush.objects.create(flush_id=batch["__id"], customer_id=customer_id, calls=max(0, calls))
            _rows_upsert(customer_id, parsed.calls)
            _keys_touch(touches)
    except IntegrityError as error:
        if UsageFlush.objects.filter(flush_id=batch["__id"]).exists():
            return None
        raise error
    return calls


def usage_batch_release(*, customer_id: int, flush_id: str) -> None:
    connection.run_script(
        connection.redis_client(), "flush_done", (connection.customer_key(customer_id, "inflight"),), (flush_id,)
    )


def _rows_upsert(customer_id: int, rows: dict[tuple[int | None, str, date | str], int]) -> None:
    known = set(ApiKey.objects.filter(pk__in={k for k, _, _ in rows if k}).values_list("pk", flat=True))
    now = timezone.now()
    params = [
        [customer_id, key_id if key_id in known else None, product, day, calls, now]
        for (key_id, product, day), calls in rows.items() if calls
    ]
    # Postgres checks `calls >= 0` on the proposed row even when it conflicts, so
    # refunds (negative deltas) go through a plain UPDATE of the row they took from.
    added = [p for p in params if p[4] > 0]
    if added:
        with db.cursor() as cursor:
            cursor.executemany(_UPSERT, added)
    for customer, key_id, product, day, calls, _ in (p for p in params if p[4] < 0):
        UsageRecord.objects.filter(customer_id=customer, api_key_id=key_id, product=product, day=day).update(
            calls=db_greatest_zero("calls", calls), updated_at=now
        )


def _keys_touch(touches: dict[int, tuple[int, datetime]]) -> None:
    for key_id, (calls, when) in touches.items():
        ApiKey.objects.filter(pk=key_id).update(
            call_count=db_greatest_zero("call_count", calls),
            last_used_at=db_latest("last_used_at", when),
        )


def db_greatest_zero(field: str, delta: int):
    return Greatest(F(field) + Value(delta), Value(0))


def db_latest(field: str, when: datetime):
    return Greatest(Coalesce(F(field), Value(when)), Value(when))


def customer_config_bump(*, customer_ids: list[int]) -> None:
    """Raise the customers' config version; after commit, tell Redis so every worker reloads."""
    if not customer_ids:
        return
    # The database clock in microseconds (or +1 if that is not ahead): a save() that wrote
    # back a stale in-memory version still ends up with a newer one.
    Customer.objects.filter(pk__in=customer_ids).update(config_version=Greatest(
        F("config_version") + 1,
        RawSQL("(extract(epoch from clock_timestamp()) * 1000000)::bigint", []),
    ))
    transaction.on_commit(lambda: _versions_publish(customer_ids))


def _versions_publish(customer_ids: list[int]) -> None:
    versions = Customer.objects.filter(pk__in=customer_ids).values_list("pk", "config_version")
    digests = ApiKey.objects.filter(customer_id__in=customer_ids).values_list("key_hash", flat=True)
    try:
        raise_version = connection.script("version_raise")
        pipe = connection.redis_client().pipeline(transaction=False)
        for customer_id, version in versions:
            raise_version(keys=[connection.customer_key(customer_id, "ver")],
                          args=[version, VERSION_TTL_SECONDS], client=pipe)
        # Unmetered calls (/v1/usage) skip the version check: drop the shared cached configs too.
        for digest in digests:
            pipe.delete(redis_config_key(digest))
        pipe.execute()
    except connection.UNAVAILABLE:
        # Workers still drop their cached copy within KEY_CACHE_SECONDS.
        logger.warning("could not publish config versions for %d customers", len(customer_ids))
