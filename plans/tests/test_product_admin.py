from __future__ import annotations

import hashlib
import json
import re

import pytest
from django.contrib.messages import get_messages

from metering.keyconfig import key_config_forget_local
from plans.models import Plan, Product
from plans.services import product_by_token, product_create, product_upstream_check
from plans.tests.upstream import upstream_server
from plans.tests.urls_products import TEST_PRODUCT
from tests.factories import CustomerFactory, seeded_plan

pytestmark = pytest.mark.django_db

PRODUCT_FORM = {
    "name": "Routing", "slug": "routing", "description": "Turn-by-turn routes.", "active": "on", "sort_order": "0",
    "upstream_url": "http://127.0.0.1:9001/api", "methods": "GET,POST", "timeout_seconds": "30",
    "body_limit_bytes": "1048576", "health_path": "/health",
}


def _shown(html: str, css_class: str) -> str:
    return re.search(rf'<code class="{css_class}">([^<]+)</code>', html).group(1)


def _messages(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def _plan_form(plan: Plan, products: list[Product]) -> dict:
    """The plan's change form as the admin shows it, with `products` ticked."""
    fields = ("slug", "name", "description", "price", "interval", "included_calls", "overage_price",
              "rate_per_minute", "trial_days", "sort_order")
    data = {name: str(getattr(plan, name)) for name in fields}
    data |= {"features": json.dumps(plan.features), "products": [str(p.pk) for p in products], "_save": "Save"}
    data |= {name: "on" for name in ("hard_cap", "is_public", "is_default") if getattr(plan, name)}
    return data


def _upstream(base_url: str, **kwargs) -> Product:
    return product_create(slug="routing", name="Routing", upstream_url=base_url + "/api", **kwargs)[0]


# --- add ---

def test_staff_add_a_product_and_see_its_token_and_secret_once(admin_client):
    response = admin_client.post("/admin/plans/product/add/", PRODUCT_FORM)

    assert response.status_code == 200
    html = response.content.decode()
    token, secret = _shown(html, "service-token"), _shown(html, "signing-secret")
    assert "not shown again" in html and "no-store" in response["Cache-Control"]
    product = Product.objects.get(slug="routing")
    assert product.kind == Product.Kind.UPSTREAM and product.health_path == "/health"
    assert product.service_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert product.signing_secret == secret and product_by_token(token) == product
    assert product.sort_order > Product.objects.get(slug="image").sort_order
    # The change page afterwards shows only the token's last characters.
    page = admin_client.get(f"/admin/plans/product/{product.pk}/change/").content.decode()
    assert f"tbs_…{token[-4:]}" in page and token not in page and secret not in page


@pytest.mark.parametrize("slug, message", [
    ("usage", "is reserved by the API itself"),
    ("geocode", "belongs to a built-in product"),
])
def test_adding_a_reserved_or_builtin_slug_is_refused_on_the_form(admin_client, slug, message):
    response = admin_client.post("/admin/plans/product/add/", PRODUCT_FORM | {"slug": slug})

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Product.objects.filter(kind=Product.Kind.UPSTREAM).exists()


def test_adding_a_non_http_upstream_is_refused(admin_client):
    response = admin_client.post("/admin/plans/product/add/", PRODUCT_FORM | {"upstream_url": "file:///etc/passwd"})

    assert response.status_code == 200
    assert "Enter a valid URL." in response.content.decode()
    assert not Product.objects.filter(slug="routing").exists()


# --- builtin rows ---

def test_a_builtin_product_keeps_its_slug_and_cannot_be_deleted(admin_client):
    geocode = Product.objects.get(slug="geocode")

    page = admin_client.get(f"/admin/plans/product/{geocode.pk}/change/").content.decode()
    assert 'name="slug"' not in page and 'name="upstream_url"' not in page and 'name="name"' in page
    assert f"/admin/plans/product/{geocode.pk}/delete/" not in page
    response = admin_client.post(f"/admin/plans/product/{geocode.pk}/change/",
                                 {"name": "Geocoding v2", "description": "", "sort_order": "10", "slug": "evil",
                                  "kind": "upstream"})
    assert response.status_code == 302
    geocode.refresh_from_db()
    assert (geocode.name, geocode.slug, geocode.kind) == ("Geocoding v2", "geocode", Product.Kind.BUILTIN)
    assert admin_client.post(f"/admin/plans/product/{geocode.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = admin_client.post("/admin/plans/product/", {"action": "delete_selected", "_selected_action": [geocode.pk]})
    assert "built in (served by Tollbooth); it cannot be deleted" in bulk.content.decode()
    assert Product.objects.filter(pk=geocode.pk).exists()


def test_a_product_on_sale_cannot_be_deleted_until_taken_off_its_plans(admin_client):
    product = _upstream("http://127.0.0.1:9001", plans=[seeded_plan("pro")])

    assert admin_client.post(f"/admin/plans/product/{product.pk}/delete/", {"post": "yes"}).status_code == 403
    product.plans.clear()
    assert admin_client.post(f"/admin/plans/product/{product.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Product.objects.filter(pk=product.pk).exists()


# --- check upstream ---

def test_check_upstream_gets_the_health_path_once_and_shows_status_and_latency(admin_client):
    with upstream_server() as (base_url, seen):
        product = _upstream(base_url, health_path="/health")
        response = admin_client.post("/admin/plans/product/", {"action": "upstream_check",
                                                              "_selected_action": [product.pk]}, follow=True)

    assert response.status_code == 200
    [message] = _messages(response)
    assert re.fullmatch(rf"Routing: HTTP 204 in \d+ ms from {base_url}/api/health\.", message), message
    assert seen == [("GET", "/api/health", None)]


@pytest.mark.parametrize("path, shown", [("/broken", "HTTP 503"), ("/moved", "HTTP 302")])
def test_check_upstream_reports_an_error_or_a_redirect_without_following_it(admin_client, path, shown):
    with upstream_server() as (base_url, seen):
        product = _upstream(base_url, health_path=path)
        response = admin_client.post("/admin/plans/product/", {"action": "upstream_check",
                                                              "_selected_action": [product.pk]}, follow=True)

    assert f"Routing: {shown} in " in _messages(response)[0]
    assert [p for _, p, _ in seen] == [f"/api{path}"]


def test_check_upstream_with_nothing_listening_says_so_instead_of_failing(admin_client):
    with upstream_server() as (base_url, _):
        pass  # closed again: its port now refuses connections
    product = _upstream(base_url)

    response = admin_client.post("/admin/plans/product/", {"action": "upstream_check",
                                                          "_selected_action": [product.pk]}, follow=True)

    assert response.status_code == 200
    assert _messages(response)[0].startswith(f"Routing: no answer from {base_url}/api/: ")


def test_check_upstream_gives_up_after_the_products_timeout():
    with upstream_server() as (base_url, _):
        product = _upstream(base_url, health_path="/slow", timeout_seconds=1)
        check = product_upstream_check(product)

    assert check.status is None and check.error == "no answer within 1 s"


def test_check_upstream_refuses_a_url_that_is_not_http():
    check = product_upstream_check(Product(slug="x", upstream_url="ftp://127.0.0.1/files", health_path="/"))

    assert (check.status, check.error) == (None, "not an http(s) URL")


# --- rotate ---

def test_rotate_shows_a_new_token_and_secret_once_and_the_old_token_stops(admin_client):
    product, old_token, old_secret = product_create(slug="routing", name="Routing",
                                                    upstream_url="http://127.0.0.1:9001/api")

    response = admin_client.post("/admin/plans/product/", {"action": "secrets_rotate",
                                                          "_selected_action": [product.pk]})

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    html = response.content.decode()
    token, secret = _shown(html, "service-token"), _shown(html, "signing-secret")
    assert token != old_token and secret != old_secret
    assert product_by_token(old_token) is None and product_by_token(token) == product
    product.refresh_from_db()
    assert product.signing_secret == secret and product.service_token_last4 == token[-4:]


# --- plans ---

@pytest.mark.urls("plans.tests.urls_products")
def test_a_starter_customer_calls_a_product_the_moment_staff_add_it_to_starter(
    admin_client, client_with_key, customer, django_capture_on_commit_callbacks,
):
    starter = seeded_plan("starter")
    product = product_create(slug=TEST_PRODUCT, name="Routing", upstream_url="http://127.0.0.1:9001/api")[0]
    refused = client_with_key.get("/test/v1/routing")
    assert refused.status_code == 403 and refused.json()["code"] == "not_entitled"

    page = admin_client.get(f"/admin/plans/plan/{starter.pk}/change/").content.decode()
    assert 'id="id_products"' in page and "SelectFilter" in page  # filter_horizontal
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/plans/plan/{starter.pk}/change/",
                                     _plan_form(starter, [*starter.products.all(), product]), follow=True)

    assert response.status_code == 200
    assert "1 customer(s) of Starter can call Routing now." in _messages(response)
    # This process refused a moment ago and keeps that key's config up to KEY_CACHE_SECONDS
    # (a refusal is decided before the meter's version check); let that time pass.
    key_config_forget_local()
    called = client_with_key.get("/test/v1/routing")
    assert called.status_code == 200 and called.json() == {"route": "ok"}
    assert called["X-Quota-Limit"] == "50000"
    customer.refresh_from_db()
    assert customer.terms.entitlements == ["geocode", "text", "image", "routing"]


def test_taking_a_product_off_a_plan_in_admin_leaves_customers_their_terms(admin_client):
    starter = seeded_plan("starter")
    customer = CustomerFactory(plan=starter)
    held = customer.terms

    response = admin_client.post(f"/admin/plans/plan/{starter.pk}/change/",
                                 _plan_form(starter, list(starter.products.exclude(slug="image"))), follow=True)

    assert response.status_code == 200
    assert starter.entitlements == ["geocode", "text"]
    customer.refresh_from_db()
    assert customer.terms == held and "image" in customer.terms.entitlements
