"""A customer's MRR today, and its history rebuilt from the plan-change history: pure functions
over rows already loaded.

A customer's MRR at an instant is the monthly price of the terms it holds then (the snapshot
taken at signup, then the one each plan change started (README "Billing"), so a staff price edit moves
neither the history nor today's figure for customers already on the plan), counted only
while it pays: nothing before signup, during its trial (until the trial ended, or until the
`trial_ended` plan change that moved it to the default plan) or after a cancellation (until a
reactivation). Past-due customers still count: they owe the money and most recover (dunning).
Every change of a customer's MRR is one movement, classified as ChartMogul does.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from accounts.models import Customer
from core.money import ZERO
from plans.models import Terms

PAYING = (Customer.Status.ACTIVE, Customer.Status.PAST_DUE)
CANCELLED, REACTIVATED, TRIAL_ENDED = "cancelled", "reactivated", "trial_ended"
KINDS = ("new", "expansion", "contraction", "churned", "reactivation")


@dataclass(frozen=True)
class ChangeRow:
    at: datetime
    terms_id: int  # the terms the change starts (a cancellation keeps the customer's)
    reason: str


@dataclass(frozen=True)
class CustomerRow:
    id: int
    created_at: datetime
    trial_ends_at: datetime | None
    status: str
    plan_id: int
    terms_id: int  # held now
    signup_terms_id: int  # held from signup until the first change
    trial_starts_at: datetime | None = None  # a trial begun after signup (a move off Free); None: at signup


@dataclass(frozen=True)
class Movement:
    customer_id: int
    at: datetime
    kind: str
    before: Decimal
    after: Decimal

    @property
    def amount(self) -> Decimal:
        return self.after - self.before


@dataclass(frozen=True)
class Timeline:
    """One customer's MRR as steps: `mrr[i]` holds from `at[i]` until `at[i + 1]`."""

    customer_id: int
    at: tuple[datetime, ...]
    mrr: tuple[Decimal, ...]
    movements: tuple[Movement, ...]

    def mrr_at(self, instant: datetime) -> Decimal:
        i = bisect_right(self.at, instant) - 1
        return self.mrr[i] if i >= 0 else ZERO


def customer_mrr(row: CustomerRow | Customer, terms: Terms) -> Decimal:
    """Today's MRR of one customer, from its status: paying (active or past due) its terms' price."""
    return terms.price if row.status in PAYING else ZERO


def _trial_end(customer: CustomerRow, changes: list[ChangeRow], now: datetime) -> datetime | None:
    """When the trial stopped costing nothing; None while it runs (or if there never was one)."""
    if customer.trial_ends_at is None or customer.trial_ends_at <= customer.created_at:
        return customer.created_at
    ended = [c.at for c in changes if c.reason == TRIAL_ENDED]
    if ended:
        return ended[0]
    if customer.status == "trial" or customer.trial_ends_at > now:
        return None
    return customer.trial_ends_at


def _events(customer: CustomerRow, changes: list[ChangeRow], now: datetime) -> list[tuple[datetime, int, ChangeRow | None]]:
    trial_end = _trial_end(customer, changes, now)
    events: list[tuple[datetime, int, ChangeRow | None]] = [(c.at, 1, c) for c in changes]
    if trial_end is not None and trial_end > customer.created_at:
        events.append((trial_end, 0, None))
    events.sort(key=lambda e: (e[0], e[1]))
    return events


def _cancel_fallback(customer: CustomerRow, changes: list[ChangeRow]) -> list[ChangeRow]:
    """A cancelled customer whose cancellation left no plan change: churned at its last event."""
    if customer.status != "cancelled" or any(c.reason == CANCELLED for c in changes):
        return changes
    last = max([customer.created_at, customer.trial_ends_at or customer.created_at, *[c.at for c in changes]])
    return [*changes, ChangeRow(at=last, terms_id=customer.terms_id, reason=CANCELLED)]


def timeline_build(*, customer: CustomerRow, changes: list[ChangeRow], prices: dict[int, Decimal], now: datetime) -> Timeline:
    """`prices`: the monthly price of each terms snapshot (Terms.price), never the live plan's."""
    if not changes and customer.trial_ends_at is None and customer.status != CANCELLED:
        return _steady(customer, prices[customer.signup_terms_id])  # most customers: one price, paid from signup
    changes = _cancel_fallback(customer, sorted(changes, key=lambda c: c.at))
    terms_id = customer.signup_terms_id
    in_trial, cancelled = _trial_end(customer, changes, now) != customer.created_at, False
    mrr = ZERO if in_trial else prices[terms_id]
    steps_at, steps_mrr, movements, ever_paid = [customer.created_at], [mrr], [], False
    if mrr > 0:
        movements.append(Movement(customer.id, customer.created_at, "new", ZERO, mrr))
        ever_paid = True
    events = _events(customer, changes, now)
    for index, (at, _, change) in enumerate(events):
        if change is None:
            in_trial = False
        else:
            terms_id = change.terms_id
            cancelled = change.reason == CANCELLED or (cancelled and change.reason != REACTIVATED)
        if index + 1 < len(events) and events[index + 1][0] == at:
            continue  # events at one instant (a trial ending onto the free plan) make one movement
        after = ZERO if (in_trial or cancelled) else prices[terms_id]
        if after != steps_mrr[-1]:
            movements.append(Movement(customer.id, at, _kind(steps_mrr[-1], after, ever_paid), steps_mrr[-1], after))
            ever_paid = ever_paid or after > 0
            steps_at.append(at)
            steps_mrr.append(after)
    return Timeline(customer.id, tuple(steps_at), tuple(steps_mrr), tuple(movements))


def _steady(customer: CustomerRow, price: Decimal) -> Timeline:
    movements = (Movement(customer.id, customer.created_at, "new", ZERO, price),) if price > 0 else ()
    return Timeline(customer.id, (customer.created_at,), (price,), movements)


def _kind(before: Decimal, after: Decimal, ever_paid: bool) -> str:
    if before == 0:
        return "reactivation" if ever_paid else "new"
    if after == 0:
        return "churned"
    return "expansion" if after > before else "contraction"
