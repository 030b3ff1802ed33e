"""OpenAPI description of our key authentication (drf-spectacular loads it from apps.ready)."""
from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "metering.authentication.ApiKeyAuthentication"
    name = ["BearerKey", "ApiKeyHeader"]

    def get_security_definition(self, auto_schema):
        description = "Your key, `sk_live_…` (64 hex characters after the prefix)."
        return [
            {"type": "http", "scheme": "bearer", "bearerFormat": "sk_live_<64 hex>", "description": description},
            {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": description},
        ]
