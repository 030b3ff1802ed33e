from __future__ import annotations

import io

import pytest
from PIL import Image

pytestmark = pytest.mark.django_db


def png(width: int, height: int, colour=(200, 30, 30)) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    buffer.seek(0)
    buffer.name = "picture.png"
    return buffer


def test_an_image_is_analyzed_and_billed(client_with_key):
    response = client_with_key.post("/v1/image/analyze", {"image": png(40, 30)}, format="multipart")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["format"], body["width"], body["height"]) == ("PNG", 40, 30)
    assert body["dominant_colors"][0]["hex"] == "#c81e1e"
    assert response["X-Quota-Remaining"] is not None
    assert client_with_key.get("/v1/usage").json()["by_product"] == {"image": 1}


def test_garbage_is_a_400_and_not_a_500(client_with_key):
    junk = io.BytesIO(b"not an image at all")
    junk.name = "x.png"
    response = client_with_key.post("/v1/image/analyze", {"image": junk}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_image"


def test_a_missing_file_is_a_field_error(client_with_key):
    response = client_with_key.post("/v1/image/analyze", {}, format="multipart")
    assert response.status_code == 400 and "image" in response.json()["fields"]


def test_too_many_pixels_is_refused_before_decoding(client_with_key):
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000)).save(buffer, format="PNG")  # 48 MP, a few KB on the wire
    buffer.seek(0)
    buffer.name = "big.png"
    response = client_with_key.post("/v1/image/analyze", {"image": buffer}, format="multipart")
    assert response.status_code == 413
    assert response.json()["code"] == "image_too_many_pixels"


def test_an_oversized_upload_is_refused_with_413(client_with_key, settings):
    settings.IMAGE_MAX_BYTES = 50_000
    big = io.BytesIO(b"\x89PNG" + b"0" * 200_000)
    big.name = "big.png"
    response = client_with_key.post("/v1/image/analyze", {"image": big}, format="multipart")
    assert response.status_code == 413
    assert response.json()["code"] == "image_too_large"
