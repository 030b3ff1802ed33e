from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.urls import reverse

from accounts.keyformat import KEY_PATTERN
from accounts.models import ApiKey, Customer
from accounts.reveal import COOKIE_NAME
from plans.models import Plan
from tests.factories import CustomerFactory, UserFactory
from tests.page_factories import seeded_public_plans, signup_data

pytestmark = pytest.mark.django_db

User = get_user_model()
KEY_IN_PAGE = re.compile(r"sk_(?:live|test)_[0-9a-f]{64}")


@pytest.fixture(autouse=True)
def plans():
    return seeded_public_plans()


def _counts() -> tuple[int, int, int]:
    return User.objects.count(), Customer.objects.count(), ApiKey.objects.count()


def test_signup_page_preselects_the_plan_from_the_query(client):
    html = client.get(reverse("signup"), {"plan": "pro"}).content.decode()

    assert re.search(r'<input type="radio" name="plan" value="pro"[^>]*checked', html)
    assert html.count("checked") == 1


def test_an_unknown_plan_in_the_query_selects_nothing_and_says_so(client):
    html = client.get(reverse("signup"), {"plan": "platinum"}).content.decode()

    assert "We could not find a plan called “platinum”" in html
    assert "checked" not in html


@pytest.mark.parametrize("plan", ["a\x00b", "x" * 5000, "../etc"])
def test_a_malformed_plan_in_the_query_is_just_unknown(client, plan):
    response = client.get(reverse("signup"), {"plan": plan})

    assert response.status_code == 200 and "We could not find a plan" in response.content.decode()


@pytest.mark.parametrize("field", ["email", "company", "password", "plan"])
def test_a_nul_byte_in_any_field_is_a_form_error(client, field):
    response = client.post(reverse("signup"), signup_data(**{field: "a\x00b"}))

    assert response.status_code == 200 and field in response.context["form"].errors
    assert _counts() == (0, 0, 0)


def test_signup_creates_the_account_signs_in_and_shows_the_key_once(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse("signup"), signup_data(email="Ada@Example.com"))

    assert response.status_code == 302 and response["Location"] == reverse("signup-welcome")
    customer = Customer.objects.select_related("owner", "plan").get()
    assert customer.owner.username == "ada@example.com"
    assert customer.plan.slug == "starter" and customer.status == Customer.Status.TRIAL
    assert customer.trial_ends_at is not None
    assert customer.api_keys.count() == 1

    first = client.get(reverse("signup-welcome"))
    keys = KEY_IN_PAGE.findall(first.content.decode())
    assert keys and set(keys) == {keys[0]} and KEY_PATTERN.match(keys[0])
    assert customer.api_keys.get().last8 == keys[0][-8:]
    assert f'curl -H "Authorization: Bearer {keys[0]}" "http://testserver/v1/geocode?q=Paris"' in first.content.decode()
    assert "no-store" in first["Cache-Control"]
    assert int(client.session["_auth_user_id"]) == customer.owner.pk

    second = client.get(reverse("signup-welcome"))
    assert second.status_code == 200
    assert not KEY_IN_PAGE.search(second.content.decode())
    assert "Your API key was shown once" in second.content.decode()


def test_the_welcome_email_is_sent_without_the_raw_key(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("signup"), signup_data())
    raw = KEY_IN_PAGE.search(client.get(reverse("signup-welcome")).content.decode()).group()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    html_body = message.alternatives[0].content
    assert message.to == ["ada@example.com"]
    assert "Analytical Engines Ltd" in message.subject
    for text in (message.subject, message.body, html_body):
        assert raw not in text and raw[-8:] not in text
    assert "Starter" in message.body and "free trial runs until" in message.body
    assert "/portal/keys/" in message.body and "/v1/docs/" in message.body
    assert "/portal/keys/" in html_body


def test_a_free_signup_gets_no_trial_and_a_live_key(client):
    client.post(reverse("signup"), signup_data(plan="free"))

    customer = Customer.objects.get()
    assert customer.status == Customer.Status.ACTIVE and customer.trial_ends_at is None
    assert customer.api_keys.get().prefix == "sk_live_"


def test_the_key_is_not_shown_without_the_cookie_half(client):
    client.post(reverse("signup"), signup_data())
    client.cookies.pop(COOKIE_NAME)

    html = client.get(reverse("signup-welcome")).content.decode()

    assert not KEY_IN_PAGE.search(html)


def test_the_session_never_holds_the_raw_key(client):
    client.post(reverse("signup"), signup_data())
    pad = client.cookies[COOKIE_NAME].value
    stored = str(dict(client.session))

    raw = KEY_IN_PAGE.search(client.get(reverse("signup-welcome")).content.decode()).group()
    assert raw not in stored and raw not in pad


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"email": "not-an-email"}, "email"),
        ({"email": ""}, "email"),
        ({"email": f"{'a' * 140}@example.com"}, "email"),
        ({"password": "password"}, "password"),
        ({"password": "12345678901"}, "password"),
        ({"password": "ada@example.com"}, "password"),
        ({"password": "short"}, "password"),
        ({"company": ""}, "company"),
        ({"company": "   "}, "company"),
        ({"company": "x" * 101}, "company"),
        ({"plan": "platinum"}, "plan"),
        ({"plan": ""}, "plan"),
    ],
)
def test_a_bad_field_is_a_form_error_and_creates_nothing(client, overrides, field):
    before = _counts()

    response = client.post(reverse("signup"), signup_data(**overrides))

    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert _counts() == before
    assert "_auth_user_id" not in client.session


def test_a_plan_that_is_not_public_cannot_be_chosen(client):
    Plan.objects.create(slug="secret", name="Secret", price=1, included_calls=1, rate_per_minute=1, is_public=False)
    before = _counts()

    response = client.post(reverse("signup"), signup_data(plan="secret"))

    assert "That plan is not available" in str(response.context["form"].errors["plan"])
    assert _counts() == before


def test_an_email_already_taken_in_any_case_is_refused(client):
    CustomerFactory(owner=UserFactory(email="Ada@Example.COM", username="ada@example.com"))
    before = _counts()

    response = client.post(reverse("signup"), signup_data(email="ADA@example.com"))

    assert "already exists" in str(response.context["form"].errors["email"])
    assert _counts() == before


def test_signups_are_limited_per_address(client, settings):
    for _ in range(settings.SIGNUPS_PER_HOUR_PER_IP):
        client.post(reverse("signup"), signup_data(email="bad"))
    before = _counts()

    response = client.post(reverse("signup"), signup_data())

    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many sign-ups from your network" in response.content.decode()
    assert _counts() == before


def test_a_forged_forwarded_for_header_does_not_reset_the_limit(client, settings):
    for n in range(settings.SIGNUPS_PER_HOUR_PER_IP):
        client.post(reverse("signup"), signup_data(email="bad"), HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")

    response = client.post(reverse("signup"), signup_data(), HTTP_X_FORWARDED_FOR="198.51.100.7")

    assert response.status_code == 429


def test_the_signup_limit_is_per_address(client, settings):
    for _ in range(settings.SIGNUPS_PER_HOUR_PER_IP):
        client.post(reverse("signup"), signup_data(email="bad"), REMOTE_ADDR="192.0.2.1")

    response = client.post(reverse("signup"), signup_data(), REMOTE_ADDR="192.0.2.2")

    assert response.status_code == 302
    assert Customer.objects.count() == 1


def test_a_limited_client_is_not_told_whether_an_email_is_taken(client, settings):
    CustomerFactory(owner=UserFactory(email="ada@example.com"))
    for _ in range(settings.SIGNUPS_PER_HOUR_PER_IP):
        client.post(reverse("signup"), signup_data(email="bad"))

    response = client.post(reverse("signup"), signup_data())

    assert list(response.context["form"].errors) == ["__all__"]


def test_the_welcome_page_needs_a_login(client):
    response = client.get(reverse("signup-welcome"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
