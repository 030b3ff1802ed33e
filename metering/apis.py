"""The /v1 API views: one thin APIView per operation. The built-in products' views meter each
call around their analyzer; the verify views answer a product's own service. What each
accepts is in metering/serializers.py; what /v1/docs/ says about it, in metering/api_docs.py
and metering/verify_docs.py."""
from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from plans.models import BuiltinProduct

from . import api_docs, verify_docs
from .authentication import MODE_HEADER, mode_header_set
from .gate import MeteredGate
from .parsers import BoundedJSONParser
from .products.errors import ProductInputError
from .products.geocode import geocode_reverse, geocode_search
from .products.image import image_analyze
from .products.text import text_analyze
from .serializers import (
    CallSettleInput, GeocodeInput, ImageAnalyzeInput, ReverseGeocodeInput, TextAnalyzeInput, VerifyInput, json_object,
    valid,
)
from .service_tokens import ServiceTokenAuthentication, ServiceTokenRequired
from .throttling import RateLimited, ServiceUnavailable, UsageReadThrottle
from .usage_export import TestUsageUnavailable, UsageRangeInvalid, usage_csv_response, usage_range_parse
from .verify import call_settle, key_verify


class MeteredApi(MeteredGate, APIView):
    # A billed endpoint: the gate (key, standing, the meter's limit, quota and count), then the
    # view, then the usage headers. (A comment, not a docstring: drf-spectacular would publish one.)
    pass


class GeocodeApi(MeteredApi):
    product = BuiltinProduct.GEOCODE

    @api_docs.geocode
    def get(self, request):
        data = valid(GeocodeInput, request.query_params)
        results = geocode_search(query=data["q"], limit=data["limit"])
        return Response({"query": data["q"], "results": results})


class ReverseGeocodeApi(MeteredApi):
    product = BuiltinProduct.GEOCODE

    @api_docs.geocode_reverse
    def get(self, request):
        data = valid(ReverseGeocodeInput, request.query_params)
        return Response({"results": geocode_reverse(lat=data["lat"], lon=data["lon"], limit=data["limit"])})


class TextAnalyzeApi(MeteredApi):
    product = BuiltinProduct.TEXT
    parser_classes = [BoundedJSONParser]

    @api_docs.text_analyze
    def post(self, request):
        data = valid(TextAnalyzeInput, json_object(request))
        return Response(text_analyze(text=data["text"]))


class ImageAnalyzeApi(MeteredApi):
    product = BuiltinProduct.IMAGE
    parser_classes = [MultiPartParser]

    @api_docs.image_analyze
    def post(self, request):
        # Refuse an oversized upload before Django spools it to disk.
        if _content_length(request) > settings.IMAGE_MAX_BYTES + 64 * 1024:
            raise _image_too_large()
        upload = valid(ImageAnalyzeInput, request.data)["image"]
        if upload.size > settings.IMAGE_MAX_BYTES:
            raise _image_too_large()
        return Response(image_analyze(
            data=upload.read(), max_bytes=settings.IMAGE_MAX_BYTES, max_pixels=settings.IMAGE_MAX_PIXELS,
        ))


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _image_too_large() -> ProductInputError:
    limit = settings.IMAGE_MAX_BYTES / 1_048_576
    return ProductInputError(f"Image larger than {limit:g} MB", code="image_too_large", status=413, field="image")


class VerifyApiBase(APIView):
    # Called by the product's own service with its service token, never by API customers
    # (README "Sell your own API").
    authentication_classes = [ServiceTokenAuthentication]
    permission_classes = [ServiceTokenRequired]
    throttle_classes: list = []
    parser_classes = [BoundedJSONParser]


class VerifyApi(VerifyApiBase):
    @verify_docs.verify
    def post(self, request):
        data = valid(VerifyInput, json_object(request))
        verdict = key_verify(product=request.auth, raw_key=data["key"], settle_later=data["settle"] == "later")
        response = Response(verdict.as_json())
        if verdict.mode is not None:  # the verified key's mode, as the API would answer it
            response[MODE_HEADER] = verdict.mode
        return response


class CallSettleApi(VerifyApiBase):
    @verify_docs.call_settle
    def post(self, request, call: str):
        data = valid(CallSettleInput, json_object(request))
        billed = call_settle(product=request.auth, call=call, status_code=data["status"])
        return Response({"call": call, "billed": billed})


class _ErrorsAsJson(BaseContentNegotiation):
    # The export answers CSV whatever Accept says, and its errors JSON, as every /v1 error
    # (README "The metered API"); DRF's own negotiation would answer `Accept: text/csv` with a 406.

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class UsageExportApi(APIView):
    # Calls by day, product and key as CSV (README "Usage export"). Like /v1/usage: not billed,
    # outside the plan's rate limit, sharing /v1/usage's own budget of USAGE_API_PER_MINUTE.
    # A comment, not a docstring: drf-spectacular would publish a docstring.

    throttle_classes = [UsageReadThrottle]
    content_negotiation_class = _ErrorsAsJson

    def throttled(self, request, wait):
        raise RateLimited(wait=wait)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        mode_header_set(request, response)
        return response

    @api_docs.usage_export
    def get(self, request):
        now = timezone.now()
        try:
            usage_range = usage_range_parse(request.query_params, today=now.date())
        except UsageRangeInvalid as problems:
            raise serializers.ValidationError(problems.fields) from None
        try:
            return usage_csv_response(customer_id=request.auth.customer_id, usage_range=usage_range, now=now)
        except TestUsageUnavailable:
            raise ServiceUnavailable() from None
