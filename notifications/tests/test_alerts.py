"""Usage alerts and spend caps: the maths, once per threshold per period, and the events."""
from __future__ import annotations

import json
import threading
from datetime import date, datetime, timezone as dt_timezone
from types import SimpleNamespace
from decimal import ROUND_HALF_UP, Decimal

import time_machine

import pytest
from django.core import mail
from django.db import connection
from hypothesis import given, settings as hypothesis_settings, strategies as st

from accounts.services import api_key_issue, api_key_rotate
from billing import signals as billing_signals
from billing.selectors import invoice_compute
from billing.models import Invoice, PaymentAttempt, PlanChange
from metering.events import usage_threshold_crossed
from metering.models import UsageLimits
from notifications.models import NotificationSettings, UsageAlert
from notifications.selectors import spend_cap_calls, usage_limits_plan
from notifications.services import notification_settings_update, usage_alert_fire, usage_limits_sync, webhook_endpoint_set
from notifications.tasks import usage_limits_refresh
from plans.models import Plan
from plans.services import terms_current
from tests.factories import CustomerFactory, seeded_plan

from .conftest import LONG_AGO

pytestmark = pytest.mark.django_db
CENT = Decimal("0.01")


def invoice_total(plan: Plan, calls: int) -> Decimal:
    """The rule of README "Billing" for a whole month on one plan: base fee plus overage, each line rounded half-up."""
    overage = (max(calls - plan.included_calls, 0) * plan.overage_price).quantize(CENT, ROUND_HALF_UP)
    return plan.price + overage


def whole_month_run(plan: Plan) -> SimpleNamespace:
    """What spend_cap_calls reads of a run: its terms and its allowance (a whole month: all of it)."""
    return SimpleNamespace(terms=plan, allowance=plan.included_calls)


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    price=st.decimals(min_value=1, max_value=5000, places=2),
    included=st.integers(min_value=0, max_value=10_000_000),
    overage=st.decimals(min_value=Decimal("0.000001"), max_value=5, places=6),
    extra=st.decimals(min_value=0, max_value=100_000, places=2),
)
def test_the_spend_cap_ceiling_is_the_most_calls_whose_bill_stays_within_the_cap(price, included, overage, extra):
    plan = Plan(price=price, included_calls=included, overage_price=overage, hard_cap=False)
    cap = price + extra

    ceiling = spend_cap_calls(run=whole_month_run(plan), owed_elsewhere=price, cap=cap)

    assert invoice_total(plan, ceiling) <= cap
    assert invoice_total(plan, ceiling + 1) > cap


def test_a_plan_without_overage_never_reaches_a_cap_above_its_price():
    plan = Plan(price=Decimal("49"), included_calls=1000, overage_price=Decimal("0.001"), hard_cap=True)
    assert spend_cap_calls(run=whole_month_run(plan), owed_elsewhere=plan.price, cap=Decimal("50")) is None


def test_a_cap_below_what_is_owed_stops_at_the_runs_allowance():
    plan = Plan(price=Decimal("199"), included_calls=500_000, overage_price=Decimal("0.0005"))
    assert spend_cap_calls(run=whole_month_run(plan), owed_elsewhere=plan.price, cap=Decimal("60")) == 500_000


def test_the_ceiling_agrees_with_the_invoice_after_a_mid_month_plan_change():
    with time_machine.travel(datetime(2026, 3, 16, 12, tzinfo=dt_timezone.utc), tick=False):
        starter, pro = seeded_plan("starter"), seeded_plan("pro")
        customer = CustomerFactory(plan=pro, created_at=datetime(2026, 2, 1, tzinfo=dt_timezone.utc))
        PlanChange.objects.create(customer=customer, from_plan=pro, to_plan=starter, terms=terms_current(plan=starter),
                                  at=datetime(2026, 3, 10, 12, tzinfo=dt_timezone.utc))
        customer.plan = starter
        customer.save()
        notification_settings_update(customer=customer, alerts_enabled=True, thresholds=[80, 100],
                                     spend_cap=Decimal("150.00"), cap_mode="stop")

        ceiling = UsageLimits.objects.get(customer=customer).call_ceiling

        def bill(calls):
            return invoice_compute(customer=customer, period="2026-03", extra_calls={date(2026, 3, 16): calls}).total

        # Pro 1-10 Mar and Starter 11-31 Mar are fixed (64.19 + 33.19); the rest of the cap buys
        # overage beyond the Starter run's 33,871 calls (50,000 x 21/31).
        assert ceiling == 33_871 + 52_624  # 150 − 97.38 = 52.62: 52,624 calls round to $52.62
        assert bill(ceiling) <= Decimal("150.00") < bill(ceiling + 1)


def test_the_default_alerts_are_80_and_100_percent_of_included_calls(customer):
    limits = usage_limits_plan(customer=customer)

    assert limits.alert_at_calls == [40_000, 50_000]
    assert limits.call_ceiling is None


def test_an_alert_only_cap_alerts_but_never_stops(customer):
    notification_settings_update(customer=customer, alerts_enabled=False, thresholds=[80], spend_cap=Decimal("49.50"), cap_mode="alert")

    limits = UsageLimits.objects.get(customer=customer)
    # 50 cents of overage at $0.001 a call: 504 calls ($0.504 rounds to $0.50).
    assert (limits.alert_at_calls, limits.call_ceiling) == ([50_504], None)


def test_each_threshold_fires_once_per_period(customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        first = usage_alert_fire(customer_id=customer.pk, period="2026-11", threshold_calls=40_000, month_calls=40_000)
        again = usage_alert_fire(customer_id=customer.pk, period="2026-11", threshold_calls=40_000, month_calls=40_001)
        next_month = usage_alert_fire(customer_id=customer.pk, period="2026-12", threshold_calls=40_000, month_calls=40_000)

    assert [(a.period, a.kind, a.threshold) for a in first + again + next_month] == [("2026-11", "usage", 80), ("2026-12", "usage", 80)]
    assert [m.subject for m in mail.outbox] == ["You have used 80% of your included API calls"] * 2
    bodies = [json.loads(r.body) for r in receiver.received]
    assert [b["type"] for b in bodies] == ["usage.threshold", "usage.threshold"]
    assert bodies[0]["data"] == {"period": "2026-11", "month_calls": 40_000, "threshold_calls": 40_000,
                                 "included_calls": 50_000, "plan": "starter", "threshold_percent": 80}


def test_a_count_that_matches_no_alert_fires_nothing(customer):
    assert usage_alert_fire(customer_id=customer.pk, period="2026-11", threshold_calls=12_345, month_calls=12_345) == []


def test_the_spend_cap_alert_says_whether_calls_stop(customer, receiver, django_capture_on_commit_callbacks):
    notification_settings_update(customer=customer, alerts_enabled=True, thresholds=[80], spend_cap=Decimal("50"), cap_mode="stop")
    webhook_endpoint_set(customer=customer, url=receiver.url)

    with django_capture_on_commit_callbacks(execute=True):
        [alert] = usage_alert_fire(customer_id=customer.pk, period="2026-11", threshold_calls=51_004, month_calls=51_004)

    assert (alert.kind, alert.threshold) == (UsageAlert.Kind.SPEND_CAP, 5000)
    assert mail.outbox[0].subject == "Your $50.00 spend cap is reached: API calls are paused"
    assert json.loads(receiver.received[0].body)["data"]["spend_cap"] == "50.00"
    assert json.loads(receiver.received[0].body)["data"]["hard_stop"] is True


@pytest.mark.django_db(transaction=True)
def test_concurrent_crossings_of_one_threshold_make_one_alert():
    customer = CustomerFactory(plan=seeded_plan("starter"), created_at=LONG_AGO)
    barrier, results = threading.Barrier(8), []

    def cross():
        try:
            barrier.wait()
            results.append(len(usage_alert_fire(customer_id=customer.pk, period="2026-11", threshold_calls=50_000, month_calls=50_000)))
        finally:
            connection.close()

    threads = [threading.Thread(target=cross) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [0] * 7 + [1]
    assert UsageAlert.objects.filter(customer=customer).count() == 1
    assert len(mail.outbox) == 1


def test_the_meters_signal_fires_the_alert(customer, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        usage_threshold_crossed.send(sender=None, customer_id=customer.pk, period="2026-11", threshold_calls=50_000, month_calls=50_000)

    assert list(UsageAlert.objects.values_list("kind", "threshold")) == [("usage", 100)]
    assert mail.outbox[0].subject == "You have used 100% of your included API calls"


def test_a_plan_change_moves_the_alerts_and_sends_an_event(customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    pro = seeded_plan("pro")
    with time_machine.travel(datetime(2026, 11, 16, 10, tzinfo=dt_timezone.utc), tick=False):
        change = PlanChange.objects.create(customer=customer, from_plan=customer.plan, to_plan=pro)
        customer.plan = pro
        customer.save()
        with django_capture_on_commit_callbacks(execute=True):
            billing_signals.plan_changed.send(sender=PlanChange, customer=customer, change=change)
        # Today began on Starter, so today's calls are the Starter run's (1-16 Nov): 50,000 x 16/30
        # = 26,667 included, 80% at 21,334.
        assert UsageLimits.objects.get(customer=customer).alert_at_calls == [21_334, 26_667]
    with time_machine.travel(datetime(2026, 11, 17, 0, 5, tzinfo=dt_timezone.utc), tick=False):
        assert usage_limits_refresh() == 1
    # The Pro run (17-30 Nov) includes 500,000 x 14/30 = 233,333 calls; 80% at 186,667.
    assert UsageLimits.objects.get(customer=customer).alert_at_calls == [186_667, 233_333]
    data = json.loads(receiver.received[0].body)["data"]
    assert (data["from_plan"], data["to_plan"], data["reason"]) == ("starter", "pro", "customer")


@pytest.mark.parametrize("signal, event_type", [
    (billing_signals.invoice_issued, "invoice.issued"),
    (billing_signals.invoice_paid, "invoice.paid"),
])
def test_invoice_signals_become_events(customer, receiver, django_capture_on_commit_callbacks, signal, event_type):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    invoice = Invoice.objects.create(customer=customer, period="2026-10", number="TB-2026-000007", status="open",
                                     subtotal=Decimal("51.25"), total=Decimal("51.25"), calls=52_250)
    with django_capture_on_commit_callbacks(execute=True):
        signal.send(sender=Invoice, invoice=invoice)

    body = json.loads(receiver.received[0].body)
    assert body["type"] == event_type
    assert body["data"]["invoice"] | {"issued_at": None} == {
        "id": invoice.pk, "number": "TB-2026-000007", "period": "2026-10", "status": "open", "currency": "usd",
        "subtotal": "51.25", "total": "51.25", "calls": 52_250, "issued_at": None, "paid_at": None}


def test_a_failed_payment_event_names_the_attempt(customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    invoice = Invoice.objects.create(customer=customer, period="2026-10", status="open", total=Decimal("49.00"))
    attempt = PaymentAttempt.objects.create(invoice=invoice, number=1, amount=Decimal("49.00"), status="failed",
                                            failure_code="card_declined", failure_message="Your card was declined.")
    with django_capture_on_commit_callbacks(execute=True):
        billing_signals.invoice_payment_failed.send(sender=Invoice, invoice=invoice, attempt=attempt)

    body = json.loads(receiver.received[0].body)
    assert body["type"] == "invoice.payment_failed"
    assert body["data"]["attempt"] == {"number": 1, "amount": "49.00", "failure_code": "card_declined",
                                       "failure_message": "Your card was declined."}


def test_trial_ending_becomes_an_event(customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        billing_signals.trial_ending.send(sender=None, customer=customer)

    assert json.loads(receiver.received[0].body)["type"] == "trial.ending"


def test_a_key_rotation_sends_an_event_without_the_raw_key(customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    old = api_key_issue(customer=customer, name="prod")
    with django_capture_on_commit_callbacks(execute=True):
        new = api_key_rotate(key=old.key, grace_days=2)

    [request] = receiver.received
    body = json.loads(request.body)
    assert body["type"] == "key.rotated"
    assert body["data"]["key"]["masked"] == new.key.masked
    assert body["data"]["previous_key"]["id"] == old.key.pk
    assert new.raw.encode() not in request.body and old.raw.encode() not in request.body


@pytest.mark.django_db(transaction=True)
def test_a_new_customer_gets_the_default_alerts_on_its_share_of_the_month():
    with time_machine.travel(datetime(2026, 11, 16, 9, tzinfo=dt_timezone.utc), tick=False):
        customer = CustomerFactory(plan=seeded_plan("starter"))
    # 16-30 Nov: 50,000 x 15/30 = 25,000 included; alerts at 80% and 100%.
    assert UsageLimits.objects.get(customer=customer).alert_at_calls == [20_000, 25_000]


@pytest.mark.django_db(transaction=True)
def test_editing_a_plans_included_calls_leaves_its_customers_on_their_terms():
    customer = CustomerFactory(plan=seeded_plan("starter"), created_at=LONG_AGO)
    NotificationSettings.objects.create(customer=customer, thresholds=[50])
    plan = customer.plan
    plan.included_calls = 10_000
    plan.save()

    # Grandfathered: 50% of the 50,000 its terms include, not of the new 10,000.
    assert UsageLimits.objects.get(customer=customer).alert_at_calls == [25_000]
    newcomer = CustomerFactory(plan=plan, created_at=LONG_AGO)
    NotificationSettings.objects.create(customer=newcomer, thresholds=[50])
    usage_limits_sync(customer_id=newcomer.pk)
    assert UsageLimits.objects.get(customer=newcomer).alert_at_calls == [5_000]
