from __future__ import annotations

import re

import pytest
from django.core import mail
from django.urls import reverse

from tests.factories import CustomerFactory, UserFactory
from tests.page_factories import STRONG_PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return CustomerFactory(owner=UserFactory(email="lin@example.com")).owner


def test_a_reset_email_leads_to_a_new_password(client, owner, settings):
    response = client.post(reverse("password_reset"), {"email": "LIN@example.com"})

    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["lin@example.com"] and message.subject == "Reset your Tollbooth password"
    link = re.search(rf"{re.escape(settings.SITE_URL)}(/reset/[^/\s]+/[^/\s]+/)", message.body).group(1)
    assert link in message.alternatives[0].content

    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD}
    )
    assert done["Location"] == reverse("password_reset_complete")
    owner.refresh_from_db()
    assert owner.check_password(STRONG_PASSWORD)


def test_an_unknown_email_gets_the_same_answer_and_no_mail(client):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"})

    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []


def test_the_reset_link_ignores_a_forged_host_header(client, owner, settings):
    settings.ALLOWED_HOSTS = ["*"]  # a permissive deployment: the link must still be ours
    client.post(reverse("password_reset"), {"email": "lin@example.com"}, HTTP_HOST="evil.example")

    body = mail.outbox[0].body
    assert "evil.example" not in body and settings.SITE_URL in body


def test_reset_requests_are_limited_per_address_without_sending_mail(client, owner, settings):
    settings.PASSWORD_RESETS_PER_HOUR_PER_IP = 2
    for _ in range(2):
        assert client.post(reverse("password_reset"), {"email": owner.email}).status_code == 302
    response = client.post(reverse("password_reset"), {"email": owner.email})
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    assert "Too many password reset requests" in response.content.decode()
    assert len(mail.outbox) == 2
