from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.emails import terms_notice_email_send
from billing.subscriptions import plan_product_added, plan_terms_move_schedule
from dashboard.selectors import products_locked
from plans.models import BuiltinProduct, Plan, Product
from plans.selectors import plan_cheapest_allowing, product_for_slug, product_names
from plans.services import product_by_token, product_create, product_secrets_rotate, terms_current
from tests.factories import CustomerFactory, seeded_plan

pytestmark = pytest.mark.django_db


def _routing(**kwargs) -> tuple[Product, str, str]:
    values = dict(slug="routing", name="Routing", upstream_url="http://127.0.0.1:9001/api") | kwargs
    return product_create(**values)


# --- the migration ---

def test_the_migration_made_the_three_analyzers_builtin_rows():
    rows = list(Product.objects.filter(kind=Product.Kind.BUILTIN).values_list("slug", "name"))

    assert rows == [("geocode", "Geocoding"), ("text", "Text analysis"), ("image", "Image analysis")]
    assert sorted(BuiltinProduct.values) == sorted(slug for slug, _ in rows)


def test_the_migration_kept_each_seeded_plans_entitlements():
    plans = {plan.slug: plan.entitlements for plan in Plan.objects.filter(
        slug__in=["free", "starter", "pro", "enterprise"])}

    assert plans == {"free": ["geocode", "text"], "starter": ["geocode", "text", "image"],
                     "pro": ["geocode", "text", "image"], "enterprise": ["geocode", "text", "image"]}


@pytest.mark.django_db(transaction=True)
def test_the_migration_turns_any_plans_entitlement_list_into_links_and_back():
    executor = MigrationExecutor(connection)
    executor.migrate([("plans", "0004_terms_names")])
    old = MigrationExecutor(connection).loader.project_state([("plans", "0004_terms_names")]).apps
    old.get_model("plans", "Plan").objects.create(
        slug="imagery", name="Imagery", price=9, included_calls=10, rate_per_minute=1, entitlements=["image", "text"])
    old.get_model("plans", "Plan").objects.create(
        slug="nothing", name="Nothing", price=0, included_calls=10, rate_per_minute=1, entitlements=[])

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert Plan.objects.get(slug="imagery").entitlements == ["text", "image"]  # display order
    assert Plan.objects.get(slug="nothing").entitlements == []
    assert Product.objects.get(slug="image").kind == Product.Kind.BUILTIN
    back = MigrationExecutor(connection)
    back.migrate([("plans", "0004_terms_names")])
    old = back.loader.project_state([("plans", "0004_terms_names")]).apps
    assert old.get_model("plans", "Plan").objects.get(slug="imagery").entitlements == ["text", "image"]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def test_a_plan_saved_with_an_entitlement_list_links_those_products():
    plan = Plan.objects.create(slug="mini", name="Mini", price=1, included_calls=1, rate_per_minute=1,
                               entitlements=["image", "geocode"])

    assert plan.entitlements == ["geocode", "image"]
    assert list(Plan.objects.get(pk=plan.pk).products.values_list("slug", flat=True)) == ["geocode", "image"]
    with pytest.raises(ValueError, match="No such product: teleport"):
        Plan(slug="x", name="X", price=1, included_calls=1, rate_per_minute=1, entitlements=["teleport"]).save()
    assert not Plan.objects.filter(slug="x").exists()


# --- validation ---

@pytest.mark.parametrize("slug", ["usage", "verify", "calls", "schema", "docs"])
def test_a_slug_the_api_uses_is_refused(slug):
    with pytest.raises(ValidationError, match="is reserved by the API itself") as error:
        _routing(slug=slug)

    assert error.value.error_dict["slug"][0].code == "reserved"
    assert not Product.objects.filter(kind=Product.Kind.UPSTREAM).exists()


def test_a_builtin_products_slug_or_a_taken_one_is_refused():
    with pytest.raises(ValidationError, match="belongs to a built-in product"):
        _routing(slug="geocode")
    _routing()
    with pytest.raises(ValidationError, match="Product with this Slug already exists"):
        _routing(name="Routing again")

    assert Product.objects.filter(slug="routing").count() == 1


@pytest.mark.parametrize("field, value, message", [
    ("upstream_url", "ftp://files.example.com/", "Enter a valid URL"),
    ("upstream_url", "", "needs the URL to forward to"),
    ("methods", "GET,FETCH", "Unknown HTTP method"),
    ("timeout_seconds", 0, "greater than or equal to 1"),
    ("timeout_seconds", 101, "less than or equal to 100"),
    ("slug", "Not a slug!", "Enter a valid “slug”"),
])
def test_a_bad_field_is_refused_with_the_reason(field, value, message):
    with pytest.raises(ValidationError, match=message) as error:
        _routing(**{field: value})

    assert field in error.value.error_dict


# --- credentials ---

def test_the_service_token_is_stored_only_as_its_hash():
    product, token, secret = _routing()

    assert token.startswith("tbs_") and len(token) == 4 + 48
    assert secret.startswith("whsec_") and len(secret) == 6 + 64
    product.refresh_from_db()
    assert product.service_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert product.service_token_last4 == token[-4:]
    assert product.signing_secret == secret  # stored: Tollbooth signs forwarded calls with it
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM plans_product WHERE id = %s", [product.pk])
        assert not any(token in str(value) for value in cursor.fetchone())


def test_the_token_finds_its_product_and_nothing_else_does():
    product, token, _ = _routing()

    assert product_by_token(token) == product
    assert product_by_token(token[:-1] + ("0" if token[-1] != "0" else "1")) is None
    assert product_by_token(token.removeprefix("tbs_")) is None
    assert product_by_token("") is None


def test_rotating_retires_the_old_token_and_secret_at_once():
    product, old_token, old_secret = _routing()

    new_token, new_secret = product_secrets_rotate(product)

    assert new_token != old_token and new_secret != old_secret
    assert product_by_token(old_token) is None
    assert product_by_token(new_token) == product
    product.refresh_from_db()
    assert product.signing_secret == new_secret
    assert product_for_slug("routing").signing_secret == new_secret


# --- the cached selector ---

def test_the_hot_path_reads_products_without_sql_and_sees_an_edit_at_once():
    product, _, _ = _routing(methods="post,get", timeout_seconds=7)

    assert product_for_slug("routing").name == "Routing"
    with CaptureQueriesContext(connection) as queries:
        view = product_for_slug("routing")
        assert product_for_slug("nope") is None
        assert product_names()["geocode"] == "Geocoding"
    assert len(queries) == 0
    assert view.is_upstream and view.methods == frozenset({"GET", "POST"}) and view.timeout_seconds == 7
    assert view.upstream_url == "http://127.0.0.1:9001/api" and view.active
    product.name, product.active = "Routes", False
    product.save()
    assert product_for_slug("routing").name == "Routes" and not product_for_slug("routing").active
    product.delete()
    assert product_for_slug("routing") is None


def test_new_products_list_after_the_ones_already_sold():
    product, _, _ = _routing()

    assert product.sort_order > Product.objects.get(slug="image").sort_order
    assert list(Product.objects.values_list("slug", flat=True))[-1] == "routing"


# --- plans and terms ---

def test_a_product_added_to_a_plan_is_in_its_new_terms_and_upgrade_hints():
    starter = seeded_plan("starter")
    _routing(plans=[starter])

    assert starter.entitlements == ["geocode", "text", "image", "routing"]
    assert terms_current(plan=starter).entitlements == ["geocode", "text", "image", "routing"]
    assert plan_cheapest_allowing(product="routing").slug == "starter"


def test_customers_on_the_plan_get_the_product_at_once_with_nothing_else_changed():
    starter = seeded_plan("starter")
    on_starter = CustomerFactory(plan=starter)
    taken = on_starter.terms
    on_free = CustomerFactory(plan=seeded_plan("free"))
    product, _, _ = _routing(plans=[starter])

    assert plan_product_added(plan=starter, product=product) == 1

    on_starter.refresh_from_db()
    assert on_starter.terms != taken and on_starter.terms.entitlements == ["geocode", "text", "image", "routing"]
    values = dict(zip(taken.VALUE_FIELDS, taken.values()))
    assert dict(zip(taken.VALUE_FIELDS, on_starter.terms.values())) == values | {
        "entitlements": ["geocode", "text", "image", "routing"]}
    assert on_starter.signup_terms == taken
    on_free.refresh_from_db()
    assert "routing" not in on_free.terms.entitlements
    assert plan_product_added(plan=starter, product=product) == 0  # already there: nothing to do
    # The plan's current terms now hold the same values: later signups share the snapshot.
    assert terms_current(plan=starter) == on_starter.terms


def test_grandfathered_terms_keep_their_own_values_when_a_product_is_added():
    starter = seeded_plan("starter")
    old_customer = CustomerFactory(plan=starter)
    old_terms = old_customer.terms
    starter.price = 59
    starter.save()
    new_customer = CustomerFactory(plan=starter)
    product, _, _ = _routing(plans=[starter])

    assert plan_product_added(plan=starter, product=product) == 2

    old_customer.refresh_from_db()
    new_customer.refresh_from_db()
    assert old_customer.terms.price == old_terms.price == 49
    assert new_customer.terms.price == 59
    assert "routing" in old_customer.terms.entitlements and "routing" in new_customer.terms.entitlements


def test_a_move_to_newer_terms_already_scheduled_keeps_the_added_product():
    starter = seeded_plan("starter")
    customer = CustomerFactory(plan=starter)
    starter.price = 59
    starter.save()
    [move] = plan_terms_move_schedule(plan=starter)
    product, _, _ = _routing(plans=[starter])

    plan_product_added(plan=starter, product=product)

    move.refresh_from_db()
    customer.refresh_from_db()
    assert move.terms.price == 59 and move.terms.entitlements == ["geocode", "text", "image", "routing"]
    assert customer.terms.price == 49 and "routing" in customer.terms.entitlements
    assert move.terms == terms_current(plan=starter)


def test_removing_a_product_from_a_plan_leaves_its_customers_terms_alone():
    starter = seeded_plan("starter")
    customer = CustomerFactory(plan=starter)
    product, _, _ = _routing(plans=[starter])
    plan_product_added(plan=starter, product=product)
    customer.refresh_from_db()
    held = customer.terms

    starter.products.remove(product)

    customer.refresh_from_db()
    assert customer.terms == held and "routing" in customer.terms.entitlements
    assert "routing" not in terms_current(plan=starter).entitlements


# --- pages that list products ---

def _card(html: str, slug: str) -> str:
    return html.split(f'data-plan="{slug}">', 1)[1].split("</article>", 1)[0]


def test_the_pricing_page_lists_a_new_product_in_the_plans_that_sell_it(client):
    starter, free = seeded_plan("starter"), seeded_plan("free")
    product, _, _ = _routing(plans=[starter])

    html = client.get(reverse("pricing")).content.decode()

    assert "Geocoding · Text analysis · Image analysis · Routing" in html
    assert "One key, four APIs" in html
    assert '<strong class="plan-products">Geocoding, Text analysis, Image analysis, Routing</strong>' in _card(
        html, "starter")
    assert '<strong class="plan-products">Geocoding, Text analysis</strong>' in _card(html, "free")
    product.active = False
    product.save()
    html = client.get(reverse("pricing")).content.decode()
    assert "Routing" not in html and "One key, three APIs" in html


def test_the_api_docs_show_each_active_upstream_product_with_a_curl_sample(client, settings):
    settings.SITE_URL = "https://api.example.com"
    _routing(description="Turn-by-turn routes.", methods="GET")
    hidden = product_create(slug="hidden", name="Hidden", upstream_url="http://127.0.0.1:9002/")[0]
    hidden.active = False
    hidden.save()

    schema = client.get("/v1/schema/", {"format": "json"}).json()

    text = schema["info"]["description"]
    assert "## More APIs" in text and "### Routing\nTurn-by-turn routes." in text
    assert "Base URL `https://api.example.com/v1/routing/`, methods GET." in text
    assert 'curl -H "Authorization: Bearer $TOLLBOOTH_API_KEY" "https://api.example.com/v1/routing/<path>"' in text
    assert "Hidden" not in text


def test_the_portal_offers_a_locked_product_with_the_plan_that_sells_it(free_customer):
    _routing(plans=[seeded_plan("pro")])

    locked = {p.slug: p.cheapest_plan.slug if p.cheapest_plan else None
              for p in products_locked(terms=free_customer.terms)}

    assert locked == {"image": "starter", "routing": "pro"}


def test_a_terms_notice_names_the_products_instead_of_their_slugs(mailoutbox):
    starter = seeded_plan("starter")
    customer = CustomerFactory(plan=starter)
    product, _, _ = _routing(plans=[starter])
    new_terms = terms_current(plan=starter)

    terms_notice_email_send(customer_id=customer.pk, old_terms_id=customer.terms_id, new_terms_id=new_terms.pk,
                            starts_at="2027-01-01T00:00:00+00:00")

    [mail] = mailoutbox
    assert "Geocoding, Text analysis, Image analysis" in mail.body
    assert "Geocoding, Text analysis, Image analysis, Routing" in mail.body
    assert "geocode" not in mail.body
