"""The staff revenue dashboard's page: every figure read together, in a fixed number of
aggregate queries whatever the customer count, and the revenue of each customer.

The book (dashboard.book) is read once and the MRR figures come from it (dashboard.growth);
usage and invoices are summed by Postgres (dashboard.usage_stats, dashboard.invoice_stats);
each customer's overage comes from billing's rating (dashboard.overage). Nothing here queries
per customer.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from core.money import ZERO
from plans.models import Plan

from .book import Book, book_load
from .figures import month_start, percent
from .growth import MonthMovements, MrrNow, WeekCohort, mrr_movements, mrr_now, nrr_trailing_year, signup_cohorts
from .invoice_stats import Collections, collections, invoice_totals, overage_by_month
from .mrr import customer_mrr
from .overage import overage_by_customer
from .usage_stats import NO_CALLS, CallStats, call_stats


# ---------------------------------------------------------------- revenue per customer

@dataclass(slots=True)  # not frozen: ten thousand are made per page view, and a frozen init costs three times more
class CustomerRevenue:
    customer_id: int
    company: str
    plan: Plan
    status: str
    mrr: Decimal
    calls: int
    calls_last: int  # the whole of last month (the CSV export's column)
    calls_last_to_date: int  # last month's same days, what "vs last month" compares with
    overage_so_far: Decimal
    overage_projected: Decimal
    revenue: Decimal  # this month so far: MRR + overage so far
    revenue_last: Decimal  # last period's issued invoice total

    @property
    def calls_growth(self) -> Decimal | None:
        """Month to date against the same days of last month: a whole month against a few
        days would read as a fall early in every month."""
        return percent(self.calls - self.calls_last_to_date, self.calls_last_to_date)

    @property
    def revenue_projected(self) -> Decimal:
        """This month whole: MRR and the overage projected at the billable run rate."""
        return self.mrr + self.overage_projected

    @property
    def revenue_growth(self) -> Decimal | None:
        """This month projected against last month's invoice, whole month against whole month:
        the overage so far against a whole month's would read as a fall early in every month."""
        return percent(self.revenue_projected - self.revenue_last, self.revenue_last)


def customer_revenue(*, book: Book, calls: CallStats, last_totals: dict[int, Decimal]) -> list[CustomerRevenue]:
    overage = overage_by_customer(book=book, calls=calls)
    out = []
    for cid, row in book.customers.items():
        this, last, last_to_date = calls.per_customer.get(cid, NO_CALLS)
        mrr = customer_mrr(row, book.terms[row.terms_id])
        owed = overage[cid]
        out.append(CustomerRevenue(
            cid, book.companies[cid], book.plans[row.plan_id], row.status, mrr, this, last, last_to_date, owed.so_far,
            owed.projected, mrr + owed.so_far, last_totals.get(cid, ZERO),
        ))
    return out


# ---------------------------------------------------------------- the whole page

@dataclass(frozen=True)
class Overview:
    now: datetime
    mrr: MrrNow
    movements: list[MonthMovements]
    nrr_year: Decimal | None
    cohorts: list[WeekCohort]
    calls: CallStats
    customers: list[CustomerRevenue]
    overage_months: list[tuple[date, Decimal]]
    collections: Collections

    @property
    def last_month(self) -> MonthMovements:
        """The last whole month: churn and NRR of a month still running would read too low."""
        return self.movements[-2]

    @property
    def overage_so_far(self) -> Decimal:
        return sum((r.overage_so_far for r in self.customers), ZERO)

    @property
    def overage_projected(self) -> Decimal:
        return sum((r.overage_projected for r in self.customers), ZERO)

    @property
    def top_by_calls(self) -> list[CustomerRevenue]:
        return sorted((r for r in self.customers if r.calls), key=lambda r: (-r.calls, r.customer_id))[:10]

    @property
    def top_by_revenue(self) -> list[CustomerRevenue]:
        return sorted((r for r in self.customers if r.revenue), key=lambda r: (-r.revenue, r.customer_id))[:10]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The page builds a few hundred thousand small objects (a row, a timeline and a rating per
    customer) that form no reference cycles: Python's cyclic collector would walk them again and
    again as they grow (a fifth of the page's time with 10,000 customers, bench/dashboard.py).
    Reference counting still frees them; the collector runs again after, also on an error."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def dashboard_overview(*, now: datetime | None = None) -> Overview:
    with collector_paused():
        book = book_load(now=now)
        calls = call_stats(now=book.now)
        last_period = f"{month_start(book.now.date(), 1):%Y-%m}"
        customers = customer_revenue(book=book, calls=calls, last_totals=invoice_totals(period=last_period))
        return Overview(
            now=book.now, mrr=mrr_now(book=book), movements=mrr_movements(book=book),
            nrr_year=nrr_trailing_year(book=book), cohorts=signup_cohorts(book=book), calls=calls,
            customers=customers, overage_months=overage_by_month(today=book.now.date()),
            collections=collections(now=book.now),
        )
