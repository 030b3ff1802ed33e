"""Notifications' part of the staff customer page (README "Staff console"): the alerts that fired,
the webhook deliveries and the alerts in the customer's timeline, composed by the page's template
from this app's template tags (the staff page's app never imports this one)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from billing.models import CreditEntry
from notifications.models import UsageAlert, WebhookDelivery, WebhookEvent
from tests.factories import CustomerFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(UserFactory(email="grace@example.com", is_staff=True))
    return client


def _page(client, customer) -> str:
    response = client.get(reverse("staff-customer", args=[customer.pk]))
    assert response.status_code == 200
    return response.content.decode()


def _section(html: str, section_id: str) -> str:
    start = html.index(f'id="{section_id}"')
    return html[start:html.index("</section>", start)]


def test_the_page_shows_the_alerts_and_the_last_delivery_of_each_webhook_event(staff_client, customer):
    now = timezone.now()
    UsageAlert.objects.create(customer=customer, period="2026-10", kind="usage", threshold=80, month_calls=8123)
    event = WebhookEvent.objects.create(customer=customer, type="invoice.paid", status="failed", attempts=2)
    WebhookDelivery.objects.create(event=event, url="https://example.com/hook", started_at=now - timedelta(minutes=5),
                                   response_status=500)
    WebhookDelivery.objects.create(event=event, url="https://example.com/hook", started_at=now, response_status=503)
    other = CustomerFactory()
    UsageAlert.objects.create(customer=other, period="2026-09", kind="spend_cap", threshold=5000, month_calls=1)

    html = _page(staff_client, customer)

    alerts = _section(html, "alerts")
    assert "Usage threshold" in alerts and "2026-10" in alerts and "8,123" in alerts and "2026-09" not in alerts
    webhooks = _section(html, "webhooks")
    assert "Invoice paid" in webhooks and "Failed (2 tries)" in webhooks
    assert "503" in webhooks and "500" not in webhooks  # the last try, not the first


def test_nothing_fired_reads_plainly(staff_client, customer):
    html = _page(staff_client, customer)

    assert "No alert has fired." in _section(html, "alerts") and "No webhook events." in _section(html, "webhooks")


def test_an_alert_takes_its_place_by_date_in_the_timeline(staff_client, customer):
    now = timezone.now()
    CreditEntry.objects.create(customer=customer, amount="5.00", reason="Before the alert", created_at=now - timedelta(days=2))
    UsageAlert.objects.create(customer=customer, period="2026-10", kind="spend_cap", threshold=5000, month_calls=10,
                              created_at=now - timedelta(days=1))
    CreditEntry.objects.create(customer=customer, amount="6.00", reason="After the alert", created_at=now)

    timeline = _section(_page(staff_client, customer), "timeline")

    after, alert, before = (timeline.index(text) for text in ("After the alert", "Spend cap alert, 2026-10", "Before the alert"))
    assert after < alert < before
    assert 'class="timeline-alert"' in timeline
