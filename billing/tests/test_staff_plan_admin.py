"""Staff in Django admin: the Customer's Plan dropdown goes through plan_change (issue 13, item 11),
and a plan's customers move to its current terms from the next period start with notice (item 2)."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib import admin
from django.core import mail
from django.forms import MultiWidget

from accounts.admin import CustomerAdmin as AccountsCustomerAdmin
from accounts.models import Customer
from billing import signals
from billing.admin import CustomerAdmin as BillingCustomerAdmin
from billing.models import PlanChange
from billing.subscriptions import plan_change
from billing.tasks import terms_moves_apply
from config.celery import app
from plans.models import Plan
from plans.services import terms_current
from tests.factories import CustomerFactory, UserFactory

from .conftest import at, utc

pytestmark = pytest.mark.django_db

NOV_16, DEC_1 = utc(2026, 11, 16, 10), utc(2026, 12, 1)


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(email="staff@example.com", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def heard():
    """Every plan_changed signal sent, as (customer id, reason)."""
    sent = []

    def hear(sender, customer, change, **kwargs):
        sent.append((customer.pk, change.reason))

    signals.plan_changed.connect(hear)
    yield sent
    signals.plan_changed.disconnect(hear)


def change_page_data(client, url: str) -> dict:
    """What the admin's change page would post back untouched: the form and its inlines' values."""
    page = client.get(url)
    assert page.status_code == 200
    forms = [page.context["adminform"].form]
    for inline in page.context["inline_admin_formsets"]:
        forms += [inline.formset.management_form, *inline.formset.forms]
    data = {}
    for form in forms:
        for field in form:
            value, widget = field.value(), field.field.widget
            if isinstance(widget, MultiWidget):
                for number, part in enumerate(widget.decompress(value)):
                    data[f"{field.html_name}_{number}"] = "" if part is None else part
            elif value is not None and value is not False:
                data[field.html_name] = "on" if value is True else value
    return data


def customer_url(customer: Customer) -> str:
    return f"/admin/accounts/customer/{customer.pk}/change/"


# --- The Plan dropdown ---

def test_the_plan_dropdown_changes_the_plan_through_plan_change_as_staff(
    staff_client, october_customer, plans, heard, django_capture_on_commit_callbacks,
):
    data = change_page_data(staff_client, customer_url(october_customer))
    with at(NOV_16), django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(customer_url(october_customer), {**data, "plan": plans["pro"].pk})
    assert response.status_code == 302 and response["Location"] == "/admin/accounts/customer/"
    change = PlanChange.objects.get()
    assert (change.reason, change.from_plan, change.to_plan, change.at) == ("staff", plans["starter"], plans["pro"], NOV_16)
    assert change.get_reason_display() == "Changed by staff"
    october_customer.refresh_from_db()
    assert october_customer.plan == plans["pro"] and october_customer.terms == change.terms
    assert heard == [(october_customer.pk, "staff")]


def test_staff_move_a_free_customer_without_a_card_to_a_paid_plan_with_no_trial(staff_client, plans, heard,
                                                                                 django_capture_on_commit_callbacks):
    customer = CustomerFactory(plan=plans["free"], created_at=utc(2026, 10, 1))
    data = change_page_data(staff_client, customer_url(customer))
    with django_capture_on_commit_callbacks(execute=True):
        assert staff_client.post(customer_url(customer), {**data, "plan": plans["starter"].pk}).status_code == 302
    customer.refresh_from_db()
    assert (customer.plan, customer.status, customer.trial_ends_at) == (plans["starter"], "active", None)


def test_editing_other_fields_writes_no_plan_change(staff_client, october_customer, heard):
    data = change_page_data(staff_client, customer_url(october_customer))
    assert staff_client.post(customer_url(october_customer), {**data, "company": "Renamed Ltd"}).status_code == 302
    october_customer.refresh_from_db()
    assert october_customer.company == "Renamed Ltd" and not PlanChange.objects.exists() and heard == []


def test_an_unknown_plan_is_a_form_error(staff_client, october_customer):
    data = change_page_data(staff_client, customer_url(october_customer))
    response = staff_client.post(customer_url(october_customer), {**data, "plan": 987654})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["plan"][0].startswith("Select a valid choice")
    assert not PlanChange.objects.exists()


def test_a_cancelled_customers_plan_is_a_form_error_not_a_500(staff_client, october_customer, plans, heard):
    Customer.objects.filter(pk=october_customer.pk).update(status=Customer.Status.CANCELLED)
    data = change_page_data(staff_client, customer_url(october_customer))
    response = staff_client.post(customer_url(october_customer), {**data, "plan": plans["pro"].pk})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["plan"] == ["This account is cancelled."]
    october_customer.refresh_from_db()
    assert october_customer.plan == plans["starter"] and not PlanChange.objects.exists() and heard == []


def test_staff_may_pick_a_hidden_plan(staff_client, october_customer):
    hidden = Plan.objects.create(slug="legacy", name="Legacy", price=10, included_calls=10, rate_per_minute=1,
                                 is_public=False)
    data = change_page_data(staff_client, customer_url(october_customer))
    assert staff_client.post(customer_url(october_customer), {**data, "plan": hidden.pk}).status_code == 302
    assert PlanChange.objects.get().to_plan == hidden


def test_the_plan_is_read_only_in_the_accounts_admin_alone(rf):
    """Below billing the field cannot be saved at all: only billing's admin writes it, through the service."""
    customer = CustomerFactory()
    request = rf.get("/")
    assert "plan" in AccountsCustomerAdmin(Customer, admin.site).get_readonly_fields(request, customer)
    assert isinstance(admin.site._registry[Customer], BillingCustomerAdmin)


# --- Moving a plan's customers to its current terms ---

@pytest.fixture
def starter_edited(plans):
    """Two Starter customers and one on Pro; then staff raise Starter to $59 with 60,000 calls."""
    customers = [CustomerFactory(plan=plans["starter"], created_at=utc(2026, 10, 1), owner=UserFactory(email=email))
                 for email in ("ann@example.com", "ben@example.com")]
    CustomerFactory(plan=plans["pro"], created_at=utc(2026, 10, 1))
    old_terms = customers[0].terms
    starter = plans["starter"]
    starter.price, starter.included_calls = Decimal("59.00"), 60_000
    starter.save()
    return customers, old_terms


def move_terms(client, plan: Plan):
    return client.post("/admin/plans/plan/", {"action": "terms_move", "_selected_action": [plan.pk]}, follow=True)


def test_the_action_schedules_each_customers_move_from_the_next_period_with_one_notice(
    staff_client, starter_edited, plans, django_capture_on_commit_callbacks,
):
    customers, old_terms = starter_edited
    with at(NOV_16), django_capture_on_commit_callbacks(execute=True):
        page = move_terms(staff_client, plans["starter"])
    assert page.status_code == 200
    assert "Starter: 2 customer(s) move to its current terms on 1 December 2026" in page.content.decode()
    moves = list(PlanChange.objects.order_by("customer_id"))
    new_terms = terms_current(plan=plans["starter"])
    assert [(m.customer_id, m.reason, m.from_plan, m.to_plan, m.terms, m.at) for m in moves] == [
        (c.pk, "terms_updated", plans["starter"], plans["starter"], new_terms, DEC_1) for c in customers]
    assert sorted(m.to[0] for m in mail.outbox) == ["ann@example.com", "ben@example.com"]
    notice = mail.outbox[0]
    assert notice.subject == "Your Starter plan's terms change on 1 December 2026"
    assert "Price a month: $49.00 → $59.00" in notice.body and "Included calls: 50,000 → 60,000" in notice.body
    assert "Calls a minute" not in notice.body  # only what changes is listed
    assert "$59.00" in notice.alternatives[0].content

    with at(NOV_16), django_capture_on_commit_callbacks(execute=True):
        page = move_terms(staff_client, plans["starter"])
    assert PlanChange.objects.count() == 2 and len(mail.outbox) == 2  # a second run schedules and sends nothing
    for customer in customers:
        customer.refresh_from_db()
        assert customer.terms == old_terms


def test_customers_keep_their_terms_until_the_period_start_then_take_the_new_ones(
    staff_client, starter_edited, plans, django_capture_on_commit_callbacks,
):
    (ann, ben), old_terms = starter_edited
    with at(NOV_16), django_capture_on_commit_callbacks(execute=True):
        move_terms(staff_client, plans["starter"])
    with at(utc(2026, 11, 20)):
        plan_change(customer=ben, plan=plans["pro"])  # drops Ben's scheduled move
    assert PlanChange.objects.filter(customer=ben, reason="terms_updated").count() == 0

    with at(utc(2026, 11, 30, 23, 59)):
        assert terms_moves_apply() == 0
    ann.refresh_from_db()
    assert ann.terms == old_terms and ann.terms.price == Decimal("49.00")
    version = ann.config_version

    with at(utc(2026, 12, 1, 0, 1)):
        assert terms_moves_apply() == 1
        assert terms_moves_apply() == 0  # done once
    ann.refresh_from_db()
    ben.refresh_from_db()
    assert (ann.terms.price, ann.terms.included_calls) == (Decimal("59.00"), 60_000)
    assert ann.config_version > version
    assert ben.plan == plans["pro"] and ben.terms.plan == plans["pro"]


def test_a_plan_whose_customers_are_all_on_its_current_terms_moves_nobody(staff_client, october_customer, plans):
    with at(NOV_16):
        page = move_terms(staff_client, plans["starter"])
    assert "Starter: no customer waits for a move to its current terms." in page.content.decode()
    assert not PlanChange.objects.exists() and mail.outbox == []


def test_the_hourly_beat_runs_the_registered_terms_task(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["terms-moves"]
    assert entry["task"] == terms_moves_apply.name == "billing.tasks.terms_moves_apply"
    assert entry["task"] in app.tasks and entry["schedule"].minute == {1} and len(entry["schedule"].hour) == 24
