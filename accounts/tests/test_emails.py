from __future__ import annotations

import pytest
from django.core import mail

from accounts.emails import key_rotated_email_send, welcome_email_send
from accounts.services import api_key_rotate
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_the_welcome_email_for_a_free_plan_mentions_no_trial(free_customer):
    welcome_email_send(customer_id=free_customer.pk)

    body = mail.outbox[0].body
    assert "Free plan" in body and "trial" not in body


def test_text_emails_are_not_html_escaped(starter_plan):
    customer = CustomerFactory(plan=starter_plan, company="Smith & Sons <Ltd>")

    welcome_email_send(customer_id=customer.pk)

    message = mail.outbox[0]
    assert "Smith & Sons <Ltd>" in message.subject and "Smith & Sons <Ltd>" in message.body
    assert "Smith &amp; Sons &lt;Ltd&gt;" in message.alternatives[0].content


def test_the_key_rotated_email_names_both_keys_masked_only(api_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        new = api_key_rotate(key=api_key.key, grace_days=3)

    message = mail.outbox[-1]
    html_body = message.alternatives[0].content
    assert message.subject == 'Your API key "test key" was rotated'
    assert new.key.masked in message.body and api_key.key.masked in message.body
    assert "keeps working until" in message.body
    for text in (message.subject, message.body, html_body):
        assert new.raw not in text and api_key.raw not in text


def test_a_rotation_without_grace_says_the_old_key_stopped(api_key):
    new = api_key_rotate(key=api_key.key, grace_days=0)

    key_rotated_email_send(key_id=new.key.pk)

    assert "stopped working at once" in mail.outbox[-1].body
