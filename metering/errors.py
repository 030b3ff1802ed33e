"""Every /v1 error is JSON `{"error": "<message>", "code": "<slug>"}` (README "The metered API")."""
from __future__ import annotations

import logging

from django.core.exceptions import SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .products.errors import ProductInputError

logger = logging.getLogger(__name__)


# Postgres cannot be reached (stopped, restarting, connection dropped): an outage, not a bug.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


def error_body(message: str, code: str, fields: dict | None = None) -> dict:
    body = {"error": message, "code": code}
    if fields:
        body["fields"] = fields
    return body


def exception_handler(exc, context):
    if isinstance(exc, ProductInputError):
        fields = {exc.field: [exc.message]} if exc.field else None
        return Response(error_body(exc.message, exc.code, fields), status=exc.status)
    if isinstance(exc, (TooManyFieldsSent, TooManyFilesSent)):  # a query string or form, not a size
        return Response(error_body("Too many parameters", "too_many_parameters"), status=400)
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("Request body too large", "payload_too_large"), status=413)
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return database_unavailable_response(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    response = drf_exception_handler(exc, context)
    if response is None:
        # A bug of ours, not the client's input: log it, answer JSON, and the 5xx is refunded.
        logger.exception("unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
        return Response(error_body("Internal error", "internal_error"), status=500)
    response.data = _body_for(exc, response.data)
    return response


def _body_for(exc: exceptions.APIException, data) -> dict:
    if isinstance(exc, exceptions.ValidationError):
        fields = data if isinstance(data, dict) else {"non_field_errors": data}
        return error_body("Invalid input", "invalid_input", fields)
    detail = exc.detail
    code = getattr(detail, "code", None) or exc.default_code
    # Refusals a plan change would lift add where to upgrade (upgrade_url, upgrade_plan).
    return {**error_body(str(detail), str(code)), **getattr(exc, "extra", {})}


def json_not_found(request, exception=None):
    return JsonResponse(error_body("Not found", "not_found"), status=status.HTTP_404_NOT_FOUND)


def json_server_error(request):
    return JsonResponse(error_body("Internal error", "internal_error"), status=500)


def database_unavailable_response(exc: BaseException) -> JsonResponse:
    """503 with Retry-After: the client retries, and the call (if metered) is not billed."""
    logger.warning("database unavailable: %s", str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
    response = JsonResponse(error_body("Service temporarily unavailable; try again shortly", "service_unavailable"),
                            status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
