"""/portal/settings/: the forms, their errors, the secret shown once, the delivery log."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from metering.models import UsageLimits
from notifications.models import NotificationSettings, WebhookEndpoint, WebhookEvent
from notifications.services import webhook_endpoint_set, webhook_test_send
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db
URL = "/portal/settings/"


@pytest.fixture
def portal(client, customer):
    client.force_login(customer.owner)
    return client


def settings_post(portal, **fields):
    data = {"alerts_enabled": "on", "thresholds": "80, 100", "spend_cap": "", "cap_mode": "alert", **fields}
    return portal.post(URL, data)


def test_the_page_shows_the_default_alerts_and_no_cap(portal, customer):
    response = portal.get(URL)

    assert response.status_code == 200
    form = response.context["settings_form"]
    assert form.initial == {"alerts_enabled": True, "thresholds": "80, 100", "spend_cap": None, "cap_mode": "alert"}
    assert "40,000" in response.content.decode()  # 80% of Starter's 50,000 calls
    assert response["Cache-Control"].startswith("max-age=0")


def test_the_page_needs_a_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_saving_alerts_and_a_hard_stop_cap_hands_the_meter_its_limits(portal, customer):
    response = settings_post(portal, thresholds="50 90%, 150", spend_cap="100.00", cap_mode="stop")

    assert response.status_code == 302
    saved = NotificationSettings.objects.get(customer=customer)
    assert (saved.thresholds, saved.spend_cap, saved.cap_mode) == ([50, 90, 150], Decimal("100.00"), "stop")
    limits = UsageLimits.objects.get(customer=customer)
    # $100 - $49 base = $51 of overage at $0.001 a call: 51,004 calls (51.004 rounds to $51.00).
    assert limits.alert_at_calls == [25_000, 45_000, 75_000, 101_004]
    assert limits.call_ceiling == 101_004


@pytest.mark.parametrize("fields, field, message", [
    ({"spend_cap": "-1"}, "spend_cap", "Enter an amount of $0 or more."),
    ({"spend_cap": "1000000.01"}, "spend_cap", "The cap can be at most $1,000,000."),
    ({"spend_cap": "99999999999"}, "spend_cap", "The cap can be at most $1,000,000."),
    ({"spend_cap": "12.345"}, "spend_cap", "Use dollars and cents, at most 2 decimal places."),
    ({"spend_cap": "lots"}, "spend_cap", "Enter an amount in dollars, e.g. 250 or 250.00."),
    ({"spend_cap": "20"}, "spend_cap", "The cap must be at least your plan's monthly price ($49.00)."),
    ({"thresholds": "0, 80"}, "thresholds", "Each threshold must be a whole percentage from 1 to 1000."),
    ({"thresholds": "80, 1001"}, "thresholds", "Each threshold must be a whole percentage from 1 to 1000."),
    ({"thresholds": "eighty"}, "thresholds", "Use whole percentages from 1 to 1000, separated by commas."),
    ({"thresholds": "-5"}, "thresholds", "Use whole percentages from 1 to 1000, separated by commas."),
    ({"thresholds": "10, 20, 30, 40, 50, 60"}, "thresholds", "Set at most 5 thresholds."),
    ({"thresholds": ""}, "thresholds", "Enter at least one threshold, or turn the alerts off."),
    ({"cap_mode": "maybe"}, "cap_mode", "Select a valid choice. maybe is not one of the available choices."),
])
def test_bad_settings_are_form_errors_and_change_nothing(portal, customer, fields, field, message):
    response = settings_post(portal, **fields)

    assert response.status_code == 200
    assert response.context["settings_form"].errors[field] == [message]
    assert not NotificationSettings.objects.filter(customer=customer).exists()


def test_a_free_plan_has_no_spend_cap(client, free_customer):
    client.force_login(free_customer.owner)
    response = client.post(URL, {"alerts_enabled": "on", "thresholds": "80", "spend_cap": "500", "cap_mode": "stop"})

    assert response.status_code == 302
    saved = NotificationSettings.objects.get(customer=free_customer)
    assert (saved.thresholds, saved.spend_cap) == ([80], None)
    assert "spend_cap" not in client.get(URL).context["settings_form"].fields


@pytest.mark.parametrize("url, message", [
    ("not a url", "Enter a valid URL, like https://example.com/webhooks/tollbooth."),
    ("ftp://example.com/hook", "Enter a valid URL, like https://example.com/webhooks/tollbooth."),
    ("https://exa mple.com/hook", "Enter a valid URL, like https://example.com/webhooks/tollbooth."),
    ("http://example.com/hook", "Use an https:// URL: events carry account data."),
    ("https://user:pass@example.com/hook", "Leave credentials out of the URL; verify our signature instead."),
    ("https://127.0.0.1/hook", "This URL points to a private or local address, which webhooks cannot reach."),
    ("https://[::1]/hook", "This URL points to a private or local address, which webhooks cannot reach."),
    ("https://169.254.169.254/latest/meta-data", "This URL points to a private or local address, which webhooks cannot reach."),
    ("https://localhost/hook", "This URL points to a private or local address, which webhooks cannot reach."),
    ("https://example.com/" + "a" * 2000, "Ensure this value has at most 2000 characters (it has 2020)."),
])
def test_bad_webhook_urls_are_form_errors(portal, customer, settings, url, message):
    settings.WEBHOOKS_ALLOW_HTTP = False
    settings.WEBHOOKS_ALLOW_PRIVATE = False

    response = portal.post(reverse("portal-settings-webhook"), {"url": url})

    assert response.status_code == 200
    assert response.context["webhook_form"].errors["url"] == [message]
    assert not WebhookEndpoint.objects.filter(customer=customer).exists()


def test_the_signing_secret_is_shown_once(portal, customer, settings):
    settings.WEBHOOKS_ALLOW_HTTP = False
    response = portal.post(reverse("portal-settings-webhook"), {"url": "https://hooks.example.com/tollbooth"}, follow=True)
    endpoint = WebhookEndpoint.objects.get(customer=customer)

    assert endpoint.url == "https://hooks.example.com/tollbooth"
    assert endpoint.secret in response.content.decode()
    assert endpoint.secret not in portal.get(URL).content.decode()
    assert endpoint.secret_hint in portal.get(URL).content.decode()


def test_changing_the_url_keeps_the_secret_and_rolling_shows_the_new_one(portal, customer):
    first = webhook_endpoint_set(customer=customer, url="https://a.example.com/").endpoint.secret
    portal.post(reverse("portal-settings-webhook"), {"url": "https://b.example.com/"})
    assert WebhookEndpoint.objects.get(customer=customer).secret == first

    response = portal.post(reverse("portal-settings-webhook-roll"), follow=True)

    endpoint = WebhookEndpoint.objects.get(customer=customer)
    assert endpoint.secret != first and endpoint.previous_secret == first
    assert endpoint.secret in response.content.decode()
    assert first not in response.content.decode()


def test_the_delivery_log_lists_events_and_attempts(portal, customer, receiver, django_capture_on_commit_callbacks):
    webhook_endpoint_set(customer=customer, url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        portal.post(reverse("portal-settings-webhook-test"))
    response = portal.get(URL)

    event = WebhookEvent.objects.get(customer=customer)
    [row] = response.context["log"]
    assert row.event == event and row.latest.response_status == 200
    assert f'data-event-id="{event.event_id}"' in response.content.decode()


def test_resending_another_customers_event_is_a_404(portal, customer, receiver, django_capture_on_commit_callbacks):
    other = CustomerFactory()
    webhook_endpoint_set(customer=other, url=receiver.url)
    webhook_endpoint_set(customer=customer, url=receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        event = webhook_test_send(customer=other)

    response = portal.post(reverse("portal-settings-webhook-resend", args=[event.pk]))

    assert response.status_code == 404
    assert event.deliveries.count() == 1


def test_sending_a_test_event_without_an_endpoint_is_a_404(portal):
    assert portal.post(reverse("portal-settings-webhook-test")).status_code == 404


def test_removing_the_endpoint_stops_events(portal, customer):
    webhook_endpoint_set(customer=customer, url="https://a.example.com/")

    response = portal.post(reverse("portal-settings-webhook-delete"))

    assert response.status_code == 302
    assert not WebhookEndpoint.objects.filter(customer=customer).exists()


def test_the_page_shows_the_same_verification_recipe_as_the_readme(portal):
    from html import unescape

    from .test_webhook_delivery import readme_recipe

    page = unescape(portal.get(URL).content.decode())
    assert readme_recipe().strip() in page
