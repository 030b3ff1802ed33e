"""What /v1/docs/ says about each built-in operation: its summary and description, the shape
of its answer, its errors and its examples, one `extend_schema` per view method in
metering/apis.py. The shared error pieces (ErrorSerializer, error_example, the metered
headers) are reused by the verify API's docs and by billing's /v1/usage.

Everything here is read by customers: say what a caller sees and does, never how the service
is built.
"""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer,
)
from rest_framework import serializers

from .errors import error_body
from .products.image import MAX_FRAMES
from .serializers import GeocodeInput, ImageAnalyzeInput, ReverseGeocodeInput, TextAnalyzeInput
from .usage_export import COLUMNS, MAX_DAYS


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, for people; may be reworded.")
    code = serializers.CharField(help_text="What went wrong, for programs: a stable slug (see the error codes table).")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="On bad input: each field at fault and its problems.",
    )
    upgrade_url = serializers.URLField(required=False, help_text=(
        "On `not_entitled` and `quota_exceeded`: the portal page where you change plan."
    ))
    upgrade_plan = inline_serializer("UpgradePlan", {
        "slug": serializers.CharField(help_text="The plan's identifier."),
        "name": serializers.CharField(help_text="The plan's name."),
        "price": serializers.DecimalField(max_digits=12, decimal_places=2, help_text="USD per month."),
    }, required=False, allow_null=True, help_text=(
        "On `not_entitled` and `quota_exceeded`: the cheapest plan that allows the call, or null when none does."
    ))


def _header(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.INT, OpenApiParameter.HEADER, response=True, description=description)


METERED_HEADERS = [
    _header("X-RateLimit-Limit", "Calls allowed per 60-second sliding window (all your keys together)."),
    _header("X-RateLimit-Remaining", "Calls left in the current window."),
    _header("X-RateLimit-Reset", "Seconds until the oldest call in the window leaves it."),
    _header("X-Quota-Limit", "Calls included in your plan this month."),
    _header("X-Quota-Remaining", "Included calls left this month."),
    _header("Retry-After", "On 429: seconds to wait before calling again."),
]


def errors_documented(*codes: int) -> dict:
    described = {
        400: "Bad input; `fields` names each problem.",
        401: "`API key required` or `Invalid API key` (unknown, revoked or expired).",
        402: "`Payment required`: past due beyond the grace period.",
        403: "`Account cancelled` or `Your plan does not include this endpoint` (with `upgrade_url` and "
             "`upgrade_plan`).",
        413: "Payload too large.",
        429: "`Rate limit exceeded`, `Monthly quota exceeded. Upgrade your plan.` (with `upgrade_url` and "
             "`upgrade_plan`), `Spend cap reached` (the monthly ceiling you set) or "
             "`Too many invalid API keys from this address`, with Retry-After.",
        503: "Usage cannot be recorded for a moment; not billed. Retry after Retry-After seconds.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


def errors_described(described: dict[int, str]) -> dict:
    """Error responses with texts of their own (the verify API's differ from the metered ones)."""
    return {code: OpenApiResponse(ErrorSerializer, description=text) for code, text in described.items()}


METERED_ERRORS = (400, 401, 402, 403, 429, 503)


def error_example(name: str, status: int, message: str, code: str, **extra) -> OpenApiExample:
    return OpenApiExample(name, value={**error_body(message, code), **extra}, response_only=True,
                          status_codes=[str(status)])


def ok_example(name: str, value: dict) -> OpenApiExample:
    return OpenApiExample(name, value=value, response_only=True, status_codes=["200"])


def _bad_input_example(name: str, fields: dict) -> OpenApiExample:
    return error_example(name, 400, "Invalid input", "invalid_input", fields=fields)


# Illustrative: the real body names the cheapest public plan of the day.
UPGRADE_EXAMPLE = {
    "upgrade_url": settings.SITE_URL.rstrip("/") + "/portal/billing/plan/",
    "upgrade_plan": {"slug": "starter", "name": "Starter", "price": "49.00"},
}
ACCESS_ERROR_EXAMPLES = [
    error_example("No key", 401, "API key required", "api_key_required"),
    error_example("Bad key", 401, "Invalid API key", "invalid_api_key"),
    error_example("Unpaid invoice", 402, "Payment required", "payment_required"),
    error_example("Cancelled account", 403, "Account cancelled", "account_cancelled"),
]
METERED_ERROR_EXAMPLES = [
    *ACCESS_ERROR_EXAMPLES,
    error_example("Product not in plan", 403, "Your plan does not include this endpoint", "not_entitled",
                  **UPGRADE_EXAMPLE),
    error_example("Rate limit", 429, "Rate limit exceeded", "rate_limited"),
    error_example("Monthly quota", 429, "Monthly quota exceeded. Upgrade your plan.", "quota_exceeded",
                  **UPGRADE_EXAMPLE),
    error_example("Spend cap", 429, "Spend cap reached", "spend_cap"),
    error_example("Try again shortly", 503, "Metering is unavailable; try again shortly", "metering_unavailable"),
]


# --- geocoding ---


class PlaceSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The place's official name.")
    country_code = serializers.CharField(help_text="ISO 3166-1 alpha-2 country code, e.g. `FR`.")
    country = serializers.CharField(allow_null=True, help_text="Country name in English.")
    admin1 = serializers.CharField(allow_null=True, help_text="GeoNames code of the region (state, province).")
    lat = serializers.FloatField(help_text="Latitude, degrees (WGS 84).")
    lon = serializers.FloatField(help_text="Longitude, degrees (WGS 84).")
    population = serializers.IntegerField(help_text="Population as recorded by GeoNames.")
    timezone = serializers.CharField(allow_null=True, help_text="IANA time zone, e.g. `Europe/Paris`.")


PARIS = {"name": "Paris", "country_code": "FR", "country": "France", "admin1": "11", "lat": 48.85341,
         "lon": 2.3488, "population": 2138551, "timezone": "Europe/Paris"}


class GeocodeOutput(serializers.Serializer):
    query = serializers.CharField(help_text="The `q` you sent, trimmed.")
    results = PlaceSerializer(many=True, help_text="Matching places, best first; empty when none match.")


geocode = extend_schema(
    operation_id="geocode", summary="Find places by name", tags=["Geocoding"],
    description=(
        "Cities and towns by name. An exact name (or a known alternate, `Bombay` finds Mumbai) comes first, "
        "then names that start with `q`; within each, the most populous first. Case and accents are ignored: "
        "`sao paulo` finds São Paulo. A call that finds nothing answers 200 with empty `results` and is billed."
    ),
    parameters=[GeocodeInput, *METERED_HEADERS],
    responses={200: GeocodeOutput, **errors_documented(*METERED_ERRORS)},
    examples=[
        ok_example("Paris", {"query": "Paris", "results": [PARIS, {
            "name": "Parys", "country_code": "ZA", "country": "South Africa", "admin1": "03", "lat": -26.9033,
            "lon": 27.45727, "population": 71319, "timezone": "Africa/Johannesburg"}]}),
        _bad_input_example("Missing q", {"q": ["This field is required."]}),
        *METERED_ERROR_EXAMPLES,
    ],
)


class ReverseGeocodeOutput(serializers.Serializer):
    results = inline_serializer("ReversePlace", {
        **PlaceSerializer().fields,
        "distance_km": serializers.FloatField(help_text="Great-circle distance from your point, km, to 0.1."),
    }, many=True, help_text="The nearest places, nearest first.")


geocode_reverse = extend_schema(
    operation_id="geocode_reverse", summary="Find the places nearest to a point", tags=["Geocoding"],
    description="The cities and towns nearest to `lat`, `lon`, nearest first, with their great-circle distance.",
    parameters=[ReverseGeocodeInput, *METERED_HEADERS],
    responses={200: ReverseGeocodeOutput, **errors_documented(*METERED_ERRORS)},
    examples=[
        ok_example("Central Paris", {"results": [{
            **PARIS, "name": "Paris 04 Hôtel-de-Ville", "lat": 48.8601, "lon": 2.3507, "population": 27332,
            "distance_km": 0.4}]}),
        _bad_input_example("Latitude out of range", {"lat": ["Ensure this value is less than or equal to 90."]}),
        *METERED_ERROR_EXAMPLES,
    ],
)


# --- text ---


def _proportion(what: str) -> serializers.FloatField:
    return serializers.FloatField(min_value=0, max_value=1, help_text=(
        f"Proportion of the text that reads {what}, 0 to 1; `pos`, `neu` and `neg` add up to about 1. "
        "A proportion, not a verdict: use `label` and `score`."
    ))


class TextAnalyzeOutput(serializers.Serializer):
    sentiment = inline_serializer("Sentiment", {
        "label": serializers.ChoiceField(["positive", "negative", "neutral"], help_text=(
            "The verdict: `positive` when `score` >= 0.05, `negative` when `score` <= -0.05, "
            "`neutral` in between."
        )),
        "score": serializers.FloatField(min_value=-1, max_value=1, help_text=(
            "Overall sentiment from -1 (most negative) through 0 (neutral) to 1 (most positive): "
            "VADER's compound score for the whole text. VADER is tuned for sentences and short posts; "
            "on long texts the score tends towards -1 or 1."
        )),
        "compound": serializers.FloatField(min_value=-1, max_value=1, help_text=(
            "The same value as `score`, under VADER's own name."
        )),
        "pos": _proportion("positive"), "neu": _proportion("neutral"), "neg": _proportion("negative"),
    })
    counts = inline_serializer("TextCounts", {
        "characters": serializers.IntegerField(help_text="Unicode code points."),
        "words": serializers.IntegerField(help_text="Words, split on spaces and punctuation."),
        "sentences": serializers.IntegerField(help_text="Sentences (at least 1)."),
    })
    keywords = inline_serializer("Keyword", {
        "word": serializers.CharField(help_text="A word of 3 letters or more, lower-cased."),
        "count": serializers.IntegerField(help_text="How often it occurs."),
    }, many=True, help_text="Up to 10 most frequent words, common words (the, and, is…) left out.")


text_analyze = extend_schema(
    operation_id="text_analyze", summary="Analyze a text's sentiment, counts and keywords", tags=["Text"],
    description=(
        "Send JSON `{\"text\": \"…\"}`. The answer says whether the text reads positive, negative or "
        "neutral (`sentiment.label`) and how strongly (`sentiment.score`, -1 to 1), counts its characters, "
        "words and sentences, and lists its most frequent words. Sentiment is tuned for English sentences "
        "and short posts (reviews, messages, comments); it understands negation (`not good`), emphasis "
        "(`GREAT!!!`) and emoji."
    ),
    request=TextAnalyzeInput, parameters=METERED_HEADERS,
    responses={200: TextAnalyzeOutput, **errors_documented(*METERED_ERRORS, 413)},
    examples=[
        OpenApiExample("A product review", request_only=True, value={
            "text": "The new release is fast and the docs are great. Support never answered, though.",
        }),
        ok_example("A product review", {
            "sentiment": {"label": "positive", "score": 0.7783, "compound": 0.7783, "pos": 0.362, "neu": 0.638,
                          "neg": 0.0},
            "counts": {"characters": 79, "words": 14, "sentences": 2},
            "keywords": [{"word": "answered", "count": 1}, {"word": "docs", "count": 1},
                         {"word": "fast", "count": 1}, {"word": "great", "count": 1}],
        }),
        _bad_input_example("Missing text", {"text": ["This field is required."]}),
        error_example("Body too large", 413, "Request body too large", "payload_too_large"),
        *METERED_ERROR_EXAMPLES,
    ],
)


# --- image ---


class ImageAnalyzeOutput(serializers.Serializer):
    format = serializers.CharField(help_text="`JPEG`, `PNG`, `GIF`, `WEBP`, `BMP`, `TIFF` or `AVIF`.")
    width = serializers.IntegerField(help_text="Pixels.")
    height = serializers.IntegerField(help_text="Pixels.")
    mode = serializers.CharField(help_text="Pixel format, e.g. `RGB`, `RGBA`, `L` (greyscale), `P` (palette).")
    megapixels = serializers.FloatField(help_text="width × height / 1,000,000, to two decimals.")
    animated = serializers.BooleanField(help_text="True when the file holds more than one frame.")
    frames = serializers.IntegerField(help_text=(
        f"Frames (TIFF: pages), counted up to {MAX_FRAMES:,}: {MAX_FRAMES:,} means that many or more."
    ))
    dominant_colors = inline_serializer("DominantColor", {
        "hex": serializers.CharField(help_text="Colour as `#rrggbb`."),
        "share": serializers.FloatField(help_text="Part of the image in this colour, 0 to 1."),
    }, many=True, help_text="The main colours, largest share first.")
    exif = serializers.DictField(help_text=(
        "Camera metadata found in the file (`make`, `model`, `datetime_original`, `orientation`, …); "
        "only the keys present, `{}` when none or when the EXIF block is larger than 64 KiB."
    ))


_NOT_AN_IMAGE = "Not a valid image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF)."

image_analyze = extend_schema(
    operation_id="image_analyze", summary="Describe an image: format, size, colours and EXIF", tags=["Image"],
    description=(
        "Upload the file as `multipart/form-data` in the field `image`. The answer gives its format, size, "
        "pixel format, frame count, main colours and basic camera metadata. The file is read, not stored."
    ),
    request={"multipart/form-data": ImageAnalyzeInput},
    parameters=METERED_HEADERS, responses={200: ImageAnalyzeOutput, **errors_documented(*METERED_ERRORS, 413)},
    examples=[
        ok_example("A photo", {
            "format": "JPEG", "width": 1200, "height": 800, "mode": "RGB", "megapixels": 0.96,
            "animated": False, "frames": 1,
            "dominant_colors": [{"hex": "#1e5ac8", "share": 0.625}, {"hex": "#eff0ea", "share": 0.375}],
            "exif": {"make": "Canon", "model": "Canon EOS R6", "orientation": 1},
        }),
        error_example("Not an image", 400, _NOT_AN_IMAGE, "invalid_image", fields={"image": [_NOT_AN_IMAGE]}),
        error_example("Too large", 413, "Image larger than 10 MB", "image_too_large",
                      fields={"image": ["Image larger than 10 MB"]}),
        *METERED_ERROR_EXAMPLES,
    ],
)


# --- usage export ---


def _export_parameter(name: str, description: str) -> OpenApiParameter:
    # Its example comes from the operation's code sample (metering/schema.py SAMPLES).
    return OpenApiParameter(name, OpenApiTypes.DATE, OpenApiParameter.QUERY, required=False, description=description)


USAGE_EXPORT_CSV = (
    ",".join(COLUMNS) + "\r\n"
    "2026-11-01,geocode,12,Production,sk_live_…9f3a61c2,active,1840\r\n"
    "2026-11-01,geocode,,Deleted key,,deleted,12\r\n"
    "2026-11-01,text,12,Production,sk_live_…9f3a61c2,active,310\r\n"
    "2026-11-02,geocode,7,Old server,sk_live_…0b44e8d1,revoked,95\r\n"
)

usage_export = extend_schema(
    operation_id="usage_export", summary="Export your calls by day, product and key (CSV)", tags=["Account"],
    description=(
        "Your calls (those answered 2xx, the calls that are billed) for a range of days (UTC), one CSV row per "
        "day, product and key, sorted by day, "
        "product and key name: the same counts as the portal's usage page, whose Export button downloads the "
        "same file. Counts only; `GET /v1/usage` has the money. Calls made in the last minute are included. "
        "Columns: `day` (YYYY-MM-DD), `product` (e.g. `geocode`), `key_id`, `key_name`, `key` (the key's first "
        "and last characters, `sk_live_…last8`, never the whole key), `key_status` (`active`, `expiring` "
        "after a rotation, `expired`, `revoked`, or `deleted` with an empty `key_id` for keys that no longer "
        "exist) and `calls`. Days and products without calls have no row. A key name starting with `=`, `+`, "
        "`-` or `@` is written with a leading `'` so that spreadsheets do not run it as a formula.\n\n"
        "`mode=test` exports your test-mode calls instead: one row per day and product for all of your "
        "`sk_test_` keys together (`key_name` `All test keys`, `key_status` `test`), kept for this month "
        "and last month only. Free, and outside your plan's rate limit; it shares the "
        f"{settings.USAGE_API_PER_MINUTE} calls a minute of `GET /v1/usage` (then 429 `rate_limited`). Errors "
        "are JSON, as everywhere."
    ),
    parameters=[
        _export_parameter("from", "First day, included, `YYYY-MM-DD` (UTC). Default: the first day of the month "
                                  "of `to`."),
        _export_parameter("to", "Last day, included, `YYYY-MM-DD` (UTC), on or after `from`, the range at most "
                                f"{MAX_DAYS} days long. Default: today."),
        OpenApiParameter("mode", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False, enum=["live", "test"],
                         description="`live` (the default): billed calls, per key. `test`: test-mode calls, "
                                     "per day and product."),
        OpenApiParameter("Content-Disposition", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200],
                         description="`attachment; filename=\"usage-2026-11-01-to-2026-11-30.csv\"`."),
    ],
    responses={
        (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description=(
            f"The CSV, UTF-8, with a header row: `{','.join(COLUMNS)}`."
        )),
        **{(status_code, "application/json"): response for status_code, response in errors_described({
            400: "Bad `from`, `to` or `mode`; `fields` names each problem.",
            401: "`API key required`, `Invalid API key` (unknown or expired) or `This API key was revoked`.",
            402: "`Payment required`: past due beyond the grace period.",
            403: "`Account cancelled`.",
            429: f"`Rate limit exceeded`: more than {settings.USAGE_API_PER_MINUTE} calls a minute to this export "
                 "and `GET /v1/usage` together; or `Too many invalid API keys from this address`. With Retry-After.",
            503: "Briefly unavailable (with `mode=test`: the test-mode counts cannot be read); retry after "
                 "Retry-After seconds.",
        }).items()},
    },
    examples=[
        OpenApiExample("Two days of November", value=USAGE_EXPORT_CSV, response_only=True, media_type="text/csv",
                       status_codes=["200"]),
        _bad_input_example("Range too long", {"to": ["At most 366 days at once: end on 2027-01-01 or earlier."]}),
        _bad_input_example("Not a date", {"from": ["Enter a date as YYYY-MM-DD, e.g. 2026-11-30."]}),
        *ACCESS_ERROR_EXAMPLES,
        error_example("Rate limit", 429, "Rate limit exceeded", "rate_limited"),
        error_example("Test counts unavailable", 503, "Metering is unavailable; try again shortly",
                      "metering_unavailable"),
    ],
)
