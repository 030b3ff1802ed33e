"""The metered /v1 API: one APIView per operation, thin, over the product analyzers."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_serializer, inline_serializer,
)
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from plans.models import Product

from .meter import meter_settle
from .parsers import MAX_JSON_DEPTH, BoundedJSONParser
from .products.errors import ProductInputError
from .products.geocode import geocode_reverse, geocode_search
from .products.image import DEFAULT_MAX_FULL_DECODE_PIXELS as MAX_FULL_DECODE_PIXELS
from .products.image import MAX_FRAMES, image_analyze
from .products.text import MAX_TEXT_LENGTH, text_analyze
from .selectors import usage_summary
from .throttling import PlanThrottle, RateLimited, UsageReadThrottle, throttled_error


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField()
    code = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


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


def _errors(*codes: int) -> dict:
    described = {
        400: "Bad input; `fields` names each problem.",
        401: "`API key required` or `Invalid API key` (unknown, revoked or expired).",
        402: "`Payment required`: past due beyond the grace period.",
        403: "`Account cancelled` or `Your plan does not include this endpoint`.",
        413: "Payload too large.",
        429: "`Rate limit exceeded`, `Monthly quota exceeded. Upgrade your plan.`, `Spend cap reached` "
             "(the monthly ceiling you set) or `Too many invalid API keys from this address`, with Retry-After.",
        503: "Metering unavailable (only when fail-open is turned off).",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=described[code]) for code in codes}


METERED_ERRORS = (400, 401, 402, 403, 429, 503)


class MeteredApi(APIView):
    """A billed endpoint: entitlement, then one Lua call, then the usage headers."""

    product: str = ""
    throttle_classes = [PlanThrottle]

    def throttled(self, request, wait):
        raise throttled_error(request, wait)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        result = getattr(request, "meter", None)
        if result is not None:
            # Only a 2xx is billed; a product's 400/413/415 or a 5xx is released (DESIGN §4).
            meter_settle(result=result, status_code=response.status_code)
            response["X-RateLimit-Limit"] = result.rate_limit
            response["X-RateLimit-Remaining"] = result.rate_remaining
            response["X-RateLimit-Reset"] = result.rate_reset_seconds
            response["X-Quota-Limit"] = result.quota_limit
            response["X-Quota-Remaining"] = result.quota_remaining
        return response


class PlaceSerializer(serializers.Serializer):
    name = serializers.CharField()
    country_code = serializers.CharField()
    country = serializers.CharField(allow_null=True)
    admin1 = serializers.CharField(allow_null=True)
    lat = serializers.FloatField()
    lon = serializers.FloatField()
    population = serializers.IntegerField()
    timezone = serializers.CharField(allow_null=True)


class GeocodeApi(MeteredApi):
    product = Product.GEOCODE

    @extend_schema_serializer(component_name="GeocodeInput")
    class InputSerializer(serializers.Serializer):
        q = serializers.CharField(max_length=200, trim_whitespace=True, help_text=(
            "A city name or its beginning, 1 to 200 characters; case and accents are ignored."
        ))
        limit = serializers.IntegerField(min_value=1, max_value=20, default=5)

    @extend_schema_serializer(component_name="GeocodeOutput")
    class OutputSerializer(serializers.Serializer):
        query = serializers.CharField()
        results = PlaceSerializer(many=True)

    @extend_schema(
        operation_id="geocode", parameters=[InputSerializer, *METERED_HEADERS],
        responses={200: OutputSerializer, **_errors(*METERED_ERRORS)},
    )
    def get(self, request):
        data = _valid(self.InputSerializer, request.query_params)
        results = geocode_search(query=data["q"], limit=data["limit"])
        return Response({"query": data["q"], "results": results})


class ReverseGeocodeApi(MeteredApi):
    product = Product.GEOCODE

    @extend_schema_serializer(component_name="ReverseGeocodeInput")
    class InputSerializer(serializers.Serializer):
        lat = serializers.FloatField(min_value=-90, max_value=90)
        lon = serializers.FloatField(min_value=-180, max_value=180)
        limit = serializers.IntegerField(min_value=1, max_value=20, default=1)

    @extend_schema_serializer(component_name="ReverseGeocodeOutput")
    class OutputSerializer(serializers.Serializer):
        results = inline_serializer(
            "ReversePlace", {**PlaceSerializer().fields, "distance_km": serializers.FloatField()}, many=True
        )

    @extend_schema(
        operation_id="geocode_reverse", parameters=[InputSerializer, *METERED_HEADERS],
        responses={200: OutputSerializer, **_errors(*METERED_ERRORS)},
    )
    def get(self, request):
        data = _valid(self.InputSerializer, request.query_params)
        return Response({"results": geocode_reverse(lat=data["lat"], lon=data["lon"], limit=data["limit"])})


def _proportion(what: str) -> serializers.FloatField:
    return serializers.FloatField(min_value=0, max_value=1, help_text=(
        f"Proportion of the text that reads {what}, 0 to 1; `pos`, `neu` and `neg` add up to about 1. "
        "A proportion, not a verdict: use `label` and `score`."
    ))


class TextAnalyzeApi(MeteredApi):
    product = Product.TEXT
    parser_classes = [BoundedJSONParser]

    @extend_schema_serializer(component_name="TextAnalyzeInput")
    class InputSerializer(serializers.Serializer):
        text = StrictCharField(max_length=MAX_TEXT_LENGTH, trim_whitespace=False, help_text=(
            f"The text to analyze: 1 to {MAX_TEXT_LENGTH:,} characters (Unicode code points), not only "
            f"whitespace. The JSON body may nest at most {MAX_JSON_DEPTH} levels deep."
        ))

    @extend_schema_serializer(component_name="TextAnalyzeOutput")
    class OutputSerializer(serializers.Serializer):
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
            "characters": serializers.IntegerField(), "words": serializers.IntegerField(),
            "sentences": serializers.IntegerField(),
        })
        keywords = inline_serializer(
            "Keyword", {"word": serializers.CharField(), "count": serializers.IntegerField()}, many=True
        )

    @extend_schema(
        operation_id="text_analyze", request=InputSerializer, parameters=METERED_HEADERS,
        responses={200: OutputSerializer, **_errors(*METERED_ERRORS, 413)},
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
        data = _valid(self.InputSerializer, request.data)
        return Response(text_analyze(text=data["text"]))


class ImageAnalyzeApi(MeteredApi):
    product = Product.IMAGE
    parser_classes = [MultiPartParser]

    @extend_schema_serializer(component_name="ImageAnalyzeInput")
    class InputSerializer(serializers.Serializer):
        image = serializers.FileField(help_text=(
            f"JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF, at most {settings.IMAGE_MAX_BYTES / 1_048_576:g} MB. "
            f"JPEG may have up to {settings.IMAGE_MAX_PIXELS / 1e6:g} megapixels; other formats, decoded in full, "
            f"up to {min(settings.IMAGE_MAX_PIXELS, MAX_FULL_DECODE_PIXELS) / 1e6:g}. A file of too many parts "
            "(frames, chunks, markers, or progressive scans) answers 413 `image_too_complex`."
        ))

    @extend_schema_serializer(component_name="ImageAnalyzeOutput")
    class OutputSerializer(serializers.Serializer):
        format = serializers.CharField()
        width = serializers.IntegerField()
        height = serializers.IntegerField()
        mode = serializers.CharField()
        megapixels = serializers.FloatField()
        animated = serializers.BooleanField()
        frames = serializers.IntegerField(help_text=(
            f"Frames (TIFF: pages), counted up to {MAX_FRAMES:,}: {MAX_FRAMES:,} means that many or more."
        ))
        dominant_colors = inline_serializer(
            "DominantColor", {"hex": serializers.CharField(), "share": serializers.FloatField()}, many=True
        )
        exif = serializers.DictField()

    @extend_schema(
        operation_id="image_analyze", request={"multipart/form-data": InputSerializer},
        parameters=METERED_HEADERS, responses={200: OutputSerializer, **_errors(*METERED_ERRORS, 413)},
    )
    def post(self, request):
        # Refuse an oversized upload before Django spools it to disk.
        if _content_length(request) > settings.IMAGE_MAX_BYTES + 64 * 1024:
            raise _image_too_large()
        data = _valid(self.InputSerializer, request.data)
        upload = data["image"]
        if upload.size > settings.IMAGE_MAX_BYTES:
            raise _image_too_large()
        return Response(image_analyze(
            data=upload.read(), max_bytes=settings.IMAGE_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS,
        ))


class UsageApi(APIView):
    """The caller's own usage this period (as GitHub's /rate_limit): not billed, outside the plan's
    rate limit, but limited on its own (USAGE_API_PER_MINUTE per customer)."""

    throttle_classes = [UsageReadThrottle]

    def throttled(self, request, wait):
        raise RateLimited(wait=wait)

    @extend_schema_serializer(component_name="UsageOutput")
    class OutputSerializer(serializers.Serializer):
        period = serializers.CharField(help_text="YYYY-MM, UTC")
        plan = serializers.CharField()
        calls = serializers.IntegerField()
        included = serializers.IntegerField()
        remaining = serializers.IntegerField()
        overage_calls = serializers.IntegerField()
        overage_amount = serializers.DecimalField(
            max_digits=12, decimal_places=2, help_text="Overage so far this period, USD (before tax)."
        )
        rate_limit_per_minute = serializers.IntegerField()
        by_product = serializers.DictField(child=serializers.IntegerField())

    @extend_schema(operation_id="usage", responses={200: OutputSerializer, **_errors(401, 402, 403, 429)})
    def get(self, request):
        config = request.auth
        summary = usage_summary(customer_id=config.customer_id, day=timezone.now().date(), cached=True)
        overage_calls = 0 if config.hard_cap else max(0, summary.calls - config.included_calls)
        return Response({
            "period": summary.period,
            "plan": config.plan_name,
            "calls": summary.calls,
            "included": config.included_calls,
            "remaining": max(0, config.included_calls - summary.calls),
            "overage_calls": overage_calls,
            "overage_amount": str(overage_amount(calls=overage_calls, unit_price=Decimal(config.overage_price))),
            "rate_limit_per_minute": config.rate_per_minute,
            "by_product": summary.by_product,
        })


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _image_too_large() -> ProductInputError:
    limit = settings.IMAGE_MAX_BYTES / 1_048_576
    return ProductInputError(f"Image larger than {limit:g} MB", code="image_too_large", status=413, field="image")


def overage_amount(*, calls: int, unit_price: Decimal) -> Decimal:
    """Money is Decimal end to end; invoice lines round half-up to cents (DESIGN §3)."""
    return (unit_price * calls).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
