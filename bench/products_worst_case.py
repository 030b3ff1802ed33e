"""The slowest inputs we know for each product, and the CPU time each costs.

    make bench-products      (or: python bench/products_worst_case.py)

README "The metered API": no input a client may send makes one call cost more than about a second of
CPU. Each case below is an input built to hit a known expensive path (VADER's emoji and
negation rules, Unicode normalisation, the JSON decoder, Pillow's per-marker parsing and
full-size decoding); the time is `time.process_time()` around the product function, or
around DRF's request parsing and validation for bodies, so no server is needed. Inputs are
built before the clock starts. `metering/tests/test_worst_case.py` keeps every case under a
generous bound. BENCH_QUICK=1 times one cheap case per product, once (QUICK_CASES).
"""
from __future__ import annotations

import io
import os
import statistics
import struct
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_BODY = 2 * 1024 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE
MAX_TEXT = 20_000
IMAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Case:
    product: str
    label: str
    build: Callable[[], Callable[[], str]]  # makes the input, returns the call to time
    expect: str  # the answer: "200", or the status and error code


def _outcome(call: Callable[[], object]) -> str:
    from django.core.exceptions import SuspiciousOperation
    from rest_framework.exceptions import APIException, ValidationError

    from metering.products.errors import ProductInputError

    try:
        call()
    except ProductInputError as exc:
        return f"{exc.status} {exc.code}"
    except ValidationError:
        return "400 invalid_input"
    except APIException as exc:
        return f"{exc.status_code} {exc.get_codes()}"
    except SuspiciousOperation:  # the /v1 exception handler answers these 413
        return "413 payload_too_large"
    except Exception as exc:  # noqa: BLE001 - the bench reports, the test asserts
        return f"refused: {type(exc).__name__}"
    return "200"


# --------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------


def _text(text: str) -> Callable[[], Callable[[], str]]:
    def build() -> Callable[[], str]:
        from metering.products.text import text_analyze

        return lambda: _outcome(lambda: text_analyze(text=text))

    return build


def _fill(unit: str, length: int = MAX_TEXT) -> str:
    return (unit * (length // len(unit) + 1))[:length]


TEXT_CASES = [
    Case("text", "20,000 emoji, six VADER words each (😸)", _text("😸" * MAX_TEXT), expect="200"),
    Case("text", "20,000 mixed emoji", _text(_fill("😀😂😢💔😡🥰")), expect="200"),
    Case("text", "one letter + 19,999 combining marks", _text("e" + "\u0301" * (MAX_TEXT - 1)), expect="200"),
    Case("text", "one 20,000-letter word", _text("a" * MAX_TEXT), expect="200"),
    Case("text", "10,000 one-letter words", _text(_fill("a ")), expect="200"),
    Case("text", "3,333 short sentences (Good!)", _text(_fill("Good! ")), expect="200"),
    Case("text", "negation + 'but' on every word", _text(_fill("not bad but never good ")), expect="200"),
    Case("text", "CAPS, boosters, !!! and ??? everywhere", _text(_fill("VERY GOOD!!! so bad??? ")), expect="200"),
    Case("text", "2,000-word vocabulary, no repeats",
         _text(_fill(" ".join(f"w{n}ord" for n in range(2_000)) + " ")), expect="200"),
]


# --------------------------------------------------------------------------------------
# JSON bodies through DRF: parsing, then the text product's validation
# --------------------------------------------------------------------------------------


def _body(body: bytes, *, analyze: bool = False) -> Callable[[], Callable[[], str]]:
    def build() -> Callable[[], str]:
        from rest_framework.request import Request
        from rest_framework.test import APIRequestFactory

        from metering.parsers import BoundedJSONParser
        from metering.products.text import text_analyze
        from metering.serializers import TextAnalyzeInput

        def call() -> None:
            django_request = APIRequestFactory().post("/v1/text/analyze", body, content_type="application/json")
            data = Request(django_request, parsers=[BoundedJSONParser()]).data
            serializer = TextAnalyzeInput(data=data)
            serializer.is_valid(raise_exception=True)
            if analyze:
                text_analyze(text=serializer.validated_data["text"])

        return lambda: _outcome(call)

    return build


def _json_list(item: bytes, size: int = MAX_BODY - 2) -> bytes:
    count = size // (len(item) + 1)
    return b"[" + b",".join([item] * count) + b"]"


JSON_CASES = [
    Case("text body", "[ x 1,000,000 then ] x 1,000,000",
         _body(b"[" * 1_000_000 + b"]" * 1_000_000), expect="400 parse_error"),
    Case("text body", '{"a": x 300,000 (objects)',
         _body(b'{"a":' * 300_000 + b"1" + b"}" * 300_000), expect="400 parse_error"),
    Case("text body", "33 levels: one over the limit", _body(b"[" * 33 + b"]" * 33), expect="400 parse_error"),
    Case("text body", "2 MB of [] in one list", _body(_json_list(b"[]")), expect="400 invalid_input"),
    Case("text body", "2 MB of {} in one list", _body(_json_list(b"{}")), expect="400 invalid_input"),
    Case("text body", "2 MB of 0 in one list", _body(_json_list(b"0")), expect="400 invalid_input"),
    Case("text body", "2 MB integer (digit limit)", _body(b"1" * (MAX_BODY - 1)), expect="400 parse_error"),
    Case("text body", "2 MB body, text of \\u escapes",
         _body(b'{"text": "' + b"\\u00e9" * 340_000 + b'"}'), expect="400 invalid_input"),
    Case("text body", "20,000 emoji as \\ud83d\\ude38, analyzed",
         _body(b'{"text": "' + b"\\ud83d\\ude38" * MAX_TEXT + b'"}', analyze=True), expect="200"),
    Case("text body", "body one byte over 2 MB",
         _body(b'{"text": "' + b"a" * MAX_BODY + b'"}'), expect="413 payload_too_large"),
]


# --------------------------------------------------------------------------------------
# Geocode
# --------------------------------------------------------------------------------------


def _search(query: str, limit: int = 20) -> Callable[[], Callable[[], str]]:
    def build() -> Callable[[], str]:
        from metering.products.geocode import geocode_search, geocode_warm

        geocode_warm()  # built once per worker at start-up (config/wsgi.py), not per call
        return lambda: _outcome(lambda: geocode_search(query=query, limit=limit))

    return build


def _reverse(lat: float, lon: float) -> Callable[[], Callable[[], str]]:
    def build() -> Callable[[], str]:
        from metering.products.geocode import geocode_reverse, geocode_warm

        geocode_warm()
        return lambda: _outcome(lambda: geocode_reverse(lat=lat, lon=lon, limit=20))

    return build


GEOCODE_CASES = [
    Case("geocode", "prefix 's' (thousands of names), limit 20", _search("s"), expect="200"),
    Case("geocode", "prefix 'nt' (alternate names only), limit 20", _search("nt"), expect="200"),
    Case("geocode", "'a' + 199 combining marks", _search("a" + "\u0301" * 199), expect="200"),
    Case("geocode", "200 x U+FDFA (NFKD: 18 letters each)", _search("\ufdfa" * 200), expect="200"),
    Case("geocode", "200 letters, no match", _search("a" * 200), expect="200"),
    Case("geocode", "reverse, empty South Pacific", _reverse(-60.0, -120.0), expect="200"),
    Case("geocode", "reverse, South Pole", _reverse(-90.0, 0.0), expect="200"),
]


# --------------------------------------------------------------------------------------
# Image
# --------------------------------------------------------------------------------------


def _image(make: Callable[[], bytes]) -> Callable[[], Callable[[], str]]:
    def build() -> Callable[[], str]:
        from metering.products.image import image_analyze

        data = make()
        return lambda: _outcome(lambda: image_analyze(data=data))

    return build


def _encode(image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_paeth(width: int, height: int) -> bytes:
    """16-bit RGBA, every row Paeth-filtered: the dearest pixels to decode, a few hundred KB on the wire."""
    compressor = zlib.compressobj(9)
    row = b"\x04" + bytes(width * 8)
    data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def _png_many_chunks() -> bytes:
    header = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    junk = _png_chunk(b"xxXx", b"")
    body = junk * ((IMAGE_BYTES - 200) // len(junk))
    tail = _png_chunk(b"IDAT", zlib.compress(bytes(4))) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + header + body + tail


def _png_huge_exif() -> bytes:
    """IFD0, the EXIF IFD and the GPS IFD with 60,000 entries each."""
    from PIL import Image

    entries = 60_000
    size = 2 + 12 * entries + 4
    pointers = [(0x8769, 4, 8 + size), (0x8825, 4, 8 + 2 * size)]

    def ifd(extra: list[tuple[int, int, int]]) -> bytes:
        rows = [struct.pack(">HHII", tag, kind, 1, value) for tag, kind, value in extra]
        rows += [struct.pack(">HHI4s", 3000 + n, 2, 4, b"abc\x00") for n in range(entries - len(extra))]
        return struct.pack(">H", entries) + b"".join(rows) + struct.pack(">I", 0)

    blob = b"MM\x00*" + struct.pack(">I", 8) + ifd(pointers) + ifd([]) + ifd([])
    png = _encode(Image.new("RGB", (4, 4)), "PNG")
    return png[:33] + _png_chunk(b"eXIf", blob) + png[33:]


def _jpeg_scans(extra_scans: int) -> bytes:
    """A 40 MP progressive JPEG with `extra_scans` copies of its smallest AC scan appended."""
    from PIL import Image

    raw = _encode(Image.new("L", (8000, 5000), 128), "JPEG", progressive=True)
    sos = [i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] == 0xDA]
    scans = [raw[start:end] for start, end in zip(sos, [*sos[1:], len(raw) - 2], strict=True)]
    return raw[:-2] + min(scans[1:], key=len) * extra_scans + b"\xff\xd9"


def _jpeg_markers(marker: bytes) -> bytes:
    from PIL import Image

    small = _encode(Image.new("RGB", (8, 8)), "JPEG")
    cut = 4 + struct.unpack(">H", small[4:6])[0]  # after SOI and the JFIF segment
    return small[:cut] + marker * ((IMAGE_BYTES - len(small)) // len(marker)) + small[cut:]


def _gif_frames() -> bytes:
    from PIL import Image

    gif = _encode(Image.new("P", (1, 1)), "GIF")
    frame = b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00"  # a 1x1 image block
    head = gif[: gif.index(b",")]
    return head + frame * ((IMAGE_BYTES - 100) // len(frame)) + b";"


def _tiff_pages(count: int) -> bytes:
    """`count` 1x1 grey pages sharing one pixel (Pillow's own writer is quadratic in pages)."""
    tags = [(256, 3, 1), (257, 3, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 8), (278, 3, 1), (279, 4, 1)]
    ifd_size = 2 + 12 * len(tags) + 4
    out = [b"II*\x00", struct.pack("<I", 12), b"\x80\x00\x00\x00"]  # header, then the shared pixel
    for page in range(count):
        next_offset = 0 if page == count - 1 else 12 + (page + 1) * ifd_size
        rows = b"".join(struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags)
        out.append(struct.pack("<H", len(tags)) + rows + struct.pack("<I", next_offset))
    return b"".join(out)


def _noise(width: int, height: int, fmt: str, **options) -> Callable[[], bytes]:
    def make() -> bytes:
        from PIL import Image

        return _encode(Image.effect_noise((width, height), 60).convert("RGB"), fmt, **options)

    return make


def _flat(mode: str, size: tuple[int, int], fmt: str, **options) -> Callable[[], bytes]:
    def make() -> bytes:
        from PIL import Image

        return _encode(Image.new(mode, size, 90), fmt, **options)

    return make


IMAGE_CASES = [
    Case("image", "24 MP 16-bit RGBA PNG, Paeth rows (largest full decode)",
         _image(lambda: _png_paeth(6000, 4000)), expect="200"),
    Case("image", "25 MP 16-bit RGBA PNG (over the PNG limit)",
         _image(lambda: _png_paeth(6250, 4000)), expect="413 image_too_many_pixels"),
    Case("image", "40 MP progressive JPEG (largest allowed)", _image(lambda: _jpeg_scans(0)), expect="200"),
    Case("image", "40 MP progressive JPEG, 19 extra scans (25 in all)",
         _image(lambda: _jpeg_scans(19)), expect="200"),
    Case("image", "40 MP progressive JPEG, 20 extra scans (26: refused)",
         _image(lambda: _jpeg_scans(20)), expect="413 image_too_complex"),
    Case("image", "40 MP progressive JPEG, 100,000 extra scans",
         _image(lambda: _jpeg_scans(100_000)), expect="413 image_too_complex"),
    Case("image", "JPEG, 10 MB of COM markers",
         _image(lambda: _jpeg_markers(b"\xff\xfe\x00\x02")), expect="413 image_too_complex"),
    Case("image", "JPEG, 10 MB of junk bytes between markers",
         _image(lambda: _jpeg_markers(b"\x00")), expect="413 image_too_complex"),
    Case("image", "PNG, 10 MB of empty chunks", _image(_png_many_chunks), expect="413 image_too_complex"),
    Case("image", "PNG, 180,000 EXIF tags in three IFDs", _image(_png_huge_exif), expect="200"),
    Case("image", "GIF, 10 MB of 1x1 frames", _image(_gif_frames), expect="413 image_too_complex"),
    Case("image", "TIFF, 100,000 pages", _image(lambda: _tiff_pages(100_000)), expect="200"),
    Case("image", "24 MP WebP, lossy noise",
         _image(_noise(16383, 1464, "WEBP", quality=1, method=0)), expect="200"),
    Case("image", "24 MP TIFF, 16-bit grey, deflate",
         _image(_flat("I;16", (6000, 4000), "TIFF", compression="tiff_adobe_deflate")), expect="200"),
    Case("image", "24 MP GIF", _image(_flat("P", (6000, 4000), "GIF")), expect="200"),
    Case("image", "24 MP AVIF", _image(_flat("RGB", (6000, 4000), "AVIF", quality=10, speed=10)), expect="200"),
]

CASES = TEXT_CASES + JSON_CASES + GEOCODE_CASES + IMAGE_CASES


# --------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------


def case_measure(case: Case, *, repeats: int = 1) -> tuple[float, str]:
    """Median CPU milliseconds of `repeats` calls, and what the call answered."""
    call = case.build()
    call()  # warm: first-use imports and lazily built tables are not what we measure
    timings = []
    for _ in range(repeats):
        start = time.process_time()
        outcome = call()
        timings.append((time.process_time() - start) * 1000)
    return statistics.median(timings), outcome


# BENCH_QUICK=1: one case per product whose input is quick to build, to show the bench runs.
QUICK_CASES = ("one 20,000-letter word", "33 levels: one over the limit", "200 letters, no match",
               "JPEG, 10 MB of junk bytes between markers")


def main() -> None:
    from bench.load import QUICK, knob

    repeats = knob("BENCH_REPEATS", 3, 1)
    cases = [case for case in CASES if case.label in QUICK_CASES] if QUICK else CASES
    if len(cases) < (len(QUICK_CASES) if QUICK else 1):
        sys.exit(f"QUICK_CASES names a case that is gone: {QUICK_CASES}")
    rows = []
    for case in cases:
        ms, outcome = case_measure(case, repeats=repeats)
        rows.append((case, ms, outcome))
        flag = "" if outcome == case.expect else f"  (expected {case.expect})"
        print(f"  {case.product:9} {ms:8.1f} ms  {outcome:26} {case.label}{flag}", file=sys.stderr, flush=True)
    print(f"\nSlowest input per product (CPU ms, median of {repeats}):\n")
    print(f"| {'product':9} | {'slowest input':58} | {'CPU ms':>7} | {'answer':25} |")
    print(f"|{'-' * 11}|{'-' * 60}|{'-' * 8}:|{'-' * 27}|")
    for product in dict.fromkeys(case.product for case in cases):
        case, ms, outcome = max((row for row in rows if row[0].product == product), key=lambda row: row[1])
        print(f"| {product:9} | {case.label:58} | {ms:7.1f} | {outcome:25} |")
    unexpected = [case.label for case, _, outcome in rows if outcome != case.expect]
    if unexpected:
        sys.exit(f"unexpected answers: {unexpected}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Nothing here signs or serves anything; the settings only refuse to load without a key.
    os.environ.setdefault("SECRET_KEY", "products-bench-" + "x" * 50)
    import django

    django.setup()
    main()
