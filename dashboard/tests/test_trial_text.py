"""A trial's length reads the same on every page and in the reminder email (issue 13, item 12).

One count (accounts.selectors.trial_days_left: whole days of 24 hours, rounded up; 0 on the day it
ends, UTC) and one phrase (the `trial_ends` filter). The trial below starts at signup on
4 December 2026, 09:00 UTC and ends 14 days later, on 18 December at 09:00.
"""
from __future__ import annotations

from datetime import datetime, timezone as dt_timezone

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import Customer
from accounts.selectors import trial_days_left
from billing.emails import trial_email_send
from tests.factories import CustomerFactory, seeded_plan
from tests.page_factories import seeded_public_plans

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("celery_outside_task")]

PORTAL_PAGES = ["portal", "portal-keys", "billing", "portal-settings", "portal-account"]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=dt_timezone.utc)


STARTS, ENDS = utc(2026, 12, 4, 9), utc(2026, 12, 18, 9)


@pytest.fixture
def trial_customer(db):
    seeded_public_plans()
    return CustomerFactory(plan=seeded_plan("starter"), status=Customer.Status.TRIAL, created_at=STARTS,
                           trial_started_at=STARTS, trial_ends_at=ENDS)


def signed_in(customer: Customer) -> Client:
    client = Client()
    client.force_login(customer.owner)
    return client


def page(client: Client, name: str) -> str:
    response = client.get(reverse(name))
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.parametrize("now,days", [
    (STARTS, 14),                       # the trial's length
    (utc(2026, 12, 4, 10), 14),         # 13 days 23 hours: a person says 14
    (utc(2026, 12, 5, 9), 13),
    (utc(2026, 12, 5, 9, 0, 1), 13),    # 12 days 23:59:59
    (utc(2026, 12, 17, 8, 59), 2),      # a day and a minute
    (utc(2026, 12, 17, 9), 1),
    (utc(2026, 12, 17, 23, 59), 1),
    (utc(2026, 12, 18, 0, 0), 0),       # the day it ends: "ends today"
    (utc(2026, 12, 18, 9, 30), 0),      # past its end, before the hourly run moves the customer on
])
def test_days_left_are_whole_days_rounded_up_and_zero_on_the_last_day(trial_customer, now, days):
    assert trial_days_left(trial_customer, now=now) == days


def test_a_customer_outside_a_trial_has_no_days_left(trial_customer):
    trial_customer.status = Customer.Status.ACTIVE
    assert trial_days_left(trial_customer, now=STARTS) is None
    assert trial_days_left(CustomerFactory(), now=STARTS) is None


def test_the_reminder_email_and_every_page_print_the_same_phrase(trial_customer, time_machine):
    time_machine.move_to(utc(2026, 12, 15, 10), tick=False)  # the reminder's hour: 2 days 23 hours left
    phrase = "ends on 18 December 2026 (3 days left)"
    client = signed_in(trial_customer)

    pages = {name: page(client, name) for name in PORTAL_PAGES}
    trial_email_send(customer_id=trial_customer.pk, kind="ending")

    banner = f"Your Starter trial {phrase}. Add a card to stay on Starter; without one you move to the Free plan."
    assert all(banner in html for html in pages.values())
    assert f'id="trial-left">Trial {phrase}</p>' in pages["portal"]
    assert f'id="trial-left">Trial {phrase}</p>' in pages["billing"]
    assert all(" week" not in html for html in pages.values())  # Django's timeuntil said "1 week, 6 days"
    email = mail.outbox[0]
    assert f"Your Starter trial {phrase}, at 09:00 UTC." in email.body
    assert f"Your Starter trial {phrase}</h1>" in email.alternatives[0][0]


def test_the_plan_change_preview_shows_the_trial_as_fourteen_days_ending_on_the_18th(trial_customer, time_machine):
    time_machine.move_to(utc(2026, 12, 6, 12), tick=False)  # 11 days 21 hours left

    response = signed_in(trial_customer).post(reverse("billing-plan"), {"plan": seeded_plan("pro").pk})

    assert response.status_code == 200
    html = response.content.decode()
    assert ("Your trial continues (Dec 4 – Dec 18, 14 days): it ends on 18 December 2026 (12 days left), "
            "and trial days cost nothing.") in html
    assert "15 days" not in html


def test_the_trial_reads_fourteen_days_right_after_signup(trial_customer, time_machine):
    time_machine.move_to(utc(2026, 12, 4, 9, 0, 5), tick=False)

    html = page(signed_in(trial_customer), "billing")

    assert 'id="trial-left">Trial ends on 18 December 2026 (14 days left)</p>' in html
    assert "Your Starter trial ends on 18 December 2026 (14 days left)." in html


@pytest.mark.parametrize("now,phrase", [
    (utc(2026, 12, 17, 10), "ends on 18 December 2026 (1 day left)"),
    (utc(2026, 12, 18, 8), "ends today, 18 December 2026"),
    (utc(2026, 12, 18, 9, 30), "ended on 18 December 2026"),
])
def test_the_last_days_read_as_a_person_says_them(trial_customer, time_machine, now, phrase):
    time_machine.move_to(now, tick=False)

    html = page(signed_in(trial_customer), "billing")

    assert f'id="trial-left">Trial {phrase}</p>' in html
    assert f"Your Starter trial {phrase}. Add a card" in html


def test_a_trial_that_ends_the_next_month_spans_both(time_machine):
    seeded_public_plans()
    starts = utc(2026, 11, 20, 23, 30)
    customer = CustomerFactory(plan=seeded_plan("starter"), status=Customer.Status.TRIAL, created_at=starts,
                               trial_ends_at=utc(2026, 12, 4, 23, 30))
    time_machine.move_to(utc(2026, 11, 21, 0, 10), tick=False)

    response = signed_in(customer).post(reverse("billing-plan"), {"plan": seeded_plan("pro").pk})

    assert response.status_code == 200
    assert ("Your trial continues (Nov 20 – Dec 4, 14 days): it ends on 4 December 2026 (14 days left)"
            in response.content.decode())
