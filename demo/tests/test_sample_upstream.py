"""The demo's sample upstream (demo/upstream.py) as a real process, sold through the gateway."""
from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image
from rest_framework.test import APIClient

from accounts.services import api_key_issue
from demo.seed import VISION_SLUG, VISION_URL, vision_product_ensure, vision_secret_write
from demo.upstream import signature_valid
from metering.models import UsageRecord
from metering.services import usage_flush
from plans.models import Product
from plans.services import product_secrets_rotate
from tests.factories import CustomerFactory, seeded_plan
from tests.servers import _wait_for_port, free_port, stop

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent


def png(colour=(255, 0, 0)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, "PNG")
    return buffer.getvalue()


@contextmanager
def sample_upstream(secret_file: Path):
    port = free_port()
    env = {**os.environ, "DEMO_UPSTREAM_PORT": str(port), "DEMO_UPSTREAM_SECRET_FILE": str(secret_file)}
    env.pop("DEMO_UPSTREAM_SECRET", None)
    process = subprocess.Popen([sys.executable, "-m", "demo.upstream"], cwd=ROOT, env=env, start_new_session=True,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        stop(process)


def direct(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()


def analyze(client: APIClient, data: bytes) -> tuple[int, bytes]:
    """POST through the gateway and read the answer to its end (the call settles when it is out)."""
    answer = client.post("/v1/vision/analyze", data=data, content_type="image/png")
    body = b"".join(answer.streaming_content) if answer.streaming else answer.content
    answer.close()
    return answer.status_code, body


def paid_plans():
    return [seeded_plan("starter"), seeded_plan("pro"), seeded_plan("enterprise")]


def test_the_seed_sells_the_sample_upstream_on_the_paid_plans_once_and_keeps_staff_edits():
    product = vision_product_ensure(plans=paid_plans())
    assert (product.kind, product.upstream_url, product.methods, product.health_path) == (
        Product.Kind.UPSTREAM, VISION_URL, "POST", "/health")
    assert sorted(product.plans.values_list("slug", flat=True)) == ["enterprise", "pro", "starter"]
    assert product.signing_secret.startswith("whsec_") and product.service_token_hash
    Product.objects.filter(pk=product.pk).update(timeout_seconds=5)

    again = vision_product_ensure(plans=paid_plans())

    assert again.pk == product.pk and again.timeout_seconds == 5
    assert Product.objects.filter(slug=VISION_SLUG).count() == 1


def test_the_secret_file_is_private_and_rewritten_only_when_the_secret_changes(tmp_path):
    product = vision_product_ensure(plans=paid_plans())
    path = tmp_path / "var" / "demo_upstream_secret"

    assert vision_secret_write(path) is True
    assert path.read_text().strip() == product.signing_secret
    assert path.stat().st_mode & 0o777 == 0o600
    assert vision_secret_write(path) is False

    product_secrets_rotate(product)
    assert vision_secret_write(path) is True
    assert path.read_text().strip() == Product.objects.get(pk=product.pk).signing_secret


def test_signature_recipe_refuses_a_wrong_secret_another_target_and_an_old_timestamp():
    t = int(time.time())
    v1 = hmac.new(b"whsec_a", f"{t}.c_1.POST./analyze".encode(), hashlib.sha256).hexdigest()
    header = f"t={t},v1={v1}"
    assert signature_valid(secret="whsec_a", header=header, call="c_1", method="POST", target="/analyze")
    assert not signature_valid(secret="whsec_b", header=header, call="c_1", method="POST", target="/analyze")
    assert not signature_valid(secret="whsec_a", header=header, call="c_1", method="POST", target="/analyze?x=1")
    assert not signature_valid(secret="whsec_a", header=header, call="c_2", method="POST", target="/analyze")
    assert not signature_valid(secret="whsec_a", header=header, call="c_1", method="POST", target="/analyze",
                               now=t + 301)
    assert not signature_valid(secret="", header=header, call="c_1", method="POST", target="/analyze")


def test_a_starter_customer_analyzes_an_image_through_the_gateway_and_only_2xx_is_billed(tmp_path):
    product = vision_product_ensure(plans=paid_plans())
    secret_file = tmp_path / "secret"
    vision_secret_write(secret_file)
    with sample_upstream(secret_file) as port:
        product.upstream_url = f"http://127.0.0.1:{port}"
        product.save(update_fields=["upstream_url"])
        # Traffic that goes around Tollbooth is refused; the health path answers staff's check.
        assert direct(port, "POST", "/analyze", png(), {"Content-Type": "image/png"}) == 401
        assert direct(port, "GET", "/health") == 200

        customer = CustomerFactory(plan=seeded_plan("starter"))
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=api_key_issue(customer=customer, name="demo").raw)

        status, body = analyze(client, png())
        assert status == 200, body
        assert b'"format": "PNG"' in body and b'"#ff0000"' in body
        # The upstream's refusal passes through, unbilled.
        assert analyze(client, b"not an image")[0] == 400

        # A rotation reaches the running upstream through the file, without a restart.
        product_secrets_rotate(product)
        assert vision_secret_write(secret_file) is True
        assert analyze(client, png((0, 0, 255)))[0] == 200

    usage_flush()
    assert sum(UsageRecord.objects.filter(customer=customer, product=VISION_SLUG).values_list("calls", flat=True)) == 2
