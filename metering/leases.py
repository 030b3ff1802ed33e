"""Quota leases: far from every limit, a worker meters a block of calls in one Redis script and
admits them locally (README "The metered API", decisions "Quota leases").

lease.lua grants a lease of g calls (g window places scored at Redis now + METERING_LEASE_MS,
g month units, one open-calls member holding the g units); the process admits calls under it
without a Redis command until it is spent or METERING_LEASE_MS after the script was sent, then
the committer thread (metering/batcher.py) closes it with lease_close.lua: the calls answered 2xx
are billed, the month units of the others and the unused window places are given back. Calls
still running at that moment stay open under a residual member, closed once they are answered.
A process holds at most one admitting lease per key, product, day and config version; threads
share it under one lock. Once a big enough lease is half used, the call admitted at that point
asks for the next one (a prefetch, held until the current one is spent or expires), so a busy
key's calls never wait on Redis when a lease runs out. A forked child starts with none.
"""
from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import date

from django.conf import settings

from . import connection
from .usage_fields import PENDING_TTL_SECONDS, last_used_field, month_counter_key, open_calls_key

# Calls a process asks for in its first lease of a key, and the most in any one lease.
LEASE_FIRST = 8
LEASE_MAX = 256
# A lease used up before it expired asks for twice as many next time; one that expired with less
# than a quarter used asks for half.
LEASE_SHRINK_BELOW = 0.25
# A lease that admitted fewer calls than this was more work than metering them alone (a bigger
# script, then a close): the key's calls are metered alone, as with leases off, until it makes
# LEASE_FIRST calls within one lease span again.
LEASE_WORTH = LEASE_FIRST // 2
MAX_SIZES_KEPT = 10_000
# How long a thread waits for another thread's ask for a lease before metering its call alone.
FETCH_WAIT_SECONDS = 0.05
# A lease of at least this many calls asks for the next one once half of it is admitted: the
# busy keys, whose threads would otherwise all wait on the round trip when it runs out.
PREFETCH_FROM = 4 * LEASE_FIRST


@dataclass(eq=False, slots=True)
class Lease:
    customer_id: int
    day: date
    field: str
    key_id: int
    member: str  # window places are `<member>:<i>`
    open_member: str  # in the open-calls zset; renamed when a partial close leaves a residual
    outstanding: str  # in the customer's leases zset until the first close
    units: int  # calls granted (or still running, for a residual)
    granted: int  # calls granted
    deadline: float  # time.monotonic(): no call is admitted at or after it
    size_key: tuple
    # The grant's reply, for each admitted call's answer headers.
    limit: int
    remaining: int  # window places left after the grant
    reset_ms: int
    month_first: int  # month calls once the lease's first call is counted
    granted_at: int  # Redis's now (ms) when lease.lua granted it
    sent_at: float  # time.monotonic() before lease.lua was sent
    admitted_ms: list[int]  # per call admitted: ms after granted_at it was admitted, at most
    admitted: int = 1  # the call that took the lease is its first
    billed: int = 0
    released: int = 0
    retired: bool = False  # admits no more calls
    places_closed: bool = False  # unused places, outstanding entry and unused units given back
    residuals: int = 0
    closing_since: float = 0.0


_lock = threading.Lock()
_fetched = threading.Condition(_lock)  # a thread's ask for a lease was answered
_admitting: dict[tuple, Lease] = {}  # the lease calls of a key are admitted under
_next: dict[tuple, Lease] = {}  # granted ahead (a prefetch): admits once the key's current one is done
_fetching: set[tuple] = set()  # keys whose lease one thread is asking Redis for
_refused: dict[tuple, float] = {}  # keys whose last ask got no lease (near a limit), until when
_closing: list[Lease] = []  # retired, waiting for their close (or their running calls)
_requeued: list[tuple[tuple, tuple]] = []  # close scripts Redis did not take (outage), in order
_sizes: dict[tuple, int] = {}  # 1: metered alone (LEASE_WORTH)
_alone: dict[tuple, tuple[float, int]] = {}  # keys metered alone: (span start, calls in it)
# Set by the committer thread (metering/batcher.py): wakes it to close a lease now.
ready_hook = None


def lease_ms() -> int:
    return int(getattr(settings, "METERING_LEASE_MS", 250))


def lease_take(key: tuple) -> tuple[tuple[Lease, int] | None, int]:
    """Admit one call under the key's open lease: ((the lease, the call's index in it), 0), or
    (None, calls to ask lease.lua for) when there is none to admit under. While another thread is
    asking for the key's lease, wait for its answer (a round trip) rather than send another; near
    a limit (its last ask got no lease) meter the call alone at once (1: lease.lua then behaves
    exactly as meter.lua). Asking for more than 1 makes this thread the one that asks: it must
    call lease_open or lease_fetch_done. An admitted call may also be told to ask for the key's
    next lease ahead ((held, calls to ask for)): the same obligation, with lease_open(ahead=True)."""
    with _lock:
        held = _admit(key)
        if held is not None:
            lease = held[0]
            if lease.admitted * 2 == lease.units and lease.units >= PREFETCH_FROM and \
                    key not in _fetching and key not in _next:
                _fetching.add(key)
                return held, max(lease.units, _sizes.get(lease.size_key, 0))
            return held, 0
        if key in _fetching:
            if _refused.get(key, 0.0) > time.monotonic():
                return None, 1
            _fetched.wait(FETCH_WAIT_SECONDS)
            held = _admit(key)
            return (held, 0) if held is not None else (None, 1)
        return None, _want(key)


def lease_want(key: tuple) -> int:
    """How many calls to ask lease.lua for, without waiting (see lease_take)."""
    with _lock:
        if key in _fetching or key in _admitting:
            return 1
        return _want(key)


def _want(key: tuple) -> int:
    size_key = key[:1] + key[2:]
    size = _sizes.get(size_key, LEASE_FIRST)
    if size < 2:
        now = time.monotonic()
        start, calls = _alone.get(size_key, (now, 0))
        if now - start >= lease_ms() / 1000:
            start, calls = now, 0
        if calls + 1 < LEASE_FIRST:
            _alone[size_key] = (start, calls + 1)
            return 1
        _alone.pop(size_key, None)
        size = _sizes[size_key] = LEASE_FIRST
    _fetching.add(key)
    return size


def _admit(key: tuple) -> tuple[Lease, int] | None:
    lease = _admitting.get(key)
    now = time.monotonic()
    if lease is not None:
        if lease.admitted < lease.units and now < lease.deadline:
            lease.admitted += 1
            # An upper bound on the admission on Redis's clock (see lease_close.lua).
            lease.admitted_ms.append(math.ceil((now - lease.sent_at) * 1000) + 1)
            return lease, lease.admitted - 1
        _retire(key, lease, now)
        _wake()
    # The current lease is done (here, or retired by the committer): the one asked ahead takes over.
    ahead = _next.pop(key, None)
    if ahead is None:
        return None
    if now >= ahead.deadline:
        _retire(key, ahead, now, adapt=False)
        return None
    _admitting[key] = ahead
    return _admit(key)


def lease_fetch_done(key: tuple) -> None:
    """The ask for a lease got none (or failed): the key is near a limit for a lease's span."""
    with _lock:
        _fetching.discard(key)
        _refused[key] = time.monotonic() + lease_ms() / 1000
        if len(_refused) > MAX_SIZES_KEPT:
            _refused.clear()
        _fetched.notify_all()


def lease_open(*, key: tuple, customer_id: int, day: date, field: str, key_id: int, member: str, open_member: str,
               units: int, sent_at: float, granted_at: int, limit: int, remaining: int, reset_ms: int,
               month_calls: int, ahead: bool = False) -> Lease:
    """Hold the lease lease.lua granted; its first call is the one that asked, unless it was asked
    `ahead` (then it waits, unused, for the key's current lease to be done). Admission stops
    METERING_LEASE_MS after `sent_at` (before the script was sent), so every call admitted under it
    is admitted before Redis's clock reaches the score of its window place."""
    lease = Lease(
        customer_id=customer_id, day=day, field=field, key_id=key_id, member=member,
        open_member=f"{open_member}*{units}", outstanding=f"{member}*{units}", units=units, granted=units,
        # 1 ms short of the places' score: Redis's now in the script is rounded down to the ms.
        deadline=sent_at + (lease_ms() - 1) / 1000, size_key=key[:1] + key[2:], limit=limit, remaining=remaining,
        reset_ms=reset_ms, month_first=month_calls - units + 1, granted_at=granted_at, sent_at=sent_at,
        # The call that asked was admitted by the script itself; a lease asked ahead has none yet.
        admitted_ms=[] if ahead else [1], admitted=0 if ahead else 1,
    )
    with _lock:
        _fetching.discard(key)
        _refused.pop(key, None)
        previous = _admitting.get(key)
        if ahead and previous is not None:  # still admitting: this one waits its turn
            _next[key] = lease
        else:
            if previous is not None:
                _retire(key, previous, time.monotonic())
            _admitting[key] = lease
        _fetched.notify_all()
    _wake()
    return lease


def lease_settle(lease: Lease, *, billed: bool) -> None:
    """One call admitted under the lease was answered: billing follows the answer."""
    with _lock:
        if billed:
            lease.billed += 1
        else:
            lease.released += 1
        ready = lease.retired and lease.billed + lease.released >= lease.units
    if ready:
        _wake()


def leases_next_deadline() -> float:
    """When the committer should next close something (time.monotonic(); inf for nothing)."""
    with _lock:
        if _requeued or any(_close_now(lease) for lease in _closing):
            return 0.0
        return min((lease.deadline for lease in (*_admitting.values(), *_next.values())), default=float("inf"))


def leases_close_due(*, everything: bool = False) -> list[tuple[tuple, tuple]]:
    """Retire the leases that expired or were used up (all of them with `everything`: the
    process is exiting) and return the close scripts due: (keys, args) of lease_close.lua."""
    global _requeued
    now = time.monotonic()
    with _lock:
        for key, lease in list(_admitting.items()):
            if everything or now >= lease.deadline or lease.admitted >= lease.units:
                _retire(key, lease, now)
        for key, lease in list(_next.items()):
            if everything or now >= lease.deadline:  # never admitted a call: every unit goes back
                del _next[key]
                _retire(key, lease, now, adapt=False)
        closes, _requeued = _requeued, []
        keep = []
        for lease in _closing:
            if _close_ready(lease):
                closes.append(_close_snapshot(lease))
            # A residual never answered (its thread died) is left to the flush to release.
            if lease.billed + lease.released < lease.units and \
                    now - lease.closing_since < settings.METERING_CALL_MAX_SECONDS:
                keep.append(lease)
        _closing[:] = keep
    return closes


def leases_requeue(closes: list[tuple[tuple, tuple]]) -> None:
    """Redis did not take these closes: send them first next time, in order."""
    global _requeued
    with _lock:
        _requeued = closes + _requeued


def _retire(key: tuple, lease: Lease, now: float, *, adapt: bool = True) -> None:
    """Stop admitting under `lease` (the lock is held) and adapt the key's next lease size (not
    for a lease asked ahead that never admitted: it says nothing of how busy the key is)."""
    if _admitting.get(key) is lease:
        del _admitting[key]
    lease.retired = True
    lease.closing_since = now
    _closing.append(lease)
    if not adapt:
        return
    if len(_sizes) > MAX_SIZES_KEPT:
        _sizes.clear()  # sizes are relearned in a few leases: no need to keep them for old days
        _alone.clear()
    size = _sizes.get(lease.size_key, LEASE_FIRST)
    if lease.admitted >= lease.units and now < lease.deadline:
        _sizes[lease.size_key] = min(LEASE_MAX, max(size, lease.units) * 2)
    elif lease.admitted < LEASE_WORTH and lease.granted > 1:
        _sizes[lease.size_key] = 1
    elif lease.admitted < lease.units * LEASE_SHRINK_BELOW:
        _sizes[lease.size_key] = max(2, size // 2)


def _close_now(lease: Lease) -> bool:
    """The lease just retired, or its running calls are all answered: close it at once."""
    return not lease.places_closed or lease.billed + lease.released >= lease.units


def _close_ready(lease: Lease) -> bool:
    """Something to close: also some of a residual's calls answered (closed at the next batch, so
    a call that never gets its answer cannot hold back the bill of the others)."""
    return not lease.places_closed or lease.billed + lease.released > 0


def _close_snapshot(lease: Lease) -> tuple[tuple, tuple]:
    """lease_close.lua's keys and arguments for what the lease holds now (the lock is held); the
    lease then holds only its calls still running, under a residual member."""
    running = lease.admitted - lease.billed - lease.released
    residual = ""
    if running > 0:
        lease.residuals += 1
        residual = f"{lease.open_member.rpartition('*')[0]}.{lease.residuals}*{running}"
    if lease.places_closed:
        first = last = 0
        back = lease.released
        outstanding = ""
        moved = ()
    else:
        first, last = lease.admitted, lease.units
        back = lease.released + lease.units - lease.admitted
        outstanding = lease.outstanding
        moved = (lease.granted_at, *lease.admitted_ms)
    cid = lease.customer_id
    keys = (open_calls_key(customer_id=cid, day=lease.day), month_counter_key(customer_id=cid, day=lease.day),
            connection.customer_key(cid, "pending"), connection.customer_key(cid, "rl"),
            connection.customer_key(cid, "leases"))
    args = (PENDING_TTL_SECONDS, lease.open_member, outstanding, lease.billed, back, lease.member, first, last,
            lease.field, last_used_field(key_id=lease.key_id), residual, *moved)
    lease.places_closed = True
    lease.open_member = residual
    lease.units = lease.admitted = running
    lease.billed = lease.released = 0
    return keys, args


def _wake() -> None:
    if ready_hook is not None:
        ready_hook()


def _reset_after_fork() -> None:
    # The parent's leases are the parent's to close: a child starts with none.
    global _lock, _fetched, _admitting, _next, _fetching, _refused, _closing, _requeued, _sizes, _alone
    _lock = threading.Lock()
    _fetched = threading.Condition(_lock)
    _admitting, _next, _fetching, _refused, _closing, _requeued, _sizes, _alone = {}, {}, set(), {}, [], [], {}, {}


os.register_at_fork(after_in_child=_reset_after_fork)
