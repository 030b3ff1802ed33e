"""The staff console (README "Staff console"): find a customer, read its page, act on it through the
services, every action recorded with who did it; customers and visitors never get in."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.models import Customer
from accounts.services import api_key_issue
from billing.models import CreditEntry, Invoice, PaymentAttempt, PlanChange, TrialNotice
from dashboard.models import ReconciliationIssue, StaffAction
from tests.factories import CustomerFactory, InvoiceFactory, InvoiceLineFactory, UserFactory, seeded_plan

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff(db):
    return UserFactory(email="grace@example.com", is_staff=True)


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def _act(client, customer, action: str, **data):
    return client.post(reverse("staff-customer-action", args=[customer.pk, action]),
                       {f"{action}-{k}": v for k, v in data.items()})


def _open_invoice(customer, total="59.00", **kwargs) -> Invoice:
    invoice = InvoiceFactory(customer=customer, total=Decimal(total), subtotal=Decimal(total),
                             issued_at=timezone.now(), **kwargs)
    InvoiceLineFactory(invoice=invoice, amount=Decimal(total))
    return invoice


# --- access ---

def _urls(customer, issue):
    return [("get", reverse("staff-customers")), ("get", reverse("staff-customer", args=[customer.pk])),
            ("post", reverse("staff-customer-action", args=[customer.pk, "credit"])),
            ("post", reverse("staff-issue-resolve", args=[issue.pk]))]


def _issue(customer, **kwargs) -> ReconciliationIssue:
    return ReconciliationIssue.objects.create(customer=customer, period="2026-10", source="stripe",
                                              expected=Decimal("59.00"), found=Decimal("0.00"), **kwargs)


def test_anonymous_visitors_are_sent_to_log_in_and_customers_get_a_404(client, customer):
    issue = _issue(customer)
    for method, url in _urls(customer, issue):
        response = getattr(client, method)(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("login")), url
    client.force_login(customer.owner)
    for method, url in _urls(customer, issue):
        assert getattr(client, method)(url, {"credit-amount": "5", "credit-reason": "x", "resolve-note": "x"}).status_code == 404
    assert not CreditEntry.objects.exists() and ReconciliationIssue.objects.get().resolved_at is None


def test_staff_sign_in_to_the_dashboard_and_their_header_has_no_customer_links(client, staff):
    response = client.post(reverse("login"), {"username": staff.email, "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == reverse("staff-dashboard")
    html = client.get(reverse("staff-dashboard")).content.decode()
    nav = html[html.index('id="main-nav"'):html.index("</nav>")]
    assert reverse("staff-customers") in nav and reverse("admin:index") in nav
    assert reverse("portal-keys") not in nav and reverse("billing") not in nav


def test_customers_still_sign_in_to_the_portal(client, customer):
    response = client.post(reverse("login"), {"username": customer.owner.email, "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == reverse("portal")


def test_a_customer_action_is_post_only(staff_client, customer):
    assert staff_client.get(reverse("staff-customer-action", args=[customer.pk, "credit"])).status_code == 405
    assert _act(staff_client, customer, "nonsense").status_code == 404


# --- search ---

def test_search_finds_by_email_company_stripe_id_and_key_last_8(staff_client, starter_plan):
    ada = CustomerFactory(company="Analytical Engines", owner=UserFactory(email="ada@example.com"),
                          stripe_customer_id="cus_ADA123")
    other = CustomerFactory(company="Babbage Ltd", owner=UserFactory(email="charles@example.com"))
    key = api_key_issue(customer=ada, name="Production")

    def found(q):
        html = staff_client.get(reverse("staff-customers"), {"q": q}).content.decode()
        return {c.company for c in (ada, other) if reverse("staff-customer", args=[c.pk]) in html}

    assert found("ADA@example") == {"Analytical Engines"}
    assert found("babbage") == {"Babbage Ltd"}
    assert found("cus_ADA123") == {"Analytical Engines"}
    assert found(key.key.last8) == {"Analytical Engines"}
    assert found(key.raw) == {"Analytical Engines"}  # a whole key pasted: its last 8
    assert found("nobody-like-this") == set()
    assert staff_client.get(reverse("staff-customers"), {"q": "a\x00b"}).status_code == 200


# --- the customer's page ---

def test_the_customer_page_shows_plan_invoices_attempts_credits_keys_and_issues(staff_client, customer):
    invoice = _open_invoice(customer)
    PaymentAttempt.objects.create(invoice=invoice, number=2, amount=Decimal("59.00"), status="failed",
                                  failure_code="card_declined")
    PlanChange.objects.create(customer=customer, from_plan=seeded_plan("free"), to_plan=customer.plan)
    CreditEntry.objects.create(customer=customer, amount=Decimal("10.00"), reason="Outage on 3 Nov")
    key = api_key_issue(customer=customer, name="Production")
    _issue(customer)

    response = staff_client.get(reverse("staff-customer", args=[customer.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert invoice.number in html and "Attempt 2 · $59.00 · declined" in html
    assert "Outage on 3 Nov" in html and 'id="credit-balance">$10<' in html
    assert f"{key.key.prefix}…{key.key.last8}" in html and key.raw not in html
    assert "Stripe charge vs invoice total" in html
    assert "svg" in html and 'id="timeline"' in html


def test_an_unknown_customer_is_a_404(staff_client):
    assert staff_client.get(reverse("staff-customer", args=[987654])).status_code == 404


# --- actions ---

def test_add_credit_goes_to_the_ledger_with_the_staff_name_and_an_audit_row(staff_client, customer, staff):
    response = _act(staff_client, customer, "credit", amount="25.50", reason="Outage credit", note="Ticket 4411")

    assert response.status_code == 302
    entry = CreditEntry.objects.get()
    assert (entry.amount, entry.reason, entry.created_by) == (Decimal("25.50"), "Outage credit", staff.username)
    action = StaffAction.objects.get()
    assert (action.kind, action.staff, action.staff_name, action.note) == ("credit_add", staff, staff.username, "Ticket 4411")
    assert action.summary == "$25.50: Outage credit"
    page = staff_client.get(reverse("staff-customer", args=[customer.pk])).content.decode()
    assert "Added credit: $25.50: Outage credit" in page and "Ticket 4411" in page


@pytest.mark.parametrize("amount, reason, error", [
    ("0", "Outage", "A credit is a positive amount, e.g. 12.50."),
    ("-5", "Outage", "A credit is a positive amount, e.g. 12.50."),
    ("abc", "Outage", "A credit is a positive amount, e.g. 12.50."),
    ("1.001", "Outage", "Dollars and cents only, e.g. 12.50."),
    ("NaN", "Outage", "A credit is a positive amount, e.g. 12.50."),
    ("5", "", "Say what the credit is for."),
])
def test_bad_credit_input_is_a_form_error(staff_client, customer, amount, reason, error):
    response = _act(staff_client, customer, "credit", amount=amount, reason=reason)

    assert response.status_code == 400
    assert error in response.content.decode()
    assert not CreditEntry.objects.exists() and not StaffAction.objects.exists()


def test_mark_paid_records_method_and_reference_and_never_changes_the_amounts(staff_client, customer):
    invoice = _open_invoice(customer)

    response = _act(staff_client, customer, "paid", invoice=invoice.pk, method="bank_transfer", reference="8842-A")

    assert response.status_code == 302
    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.paid_by == "bank transfer, ref 8842-A"
    assert invoice.total == Decimal("59.00") and list(invoice.lines.values_list("amount", flat=True)) == [Decimal("59.00")]
    action = StaffAction.objects.get()
    assert action.kind == "invoice_paid" and action.invoice == invoice
    assert action.summary == f"{invoice.number} ($59.00) by bank transfer, ref 8842-A"


def test_mark_paid_ends_past_due(staff_client, customer):
    invoice = _open_invoice(customer)
    PaymentAttempt.objects.create(invoice=invoice, number=1, amount=invoice.total, status="failed")
    Customer.objects.filter(pk=customer.pk).update(status="past_due", past_due_since=timezone.now())

    assert _act(staff_client, customer, "paid", invoice=invoice.pk, method="cheque", reference="0042").status_code == 302
    customer.refresh_from_db()
    assert customer.status == "active"


@pytest.mark.parametrize("status, data, error", [
    ("paid", {"method": "cash", "reference": "r1"}, "This invoice is paid already."),
    ("void", {"method": "cash", "reference": "r1"}, "A void invoice cannot be paid."),
    ("open", {"method": "cash", "reference": ""}, "Give the payment&#x27;s reference"),
    ("open", {"method": "bitcoin", "reference": "r1"}, "Choose how the invoice was paid."),
])
def test_mark_paid_refuses(staff_client, customer, status, data, error):
    invoice = _open_invoice(customer, status=status)

    response = _act(staff_client, customer, "paid", invoice=invoice.pk, **data)

    assert response.status_code == 400
    assert error in response.content.decode()
    invoice.refresh_from_db()
    assert invoice.status == status and not StaffAction.objects.exists()


def test_another_customers_invoice_is_not_a_choice(staff_client, customer):
    theirs = _open_invoice(CustomerFactory())

    response = _act(staff_client, customer, "paid", invoice=theirs.pk, method="cash", reference="r1")

    assert response.status_code == 400
    assert "Choose one of this customer&#x27;s invoices." in response.content.decode()
    theirs.refresh_from_db()
    assert theirs.status == "open"


def test_void_takes_open_invoices_only(staff_client, customer):
    open_one = _open_invoice(customer, period="2026-10")
    uncollectible = _open_invoice(customer, period="2026-09", status="uncollectible")

    assert _act(staff_client, customer, "void", invoice=open_one.pk, note="Sent in error").status_code == 302
    refused = _act(staff_client, customer, "void", invoice=uncollectible.pk)

    assert refused.status_code == 400
    assert "Only an open invoice can be voided" in refused.content.decode()
    open_one.refresh_from_db()
    uncollectible.refresh_from_db()
    assert (open_one.status, uncollectible.status) == ("void", "uncollectible")
    assert list(StaffAction.objects.values_list("kind", "note")) == [("invoice_void", "Sent in error")]


def test_resend_sends_the_invoice_email_again_each_time(staff_client, customer, django_capture_on_commit_callbacks):
    invoice = _open_invoice(customer)

    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert _act(staff_client, customer, "resend", invoice=invoice.pk).status_code == 302

    assert [m.to for m in mail.outbox] == [[customer.email], [customer.email]]
    assert all(invoice.number in m.subject for m in mail.outbox)
    assert StaffAction.objects.filter(kind="invoice_resend").count() == 2


def test_change_plan_goes_through_plan_change_as_staff(staff_client, customer):
    pro = seeded_plan("pro")

    response = _act(staff_client, customer, "plan", plan=pro.pk, note="Signed contract")

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.plan == pro
    change = PlanChange.objects.get(customer=customer)
    assert change.reason == "staff" and change.to_plan == pro
    assert StaffAction.objects.get().summary == "Starter → Professional"


def test_change_plan_to_the_current_plan_is_refused(staff_client, customer):
    response = _act(staff_client, customer, "plan", plan=customer.plan.pk)

    assert response.status_code == 400
    assert "You are already on the Starter plan." in response.content.decode()
    assert not PlanChange.objects.exists() and not StaffAction.objects.exists()


def test_extend_trial_moves_the_end_and_rearms_the_reminder(staff_client):
    ends = timezone.now() + timedelta(days=2)
    trial = CustomerFactory(plan=seeded_plan("pro"), status="trial", trial_started_at=timezone.now() - timedelta(days=12),
                            trial_ends_at=ends)
    TrialNotice.objects.create(customer=trial, kind="ending")

    response = _act(staff_client, trial, "trial", days="7")

    assert response.status_code == 302
    trial.refresh_from_db()
    assert trial.trial_ends_at == ends + timedelta(days=7)
    assert not TrialNotice.objects.filter(customer=trial).exists()
    assert StaffAction.objects.get().kind == "trial_extend"


@pytest.mark.parametrize("days, error", [("0", "Extend by 1 to 30 days."), ("31", "Extend by 1 to 30 days."),
                                         ("", "Say by how many days.")])
def test_extend_trial_refuses_bad_days(staff_client, days, error):
    trial = CustomerFactory(status="trial", trial_ends_at=timezone.now() + timedelta(days=2))

    response = _act(staff_client, trial, "trial", days=days)

    assert response.status_code == 400 and error in response.content.decode()


def test_extend_trial_refuses_a_customer_not_in_trial(staff_client, customer):
    response = _act(staff_client, customer, "trial", days="7")

    assert response.status_code == 400
    assert "Only a running trial can be extended." in response.content.decode()
    assert not StaffAction.objects.exists()


def test_cancel_needs_a_confirmation_and_a_note_then_issues_the_final_invoice(staff_client, customer):
    refused = _act(staff_client, customer, "cancel", note="Asked by email")
    assert refused.status_code == 400 and "Tick the box to confirm." in refused.content.decode()

    response = _act(staff_client, customer, "cancel", confirm="on", note="Asked by email")

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.status == "cancelled"
    final = Invoice.objects.get(customer=customer, is_final=True)
    action = StaffAction.objects.get()
    assert action.kind == "cancel" and action.invoice == final and action.note == "Asked by email"
    again = _act(staff_client, customer, "cancel", confirm="on", note="again")
    assert again.status_code == 400 and "This account is cancelled already." in again.content.decode()


# --- reconciliation issues ---

def test_resolving_an_issue_records_who_when_and_the_note(staff_client, customer, staff):
    issue = _issue(customer)
    url = reverse("staff-issue-resolve", args=[issue.pk])

    empty = staff_client.post(url, {f"resolve-{issue.pk}-note": "  "})
    assert empty.status_code == 400 and "Say what explains it." in empty.content.decode()

    response = staff_client.post(url, {f"resolve-{issue.pk}-note": "Refund made by hand in Stripe"})

    assert response.status_code == 302
    issue.refresh_from_db()
    assert issue.resolved_by == staff.username and issue.resolution_note == "Refund made by hand in Stripe"
    assert issue.resolved_at is not None
    assert StaffAction.objects.get().kind == "issue_resolve"
    again = staff_client.post(url, {f"resolve-{issue.pk}-note": "again"})
    assert again.status_code == 400 and f"Resolved already by {staff.username}." in again.content.decode()


def test_the_dashboard_lists_open_issues_only(staff_client, customer):
    _issue(customer)
    ReconciliationIssue.objects.create(customer=customer, period="2026-09", source="redis", expected=1, found=2,
                                       resolved_at=timezone.now(), resolved_by="grace", resolution_note="ok")

    html = staff_client.get(reverse("staff-dashboard")).content.decode()

    assert "1 open drift;" in html
    assert "issue-stripe" in html and "issue-redis" not in html


# --- admin ---

def test_the_admin_reads_attempts_plainly_and_hides_the_config_version(staff_client, customer):
    get_user_model().objects.filter(is_staff=True).update(is_superuser=True)
    invoice = _open_invoice(customer)
    PaymentAttempt.objects.create(invoice=invoice, number=2, amount=Decimal("59.00"), status="failed",
                                  failure_code="card_declined")

    customer_page = staff_client.get(reverse("admin:accounts_customer_change", args=[customer.pk])).content.decode()
    invoice_page = staff_client.get(reverse("admin:billing_invoice_change", args=[invoice.pk])).content.decode()

    assert "Config version" not in customer_page
    assert "Attempt 2 · $59.00 · declined" in invoice_page and "PaymentAttempt object" not in invoice_page
