"""Names with line breaks or control characters never break an email (BadHeaderError)."""
from __future__ import annotations

import pytest
from django.core import mail

from accounts.models import ApiKey
from accounts.services import api_key_issue, api_key_rotate, customer_signup
from accounts.tasks import key_rotated_email_send, welcome_email_send
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

HOSTILE = "Acme\r\nBcc: victim@example.net\x00\x0b\u2028Ltd"
STORABLE = HOSTILE.replace("\x00", "")  # Postgres text refuses NUL; the form refuses it first


def test_a_company_stored_with_a_line_break_still_gets_its_welcome_email(starter_plan):
    customer = CustomerFactory(plan=starter_plan, company=STORABLE)  # as staff could type it in the admin

    welcome_email_send.delay(customer_id=customer.pk)

    message = mail.outbox[0]
    assert message.subject == "Welcome to Tollbooth, Acme Bcc: victim@example.net Ltd"
    assert message.recipients() == [customer.email]
    assert "\n" not in message.message()["Subject"]


def test_signup_stores_the_company_on_one_line(starter_plan, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        signup = customer_signup(email="ada@example.com", company=HOSTILE, password="x", plan=starter_plan)

    assert signup.customer.company == "Acme Bcc: victim@example.net Ltd"
    assert len(mail.outbox) == 1 and mail.outbox[0].recipients() == ["ada@example.com"]


def test_a_company_of_only_control_characters_is_refused(starter_plan):
    with pytest.raises(Exception, match="Tell us the name of your company"):
        customer_signup(email="bo@example.com", company="\r\n\x07", password="x", plan=starter_plan)


def test_a_key_name_with_a_line_break_is_stored_on_one_line(customer):
    issued = api_key_issue(customer=customer, name="prod\r\nkey")

    assert issued.key.name == "prod key"


def test_rotating_a_key_whose_stored_name_has_a_line_break_sends_its_email(customer):
    issued = api_key_issue(customer=customer, name="prod")
    ApiKey.objects.filter(pk=issued.key.pk).update(name="prod\r\nSubject: hi")
    new = api_key_rotate(key=ApiKey.objects.get(pk=issued.key.pk), grace_days=1)

    key_rotated_email_send.delay(key_id=new.key.pk)

    assert new.key.name == "prod Subject: hi"
    assert mail.outbox[-1].subject == 'Your API key "prod Subject: hi" was rotated'
