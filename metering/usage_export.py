"""Usage export (README "Usage export"): calls by day, product and key for a date range, as CSV.

Counts only, never money (money is billing's, on /v1/usage and the invoice). Live usage is what
the invoice reads, the UsageRecord rows, plus the calls counted in the last minute and not yet
written there, as the portal shows them, so an export of this month agrees with the portal to
the call. Test-mode usage is kept per day and product only, not per key, and only for the current
and the previous month (metering/testmode.py): `mode=test` exports that, one row per day and
product, under "All test keys".

One reader (`usage_rows`) and one writer (`csv_lines`) serve the API (`GET /v1/usage/export`,
metering/apis.py) and the portal's usage page and its Export button (dashboard/usage_views.py).
"""
from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db.models import Sum
from django.http import StreamingHttpResponse

from accounts.models import ApiKey

from . import connection, testmode
from .models import UsageRecord
from .selectors import usage_redis_read

MAX_DAYS = 366
MODES = ("live", "test")
COLUMNS = ("day", "product", "key_id", "key_name", "key", "key_status", "calls")
DELETED_KEY = "Deleted key"
ALL_TEST_KEYS = "All test keys"
ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_QUERY_CHUNK = 2_000


class TestUsageUnavailable(Exception):
    """Test-mode counts cannot be read right now; they have no other copy."""


class UsageRangeInvalid(ValueError):
    """Bad `from` / `to` / `mode`: the problems per parameter, for the API's `fields` and the form."""

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items()))
        self.fields = fields


@dataclass(frozen=True)
class UsageRange:
    first: date
    last: date  # included
    mode: str = "live"

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    @property
    def filename(self) -> str:
        mode = "-test" if self.mode == "test" else ""
        return f"usage{mode}-{self.first.isoformat()}-to-{self.last.isoformat()}.csv"


def usage_range_parse(params: Mapping, *, today: date) -> UsageRange:
    """`from` and `to` (ISO dates, UTC days, both included) and `mode` (live | test). `to`
    defaults to today and `from` to the first day of `to`'s month: this month so far."""
    errors: dict[str, list[str]] = {}
    first, last = (_day(params, name, errors) for name in ("from", "to"))
    mode = (params.get("mode") or "live").strip()
    if mode not in MODES:
        errors["mode"] = ["Must be live or test."]
    if errors:
        raise UsageRangeInvalid(errors)
    last = last or today
    first = first or last.replace(day=1)
    if first > last:
        raise UsageRangeInvalid({"from": [f"The start date must be on or before the end date ({last.isoformat()})."]})
    if (last - first).days + 1 > MAX_DAYS:
        latest = first + timedelta(days=MAX_DAYS - 1)
        raise UsageRangeInvalid({"to": [f"At most {MAX_DAYS} days at once: end on {latest.isoformat()} or earlier."]})
    return UsageRange(first=first, last=last, mode=mode)


def _day(params: Mapping, name: str, errors: dict) -> date | None:
    raw = params.get(name)
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    try:
        if not ISO_DAY.match(text):
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        errors[name] = ["Enter a date as YYYY-MM-DD, e.g. 2026-11-30."]
        return None


@dataclass(frozen=True)
class UsageRow:
    day: date
    product: str  # the product's slug
    key_id: int | None  # None: a deleted key, or every test key together
    key_name: str
    key_masked: str  # sk_live_…last8, never the key
    key_status: str  # active | expiring | expired | revoked | deleted | test
    calls: int

    def cells(self) -> list:
        return [self.day.isoformat(), self.product, "" if self.key_id is None else self.key_id,
                self.key_name, self.key_masked, self.key_status, self.calls]


@dataclass(frozen=True)
class KeyLabel:
    name: str
    masked: str
    status: str

    @classmethod
    def of(cls, key: ApiKey, now: datetime) -> KeyLabel:
        # The portal's key statuses (dashboard key table): a rotated key is "expiring" until its grace ends.
        if key.revoked_at is not None:
            status = "revoked"
        elif key.expires_at is None:
            status = "active"
        else:
            status = "expiring" if key.expires_at > now else "expired"
        return cls(name=key.name, masked=key.masked, status=status)


DELETED = KeyLabel(name=DELETED_KEY, masked="", status="deleted")


def usage_rows(*, customer_id: int, usage_range: UsageRange, now: datetime) -> Iterator[UsageRow]:
    """Rows sorted by day, product and key (name, then id; deleted keys last); days and
    products without calls are left out. The database is read lazily, a day at a time."""
    if usage_range.mode == "test":
        return _test_rows(customer_id, usage_range)
    return _live_rows(customer_id, usage_range, now)


def _live_rows(customer_id: int, usage_range: UsageRange, now: datetime) -> Iterator[UsageRow]:
    # Redis first, then Postgres (see usage_redis_read): a flush in between is counted once.
    unflushed = _unflushed_by_day(customer_id, usage_range, now)
    labels = {key.pk: KeyLabel.of(key, now) for key in ApiKey.objects.filter(customer_id=customer_id)}
    records = (UsageRecord.objects
               .filter(customer_id=customer_id, day__gte=usage_range.first, day__lte=usage_range.last)
               .values("day", "product", "api_key_id").annotate(n=Sum("calls")).order_by("day")
               .values_list("day", "product", "api_key_id", "n"))
    current: date | None = None
    cells: dict[tuple[str, int | None], int] = defaultdict(int)
    for day, product, key_id, calls in records.iterator(chunk_size=ROWS_PER_QUERY_CHUNK):
        if day != current:
            if current is not None:
                yield from _day_rows(current, cells, unflushed.pop(current, {}), labels)
            # Days only Redis has (today, before its first flush) come in their place.
            for early in sorted(d for d in unflushed if d < day):
                yield from _day_rows(early, {}, unflushed.pop(early), labels)
            current, cells = day, defaultdict(int)
        cells[(product, key_id)] += calls
    if current is not None:
        yield from _day_rows(current, cells, unflushed.pop(current, {}), labels)
    for day in sorted(unflushed):
        yield from _day_rows(day, {}, unflushed[day], labels)


def _unflushed_by_day(customer_id: int, usage_range: UsageRange, now: datetime) -> dict[date, dict]:
    """Calls counted and not yet on record, per day and (product, key id); empty when Redis
    cannot be read (the export is then as recorded, at most a minute behind)."""
    node_key = connection.customer_key(customer_id, "ver")  # on a cluster: its primary's breaker
    if connection.redis_is_marked_down(node_key):
        return {}
    try:
        held = usage_redis_read(customer_ids=[customer_id], day=now.date())[customer_id].unflushed
    except connection.UNAVAILABLE:
        connection.redis_mark_down(node_key)
        return {}
    by_day: dict[date, dict] = defaultdict(lambda: defaultdict(int))
    for (key_id, product, day_iso), calls in held.items():
        day = date.fromisoformat(day_iso)
        if usage_range.first <= day <= usage_range.last:
            by_day[day][(product, key_id)] += calls
    return dict(by_day)


def _day_rows(day: date, cells: dict, more: dict, labels: dict[int, KeyLabel]) -> list[UsageRow]:
    merged: dict[tuple[str, int | None], int] = defaultdict(int)
    for source in (cells, more):
        for (product, key_id), calls in source.items():
            # A key deleted since: its calls stay, under one "Deleted key" row per product.
            merged[(product, key_id if key_id in labels else None)] += calls
    rows = []
    for (product, key_id), calls in merged.items():
        if calls:
            label = labels[key_id] if key_id is not None else DELETED
            rows.append(UsageRow(day, product, key_id, label.name, label.masked, label.status, calls))
    return sorted(rows, key=lambda r: (r.product, r.key_id is None, r.key_name.casefold(), r.key_id or 0))


def _test_rows(customer_id: int, usage_range: UsageRange) -> Iterator[UsageRow]:
    """Test calls per day and product, from the per-month counts test mode keeps. Raises
    TestUsageUnavailable when they cannot be read."""
    months = sorted({(usage_range.first + timedelta(days=i)).replace(day=1) for i in range(usage_range.days)})
    node_key = connection.customer_key(customer_id, "ver")  # test mode's keys carry the same hash tag
    if connection.redis_is_marked_down(node_key):
        raise TestUsageUnavailable()
    try:
        pipe = connection.redis_client().pipeline(transaction=False)
        for month in months:
            pipe.hgetall(testmode.usage_key(customer_id=customer_id, day=month))
        replies = pipe.execute()
    except connection.UNAVAILABLE:
        connection.redis_mark_down(node_key)
        raise TestUsageUnavailable() from None
    rows = []
    for month, raw in zip(months, replies):
        for name, value in raw.items():
            day_part, _, product = (name.decode() if isinstance(name, bytes) else name).partition("|")
            try:
                day = month.replace(day=int(day_part))
            except ValueError:
                continue
            if usage_range.first <= day <= usage_range.last and int(value):
                rows.append(UsageRow(day, product, None, ALL_TEST_KEYS, "", "test", int(value)))
    return iter(sorted(rows, key=lambda r: (r.day, r.product)))


def csv_safe(value):
    """Key names are the customer's own text (and product slugs staff's): a leading = + - @
    would run as a formula in a spreadsheet, so such a cell starts with a quote instead."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


class _Echo:
    """A file for csv.writer that hands each line back instead of storing it (streaming)."""

    def write(self, value: str) -> str:
        return value


def csv_lines(rows: Iterable[UsageRow]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for row in rows:
        yield writer.writerow([csv_safe(cell) for cell in row.cells()])


def usage_csv_response(*, customer_id: int, usage_range: UsageRange, now: datetime) -> StreamingHttpResponse:
    """The export as a streamed download: a year of a busy customer's keys is tens of thousands of rows."""
    rows = usage_rows(customer_id=customer_id, usage_range=usage_range, now=now)
    response = StreamingHttpResponse(csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{usage_range.filename}"'
    response["Cache-Control"] = "private, no-store"
    return response
