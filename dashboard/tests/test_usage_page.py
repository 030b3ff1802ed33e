"""The portal's usage page and its CSV export (README "Usage export"): the range picker and its
errors, the per-key chart and table against the records each test writes, the same CSV as the
API, and isolation."""
from __future__ import annotations

import re
from datetime import date, datetime, timezone as dt_timezone

import pytest
import time_machine
from django.test import Client
from rest_framework.test import APIClient

from accounts.services import api_key_issue, api_key_revoke
from dashboard.usage_views import CHART_KEYS
from metering import connection as metering_connection
from tests.factories import CustomerFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=dt_timezone.utc)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def account(customer):
    prod = api_key_issue(customer=customer, name="Production")
    staging = api_key_issue(customer=customer, name="Staging")
    api_key_revoke(key=staging.key)
    for key, product, day, calls in [
        (prod.key, "geocode", date(2026, 11, 1), 1840), (prod.key, "text", date(2026, 11, 1), 310),
        (staging.key, "geocode", date(2026, 11, 2), 95), (None, "text", date(2026, 11, 3), 12),
        (prod.key, "geocode", date(2026, 10, 15), 400),
    ]:
        UsageRecordFactory(customer=customer, api_key=key, product=product, day=day, calls=calls)
    other = CustomerFactory()
    UsageRecordFactory(customer=other, api_key=api_key_issue(customer=other, name="Intruder").key,
                       product="geocode", day=date(2026, 11, 1), calls=70_000)
    return {"customer": customer, "prod": prod, "staging": staging}


@pytest.fixture
def signed_in(account) -> Client:
    client = Client()
    client.force_login(account["customer"].owner)
    return client


def test_visitors_are_sent_to_log_in():
    response = Client().get("/portal/usage/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert Client().get("/portal/usage/export/").status_code == 302


def test_the_page_defaults_to_this_month_with_a_table_per_key_and_totals(signed_in, account):
    response = signed_in.get("/portal/usage/")
    assert response.status_code == 200
    usage_range, table = response.context["usage_range"], response.context["table"]
    assert (usage_range.first, usage_range.last) == (date(2026, 11, 1), date(2026, 11, 20))
    assert [slug for slug, _ in table.products] == ["geocode", "text"]
    assert [(k.name, k.status, k.by_product, k.calls) for k in table.keys] == [
        ("Production", "active", (1840, 310), 2150), ("Staging", "revoked", (95, 0), 95),
        ("Deleted key", "deleted", (0, 12), 12),
    ]
    assert (table.product_totals, table.calls) == ((1935, 322), 2257)
    html = response.content.decode()
    assert "Intruder" not in html and "70,000" not in html
    assert account["prod"].key.masked in html and account["prod"].raw not in html
    assert 'id="usage-keys-total">2,257<' in html
    assert f'href="/portal/usage/export/?from=2026-11-01&amp;to=2026-11-20"' in html


def test_the_chart_has_a_line_per_key_over_every_day_of_the_range(signed_in, account):
    chart = signed_in.get("/portal/usage/", {"from": "2026-11-01", "to": "2026-11-05"}).context["chart"]
    assert chart.kind == "line"
    assert chart.labels == ("01 Nov", "02 Nov", "03 Nov", "04 Nov", "05 Nov")
    masked = account["prod"].key.masked
    assert [(s.name, s.values) for s in chart.series] == [
        (f"Production ({masked})", (2150, 0, 0, 0, 0)),
        (f"Staging ({account['staging'].key.masked})", (0, 95, 0, 0, 0)),
        ("Deleted key", (0, 0, 12, 0, 0)),
    ]


def test_keys_beyond_the_busiest_four_share_one_line(customer):
    for i in range(CHART_KEYS + 2):
        key = api_key_issue(customer=customer, name=f"k{i}").key
        UsageRecordFactory(customer=customer, api_key=key, product="geocode", day=date(2026, 11, 2), calls=10 + i)
    client = Client()
    client.force_login(customer.owner)
    chart = client.get("/portal/usage/").context["chart"]
    assert [s.name.split(" ")[0] for s in chart.series] == ["k5", "k4", "k3", "k2", "Other"]
    assert chart.series[-1].values[1] == 10 + 11
    assert [s.css for s in chart.series] == [f"series-{i}" for i in range(1, 6)]


def test_presets_link_the_usual_ranges_and_mark_the_one_shown(signed_in):
    html = signed_in.get("/portal/usage/", {"from": "2026-10-01", "to": "2026-10-31"}).content.decode()
    presets = dict(re.findall(r'href="/portal/usage/\?([^"]+)"[^>]*>([^<]+)</a>', html))
    assert presets == {
        "from=2026-11-01&amp;to=2026-11-20": "This month", "from=2026-10-01&amp;to=2026-10-31": "Last month",
        "from=2026-11-14&amp;to=2026-11-20": "Last 7 days", "from=2026-10-22&amp;to=2026-11-20": "Last 30 days",
    }
    assert re.search(r'href="/portal/usage/\?from=2026-10-01&amp;to=2026-10-31" aria-current="true">Last month<', html)


@pytest.mark.parametrize(("params", "field", "message"), [
    ({"from": "2026-11-10", "to": "2026-11-01"}, "from",
     "The start date must be on or before the end date (2026-11-01)."),
    ({"from": "2025-01-01", "to": "2026-06-30"}, "to", "At most 366 days at once: end on 2026-01-01 or earlier."),
    ({"from": "not a date"}, "from", "Enter a date as YYYY-MM-DD, e.g. 2026-11-30."),
])
def test_a_bad_range_is_a_400_with_the_form_error(signed_in, params, field, message):
    for path in ("/portal/usage/", "/portal/usage/export/"):
        response = signed_in.get(path, params)
        assert response.status_code == 400, path
        assert response["Content-Type"].startswith("text/html")
        assert response.context["form"].errors == {field: [message]}
        html = response.content.decode()
        assert f'id="id_{field}_error"><li>{message}</li>' in html
        assert 'aria-invalid="true"' in html and "Export CSV" not in html


def test_the_export_button_downloads_the_same_csv_as_the_api(signed_in, account):
    page = signed_in.get("/portal/usage/export/", {"from": "2026-10-01", "to": "2026-11-20"})
    api = APIClient().get("/v1/usage/export", {"from": "2026-10-01", "to": "2026-11-20"},
                          HTTP_AUTHORIZATION=f"Bearer {account['prod'].raw}")
    assert (page.status_code, api.status_code) == (200, 200)
    assert page["Content-Disposition"] == 'attachment; filename="usage-2026-10-01-to-2026-11-20.csv"'
    text = b"".join(page.streaming_content).decode()
    assert text == b"".join(api.streaming_content).decode()
    assert text.splitlines()[0] == "day,product,key_id,key_name,key,key_status,calls"
    assert len(text.splitlines()) == 1 + 5 and "Intruder" not in text


def test_the_test_mode_export_is_503_with_a_message_while_unreadable(signed_in):
    metering_connection.redis_mark_down()
    response = signed_in.get("/portal/usage/export/", {"mode": "test"})
    assert response.status_code == 503
    assert "Test-mode figures are briefly unavailable" in response.content.decode()


def test_an_empty_range_says_so(signed_in):
    response = signed_in.get("/portal/usage/", {"from": "2026-09-01", "to": "2026-09-30"})
    assert response.status_code == 200
    assert response.context["table"].calls == 0
    assert 'id="usage-empty"' in response.content.decode()
