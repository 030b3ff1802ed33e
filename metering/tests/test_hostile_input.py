"""Whatever a client sends, the answer is a JSON 4xx, never a 500, and nothing is billed for it."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def test_a_body_over_the_upload_limit_is_a_413(client_with_key, settings):
    body = '{"text": "' + "a" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10) + '"}'
    response = client_with_key.post("/v1/text/analyze", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


@pytest.mark.parametrize("body", [b"\xff\xfe\x00garbage", b'{"text": "\\ud800"}', b"\x00", b"[]", b"null"])
def test_undecodable_or_odd_json_is_a_400(client_with_key, body):
    response = client_with_key.post("/v1/text/analyze", data=body, content_type="application/json")
    assert response.status_code in (400, 200), response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("body", [
    b"\xff\xfe\x00garbage", b"\x00", b'{"text": "hi"', b'{"text": NaN}', b"1" * 5000,
    b"[" * 1_000_000 + b"]" * 1_000_000,  # RecursionError in the decoder: it was a 500
    b'{"a":' * 300_000 + b"1" + b"}" * 300_000,
])
def test_an_unparseable_body_is_a_400_parse_error(client_with_key, body):
    response = client_with_key.post("/v1/text/analyze", data=body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "parse_error"


def _lists(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def test_json_may_nest_32_levels_but_not_33(client_with_key):
    within = '{"text": "Fine.", "meta": ' + _lists(31) + "}"  # the object is level 1
    beyond = '{"text": "Fine.", "meta": ' + _lists(32) + "}"
    assert client_with_key.post("/v1/text/analyze", data=within, content_type="application/json").status_code == 200
    response = client_with_key.post("/v1/text/analyze", data=beyond, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"error": "JSON nested deeper than 32 levels", "code": "parse_error"}


def test_twenty_thousand_emoji_are_analyzed_not_a_stalled_worker(client_with_key):
    response = client_with_key.post("/v1/text/analyze", data={"text": "😀" * 20_000}, format="json")
    assert response.status_code == 200
    assert response.json()["sentiment"]["label"] == "positive"


def test_too_many_query_parameters_is_a_400_not_a_413(client_with_key):
    response = client_with_key.get("/v1/geocode?" + "q=a&" * 1001)
    assert response.status_code == 400
    assert response.json()["code"] == "too_many_parameters"


@pytest.mark.parametrize("query", ["q=%00", "q=%ff%fe", "q=" + "x" * 5000, "q=Paris&limit=-1", "q=Paris&limit=1e9"])
def test_odd_query_strings_are_answered_with_json(client_with_key, query):
    response = client_with_key.get(f"/v1/geocode?{query}")
    assert response.status_code in (200, 400), response.content
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("lat,lon", [("nan", "0"), ("inf", "0"), ("1e400", "0"), ("", ""), ("0x10", "5")])
def test_odd_coordinates_are_a_400(client_with_key, lat, lon):
    response = client_with_key.get(f"/v1/geocode/reverse?lat={lat}&lon={lon}")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("header", [
    {"HTTP_AUTHORIZATION": "Bearer \u043a\u043b\u044e\u0447"},
    {"HTTP_X_API_KEY": "sk_live_" + "\u00e9" * 64},
    {"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"},
    {"HTTP_AUTHORIZATION": "Bearer " + "a" * 10000},
])
def test_odd_credentials_are_a_401(db, header):
    response = APIClient().get("/v1/geocode?q=Paris", **header)
    assert response.status_code == 401
    assert response.json()["code"] in ("invalid_api_key", "api_key_required")


def test_wrong_content_type_is_a_415(client_with_key):
    response = client_with_key.post("/v1/text/analyze", data="text=hello", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_bad_input_and_refusals_are_not_billed(client_with_key, db):
    """README "The metered API": only a 2xx answer is billed; bad input the product refuses is free."""
    assert client_with_key.get("/v1/geocode").status_code == 400
    APIClient().get("/v1/geocode?q=Paris", HTTP_X_API_KEY="sk_live_nope")  # 401: free
    assert client_with_key.get("/v1/geocode?q=Paris").status_code == 200
    assert client_with_key.get("/v1/usage").json()["calls"] == 1
