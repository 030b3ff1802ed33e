from __future__ import annotations

import hashlib
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from metering.keyconfig import key_config_forget_local
from plans.models import Product
from plans.tests.urls_products import TEST_PRODUCT
from tests.factories import CustomerFactory, seeded_plan

pytestmark = pytest.mark.django_db

UPSTREAM = "http://127.0.0.1:9001/api"


def _add(*args: str, **options) -> str:
    out = StringIO()
    call_command("product_add", *args, stdout=out, **options)
    return out.getvalue()


def test_it_adds_an_upstream_product_to_the_plans_and_prints_its_secrets_once():
    on_starter = CustomerFactory(plan=seeded_plan("starter"))
    seeded_plan("pro")

    output = _add("routing", "--name", "Routing", "--upstream", UPSTREAM, "--plans", "starter,pro",
                  "--timeout", "12", "--methods", "get,post,put", "--description", "Routes.", "--body-limit", "2048")

    token = re.search(r"^Service token:  (tbs_[0-9a-f]{48})$", output, re.M).group(1)
    secret = re.search(r"^Signing secret: (whsec_[0-9a-f]{64})$", output, re.M).group(1)
    assert "Added Routing at /v1/routing/ -> http://127.0.0.1:9001/api" in output
    assert "On sale in: Starter, Professional" in output
    assert "  Starter: 1 existing customer(s) can call it now" in output
    assert "  Professional: 0 existing customer(s) can call it now" in output
    product = Product.objects.get(slug="routing")
    assert (product.kind, product.name, product.description) == (Product.Kind.UPSTREAM, "Routing", "Routes.")
    assert (product.timeout_seconds, product.allowed_methods(), product.body_limit_bytes) == (
        12, {"GET", "POST", "PUT"}, 2048)
    assert product.service_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert product.signing_secret == secret
    assert sorted(product.plans.values_list("slug", flat=True)) == ["pro", "starter"]
    on_starter.refresh_from_db()
    assert "routing" in on_starter.terms.entitlements


def test_without_plans_it_adds_the_product_on_no_plan():
    output = _add("routing", "--name", "Routing", "--upstream", UPSTREAM)

    assert "On sale in: no plan yet" in output
    assert not Product.objects.get(slug="routing").plans.exists()


@pytest.mark.parametrize("args, message", [
    (["verify"], r"slug: “verify” is reserved by the API itself"),
    (["geocode"], r"slug: “geocode” belongs to a built-in product"),
    (["Bad Slug"], r"slug: Enter a valid “slug”"),
    (["routing", "--upstream", "ftp://files.example.com/"], r"--upstream: Enter a valid URL"),
    (["routing", "--upstream", "not a url"], r"--upstream: Enter a valid URL"),
    (["routing", "--plans", "starter,gold"], r"No such plan: gold \(plans: free, starter, pro, enterprise"),
    (["routing", "--methods", "GET,FETCH"], r"--methods: Unknown HTTP method\(s\): FETCH"),
    (["routing", "--timeout", "0"], r"--timeout: Ensure this value is greater than or equal to 1"),
    (["routing", "--timeout", "101"], r"--timeout: Ensure this value is less than or equal to 100"),
])
def test_a_bad_argument_is_a_clear_error_and_adds_nothing(args, message):
    for slug in ("free", "starter", "pro", "enterprise"):
        seeded_plan(slug)
    options = {"--name": "Routing", "--upstream": UPSTREAM}
    slug, rest = args[0], args[1:]
    options |= dict(zip(rest[::2], rest[1::2]))

    with pytest.raises(CommandError, match=message):
        _add(slug, *[part for pair in options.items() for part in pair])

    assert not Product.objects.filter(kind=Product.Kind.UPSTREAM).exists()


def test_a_taken_slug_is_refused():
    _add("routing", "--name", "Routing", "--upstream", UPSTREAM)

    with pytest.raises(CommandError, match="slug: Product with this Slug already exists"):
        _add("routing", "--name", "Routing 2", "--upstream", UPSTREAM)


@pytest.mark.urls("plans.tests.urls_products")
def test_a_starter_customer_calls_the_product_right_after_the_command(
    client_with_key, customer, django_capture_on_commit_callbacks,
):
    refused = client_with_key.get("/test/v1/routing")
    assert refused.status_code == 403 and refused.json()["upgrade_plan"] is None  # no plan sells it yet
    key_config_forget_local()  # what KEY_CACHE_SECONDS does: the refusal was cached in this process

    with django_capture_on_commit_callbacks(execute=True):
        _add(TEST_PRODUCT, "--name", "Routing", "--upstream", UPSTREAM, "--plans", "starter")
    called = client_with_key.get("/test/v1/routing")

    assert called.status_code == 200 and called["X-Quota-Remaining"] == "49999"
    assert client_with_key.get("/v1/usage").json()["calls"] == 1
