"""Tests for the framework-free product analyzers (no database, no Django)."""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from metering.products.errors import ProductInputError
from metering.products.geocode import geocode_reverse, geocode_search, haversine_km
from metering.products.image import image_analyze
from metering.products.text import text_analyze

# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


def test_product_input_error_attributes() -> None:
    err = ProductInputError("Nope.", code="invalid_query", field="q")
    assert (err.message, err.code, err.status, err.field) == ("Nope.", "invalid_query", 400, "q")
    assert str(err) == "Nope."
    big = ProductInputError("Too big.", code="text_too_long", status=413)
    assert big.status == 413 and big.field is None


# --------------------------------------------------------------------------
# Geocode: search
# --------------------------------------------------------------------------

RESULT_KEYS = {"name", "country_code", "country", "admin1", "lat", "lon", "population", "timezone"}


def test_search_paris_returns_paris_france_first() -> None:
    results = geocode_search(query="Paris")
    assert 1 <= len(results) <= 5
    first = results[0]
    assert set(first) == RESULT_KEYS
    assert (first["name"], first["country_code"], first["country"]) == ("Paris", "FR", "France")
    assert first["timezone"] == "Europe/Paris"
    assert isinstance(first["lat"], float) and isinstance(first["population"], int)
    assert math.isclose(first["lat"], 48.85, abs_tol=0.1)


def test_search_exact_matches_rank_by_population() -> None:
    results = geocode_search(query="springfield", limit=4)
    assert all(r["name"] == "Springfield" for r in results)
    populations = [r["population"] for r in results]
    assert populations == sorted(populations, reverse=True)


@pytest.mark.parametrize(
    ("query", "name", "country_code"),
    [
        ("Zurich", "Zürich", "CH"),
        ("zürich", "Zürich", "CH"),
        ("sao paulo", "São Paulo", "BR"),
        ("  SÃO   PAULO ", "São Paulo", "BR"),
        ("koln", "Köln", "DE"),
    ],
)
def test_search_is_case_and_accent_insensitive(query: str, name: str, country_code: str) -> None:
    first = geocode_search(query=query, limit=1)[0]
    assert (first["name"], first["country_code"]) == (name, country_code)


def test_search_matches_alternate_names() -> None:
    assert geocode_search(query="Bombay", limit=1)[0]["name"] == "Mumbai"


def test_search_exact_match_before_prefix_matches() -> None:
    results = geocode_search(query="Zurich", limit=3)
    assert results[0]["name"] == "Zürich"
    # The Zürich districts ("Zürich (Kreis 11)", ...) are prefix matches.
    assert all(r["name"].startswith("Zürich (") for r in results[1:])


def test_prefix_search() -> None:
    results = geocode_search(query="amster", limit=3)
    assert results[0]["name"] == "Amsterdam"
    assert results[0]["country_code"] == "NL"


def test_search_limit_and_no_match() -> None:
    assert len(geocode_search(query="san", limit=20)) == 20
    assert geocode_search(query="qqqxxzzq") == []


@pytest.mark.parametrize("query", ["", "   ", "\n\t", "x" * 201, None, 42])
def test_search_rejects_bad_query(query: object) -> None:
    with pytest.raises(ProductInputError) as exc:
        geocode_search(query=query)  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.field, exc.value.status) == ("invalid_query", "q", 400)


@pytest.mark.parametrize("limit", [0, 21, -1, True, 2.5])
def test_search_rejects_bad_limit(limit: object) -> None:
    with pytest.raises(ProductInputError) as exc:
        geocode_search(query="Paris", limit=limit)  # type: ignore[arg-type]
    assert exc.value.code == "invalid_limit"


def test_search_results_are_copies() -> None:
    geocode_search(query="Paris", limit=1)[0]["name"] = "mutated"
    assert geocode_search(query="Paris", limit=1)[0]["name"] == "Paris"


# --------------------------------------------------------------------------
# Geocode: reverse
# --------------------------------------------------------------------------


def test_reverse_paris() -> None:
    results = geocode_reverse(lat=48.8566, lon=2.3522, limit=3)
    assert set(results[0]) == RESULT_KEYS | {"distance_km"}
    # GeoNames lists Paris' arrondissements as separate places, so the very
    # nearest entry may be one of them; all are in Paris and within 1 km.
    assert results[0]["country_code"] == "FR"
    assert results[0]["name"].startswith("Paris")
    assert results[0]["distance_km"] < 1.0
    assert "Paris" in [r["name"] for r in results]
    distances = [r["distance_km"] for r in results]
    assert distances == sorted(distances)


def test_reverse_default_limit_is_one() -> None:
    assert len(geocode_reverse(lat=51.5074, lon=-0.1278)) == 1


def test_reverse_near_antimeridian_finds_suva() -> None:
    names = [r["name"] for r in geocode_reverse(lat=-18.1, lon=178.4, limit=3)]
    assert "Suva" in names
    # From just across the antimeridian (lon -179.9 is ~180 km east of Suva)
    # the Fiji cities must still be found via wrapped cells.
    across = geocode_reverse(lat=-18.1, lon=-179.9, limit=3)
    assert {r["country_code"] for r in across} == {"FJ"}
    assert all(r["distance_km"] < 300 for r in across)


@pytest.mark.parametrize(
    ("lat", "lon"), [(90, 0), (-90, 0), (89.99, 179.99), (-89.5, -180), (0, 180)]
)
def test_reverse_extreme_coordinates_do_not_crash(lat: float, lon: float) -> None:
    results = geocode_reverse(lat=lat, lon=lon, limit=2)
    assert len(results) == 2
    assert results[0]["distance_km"] <= results[1]["distance_km"]


def test_reverse_matches_brute_force() -> None:
    # The grid search must give exactly what a full scan of every city gives.
    from metering.products import geocode

    cities = geocode._get_index().cities
    for lat, lon in [(60.0, -150.0), (-45.0, 170.0), (10.0, -179.5), (78.0, 15.0), (-33.9, 18.4)]:
        brute = min(haversine_km(lat, lon, c.lat, c.lon) for c in cities)
        assert geocode_reverse(lat=lat, lon=lon)[0]["distance_km"] == round(brute, 1)


@pytest.mark.parametrize(
    ("lat", "lon", "field"),
    [
        (90.1, 0, "lat"),
        (-91, 0, "lat"),
        (0, 180.5, "lon"),
        (0, -181, "lon"),
        (math.nan, 0, "lat"),
        (0, math.inf, "lon"),
        ("abc", 0, "lat"),
        (None, 0, "lat"),
    ],
)
def test_reverse_rejects_invalid_coordinates(lat: object, lon: object, field: str) -> None:
    with pytest.raises(ProductInputError) as exc:
        geocode_reverse(lat=lat, lon=lon)  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.field, exc.value.status) == (
        "invalid_coordinates",
        field,
        400,
    )


def test_haversine_known_distance() -> None:
    # Paris -> London is ~344 km.
    assert 340 < haversine_km(48.8566, 2.3522, 51.5074, -0.1278) < 348


# --------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------


def test_text_positive() -> None:
    result = text_analyze(text="I love this product. It is great and wonderful!")
    sentiment = result["sentiment"]
    assert sentiment["label"] == "positive"
    assert sentiment["score"] == sentiment["compound"] >= 0.05
    # The verdict and the signed score lead; the proportions follow.
    assert list(sentiment) == ["label", "score", "compound", "pos", "neu", "neg"]


def test_text_negative() -> None:
    result = text_analyze(text="This is terrible. I hate it, the worst purchase ever.")
    assert result["sentiment"]["label"] == "negative"
    assert result["sentiment"]["compound"] <= -0.05


def test_text_neutral() -> None:
    result = text_analyze(text="The box is on the table.")
    assert result["sentiment"]["label"] == "neutral"
    assert -0.05 < result["sentiment"]["compound"] < 0.05


def test_text_counts() -> None:
    text = "Hello world. How are you?! I'm fine, pi is 3.14"
    counts = text_analyze(text=text)["counts"]
    assert counts == {"characters": len(text), "words": 10, "sentences": 3}


def test_text_without_terminator_is_one_sentence() -> None:
    assert text_analyze(text="just some words")["counts"]["sentences"] == 1
    assert text_analyze(text="?!")["counts"]["sentences"] == 1


def test_keywords_exclude_stopwords_and_short_words() -> None:
    text = "The cat and the dog. The cat sat on a mat with the dog; cat! Über über ÜBER ok"
    keywords = text_analyze(text=text)["keywords"]
    assert keywords[:3] == [
        {"word": "cat", "count": 3},
        {"word": "über", "count": 3},
        {"word": "dog", "count": 2},
    ]
    words = {k["word"] for k in keywords}
    assert not words & {"the", "and", "with", "on", "a", "ok"}


def test_keywords_top_ten_sorted_by_count_then_word() -> None:
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()  # noqa: SIM905
    text = " ".join(f"{word} " * n for n, word in enumerate(words, 1))
    keywords = text_analyze(text=text)["keywords"]
    assert len(keywords) == 10
    assert keywords[0] == {"word": "lima", "count": 12}
    counts = [k["count"] for k in keywords]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.parametrize("text", ["", "   ", "\n\t ", None, 123, b"bytes"])
def test_text_rejects_invalid(text: object) -> None:
    with pytest.raises(ProductInputError) as exc:
        text_analyze(text=text)  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.field, exc.value.status) == ("invalid_text", "text", 400)


def test_text_too_long_is_413() -> None:
    text_analyze(text="a" * 20_000)  # the limit itself is allowed
    with pytest.raises(ProductInputError) as exc:
        text_analyze(text="a" * 20_001)
    assert (exc.value.code, exc.value.field, exc.value.status) == ("text_too_long", "text", 413)


def test_text_odd_unicode_does_not_crash() -> None:
    odd = [
        "\x00",
        "a\x00b",
        "\ud800 lone",
        "😀😀 great",
        "e\u0301te\u0301",
        "\u202e\u200b",
        "中文。测试！",
    ]
    for text in odd:
        result = text_analyze(text=text)
        assert result["counts"]["sentences"] >= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=500), st.text(alphabet=st.characters(), min_size=1, max_size=50)))
def test_text_analyze_only_raises_product_input_error(text: str) -> None:
    try:
        result = text_analyze(text=text)
    except ProductInputError:
        return
    assert result["sentiment"]["label"] in {"positive", "negative", "neutral"}
    assert len(result["keywords"]) <= 10


# --------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def _red_blue(size: tuple[int, int] = (100, 100)) -> Image.Image:
    img = Image.new("RGB", size, (255, 0, 0))
    img.paste((0, 0, 255), (size[0] // 2, 0, size[0], size[1]))
    return img


def _png_claiming_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR (with a fixed CRC) claims another size."""
    png = bytearray(_encode(Image.new("L", (1, 1)), "PNG"))
    png[16:24] = struct.pack(">II", width, height)
    png[29:33] = struct.pack(">I", zlib.crc32(bytes(png[12:29])))
    return bytes(png)


def test_image_png_red_blue_dominant_colors() -> None:
    result = image_analyze(data=_encode(_red_blue(), "PNG"))
    assert {k: result[k] for k in ("format", "width", "height", "mode", "animated", "frames")} == {
        "format": "PNG",
        "width": 100,
        "height": 100,
        "mode": "RGB",
        "animated": False,
        "frames": 1,
    }
    assert result["megapixels"] == 0.01
    assert result["exif"] == {}
    colors = {c["hex"]: c["share"] for c in result["dominant_colors"]}
    assert colors == {"#ff0000": 0.5, "#0000ff": 0.5}


def test_image_jpeg_colors_survive_compression_noise() -> None:
    colors = image_analyze(data=_encode(_red_blue(), "JPEG"))["dominant_colors"]
    assert len(colors) == 2  # near-identical JPEG shades are merged
    assert all(math.isclose(c["share"], 0.5, abs_tol=0.05) for c in colors)
    assert math.isclose(sum(c["share"] for c in colors), 1.0, abs_tol=0.01)


def test_image_jpeg_exif() -> None:
    exif = Image.Exif()
    exif[271] = "Canon"
    exif[272] = "EOS R5"
    exif[274] = 6
    exif[305] = "TestSoft 1.0"
    exif.get_ifd(0x8769)[36867] = "2024:01:02 03:04:05"
    exif[0x8825] = {1: "S", 2: (33.0, 51.0, 36.0), 3: "W", 4: (151.0, 12.0, 36.0)}
    result = image_analyze(data=io.BytesIO(_encode(_red_blue(), "JPEG", exif=exif)))
    assert result["format"] == "JPEG"
    assert result["exif"] == {
        "make": "Canon",
        "model": "EOS R5",
        "software": "TestSoft 1.0",
        "datetime_original": "2024:01:02 03:04:05",
        "orientation": 6,
        "gps_latitude": -33.86,
        "gps_longitude": -151.21,
    }


def test_image_animated_gif() -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "green", "blue")]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    result = image_analyze(data=data)
    assert (result["format"], result["animated"], result["frames"]) == ("GIF", True, 3)


def test_image_transparent_pixels_are_ignored() -> None:
    img = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    img.paste((0, 255, 0, 255), (0, 0, 5, 10))
    colors = image_analyze(data=_encode(img, "PNG"))["dominant_colors"]
    assert colors == [{"hex": "#00ff00", "share": 1.0}]


def test_image_accepts_file_like() -> None:
    result = image_analyze(data=io.BytesIO(_encode(_red_blue((30, 20)), "WEBP", lossless=True)))
    assert (result["format"], result["width"], result["height"]) == ("WEBP", 30, 20)


@pytest.mark.parametrize(
    "data",
    [
        b"this is not an image at all",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # EPS: refused, never run
        "a string, not bytes",
    ],
)
def test_image_invalid(data: object) -> None:
    with pytest.raises(ProductInputError) as exc:
        image_analyze(data=data)  # type: ignore[arg-type]
    assert (exc.value.code, exc.value.field, exc.value.status) == ("invalid_image", "image", 400)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_image_truncated(fmt: str) -> None:
    data = _encode(_red_blue((200, 200)), fmt)
    with pytest.raises(ProductInputError) as exc:
        image_analyze(data=data[: len(data) // 2])
    assert exc.value.code == "invalid_image"


def test_image_over_max_pixels_refused_before_decoding() -> None:
    # 7000x7000 = 49 MP: over our 40 MP default, under Pillow's bomb warning.
    data = _encode(Image.new("1", (7000, 7000)), "PNG")
    with pytest.raises(ProductInputError) as exc:
        image_analyze(data=data)
    assert (exc.value.code, exc.value.field, exc.value.status) == (
        "image_too_many_pixels",
        "image",
        413,
    )


def test_image_custom_max_pixels() -> None:
    with pytest.raises(ProductInputError) as exc:
        image_analyze(data=_encode(_red_blue(), "PNG"), max_pixels=9_999)
    assert exc.value.code == "image_too_many_pixels"


def test_image_decompression_bomb_warning_becomes_refusal() -> None:
    # 10000x10000 = 100 MP compresses to a few KB; even with a generous
    # max_pixels, Pillow's bomb warning (> ~89 MP) must refuse it.
    data = _encode(Image.new("1", (10_000, 10_000)), "PNG")
    assert len(data) < 100_000
    for max_pixels in (40_000_000, 10**10):
        with pytest.raises(ProductInputError) as exc:
            image_analyze(data=data, max_pixels=max_pixels)
        assert exc.value.code == "image_too_many_pixels"


def test_image_header_claiming_huge_size() -> None:
    # 50000x50000 = 2.5 GP: Pillow raises DecompressionBombError on open.
    data = _png_claiming_size(50_000, 50_000)
    for max_pixels in (40_000_000, 10**10):
        with pytest.raises(ProductInputError) as exc:
            image_analyze(data=data, max_pixels=max_pixels)
        assert (exc.value.code, exc.value.status) == ("image_too_many_pixels", 413)


def test_image_warning_filters_are_restored() -> None:
    before = list(warnings.filters)
    with pytest.raises(ProductInputError):
        image_analyze(data=_encode(Image.new("1", (10_000, 10_000)), "PNG"), max_pixels=10**10)
    image_analyze(data=_encode(_red_blue(), "PNG"))
    assert warnings.filters == before


def test_image_over_max_bytes_is_413() -> None:
    data = _encode(_red_blue(), "PNG")
    for payload in (data, io.BytesIO(data)):
        with pytest.raises(ProductInputError) as exc:
            image_analyze(data=payload, max_bytes=len(data) - 1)
        assert (exc.value.code, exc.value.field, exc.value.status) == (
            "image_too_large",
            "image",
            413,
        )
    assert image_analyze(data=data, max_bytes=len(data))["format"] == "PNG"


def test_image_file_like_reads_at_most_limit_plus_one() -> None:
    class Stream(io.BytesIO):
        requested: list[int] = []

        def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
            self.requested.append(-1 if size is None else size)
            return super().read(size)

    stream = Stream(b"\x00" * 5000)
    with pytest.raises(ProductInputError):
        image_analyze(data=stream, max_bytes=1000)
    assert stream.requested == [1001]


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048), st.integers(min_value=0, max_value=400))
def test_image_mutated_bytes_never_escape(noise: bytes, cut: int) -> None:
    # Splice random bytes into a real PNG: any failure must be a refusal.
    base = _encode(_red_blue((20, 20)), "PNG")
    data = base[:cut] + noise + base[cut + len(noise) // 2 :]
    try:
        image_analyze(data=data)
    except ProductInputError as exc:
        assert exc.code in {"invalid_image", "image_too_many_pixels", "image_too_large"}
