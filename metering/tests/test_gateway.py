"""The gateway (README "Sell your own API") in front of a real upstream process on loopback (tests/upstream_server.py):
billing by the upstream's answer, header hygiene both ways, the signature, path escapes, refusals.

Through Django's test client, in-process; streaming, concurrency and exact limits under load
go through a real gunicorn in test_gateway_load.py.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

import pytest
from django.db.models import Sum
from django.test import Client

from accounts.services import api_key_issue
from metering.models import UsageRecord
from metering.services import usage_flush
from metering.upstream import (
    BadPath, Base, base_parse, client_headers, header_text, path_check, query_forwarded, response_headers, signature,
    target_build,
)
from plans.models import Product
from plans.selectors import products_forget
from plans.services import product_create
from tests.factories import CustomerFactory, seeded_plan
from tests.fixtures import SINCE_LAST_YEAR
from tests.servers import Upstream, free_port

SECRET = "whsec_" + "ab" * 32
SLUG = "routes"

# --- pure: the request target ---

ESCAPES = [
    "/..", "/../secret", "/a/../../secret", "/./a", "/a/.", "/..;/secret", "/a/..;x/b", "/ ../x",
    "//evil.example/x", "/a//b", "/http://evil.example/", "/a\\..\\b", "/\\evil.example", "/a\x00b", "/a\nb",
    "/%2e%2e/secret", "/%2E%2E%2Fsecret", "/a%2fb", "/%5c", "/%00", "/%c0%ae%c0%ae/", "..", "evil",
]


@pytest.mark.parametrize("rest", ESCAPES)
def test_a_path_that_could_leave_the_base_is_refused(rest):
    with pytest.raises(BadPath):
        path_check(rest)


@pytest.mark.parametrize(("rest", "sent"), [
    ("", "/api"), ("/", "/api/"), ("/echo", "/api/echo"), ("/echo/", "/api/echo/"),
    ("/a/b.json", "/api/a/b.json"), ("/..a/b..", "/api/..a/b.."), ("/@evil.example/x", "/api/@evil.example/x"),
    ("/user:pass@evil.example", "/api/user:pass@evil.example"), ("/café", "/api/caf%C3%A9"),
    ("/a b/%", "/api/a%20b/%25"), ("/q?x", "/api/q%3Fx"), ("/frag#x", "/api/frag%23x"),
])
def test_a_path_is_kept_inside_the_base_and_encoded_for_the_request_line(rest, sent):
    assert target_build(base_parse("http://10.0.0.5:8080/api"), rest, "") == sent


@pytest.mark.parametrize(("base", "rest", "target"), [
    ("http://h", "", "/"), ("http://h", "/x", "/x"), ("http://h/", "/x", "/x"), ("http://h/api/", "/x", "/api/x"),
    ("http://h/api/", "", "/api/"), ("http://h/api?v=2", "/x", "/api/x?v=2"),
])
def test_the_base_path_and_query_come_first(base, rest, target):
    assert target_build(base_parse(base), rest, "") == target


def test_the_host_comes_from_the_base_url_only():
    base = base_parse("https://user:p%40ss@api.internal:8443/v2")
    assert (base.scheme, base.host, base.port, base.path) == ("https", "api.internal", 8443, "/v2")
    assert base.authorization == "Basic dXNlcjpwQHNz"  # user:p@ss


@pytest.mark.parametrize(("query", "sent"), [
    ("x=1&api_key=sk_live_abc&y=2", "x=1&y=2"), ("API_KEY=sk&x=1", "x=1"), ("api%5Fkey=sk", ""),
    ("api_key", ""), ("api_keys=1", "api_keys=1"), ("q=a%20b&r=%2F", "q=a%20b&r=%2F"),
    ("q=a b", "q=a%20b"), ("q=caf\xc3\xa9", "q=caf%C3%A9"), ("x=1#frag", "x=1%23frag"),
])
def test_the_query_is_kept_as_sent_less_the_api_key(query, sent):
    assert query_forwarded(query) == sent


def test_the_signature_is_an_hmac_of_time_call_method_and_target():
    value = signature(secret="s3cret", timestamp=1700000000, call="call_1", method="GET", target="/api/x?y=1")
    expected = hmac.new(b"s3cret", b"1700000000.call_1.GET./api/x?y=1", hashlib.sha256).hexdigest()
    assert value == f"t=1700000000,v1={expected}"


def test_credentials_hops_and_tollbooth_headers_never_travel_upstream():
    kept = client_headers({
        "HTTP_AUTHORIZATION": "Bearer sk_live_x", "HTTP_X_API_KEY": "sk_live_x", "HTTP_COOKIE": "sessionid=1",
        "HTTP_TOLLBOOTH_CUSTOMER": "999", "HTTP_TOLLBOOTH_SIGNATURE": "t=1,v1=0", "HTTP_CONNECTION": "close, X-Hop",
        "HTTP_X_HOP": "1", "HTTP_KEEP_ALIVE": "1", "HTTP_TE": "trailers", "HTTP_UPGRADE": "h2c",
        "HTTP_TRANSFER_ENCODING": "chunked", "HTTP_PROXY_AUTHORIZATION": "Basic x", "HTTP_HOST": "tollbooth",
        "HTTP_X_FORWARDED_FOR": "6.6.6.6", "HTTP_FORWARDED": "for=6.6.6.6", "HTTP_EXPECT": "100-continue",
        "CONTENT_LENGTH": "3", "CONTENT_TYPE": "application/json", "HTTP_ACCEPT": "image/png", "HTTP_X_TRACE": "t1",
        "REMOTE_ADDR": "127.0.0.1",
    })
    assert kept == {"Content-Type": "application/json", "Accept": "image/png", "X-Trace": "t1"}


def test_the_answer_loses_its_hops_cookies_and_metering_look_alikes():
    kept = response_headers({
        "Content-Type": "text/plain", "Content-Length": "3", "Set-Cookie": "sessionid=evil", "Connection": "X-Hop",
        "X-Hop": "1", "Keep-Alive": "timeout=5", "Transfer-Encoding": "chunked", "X-RateLimit-Limit": "999",
        "X-Quota-Remaining": "999", "Tollbooth-Call": "forged", "Retry-After": "30", "Location": "/elsewhere",
        "X-Folded": "a\r\n b",
    })
    assert kept == {"Content-Type": "text/plain", "Content-Length": "3", "Retry-After": "30",
                    "Location": "/elsewhere", "X-Folded": "a b"}


def test_header_values_the_upstream_gets_are_printable_ascii():
    assert header_text("Starter") == "Starter"
    assert header_text("Pro – Zürich") == "Pro %E2%80%93 Z%C3%BCrich"


def test_a_base_url_that_is_not_http_is_refused():
    with pytest.raises(ValueError, match="not an http"):
        base_parse("file:///etc/passwd")
    assert isinstance(base_parse("http://h:1"), Base)


# --- through the test client, against a real upstream ---


@pytest.fixture(scope="module")
def upstream():
    with Upstream(secret=SECRET) as server:
        yield server


def stats(upstream, clear: bool = False) -> dict:
    request = urllib.request.Request(f"{upstream.url}/_stats", method="DELETE" if clear else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def product(db, upstream, starter_plan):
    stats(upstream, clear=True)
    return sell(upstream.base, starter_plan)


def sell(base_url: str, plan, *, slug: str = SLUG, **options) -> Product:
    options = {"methods": "GET,POST,PUT,DELETE,HEAD", "timeout_seconds": 2, "body_limit_bytes": 1_000_000, **options}
    product, _, _ = product_create(slug=slug, name="Routing", upstream_url=base_url, plans=[plan], **options)
    product.signing_secret = SECRET  # the secret the upstream process was started with
    product.save()
    return product


@pytest.fixture
def buyer(product, starter_plan):
    # Created after the product joined Starter: its terms snapshot includes it.
    return CustomerFactory(plan=starter_plan, created_at=SINCE_LAST_YEAR)


@pytest.fixture
def raw(buyer) -> str:
    return api_key_issue(customer=buyer, name="k").raw


@pytest.fixture
def client(raw) -> Client:
    return Client(headers={"X-API-Key": raw})


def body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def echoed(response) -> dict:
    assert response.status_code == 200, body(response)
    return json.loads(body(response))


def billed(customer) -> int:
    usage_flush()
    return UsageRecord.objects.filter(customer=customer, product=SLUG).aggregate(s=Sum("calls"))["s"] or 0


def test_a_call_is_forwarded_with_its_path_query_and_body_and_billed(client, buyer):
    response = client.post(f"/v1/{SLUG}/echo/a/b.json?x=1&api_key=sk_live_leak&y=%2F", data=b'{"n": 1}',
                           content_type="application/json")
    sent = echoed(response)
    assert sent["method"] == "POST"
    assert sent["target"] == "/api/echo/a/b.json?x=1&y=%2F"
    assert sent["body_head"] == '{"n": 1}' and sent["body_bytes"] == 8
    assert dict(sent["headers"])["Content-Type"] == "application/json"
    assert response["X-RateLimit-Limit"] == "100" and response["X-RateLimit-Remaining"] == "99"
    assert response["X-Quota-Limit"] == "50000" and response["X-Quota-Remaining"] == "49999"
    assert response["Tollbooth-Call"].startswith("call_")
    assert billed(buyer) == 1


def test_the_upstream_sees_who_calls_and_no_credential(client, buyer, raw):
    response = client.get(
        f"/v1/{SLUG}/echo?api_key={raw}", headers={
            "Authorization": f"Bearer {raw}", "Cookie": "sessionid=abc; csrftoken=x", "Tollbooth-Customer": "1",
            "Tollbooth-Plan": "Enterprise", "Tollbooth-Call": "call_forged", "Tollbooth-Signature": "t=1,v1=00",
            "Connection": "X-Private", "X-Private": "hop", "X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6",
            "User-Agent": "client/1.0",
        })
    sent = echoed(response)
    headers = dict(sent["headers"])
    names = {name.lower() for name in headers}
    assert raw not in json.dumps(sent)
    assert not names & {"authorization", "x-api-key", "cookie", "x-private", "forwarded"}
    assert headers["Tollbooth-Customer"] == str(buyer.pk)
    assert headers["Tollbooth-Plan"] == "Starter"
    assert headers["Tollbooth-Call"] == response["Tollbooth-Call"] != "call_forged"
    assert headers["X-Forwarded-For"] == "127.0.0.1"
    assert headers["X-Forwarded-Proto"] == "http" and headers["X-Forwarded-Host"] == "testserver"
    assert headers["User-Agent"] == "client/1.0"
    assert sent["signature_valid"] is True
    assert sent["target"] == "/api/echo"


def test_the_upstream_verifies_the_signature_and_refuses_a_forged_one(client, buyer, product, upstream):
    assert echoed(client.get(f"/v1/{SLUG}/verify?x=1")) == {"valid": True}
    forged = urllib.request.Request(f"{upstream.base}/verify?x=1", headers={
        "Tollbooth-Call": "call_1", "Tollbooth-Signature": f"t={int(time.time())},v1={'0' * 64}"})
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(forged, timeout=10)
    Product.objects.filter(pk=product.pk).update(signing_secret="whsec_rotated")
    products_forget()
    # Signed with a secret the upstream does not know: its 401 passes back, unbilled.
    response = client.get(f"/v1/{SLUG}/verify")
    assert response.status_code == 401 and json.loads(body(response)) == {"valid": False}
    assert billed(buyer) == 1


def test_the_answer_comes_back_without_hops_cookies_or_upstream_metering_headers(client):
    response = client.get(f"/v1/{SLUG}/headers")
    assert response.status_code == 200 and body(response) == b'{"ok": true}'
    for dropped in ("Set-Cookie", "X-Private-Hop", "Keep-Alive", "Proxy-Authenticate", "Upgrade"):
        assert dropped not in response, dropped
    assert not response.cookies
    assert response["X-Upstream"] == "kept"
    assert response["X-RateLimit-Limit"] == "100"  # ours, not the upstream's 999999
    assert response["Content-Type"] == "application/json"


BILLED_BY_STATUS = [
    (200, True), (201, True), (202, True), (204, True), (206, True),
    (301, False), (302, False), (304, False), (307, False),
    (400, False), (401, False), (403, False), (404, False), (409, False), (422, False), (429, False),
    (500, False), (502, False), (503, False), (504, False),
]


def test_only_the_upstreams_2xx_is_billed_and_every_status_passes_back(client, buyer):
    for code, _ in BILLED_BY_STATUS:
        response = client.get(f"/v1/{SLUG}/status/{code}?location=/elsewhere")
        assert response.status_code == code
        answer = body(response)  # read to the end: the call settles once its answer is out
        assert answer == (b"" if code in (204, 304) else json.dumps({"status": code}).encode())
    assert billed(buyer) == sum(is_billed for _, is_billed in BILLED_BY_STATUS)
    usage = client.get("/v1/usage").json()
    assert usage["calls"] == 5 and usage["by_product"] == {SLUG: 5}


def test_a_redirect_is_passed_back_not_followed(client, upstream):
    response = client.get(f"/v1/{SLUG}/status/302?location={upstream.base}/echo")
    assert response.status_code == 302 and response["Location"] == f"{upstream.base}/echo"
    assert "echo" not in stats(upstream)


def test_a_refused_connection_is_502_and_not_billed(db, starter_plan):
    sell(f"http://127.0.0.1:{free_port()}/api", starter_plan)
    customer = CustomerFactory(plan=starter_plan, created_at=SINCE_LAST_YEAR)
    client = Client(headers={"X-API-Key": api_key_issue(customer=customer, name="k").raw})
    response = client.get(f"/v1/{SLUG}/echo")
    assert response.status_code == 502
    assert response.json() == {"error": "The service behind this API could not be reached; not billed",
                               "code": "upstream_unavailable"}
    assert response["X-RateLimit-Remaining"] == "99"
    assert billed(customer) == 0
    assert client.get("/v1/usage").json()["calls"] == 0


@pytest.mark.parametrize("endpoint", ["drop", "reset"])
def test_a_connection_the_upstream_drops_or_resets_is_502_and_not_billed(client, buyer, upstream, endpoint):
    for method in ("get", "post"):
        response = getattr(client, method)(f"/v1/{SLUG}/{endpoint}")
        assert response.status_code == 502 and response.json()["code"] == "upstream_unavailable"
    # A bodyless GET is tried once more on a fresh connection (a kept-alive one may just have been
    # closed); a POST never is.
    assert stats(upstream)[endpoint] == 3
    assert billed(buyer) == 0


def test_an_upstream_past_the_products_timeout_is_504_and_not_billed(client, buyer, product):
    Product.objects.filter(pk=product.pk).update(timeout_seconds=1)
    products_forget()
    started = time.monotonic()
    response = client.get(f"/v1/{SLUG}/sleep/3000")
    assert response.status_code == 504
    assert response.json() == {"error": "The service behind this API did not answer in time; not billed",
                               "code": "upstream_timeout"}
    assert 0.9 < time.monotonic() - started < 2.5
    assert billed(buyer) == 0
    assert echoed(client.get(f"/v1/{SLUG}/sleep/100"))["slept_ms"] == 100


def test_a_body_announced_over_the_limit_is_413_before_anything_is_sent(client, buyer, upstream):
    response = client.post(f"/v1/{SLUG}/upload", data=b"x" * 1_000_001, content_type="application/octet-stream")
    assert response.status_code == 413
    assert response.json() == {"error": "Request body larger than 1000000 bytes", "code": "body_too_large"}
    assert "X-RateLimit-Limit" not in response  # refused before the meter: it costs no place in the window
    assert "upload" not in stats(upstream)
    assert echoed(client.post(f"/v1/{SLUG}/upload", data=b"x" * 1_000_000,
                              content_type="application/octet-stream"))["body_bytes"] == 1_000_000
    assert billed(buyer) == 1


def test_a_method_the_product_does_not_take_is_405(client, upstream):
    response = client.patch(f"/v1/{SLUG}/echo", data=b"{}", content_type="application/json")
    assert response.status_code == 405
    assert response.json() == {"error": 'Method "PATCH" not allowed.', "code": "method_not_allowed"}
    assert response["Allow"] == "DELETE, GET, HEAD, POST, PUT"
    assert stats(upstream) == {}


def test_head_put_and_delete_are_forwarded(client):
    response = client.head(f"/v1/{SLUG}/stream/1234")
    assert response.status_code == 200 and response["Content-Length"] == "1234" and body(response) == b""
    assert echoed(client.put(f"/v1/{SLUG}/echo", data=b"abc", content_type="text/plain"))["method"] == "PUT"
    assert echoed(client.delete(f"/v1/{SLUG}/echo/7"))["target"] == "/api/echo/7"


@pytest.mark.parametrize("path", ["/v1/nosuch/echo", "/v1/nosuch", "/v1/geocode/x", "/v1/text", "/v1/usage/x"])
def test_a_path_that_is_no_upstream_product_is_a_json_404(client, product, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "Not found", "code": "not_found"}


def test_an_inactive_product_is_a_404(client, product, upstream):
    Product.objects.filter(pk=product.pk).update(active=False)
    products_forget()
    response = client.get(f"/v1/{SLUG}/echo")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert stats(upstream) == {}


def test_the_builtin_routes_and_pages_still_win(client):
    assert client.get("/v1/geocode?q=Paris").status_code == 200
    assert client.get("/v1/schema").status_code == 301
    assert client.get("/v1/schema/").status_code == 200


def test_a_customer_whose_plan_lacks_the_product_gets_not_entitled(product, free_plan, upstream):
    customer = CustomerFactory(plan=free_plan, created_at=SINCE_LAST_YEAR)
    client = Client(headers={"X-API-Key": api_key_issue(customer=customer, name="k").raw})
    response = client.get(f"/v1/{SLUG}/echo")
    assert response.status_code == 403
    assert response.json()["code"] == "not_entitled"
    assert response.json()["upgrade_plan"]["slug"] == "starter"
    assert stats(upstream) == {}


def test_a_call_without_a_key_or_with_a_bad_one_is_401_and_never_forwarded(product, upstream):
    response = Client().get(f"/v1/{SLUG}/echo")
    assert response.status_code == 401 and response.json()["code"] == "api_key_required"
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    response = Client().get(f"/v1/{SLUG}/echo?api_key=sk_live_whatever")
    assert response.status_code == 401
    assert stats(upstream) == {}


def test_the_rate_limit_refuses_like_the_builtins(db, upstream):
    plan = seeded_plan("starter")
    plan.rate_per_minute = 3
    plan.save()
    stats(upstream, clear=True)
    sell(upstream.base, plan)
    customer = CustomerFactory(plan=plan, created_at=SINCE_LAST_YEAR)
    client = Client(headers={"X-API-Key": api_key_issue(customer=customer, name="k").raw})
    statuses = [client.get(f"/v1/{SLUG}/echo").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    response = client.get(f"/v1/{SLUG}/echo")
    assert response.json() == {"error": "Rate limit exceeded", "code": "rate_limited"}
    assert int(response["Retry-After"]) > 0 and response["X-RateLimit-Remaining"] == "0"
    assert stats(upstream)["echo"] == 3


ESCAPE_URLS = [
    "/../secret", "/echo/../../secret", "/%2e%2e/secret", "/%2E%2E/%2E%2E/secret", "/..%2fsecret", "/..%5csecret",
    "/%252e%252e/secret", "//127.0.0.1/secret", "/echo//secret", "/..;/secret", "/echo\\..\\..\\secret",
    "/%5c%5cevil.example", "/http://evil.example/secret", "/%00", "/.", "/echo/%2e",
]


@pytest.mark.parametrize("escape", ESCAPE_URLS)
def test_every_path_escape_is_refused_before_the_upstream(client, upstream, escape):
    response = client.get(f"/v1/{SLUG}{escape}")
    assert response.status_code == 400, escape
    assert response.json()["code"] == "bad_path"
    assert stats(upstream) == {}


@pytest.mark.parametrize(("path", "target"), [
    ("/echo/a%2fb", "/api/echo/a/b"), ("/echo/@evil.example", "/api/echo/@evil.example"),
    ("/echo/user@evil.example:80/x", "/api/echo/user@evil.example:80/x"), ("/echo/..x", "/api/echo/..x"),
])
def test_odd_paths_that_stay_inside_are_forwarded_inside(client, upstream, path, target):
    assert echoed(client.get(f"/v1/{SLUG}{path}"))["target"] == target
    assert "outside" not in stats(upstream)


def test_steady_state_calls_run_no_sql_and_one_redis_command(client, django_assert_num_queries, redis_commands):
    echoed(client.get(f"/v1/{SLUG}/echo"))  # warms the key and product caches
    redis_commands.clear()
    with django_assert_num_queries(0):
        echoed(client.get(f"/v1/{SLUG}/echo"))
    # Billing the 2xx joins the background batch: the call itself costs the meter's one command.
    assert redis_commands == ["EVALSHA"]
