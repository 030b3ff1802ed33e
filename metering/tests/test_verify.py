"""The verify API (README "Sell your own API"): a service with its own edge asks whether a key may make one call
of its product; Tollbooth meters it like its own calls and bills it now, or when settled."""
from __future__ import annotations

import json
import re
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_redis import get_redis_connection
from rest_framework.test import APIClient

from accounts.models import Customer
from accounts.services import api_key_issue, api_key_revoke
from metering.keyconfig import key_config_forget_local
from metering.batcher import meter_commits_send
from metering.models import UsageRecord
from metering.services import usage_flush, usage_limits_set
from metering.usage_fields import month_counter_key, open_calls_key
from plans.services import product_create, product_secrets_rotate
from tests.factories import CustomerFactory, seeded_plan
from tests.fixtures import SINCE_LAST_YEAR

pytestmark = pytest.mark.django_db

CALL_ID = re.compile(r"^call_[0-9]+_[0-9a-f]{32}$")


@pytest.fixture
def sold(starter_plan, free_plan):
    """An upstream product on sale in Starter and Free: (product, its raw service token)."""
    product, token, _ = product_create(slug="routing", name="Routing", upstream_url="http://127.0.0.1:9/api",
                                       plans=[starter_plan, free_plan])
    return product, token


@pytest.fixture
def token(sold) -> str:
    return sold[1]


@pytest.fixture
def customer(sold, starter_plan):
    # Created after the product went on sale: its terms include it.
    return CustomerFactory(plan=starter_plan, created_at=SINCE_LAST_YEAR)


@pytest.fixture
def free_customer(sold, free_plan):
    return CustomerFactory(plan=free_plan, created_at=SINCE_LAST_YEAR)


def verify(token: str, body, **extra):
    return APIClient().post("/v1/verify", body, format="json", HTTP_AUTHORIZATION=f"Bearer {token}", **extra)


def settle(token: str, call: str, body):
    return APIClient().post(f"/v1/calls/{call}/settle", body, format="json", HTTP_AUTHORIZATION=f"Bearer {token}")


def billed(customer) -> int:
    usage_flush()
    return UsageRecord.objects.filter(customer=customer, product="routing").aggregate(s=Sum("calls"))["s"] or 0


def month_counter(customer) -> int:
    value = get_redis_connection("default").get(month_counter_key(customer_id=customer.pk, day=_today()))
    return int(value or 0)


def usage_calls(raw_key: str) -> int:
    return APIClient().get("/v1/usage", HTTP_X_API_KEY=raw_key).json()["calls"]


def _today():
    return timezone.now().date()


# --- valid keys and billing ---


def test_a_valid_key_is_answered_and_billed_at_once(token, customer, api_key):
    response = verify(token, {"key": api_key.raw})
    assert response.status_code == 200
    assert response.json() == {
        "valid": True, "code": None, "customer": customer.pk, "plan": "Starter", "call": None,
        "ratelimit": {"limit": 100, "remaining": 99, "reset": 60},
        "quota": {"limit": 50_000, "remaining": 49_999},
    }
    assert usage_calls(api_key.raw) == 1
    assert billed(customer) == 1
    assert month_counter(customer) == 1
    # Verify calls count under the product, beside the customer's other calls.
    assert set(UsageRecord.objects.filter(customer=customer).values_list("product", flat=True)) == {"routing"}


def test_settle_later_then_200_bills_the_call(token, customer, api_key):
    response = verify(token, {"key": api_key.raw, "settle": "later"})
    assert response.status_code == 200
    call = response.json()["call"]
    assert CALL_ID.match(call) and call.startswith(f"call_{customer.pk}_")
    assert response.json()["valid"] is True and response.json()["quota"]["remaining"] == 49_999
    assert billed(customer) == 0  # reserved, not billed
    assert usage_calls(api_key.raw) == 1  # shown as in progress
    response = settle(token, call, {"status": 201})
    assert response.status_code == 200
    assert response.json() == {"call": call, "billed": True}
    assert billed(customer) == 1
    assert month_counter(customer) == 1


def test_settle_later_then_500_releases_the_call_but_it_keeps_its_place_in_the_window(token, customer, api_key):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    response = settle(token, call, {"status": 500})
    assert response.status_code == 200
    assert response.json() == {"call": call, "billed": False}
    assert billed(customer) == 0
    assert month_counter(customer) == 0
    assert usage_calls(api_key.raw) == 0
    # Released calls still count in the per-minute window (README "The metered API"), as the API's own 5xx do.
    assert verify(token, {"key": api_key.raw}).json()["ratelimit"]["remaining"] == 100 - 2


def test_a_call_never_settled_is_released_by_the_flush_and_a_late_settle_bills_nothing(
    token, customer, api_key, settings
):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    assert billed(customer) == 0
    assert month_counter(customer) == 1  # younger than any call may run: still held
    settings.METERING_CALL_MAX_SECONDS = 0
    assert billed(customer) == 0  # the flush released it
    assert month_counter(customer) == 0
    assert get_redis_connection("default").zcard(open_calls_key(customer_id=customer.pk, day=_today())) == 0
    response = settle(token, call, {"status": 200})
    assert response.status_code == 410
    assert response.json()["code"] == "call_expired"
    assert settle(token, call, {"status": 200}).status_code == 410  # and stays so
    meter_commits_send()
    assert billed(customer) == 0
    assert month_counter(customer) == 0
    assert usage_calls(api_key.raw) == 0


def test_a_settle_past_the_deadline_before_any_flush_releases_the_call_itself(token, customer, api_key, settings):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    settings.METERING_CALL_MAX_SECONDS = 0
    response = settle(token, call, {"status": 200})
    assert response.status_code == 410 and response.json()["code"] == "call_expired"
    assert month_counter(customer) == 0
    settings.METERING_CALL_MAX_SECONDS = 120
    assert billed(customer) == 0


def test_settling_twice_is_refused_and_bills_once(token, customer, api_key):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    assert settle(token, call, {"status": 200}).status_code == 200
    for status in (200, 500):
        response = settle(token, call, {"status": status})
        assert response.status_code == 409
        assert response.json() == {"error": "This call was settled already", "code": "already_settled"}
    assert billed(customer) == 1
    assert month_counter(customer) == 1


def test_a_released_call_cannot_be_billed_by_a_second_settle(token, customer, api_key):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    assert settle(token, call, {"status": 404}).json()["billed"] is False
    assert settle(token, call, {"status": 200}).status_code == 409
    assert billed(customer) == 0
    assert month_counter(customer) == 0


def test_concurrent_settles_of_one_call_bill_it_once(token, customer, api_key):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    threads, statuses = 12, []
    start = threading.Barrier(threads)

    def one():
        start.wait()
        statuses.append(settle(token, call, {"status": 200}).status_code)

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert sorted(statuses) == [200] + [409] * (threads - 1)
    assert billed(customer) == 1
    assert month_counter(customer) == 1


def test_another_products_call_and_unknown_calls_are_404(token, customer, api_key, starter_plan):
    _, other_token, _ = product_create(slug="maps", name="Maps", upstream_url="http://127.0.0.1:9/maps",
                                       plans=[starter_plan])
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    unknown = {"error": "No such call for this product", "code": "unknown_call"}
    response = settle(other_token, call, {"status": 200})
    assert response.status_code == 404 and response.json() == unknown
    made_up = f"call_{customer.pk}_{'0' * 32}"
    for bad in (made_up, "call_1_xyz", "nothing", f"call_{customer.pk}_{call[-32:].upper()}", "call_0_" + "a" * 32):
        response = settle(token, bad, {"status": 200})
        assert response.status_code == 404 and response.json() == unknown, bad
    assert billed(customer) == 0
    # The other product's attempt did not settle it: its own service still can.
    assert settle(token, call, {"status": 200}).json() == {"call": call, "billed": True}
    assert billed(customer) == 1


# --- the service token ---


def test_a_wrong_or_missing_service_token_is_401(token, api_key):
    invalid = {"error": "Invalid service token", "code": "invalid_service_token"}
    for header in ("Bearer tbs_" + "0" * 48, "Bearer nonsense", f"Bearer {api_key.raw}", "Bearer " + token[:-1]):
        response = APIClient().post("/v1/verify", {"key": api_key.raw}, format="json", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401 and response.json() == invalid, header
        assert response["WWW-Authenticate"] == 'Bearer realm="verify"'
    required = {"error": "Service token required", "code": "invalid_service_token"}
    for header in (f"Basic {token}", "Bearer ", ""):
        response = APIClient().post("/v1/verify", {"key": api_key.raw}, format="json", HTTP_AUTHORIZATION=header)
        assert response.status_code == 401 and response.json() == required, header
        assert response["WWW-Authenticate"] == 'Bearer realm="verify"'
    response = APIClient().post("/v1/verify", {"key": api_key.raw}, format="json", HTTP_X_API_KEY=token)
    assert response.status_code == 401 and response.json()["code"] == "invalid_service_token"
    response = APIClient().post("/v1/calls/call_1_" + "a" * 32 + "/settle", {"status": 200}, format="json")
    assert response.status_code == 401 and response.json()["code"] == "invalid_service_token"
    assert usage_calls(api_key.raw) == 0


def test_a_rotated_token_or_an_inactive_product_stops_at_once(token, sold, api_key):
    product, _ = sold
    assert verify(token, {"key": api_key.raw}).status_code == 200  # cached in this process now
    new_token, _ = product_secrets_rotate(product)
    assert verify(token, {"key": api_key.raw}).status_code == 401
    assert verify(new_token, {"key": api_key.raw}).status_code == 200
    product.active = False
    product.save()
    response = verify(new_token, {"key": api_key.raw})
    assert response.status_code == 401 and response.json()["code"] == "invalid_service_token"
    product.active = True
    product.save()
    assert verify(new_token, {"key": api_key.raw}).status_code == 200


def test_a_flood_of_made_up_service_tokens_is_cut_off_per_address(api_key, settings):
    settings.API_INVALID_KEYS_PER_MINUTE = 3
    codes = [verify(f"tbs_{n:048x}", {"key": api_key.raw}).json()["code"] for n in range(5)]
    assert codes == ["invalid_service_token"] * 3 + ["too_many_invalid_keys"] * 2


# --- refusals: 200, valid false, the code the API would give ---


def refused(token: str, raw: str) -> dict:
    response = verify(token, {"key": raw, "settle": "later"})
    assert response.status_code == 200
    body = response.json()
    assert body["valid"] is False and body["call"] is None
    return body


def test_an_unknown_or_revoked_key_is_invalid(token, customer, api_key, django_capture_on_commit_callbacks):
    nothing = {"limit": None, "remaining": None, "reset": None}
    body = refused(token, "sk_live_" + "0" * 64)
    assert body == {"valid": False, "code": "invalid_api_key", "customer": None, "plan": None, "call": None,
                    "ratelimit": nothing, "quota": {"limit": None, "remaining": None}}
    with django_capture_on_commit_callbacks(execute=True):
        api_key_revoke(key=api_key.key)
    key_config_forget_local()  # as after KEY_CACHE_SECONDS
    assert refused(token, api_key.raw)["code"] == "key_revoked"
    assert refused(token, api_key.raw)["customer"] is None
    assert billed(customer) == 0


def test_a_cancelled_or_unpaid_customer_is_refused(token, customer, api_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        customer.status = Customer.Status.CANCELLED
        customer.save()
    body = refused(token, api_key.raw)
    assert (body["code"], body["customer"], body["plan"]) == ("account_cancelled", customer.pk, "Starter")
    with django_capture_on_commit_callbacks(execute=True):
        customer.status = Customer.Status.PAST_DUE
        customer.past_due_since = timezone.now() - timedelta(days=60)
        customer.save()
    key_config_forget_local()  # as after KEY_CACHE_SECONDS: a refusal is served from the cached config
    assert refused(token, api_key.raw)["code"] == "payment_required"
    assert billed(customer) == 0 and month_counter(customer) == 0


def test_a_customer_whose_plan_lacks_the_product_is_not_entitled(token, starter_plan):
    pro = CustomerFactory(plan=seeded_plan("pro"))
    raw = api_key_issue(customer=pro, name="k").raw
    body = refused(token, raw)
    assert (body["code"], body["customer"], body["plan"]) == ("not_entitled", pro.pk, "Professional")
    assert body["ratelimit"]["remaining"] is None  # refused before it was counted
    assert billed(pro) == 0


def test_the_rate_limit_refuses_past_the_plans_limit(token, free_customer, free_plan):
    raw = api_key_issue(customer=free_customer, name="k").raw
    answers = [verify(token, {"key": raw}).json() for _ in range(free_plan.rate_per_minute)]
    assert all(a["valid"] for a in answers)
    assert [a["ratelimit"]["remaining"] for a in answers] == list(range(free_plan.rate_per_minute - 1, -1, -1))
    body = refused(token, raw)
    assert body["code"] == "rate_limited" and body["customer"] == free_customer.pk
    assert body["ratelimit"]["remaining"] == 0 and 0 < body["ratelimit"]["reset"] <= 60
    assert billed(free_customer) == free_plan.rate_per_minute


def test_a_free_plan_over_its_quota_is_refused(token, free_customer, free_plan):
    UsageRecord.objects.create(customer=free_customer, product="routing", day=_today(),
                               calls=free_plan.included_calls - 1)
    raw = api_key_issue(customer=free_customer, name="k").raw
    assert verify(token, {"key": raw}).json()["quota"] == {"limit": free_plan.included_calls, "remaining": 0}
    body = refused(token, raw)
    assert body["code"] == "quota_exceeded"
    assert body["quota"] == {"limit": free_plan.included_calls, "remaining": 0}
    assert billed(free_customer) == free_plan.included_calls


def test_a_customer_at_its_spend_cap_is_refused(token, customer, api_key, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        usage_limits_set(customer_id=customer.pk, alert_at_calls=[], call_ceiling=1)
    assert verify(token, {"key": api_key.raw}).json()["valid"] is True
    assert refused(token, api_key.raw)["code"] == "spend_cap"
    assert billed(customer) == 1


# --- bad input: 400, never 500 ---


@pytest.mark.parametrize("body, field", [
    ({}, "key"),
    ({"key": None}, "key"),
    ({"key": 42}, "key"),
    ({"key": ["sk_live_x"]}, "key"),
    ({"key": {"a": 1}}, "key"),
    ({"key": ""}, "key"),
    ({"key": "x" * 201}, "key"),
    ({"key": "sk_live_x", "settle": "soon"}, "settle"),
    ({"key": "sk_live_x", "settle": 1}, "settle"),
    ({"key": "sk_live_x", "settle": None}, "settle"),
    ([], "non_field_errors"),
    ("sk_live_x", "non_field_errors"),
    (None, "non_field_errors"),
])
def test_a_malformed_verify_body_is_400_with_the_field_at_fault(token, body, field):
    response = APIClient().post("/v1/verify", json.dumps(body), content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_input"
    assert field in response.json()["fields"]


@pytest.mark.parametrize("raw, status, code", [
    ("{not json", 400, "parse_error"),
    ("[" * 100 + "]" * 100, 400, "parse_error"),
    (b"\xff\xfe{}", 400, "parse_error"),
    ("", 400, "invalid_input"),
    ('{"key": "\\ud800"}', 400, "invalid_input"),  # a lone surrogate
    ('{"key": "sk_live_' + "0" * 64 + '", "key": 1}', 400, "invalid_input"),  # the last duplicate wins
])
def test_unreadable_verify_bodies_are_never_500(token, raw, status, code):
    response = APIClient().post("/v1/verify", raw, content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


def test_a_form_post_is_refused_as_unsupported_not_500(token, api_key):
    response = APIClient().post("/v1/verify", {"key": api_key.raw}, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"


@pytest.mark.parametrize("body", [
    {}, {"status": "200"}, {"status": 200.0}, {"status": True}, {"status": None}, {"status": 99},
    {"status": 600}, {"status": -1}, {"status": 10**30}, [200], 200,
])
def test_a_malformed_settle_body_is_400_and_leaves_the_call_open(token, customer, api_key, body):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    response = APIClient().post(f"/v1/calls/{call}/settle", json.dumps(body), content_type="application/json",
                                HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert settle(token, call, {"status": 200}).json()["billed"] is True


# --- cost: the same single round trip as the API's own calls ---


def test_a_verify_in_steady_state_costs_no_sql_and_one_redis_command(token, api_key, redis_commands):
    verify(token, {"key": api_key.raw})  # warms the token and key caches and loads the script
    meter_commits_send()
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        response = verify(token, {"key": api_key.raw})
    assert response.status_code == 200 and response.json()["valid"] is True
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert redis_commands == ["EVALSHA"]


def test_settle_later_costs_one_more_command_and_settling_one(token, api_key, redis_commands):
    verify(token, {"key": api_key.raw})
    meter_commits_send()
    redis_commands.clear()
    with CaptureQueriesContext(connection) as queries:
        call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
        assert redis_commands == ["EVALSHA", "SET"]
        redis_commands.clear()
        assert settle(token, call, {"status": 200}).status_code == 200
        assert redis_commands == ["EVALSHA"]
    assert len(queries) == 0, [q["sql"] for q in queries]


def test_a_reserved_calls_ticket_has_a_ttl_and_the_customers_hash_tag(token, customer, api_key, settings):
    call = verify(token, {"key": api_key.raw, "settle": "later"}).json()["call"]
    redis = get_redis_connection("default")
    tickets = [key.decode() for key in redis.keys("*:call:*")]
    assert tickets == [f"tb:{{{customer.pk}}}:call:{call.rsplit('_', 1)[1]}"]
    assert settings.METERING_CALL_MAX_SECONDS < redis.ttl(tickets[0]) <= settings.METERING_CALL_MAX_SECONDS + 600


# --- the docs ---


def test_both_operations_are_documented_with_examples():
    schema = json.loads(APIClient().get("/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    verify_op = schema["paths"]["/v1/verify"]["post"]
    settle_op = schema["paths"]["/v1/calls/{call}/settle"]["post"]
    for op, statuses in ((verify_op, ("200", "400", "401", "503")),
                         (settle_op, ("200", "400", "401", "404", "409", "410"))):
        assert op["tags"] == ["Verify"]
        assert op["security"] == [{"ServiceToken": []}]
        assert op["requestBody"]["content"]["application/json"]["examples"]
        for status in statuses:
            assert op["responses"][status]["content"]["application/json"]["examples"], (op["operationId"], status)
    codes = {e["value"].get("code") for e in verify_op["responses"]["200"]["content"]["application/json"]
             ["examples"].values()}
    assert {None, "rate_limited", "invalid_api_key"} <= codes
    description = schema["info"]["description"]
    for code in ("invalid_service_token", "unknown_call", "already_settled", "call_expired"):
        assert f"| `{code}` |" in description, code
