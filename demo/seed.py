"""A year of a believable API business, written through the same services the product uses.

Every customer gets a life: a signup day, a plan history (trials that converted, ran out onto the
free plan or are still running; upgrades, downgrades, cancellations), keys created on or after
signup, daily usage per key and product (and key counters that agree with it), and an invoice
for every closed month, issued and paid (one customer's last one open after a failed charge).

Idempotent: customers that exist are left as they are, apart from catching up what time did
since the last run (months closed since then get their invoices, trials that ran out end).
"""
from __future__ import annotations

import random
from pathlib import Path
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone as dt_timezone

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from accounts.models import ApiKey, Customer
from accounts.services import api_key_issue
from core.periods import period_bounds, period_of, period_previous
from billing.models import Invoice, PaymentMethod, PlanChange, TrialNotice
from billing.charging import invoice_charge_run
from billing.subscriptions import plan_product_added, trial_end
from billing.invoicing import invoice_generate, invoice_issue, invoice_mark_paid
from metering.models import UsageRecord
from outbox.models import OutboxTask
from plans.models import Plan, Product
from plans.services import product_create, terms_current

COMPANIES = [
    "Acme Logistics", "Bluefin Travel", "Cobalt Insurance", "Dune Analytics", "Evergreen Foods",
    "Fjord Maps", "Granite Realty", "Harbor Health", "Indigo Media", "Juniper Retail", "Kestrel Drones",
    "Lumen Energy", "Meridian Bank", "Nimbus Weather", "Orchid Fashion", "Pioneer Freight",
    "Quartz Security", "Redwood Legal", "Sable Games", "Tidal Shipping", "Umber Coffee",
    "Vertex Robotics", "Willow Schools", "Xenon Labs", "Yarrow Farms", "Zephyr Airlines",
    "Atlas Couriers", "Beacon News", "Cinder Studios", "Delta Parking",
]
# One story per company, in order: every plan, every kind of trial and of plan change.
STORIES = [
    "converted:pro", "free", "upgrade", "trial_active:starter", "converted:starter", "free",
    "past_due:starter", "downgrade", "converted:enterprise", "trial_expired", "free_to_paid", "free",
    "cancelled:starter", "converted:pro", "trial_active:pro", "converted:starter", "upgrade", "free",
    "trial_expired", "converted:enterprise", "free_to_paid", "cancelled:pro", "converted:starter",
    "trial_active:enterprise", "free", "downgrade", "converted:pro", "free", "upgrade", "converted:starter",
]
PRODUCT_SHARE = {"geocode": 0.5, "text": 0.35, "image": 0.15}
EMAIL = "demo{n}@example.com"
DEMO_CUSTOMER_EMAIL = EMAIL.format(n=1)  # Acme Logistics: a trial that converted to Professional
# The sample upstream (demo/upstream.py, the Procfile's `upstream` process), sold through the gateway.
VISION_SLUG = "vision"
VISION_URL = "http://127.0.0.1:8001"


@dataclass
class Life:
    """One customer's history as the seed plans it, before anything is written."""

    created: datetime
    plan: Plan  # the plan held at signup
    status: str
    trial_ends_at: datetime | None = None
    changes: list[tuple[datetime, Plan, str]] = field(default_factory=list)  # (at, to plan, reason)
    use: float = 0.6  # share of the included calls used on a normal day

    def plan_at(self, moment: datetime) -> Plan:
        plan = self.plan
        for at, to_plan, reason in self.changes:
            if at <= moment and reason != PlanChange.Reason.CANCELLED:
                plan = to_plan
        return plan

    @property
    def cancelled_at(self) -> datetime | None:
        return next((at for at, _, reason in self.changes if reason == PlanChange.Reason.CANCELLED), None)


@dataclass(frozen=True)
class SeedReport:
    created: int
    invoices: int
    trials_ended: int


def demo_seed(*, now: datetime | None = None) -> SeedReport:
    """Create the missing demo customers and bring every demo customer's books up to date."""
    now = now or timezone.now()
    plans = _plan_roles()
    with transaction.atomic():
        # Before the customers: their signup terms then list it among their plan's products.
        vision_product_ensure(plans=[plans["starter"], plans["pro"], plans["enterprise"]])
        # Runs before the web and worker processes start: what it queues is history, not news.
        mark = OutboxTask.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
        invoices, created = Invoice.objects.count(), 0
        for n, (company, story) in enumerate(zip(COMPANIES, STORIES), start=1):
            if not get_user_model().objects.filter(username=EMAIL.format(n=n)).exists():
                rng = random.Random(f"tollbooth-demo-{n}")
                life = _life(rng=rng, story=story, plans=plans, now=now)
                _customer_create(rng=rng, n=n, company=company, life=life, now=now)
                created += 1
        trials_ended = _trials_catch_up(now=now)
        for customer in _demo_customers():
            _invoices_catch_up(customer=customer, now=now)
        invoices = Invoice.objects.count() - invoices
        OutboxTask.objects.filter(pk__gt=mark).delete()
    return SeedReport(created=created, invoices=invoices, trials_ended=trials_ended)


def _plan_roles() -> dict[str, Plan]:
    """The stories' plans, by what they are rather than by name: the default plan (free) and the
    public paid plans from the cheapest (starter) to the dearest (enterprise)."""
    paid = sorted(Plan.objects.filter(is_public=True, price__gt=0), key=lambda plan: (plan.price, plan.pk))
    default = Plan.objects.get(is_default=True)
    return {"free": default, "starter": paid[0], "pro": paid[len(paid) // 2], "enterprise": paid[-1]}


def vision_product_ensure(*, plans: list[Plan]) -> Product:
    """The sample upstream as an upstream product on the paid plans; left as staff edited it if it exists."""
    product = Product.objects.filter(slug=VISION_SLUG).first()
    if product is None:
        # The service token is not needed by the sample (it does not call /v1/verify): it is
        # dropped here unseen; staff rotate to get one. The signing secret stays on the row.
        product, _token, _secret = product_create(
            slug=VISION_SLUG, name="Vision (sample upstream)", upstream_url=VISION_URL, methods="POST",
            description="The image analyzer run as its own service (demo/upstream.py), sold through the gateway.",
            timeout_seconds=30, health_path="/health", plans=plans)
        for plan in dict.fromkeys(plans):  # a machine seeded before: its customers can call it too
            plan_product_added(plan=plan, product=product)
    return product


def vision_secret_write(path: Path) -> bool:
    """The sample upstream's copy of its signing secret, in a file only this user can read (never
    printed). After a rotation in the admin, the next seed brings it up to date, and the running
    upstream re-reads it. True when the file was (re)written."""
    product = Product.objects.filter(slug=VISION_SLUG).first()
    if product is None or not product.signing_secret:
        return False
    if path.exists() and path.read_text().strip() == product.signing_secret:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".new")
    partial.touch(mode=0o600)
    partial.chmod(0o600)
    partial.write_text(product.signing_secret + "\n")
    partial.replace(path)  # the upstream never reads half a secret
    return True


def _demo_customers():
    return Customer.objects.filter(owner__username__endswith="@example.com", owner__username__startswith="demo") \
        .select_related("plan").order_by("pk")


# ---------------------------------------------------------------- stories

def _life(*, rng: random.Random, story: str, plans: dict[str, Plan], now: datetime) -> Life:
    kind, _, slug = story.partition(":")
    if kind == "free":
        return Life(created=_ago(rng, now, 10, 360), plan=plans["free"], status="active", use=rng.uniform(0.3, 0.9))
    if kind == "free_to_paid":
        life = Life(created=_ago(rng, now, 90, 330), plan=plans["free"], status="active", use=rng.uniform(0.5, 0.9))
        life.changes.append((_between(rng, life.created + timedelta(days=30), now - timedelta(days=20)),
                             plans["starter"], PlanChange.Reason.CUSTOMER))
        return life
    if kind == "trial_active":
        plan = plans[slug]
        length = max(plan.trial_days, 3)  # a plan sold without a trial still shows one running here
        created = now - timedelta(days=rng.randint(1, length - 2), hours=rng.randint(0, 20))
        return Life(created=created, plan=plan, status="trial", trial_ends_at=created + timedelta(days=length))
    start_slug = {"upgrade": "starter", "downgrade": "pro", "trial_expired": "starter"}.get(kind, slug)
    plan = plans[start_slug]
    created = _ago(rng, now, 60, 360)
    life = Life(created=created, plan=plan, status="active", trial_ends_at=created + timedelta(days=plan.trial_days),
                use=rng.uniform(0.4, 1.25))
    _story_after_trial(rng=rng, kind=kind, life=life, plans=plans, now=now)
    return life


def _story_after_trial(*, rng: random.Random, kind: str, life: Life, plans: dict[str, Plan], now: datetime) -> None:
    later = _between(rng, life.trial_ends_at + timedelta(days=20), now - timedelta(days=6))
    if kind == "trial_expired":
        life.changes.append((life.trial_ends_at, plans["free"], PlanChange.Reason.TRIAL_ENDED))
        life.use = rng.uniform(0.3, 0.8)
    elif kind == "upgrade":
        life.changes.append((later, plans["pro"], PlanChange.Reason.CUSTOMER))
        life.use = rng.uniform(0.9, 1.3)
    elif kind == "downgrade":
        life.changes.append((later, plans["starter"], PlanChange.Reason.CUSTOMER))
        life.use = rng.uniform(0.15, 0.3)
    elif kind == "cancelled":
        life.changes.append((later, life.plan, PlanChange.Reason.CANCELLED))
        life.status = "cancelled"
    elif kind == "past_due":
        life.status = "past_due"  # set by the failed charge, below


def _ago(rng: random.Random, now: datetime, low: int, high: int) -> datetime:
    return now - timedelta(days=rng.randint(low, high), hours=rng.randint(0, 12), minutes=rng.randint(0, 59))


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + (end - start) * rng.random() if end > start else start


# ---------------------------------------------------------------- writing one customer

def _customer_create(*, rng: random.Random, n: int, company: str, life: Life, now: datetime) -> Customer:
    email = EMAIL.format(n=n)
    user = get_user_model().objects.create_user(username=email, email=email, password=None, date_joined=life.created)
    # Created on the plan it signed up for (its signup terms), then moved along its history.
    customer = Customer.objects.create(
        owner=user, company=company, plan=life.plan, created_at=life.created, trial_ends_at=life.trial_ends_at,
        trial_started_at=life.created if life.trial_ends_at else None,
        status="active" if life.status == "past_due" else life.status,
    )
    _history_write(rng=rng, customer=customer, life=life, now=now)
    customer.plan = life.plan_at(now)
    customer.save(update_fields=["plan"])
    _keys_and_usage(rng=rng, customer=customer, life=life, now=now)
    if life.status == "past_due":
        last = _invoices_catch_up(customer=customer, now=now, leave_last_open=True)
        if last is not None:
            invoice_charge_run(invoice_id=last.pk)  # no card on file: declined, past due, dunning retries
    return customer


def _history_write(*, rng: random.Random, customer: Customer, life: Life, now: datetime) -> None:
    previous = life.plan
    for at, to_plan, reason in life.changes:
        PlanChange.objects.create(customer=customer, from_plan=previous, to_plan=to_plan, at=at, reason=reason,
                                  terms=terms_current(plan=to_plan))
        previous = to_plan
    if life.trial_ends_at and life.trial_ends_at <= now:
        TrialNotice.objects.bulk_create([
            TrialNotice(customer=customer, kind=TrialNotice.Kind.ENDING, sent_at=life.trial_ends_at - timedelta(days=3)),
            TrialNotice(customer=customer, kind=TrialNotice.Kind.ENDED, sent_at=life.trial_ends_at),
        ])
    if customer.plan.is_paid and life.status in ("active", "cancelled"):
        # localstripe's test card, so a month close while the demo runs charges it as Stripe would.
        PaymentMethod.objects.create(
            customer=customer, stripe_payment_method_id="pm_card_visa", brand="visa", last4="4242",
            exp_month=rng.randint(1, 12), exp_year=now.year + rng.randint(1, 4), updated_at=_card_saved(life),
        )


@dataclass
class _KeyPlan:
    name: str
    created: datetime
    revoked: datetime | None
    share: float
    calls: int = 0
    last_day: date | None = None


def _key_plans(rng: random.Random, life: Life, now: datetime) -> list[_KeyPlan]:
    keys = [_KeyPlan("Production", life.created + timedelta(minutes=rng.randint(2, 50)), None, 1.0)]
    staging_at = life.created + timedelta(days=rng.randint(3, 40), hours=rng.randint(1, 9))
    if rng.random() < 0.6 and staging_at < now - timedelta(days=2):
        revoke = rng.random() < 0.3 and staging_at + timedelta(days=10) < now - timedelta(days=1)
        revoked = _between(rng, staging_at + timedelta(days=10), now - timedelta(days=1)) if revoke else None
        share = rng.uniform(0.05, 0.25)
        keys = [_KeyPlan("Production", keys[0].created, None, 1 - share), _KeyPlan("Staging", staging_at, revoked, share)]
    return keys


def _card_saved(life: Life) -> datetime:
    """When the card arrived: as the trial ended, or with the first paid plan."""
    paid_from = [at for at, plan, _ in life.changes if plan.is_paid]
    return life.trial_ends_at or (paid_from[0] if paid_from else life.created)


def _keys_and_usage(*, rng: random.Random, customer: Customer, life: Life, now: datetime) -> None:
    keys = _key_plans(rng, life, now)
    stored = [api_key_issue(customer=customer, name=k.name).key for k in keys]  # raw keys dropped on purpose
    rows = []
    until = life.cancelled_at or now
    day = life.created.date()
    while day <= now.date():
        rows += _day_rows(rng=rng, customer=customer, life=life, keys=keys, stored=stored, day=day, now=now, until=until)
        day += timedelta(days=1)
    UsageRecord.objects.bulk_create(rows, batch_size=5000)
    for plan_, key in zip(keys, stored):
        ApiKey.objects.filter(pk=key.pk).update(
            created_at=plan_.created, revoked_at=plan_.revoked, call_count=plan_.calls,
            last_used_at=_last_used(rng, plan_, now),
        )


def _day_rows(*, rng: random.Random, customer: Customer, life: Life, keys: list[_KeyPlan], stored: list[ApiKey],
              day: date, now: datetime, until: datetime) -> list[UsageRecord]:
    begins = datetime.combine(day, time.min, tzinfo=dt_timezone.utc)
    moment = max(begins, life.created)
    if moment >= until:
        return []
    plan = life.plan_at(moment)
    total = _day_calls(rng=rng, life=life, plan=plan, moment=moment, day=day, now=now)
    rows = []
    for key_plan, key in zip(keys, stored):
        if key_plan.created.date() > day or (key_plan.revoked and key_plan.revoked.date() < day):
            continue
        for product in plan.entitlements:
            calls = int(total * key_plan.share * PRODUCT_SHARE.get(product, 0.1) * rng.uniform(0.8, 1.2))
            if calls > 0:
                rows.append(UsageRecord(customer=customer, api_key=key, product=product, day=day, calls=calls))
                key_plan.calls += calls
                key_plan.last_day = day
    return rows


def _day_calls(*, rng: random.Random, life: Life, plan: Plan, moment: datetime, day: date, now: datetime) -> float:
    """A day's calls: the plan's daily allowance times the customer's appetite, growing after signup."""
    daily = plan.included_calls / 31 * life.use
    if plan.hard_cap:
        daily = min(daily, plan.included_calls / 31 * 0.6)  # a capped plan never runs into its cap
    ramp = min(1.0, 0.35 + (moment - life.created).days / 90)
    weekend = 0.6 if day.weekday() >= 5 else 1.0
    trial = 0.4 if life.trial_ends_at and moment < life.trial_ends_at else 1.0
    today = (now - moment).total_seconds() / 86400 if day == now.date() else 1.0
    return daily * ramp * weekend * trial * min(1.0, today) * rng.uniform(0.8, 1.2)


def _last_used(rng: random.Random, key_plan: _KeyPlan, now: datetime) -> datetime | None:
    if key_plan.last_day is None:
        return None
    begins = datetime.combine(key_plan.last_day, time.min, tzinfo=dt_timezone.utc)
    evening = begins + timedelta(hours=18, minutes=rng.randint(0, 300))
    latest = min(evening, now - timedelta(minutes=rng.randint(1, 9)), key_plan.revoked or now)
    # On the last usage day, after the key existed, and never in the future.
    return min(now, max(begins, key_plan.created + timedelta(minutes=1), latest))


# ---------------------------------------------------------------- invoices and trials

def _closed_periods(customer: Customer, now: datetime) -> list[tuple[str, bool]]:
    """(period, final) for every month since signup that has closed, or that a cancellation closed."""
    cancelled = PlanChange.objects.filter(customer=customer, reason=PlanChange.Reason.CANCELLED).order_by("-at").first()
    ended = customer.status == Customer.Status.CANCELLED and cancelled is not None
    last = period_of(cancelled.at) if ended else period_previous(period_of(now))
    periods, period = [], period_of(customer.created_at)
    while period <= last:
        periods.append((period, ended and period == last))
        period = f"{period_bounds(period)[1]:%Y-%m}"
    return periods


def _invoices_catch_up(*, customer: Customer, now: datetime, leave_last_open: bool = False) -> Invoice | None:
    """Invoice every closed month that has none: issued when the month closed, paid an hour later.

    Returns the last invoice written; `leave_last_open` leaves it unpaid (and a past-due
    customer's new invoices stay unpaid too)."""
    done = set(Invoice.objects.filter(customer=customer).values_list("period", flat=True))
    periods = [(period, final) for period, final in _closed_periods(customer, now) if period not in done]
    last = None
    for index, (period, final) in enumerate(periods):
        try:
            invoice = invoice_issue(invoice=invoice_generate(customer=customer, period=period, final=final))
        except ValidationError:
            continue  # no billable day in it
        issued = _issue_moment(customer, period, final, now)
        unpaid = customer.status == Customer.Status.PAST_DUE or (leave_last_open and index == len(periods) - 1)
        if invoice.status == Invoice.Status.OPEN and not unpaid:
            invoice = invoice_mark_paid(invoice=invoice, at=issued + timedelta(hours=1))
        paid_at = None if invoice.paid_at is None else issued + timedelta(hours=1 if invoice.total else 0)
        Invoice.objects.filter(pk=invoice.pk).update(issued_at=issued, created_at=issued, paid_at=paid_at)
        last = invoice
    return last


def _issue_moment(customer: Customer, period: str, final: bool, now: datetime) -> datetime:
    if final:
        return PlanChange.objects.filter(customer=customer, reason=PlanChange.Reason.CANCELLED).latest("at").at
    end = period_bounds(period)[1]
    return min(now, datetime.combine(end, time(2, 5), tzinfo=dt_timezone.utc))


def _trials_catch_up(*, now: datetime) -> int:
    """Demo trials that ran out since the last run end as the hourly trial run would end them."""
    ended = 0
    for customer in _demo_customers().filter(status=Customer.Status.TRIAL, trial_ends_at__lte=now):
        trial_end(customer=customer)
        ended += 1
    return ended

