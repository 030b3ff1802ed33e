"""What each /v1 operation accepts: the input serializers its view validates with. Their
help texts are published at /v1/docs/ as the parameters' descriptions."""
from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from .parsers import MAX_JSON_DEPTH
from .products.image import DEFAULT_MAX_FULL_DECODE_PIXELS as MAX_FULL_DECODE_PIXELS
from .products.text import MAX_TEXT_LENGTH


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of quietly turning them into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictStatusField(serializers.IntegerField):
    """An HTTP status as a JSON number: not "200", not 200.0, not true."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


def valid(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def json_object(request) -> dict:
    if not isinstance(request.data, dict):
        raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
    return request.data


class GeocodeInput(serializers.Serializer):
    q = serializers.CharField(max_length=200, trim_whitespace=True, help_text=(
        "A city name or its beginning, 1 to 200 characters; case and accents are ignored."
    ))
    limit = serializers.IntegerField(min_value=1, max_value=20, default=5, help_text=(
        "How many places to return at most, 1 to 20."
    ))


class ReverseGeocodeInput(serializers.Serializer):
    lat = serializers.FloatField(min_value=-90, max_value=90, help_text="Latitude, degrees, -90 to 90.")
    lon = serializers.FloatField(min_value=-180, max_value=180, help_text="Longitude, degrees, -180 to 180.")
    limit = serializers.IntegerField(min_value=1, max_value=20, default=1, help_text=(
        "How many places to return, nearest first, 1 to 20."
    ))


class TextAnalyzeInput(serializers.Serializer):
    text = StrictCharField(max_length=MAX_TEXT_LENGTH, trim_whitespace=False, help_text=(
        f"The text to analyze: 1 to {MAX_TEXT_LENGTH:,} characters (Unicode code points), not only "
        f"whitespace. The JSON body may nest at most {MAX_JSON_DEPTH} levels deep."
    ))


class ImageAnalyzeInput(serializers.Serializer):
    image = serializers.FileField(help_text=(
        f"JPEG, PNG, GIF, WebP, BMP, TIFF or AVIF, at most {settings.IMAGE_MAX_BYTES / 1_048_576:g} MB. "
        f"JPEG may have up to {settings.IMAGE_MAX_PIXELS / 1e6:g} megapixels; other formats, decoded in full, "
        f"up to {min(settings.IMAGE_MAX_PIXELS, MAX_FULL_DECODE_PIXELS) / 1e6:g}. A file of too many parts "
        "(frames, chunks, markers, or progressive scans) answers 413 `image_too_complex`."
    ))


class VerifyInput(serializers.Serializer):
    key = StrictCharField(max_length=200, trim_whitespace=False, help_text=(
        "The API key your customer sent you, `sk_live_…`, as received."
    ))
    settle = serializers.ChoiceField(["now", "later"], default="now", help_text=(
        "`now` (the default): the call is billed at once. `later`: the call is reserved and the answer "
        "carries a `call` id; report your answer's status to `/v1/calls/{call}/settle` and only a 2xx is billed."
    ))


class CallSettleInput(serializers.Serializer):
    status = StrictStatusField(min_value=100, max_value=599, help_text=(
        "The HTTP status your service answered the call with, 100 to 599: a 2xx bills the call, "
        "anything else releases it."
    ))
