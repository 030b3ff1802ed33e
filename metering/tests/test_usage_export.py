"""GET /v1/usage/export (README "Usage export"): calls by day, product and key as CSV, checked
against the UsageRecord rows each test writes; range validation, keys masked and labelled,
spreadsheet formulas defused, isolation, test mode, and the `Tollbooth-Mode` header on the
answers that lacked it (/v1/usage, the verify API)."""
from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone as dt_timezone

import pytest
import time_machine
from django.test import override_settings
from rest_framework.test import APIClient

from accounts.services import api_key_issue, api_key_revoke
from metering import connection as metering_connection
from metering import testmode
from metering.batcher import meter_commits_send
from metering.models import UsageRecord
from metering.services import usage_flush
from metering.usage_export import COLUMNS, UsageRange, csv_safe, usage_rows
from plans.services import product_create
from tests.factories import CustomerFactory, UsageRecordFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=dt_timezone.utc)
EXPORT = "/v1/usage/export"


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def export(raw: str | None, **params):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}"} if raw else {}
    return APIClient().get(EXPORT, params, **headers)


def body(response) -> str:
    return b"".join(response.streaming_content).decode()


def parsed(response) -> list[dict]:
    return list(csv.DictReader(io.StringIO(body(response))))


@pytest.fixture
def account(customer):
    """Three keys (one revoked, one whose name is a formula), a deleted key's calls, rows on both
    sides of the range, and another customer's rows on the same days."""
    prod = api_key_issue(customer=customer, name="Production")
    formula = api_key_issue(customer=customer, name="=HYPERLINK(\"http://x\")")
    old = api_key_issue(customer=customer, name="Old server")
    api_key_revoke(key=old.key)
    rows = [
        (prod.key, "geocode", date(2026, 11, 1), 1840), (prod.key, "text", date(2026, 11, 1), 310),
        (formula.key, "geocode", date(2026, 11, 1), 7), (None, "geocode", date(2026, 11, 1), 12),
        (old.key, "geocode", date(2026, 11, 2), 95), (prod.key, "image", date(2026, 11, 19), 4),
        (prod.key, "geocode", date(2026, 10, 31), 999),  # before the range
        (prod.key, "geocode", date(2026, 11, 21), 555),  # after it (a future day cannot have calls; a row can)
    ]
    for key, product, day, calls in rows:
        UsageRecordFactory(customer=customer, api_key=key, product=product, day=day, calls=calls)
    other = CustomerFactory()
    other_key = api_key_issue(customer=other, name="Production")
    UsageRecordFactory(customer=other, api_key=other_key.key, product="geocode", day=date(2026, 11, 1), calls=70_000)
    return {"prod": prod, "formula": formula, "old": old, "other": other_key}


def test_the_csv_has_one_row_per_day_product_and_key_sorted_and_masked(account):
    prod, formula, old = account["prod"].key, account["formula"].key, account["old"].key
    response = export(account["prod"].raw, **{"from": "2026-11-01", "to": "2026-11-20"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="usage-2026-11-01-to-2026-11-20.csv"'
    assert body(response).splitlines() == [
        "day,product,key_id,key_name,key,key_status,calls",
        f'2026-11-01,geocode,{formula.pk},"\'=HYPERLINK(""http://x"")",{formula.masked},active,7',
        f"2026-11-01,geocode,{prod.pk},Production,{prod.masked},active,1840",
        "2026-11-01,geocode,,Deleted key,,deleted,12",
        f"2026-11-01,text,{prod.pk},Production,{prod.masked},active,310",
        f"2026-11-02,geocode,{old.pk},Old server,{old.masked},revoked,95",
        f"2026-11-19,image,{prod.pk},Production,{prod.masked},active,4",
    ]
    assert "sk_live_" + "0" not in body(response) and account["prod"].raw not in body(response)


def test_the_totals_match_an_independent_count_of_the_records(account, customer):
    rows = parsed(export(account["prod"].raw, **{"from": "2026-11-01", "to": "2026-11-30"}))
    expected: dict[tuple, int] = defaultdict(int)
    for record in UsageRecord.objects.filter(customer=customer, day__range=(date(2026, 11, 1), date(2026, 11, 30))):
        expected[(record.day.isoformat(), record.product, str(record.api_key_id or ""))] += record.calls
    assert {(r["day"], r["product"], r["key_id"]): int(r["calls"]) for r in rows} == dict(expected)
    assert sum(int(r["calls"]) for r in rows) == 1840 + 310 + 7 + 12 + 95 + 4 + 555
    assert list(rows[0]) == list(COLUMNS)


def test_without_dates_it_exports_this_month_so_far(account):
    response = export(account["prod"].raw)
    assert response["Content-Disposition"] == 'attachment; filename="usage-2026-11-01-to-2026-11-20.csv"'
    assert {r["day"] for r in parsed(response)} == {"2026-11-01", "2026-11-02", "2026-11-19"}


def test_to_alone_exports_from_the_first_of_its_month(account):
    rows = parsed(export(account["prod"].raw, to="2026-10-31"))
    assert [(r["day"], r["calls"]) for r in rows] == [("2026-10-31", "999")]


def test_calls_not_flushed_yet_are_in_the_export_and_never_twice(customer):
    key = api_key_issue(customer=customer, name="Live")
    client = APIClient()
    for _ in range(3):
        assert client.get("/v1/geocode?q=Paris", HTTP_X_API_KEY=key.raw).status_code == 200
    meter_commits_send()  # answered calls are billable from here on
    before = [(r["day"], r["product"], r["calls"]) for r in parsed(export(key.raw))]
    assert before == [("2026-11-20", "geocode", "3")]
    usage_flush()
    assert UsageRecord.objects.get(customer=customer).calls == 3
    assert [(r["day"], r["product"], r["calls"]) for r in parsed(export(key.raw))] == before


def test_the_export_is_not_billed_and_carries_no_metering_headers(account, customer):
    before = list(UsageRecord.objects.filter(customer=customer).values_list("calls", flat=True))
    response = export(account["prod"].raw)
    assert response.status_code == 200
    assert "X-RateLimit-Limit" not in response and "X-Quota-Remaining" not in response
    usage_flush()
    assert list(UsageRecord.objects.filter(customer=customer).values_list("calls", flat=True)) == before


@pytest.mark.parametrize(("params", "fields"), [
    ({"from": "2026-13-01"}, {"from": ["Enter a date as YYYY-MM-DD, e.g. 2026-11-30."]}),
    ({"from": "20261101", "to": "2026-11-30"}, {"from": ["Enter a date as YYYY-MM-DD, e.g. 2026-11-30."]}),
    ({"to": "yesterday"}, {"to": ["Enter a date as YYYY-MM-DD, e.g. 2026-11-30."]}),
    ({"from": "2026-11-10", "to": "2026-11-09"},
     {"from": ["The start date must be on or before the end date (2026-11-09)."]}),
    ({"from": "2026-12-01"}, {"from": ["The start date must be on or before the end date (2026-11-20)."]}),
    ({"from": "2025-01-01", "to": "2026-01-02"},
     {"to": ["At most 366 days at once: end on 2026-01-01 or earlier."]}),
    ({"mode": "sandbox"}, {"mode": ["Must be live or test."]}),
    ({"from": "9999-12-31", "to": "0001-01-01"},
     {"from": ["The start date must be on or before the end date (0001-01-01)."]}),
])
def test_a_bad_range_is_a_400_with_the_field_at_fault(api_key, params, fields):
    response = export(api_key.raw, **params)
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid input", "code": "invalid_input", "fields": fields}
    assert response["Content-Type"] == "application/json"


def test_a_range_of_exactly_366_days_is_accepted(api_key):
    response = export(api_key.raw, **{"from": "2025-01-01", "to": "2026-01-01"})
    assert response.status_code == 200
    assert body(response) == ",".join(COLUMNS) + "\r\n"


def test_the_csv_comes_whatever_accept_says_and_errors_stay_json(api_key):
    ok = APIClient().get(EXPORT, HTTP_AUTHORIZATION=f"Bearer {api_key.raw}", HTTP_ACCEPT="text/csv")
    assert ok.status_code == 200 and ok["Content-Type"] == "text/csv; charset=utf-8"
    bad = APIClient().get(EXPORT, {"from": "x"}, HTTP_AUTHORIZATION=f"Bearer {api_key.raw}", HTTP_ACCEPT="text/csv")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"


def test_without_a_key_it_is_401_api_key_required():
    response = export(None)
    assert response.status_code == 401
    assert response.json() == {"error": "API key required", "code": "api_key_required"}


def test_a_revoked_key_answers_key_revoked(account):
    api_key_revoke(key=account["prod"].key)
    response = export(account["prod"].raw)
    assert response.status_code == 401
    assert response.json() == {"error": "This API key was revoked", "code": "key_revoked"}


def test_another_customers_key_sees_only_its_own_customers_calls(account):
    rows = parsed(export(account["other"].raw, **{"from": "2026-11-01", "to": "2026-11-30"}))
    assert [(r["day"], r["key_id"], r["calls"]) for r in rows] == [
        ("2026-11-01", str(account["other"].key.pk), "70000"),
    ]


def test_a_cancelled_account_is_refused(customer, api_key):
    customer.status = "cancelled"
    customer.save()
    response = export(api_key.raw)
    assert response.status_code == 403
    assert response.json() == {"error": "Account cancelled", "code": "account_cancelled"}


@override_settings(USAGE_API_PER_MINUTE=2)
def test_it_shares_the_usage_apis_own_limit(api_key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {api_key.raw}")
    assert client.get("/v1/usage").status_code == 200
    assert client.get(EXPORT).status_code == 200
    refused = client.get(EXPORT)
    assert refused.status_code == 429
    assert refused.json() == {"error": "Rate limit exceeded", "code": "rate_limited"}
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_formula_cells_start_with_a_quote_and_others_are_untouched():
    assert [csv_safe(v) for v in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx", "Prod", "", 12, "sk_live_…ab")] == [
        "'=1+1", "'+1", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "Prod", "", 12, "sk_live_…ab",
    ]


def test_a_large_range_is_read_a_day_at_a_time_in_order(customer):
    key = api_key_issue(customer=customer, name="bulk")
    first = date(2025, 11, 21)
    UsageRecord.objects.bulk_create(
        UsageRecord(customer=customer, api_key=key.key, product=product, day=first + timedelta(days=i), calls=i + 1)
        for i in range(365) for product in ("geocode", "text")
    )
    rows = list(usage_rows(customer_id=customer.pk, usage_range=UsageRange(first, date(2026, 11, 20)), now=NOW))
    assert len(rows) == 730
    assert [(r.day, r.product) for r in rows] == sorted((r.day, r.product) for r in rows)
    assert sum(r.calls for r in rows) == 2 * sum(range(1, 366))


# --- test mode ---


def test_test_calls_are_left_out_by_default_and_exported_per_day_with_mode_test(customer, api_key):
    test_key = api_key_issue(customer=customer, name="CI", test=True)
    client = APIClient()
    for path in ("/v1/geocode?q=Lyon", "/v1/geocode?q=Nice", "/v1/text/analyze"):
        client.get(path, HTTP_X_API_KEY=test_key.raw)  # the text GET is a 405: accepted, so counted
    meter_commits_send()
    live = export(test_key.raw)
    assert live.status_code == 200 and live["Tollbooth-Mode"] == "test"
    assert parsed(live) == []
    test = export(api_key.raw, mode="test")
    assert test["Tollbooth-Mode"] == "live"
    assert test["Content-Disposition"] == 'attachment; filename="usage-test-2026-11-01-to-2026-11-20.csv"'
    rows = parsed(test)
    assert [(r["day"], r["product"], r["key_id"], r["key_name"], r["key_status"], r["calls"]) for r in rows] == [
        ("2026-11-20", "geocode", "", "All test keys", "test", "2"),
        ("2026-11-20", "text", "", "All test keys", "test", "1"),
    ]


def test_test_counts_older_than_what_is_kept_export_nothing(customer, api_key):
    metering_connection.redis_client().hset(
        testmode.usage_key(customer_id=customer.pk, day=date(2026, 10, 3)), "03|geocode", 5)
    rows = parsed(export(api_key.raw, mode="test", **{"from": "2026-09-01", "to": "2026-11-20"}))
    assert [(r["day"], r["calls"]) for r in rows] == [("2026-10-03", "5")]


def test_test_export_is_503_while_its_counts_cannot_be_read(api_key):
    metering_connection.redis_mark_down()
    response = export(api_key.raw, mode="test")
    assert response.status_code == 503 and response.json()["code"] == "metering_unavailable"


def test_the_live_export_still_answers_from_the_records_while_redis_is_down(account):
    metering_connection.redis_mark_down()
    response = export(account["prod"].raw, **{"from": "2026-11-19", "to": "2026-11-19"})
    assert response.status_code == 200
    assert [(r["product"], r["calls"]) for r in parsed(response)] == [("image", "4")]


# --- Tollbooth-Mode on every answer to a known key ---


def test_usage_answers_carry_the_key_mode(customer, api_key):
    test_key = api_key_issue(customer=customer, name="CI", test=True)
    live = APIClient().get("/v1/usage", HTTP_X_API_KEY=api_key.raw)
    test = APIClient().get("/v1/usage", HTTP_X_API_KEY=test_key.raw)
    assert (live.status_code, test.status_code) == (200, 200)
    assert (live["Tollbooth-Mode"], test["Tollbooth-Mode"]) == ("live", "test")
    assert "Tollbooth-Mode" not in APIClient().get("/v1/usage")  # no key: no mode to tell


def test_verify_answers_carry_the_verified_keys_mode(starter_plan, customer, api_key):
    _, token, _ = product_create(slug="routing", name="Routing", upstream_url="http://127.0.0.1:9/api",
                                 plans=[starter_plan])
    customer.refresh_from_db()
    live_key = api_key_issue(customer=CustomerFactory(plan=starter_plan), name="live")
    test_key = api_key_issue(customer=live_key.key.customer, name="test", test=True)

    def verify(raw):
        return APIClient().post("/v1/verify", {"key": raw}, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")

    live, test = verify(live_key.raw), verify(test_key.raw)
    assert (live.json()["valid"], test.json()["valid"]) == (True, True)
    assert (live["Tollbooth-Mode"], test["Tollbooth-Mode"]) == ("live", "test")
    metering_connection.redis_client().set(
        testmode.day_counter_key(customer_id=test_key.key.customer_id, day=NOW.date()), testmode.PER_DAY)
    refused = verify(test_key.raw)
    assert refused.json()["code"] == "test_day_limit" and refused["Tollbooth-Mode"] == "test"
    unknown = verify("sk_live_" + "0" * 64)
    assert unknown.json()["code"] == "invalid_api_key" and "Tollbooth-Mode" not in unknown
