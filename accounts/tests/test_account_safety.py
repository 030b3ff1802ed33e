"""Account safety (README "Customer portal"): an email change waits for the new address to
confirm, the old one is told at both ends, and password changes send a notice."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from accounts.email_change import email_change_token
from tests.factories import CustomerFactory, UserFactory
from tests.page_factories import STRONG_PASSWORD

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
OLD, NEW = "ada@example.com", "Ada.New@Example.com"


@pytest.fixture
def owner():
    return CustomerFactory(company="Analytical Engines", owner=UserFactory(email=OLD)).owner


@pytest.fixture
def signed_in(client, owner):
    client.force_login(owner)
    return client


def request_change(client, capture, email=NEW, password=PASSWORD):
    with capture(execute=True):
        return client.post(reverse("portal-account-email"), {"email-email": email, "email-password": password})


def sent_to(address: str) -> list:
    return [message for message in mail.outbox if message.to == [address]]


def confirm_link(message, settings) -> str:
    return re.search(rf"{re.escape(settings.SITE_URL.rstrip('/'))}(/email/confirm/[^/\s]+/)", message.body).group(1)


def test_a_request_changes_nothing_and_mails_the_link_to_the_new_address_and_a_notice_to_the_old(
        signed_in, owner, django_capture_on_commit_callbacks, settings):
    response = request_change(signed_in, django_capture_on_commit_callbacks)

    assert (response.status_code, response["Location"]) == (302, reverse("portal-account"))
    owner.refresh_from_db()
    assert (owner.email, owner.username) == (OLD, OLD)
    [confirm] = sent_to("Ada.New@example.com")
    [notice] = sent_to(OLD)
    assert confirm.subject == "Confirm your new Tollbooth email"
    assert confirm_link(confirm, settings) in confirm.alternatives[0].content
    assert notice.subject == "A change of your Tollbooth email was requested"
    assert "Ada.New@example.com" in notice.body and "/email/confirm/" not in notice.body
    assert len(mail.outbox) == 2


def test_following_the_link_changes_the_email_once_and_tells_the_old_address(
        signed_in, client, owner, django_capture_on_commit_callbacks, settings):
    request_change(signed_in, django_capture_on_commit_callbacks)
    link = confirm_link(sent_to("Ada.New@example.com")[0], settings)
    mail.outbox.clear()

    page = client.get(link)
    assert page.status_code == 200 and 'id="email-change-new">Ada.New@example.com<' in page.content.decode()
    owner.refresh_from_db()
    assert owner.email == OLD  # a GET (a mail scanner fetching the link) changes nothing
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(link)

    assert (done.status_code, done["Location"]) == (302, reverse("portal-account"))
    owner.refresh_from_db()
    assert (owner.email, owner.username) == ("Ada.New@example.com", "ada.new@example.com")
    [changed] = mail.outbox
    assert changed.to == [OLD] and changed.subject == "Your Tollbooth email was changed"
    assert "Ada.New@example.com" in changed.body
    client.logout()
    assert client.login(username="ada.new@example.com", password=PASSWORD)

    replay = client.post(link)
    assert replay.status_code == 400 and 'data-code="used"' in replay.content.decode()


def test_the_link_works_without_being_signed_in_and_then_leads_to_the_login(client, owner):
    token = email_change_token(user=owner, email="elsewhere@example.com")

    response = client.post(reverse("email-change-confirm", args=[token]))

    assert (response.status_code, response["Location"]) == (302, reverse("login"))
    owner.refresh_from_db()
    assert owner.email == "elsewhere@example.com"


def test_a_link_older_than_a_day_is_refused(client, owner):
    token = email_change_token(user=owner, email="late@example.com")

    with time_machine.travel(timezone.now() + timedelta(hours=24, minutes=1)):
        page = client.get(reverse("email-change-confirm", args=[token]))
        post = client.post(reverse("email-change-confirm", args=[token]))

    assert page.status_code == post.status_code == 400
    assert 'data-code="expired"' in post.content.decode() and "expired" in post.content.decode()
    owner.refresh_from_db()
    assert owner.email == OLD


def test_a_link_within_the_day_still_works(client, owner):
    token = email_change_token(user=owner, email="prompt@example.com")

    with time_machine.travel(timezone.now() + timedelta(hours=23, minutes=59)):
        response = client.post(reverse("email-change-confirm", args=[token]))

    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.email == "prompt@example.com"


def test_a_tampered_link_is_refused(client, owner):
    token = email_change_token(user=owner, email="mine@example.com")
    forged = token[:-1] + ("A" if token[-1] != "A" else "B")

    response = client.post(reverse("email-change-confirm", args=[forged]))

    assert response.status_code == 400 and 'data-code="invalid"' in response.content.decode()
    owner.refresh_from_db()
    assert owner.email == OLD


def test_a_second_link_is_dead_once_the_first_one_changed_the_email(client, owner):
    first = email_change_token(user=owner, email="first@example.com")
    second = email_change_token(user=owner, email="second@example.com")
    assert client.post(reverse("email-change-confirm", args=[first])).status_code == 302

    response = client.post(reverse("email-change-confirm", args=[second]))

    assert response.status_code == 400 and 'data-code="used"' in response.content.decode()
    owner.refresh_from_db()
    assert owner.email == "first@example.com"


def test_an_address_taken_at_request_time_is_a_form_error_and_sends_nothing(
        signed_in, django_capture_on_commit_callbacks):
    UserFactory(email="taken@example.com")

    response = request_change(signed_in, django_capture_on_commit_callbacks, email="TAKEN@example.com")

    assert response.status_code == 400
    assert [e.code for e in response.context["email_form"].errors.as_data()["email"]] == ["taken"]
    assert mail.outbox == []


def test_an_address_taken_before_the_link_is_followed_is_refused(client, owner):
    token = email_change_token(user=owner, email="contested@example.com")
    UserFactory(email="contested@example.com")

    response = client.post(reverse("email-change-confirm", args=[token]))

    assert response.status_code == 400 and 'data-code="taken"' in response.content.decode()
    owner.refresh_from_db()
    assert owner.email == OLD


def test_changing_the_password_sends_a_notice_to_the_account_address(
        signed_in, owner, django_capture_on_commit_callbacks):
    new = "a brand new passphrase 42"

    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("portal-account-password"), {
            "password-old_password": PASSWORD, "password-new_password1": new, "password-new_password2": new,
        })

    assert response.status_code == 302
    [notice] = mail.outbox
    assert notice.to == [OLD] and notice.subject == "Your Tollbooth password was changed"
    assert reverse("password_reset") in notice.body and new not in notice.body


def test_a_wrong_current_password_sends_no_notice(signed_in, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("portal-account-password"), {
            "password-old_password": "wrong", "password-new_password1": "x1y2z3w4v5u6",
            "password-new_password2": "x1y2z3w4v5u6",
        })

    assert response.status_code == 400
    assert mail.outbox == []


def test_a_password_reset_through_the_emailed_link_sends_the_notice_too(
        client, owner, settings, django_capture_on_commit_callbacks):
    client.post(reverse("password_reset"), {"email": OLD})
    link = re.search(rf"{re.escape(settings.SITE_URL)}(/reset/[^/\s]+/[^/\s]+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(form_page.redirect_chain[-1][0],
                           {"new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD})

    assert done["Location"] == reverse("password_reset_complete")
    [notice] = mail.outbox
    assert notice.to == [OLD] and notice.subject == "Your Tollbooth password was changed"
