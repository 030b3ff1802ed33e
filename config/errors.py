"""Error answers: JSON on /v1, pages elsewhere; an unreachable database is a 503, not a 500."""
from __future__ import annotations

import sys

from django.shortcuts import render
from django.views import defaults

from metering.errors import (
    DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, database_unavailable_response, json_not_found, json_server_error,
)


def _is_api(request) -> bool:
    return request.path.startswith("/v1/")


def not_found(request, exception=None):
    if _is_api(request):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request):
    # Django calls this inside its `except`: what failed is still in sys.exc_info().
    failure = sys.exc_info()[1]
    if isinstance(failure, DATABASE_UNAVAILABLE):
        return service_unavailable(request, failure)
    if _is_api(request):
        return json_server_error(request)
    return defaults.server_error(request)


def service_unavailable(request, exc: BaseException):
    if _is_api(request):
        return database_unavailable_response(exc)
    # A plain page: the usual layout reads the session and the user, from the database.
    response = render(request, "503.html", status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


class DatabaseUnavailableMiddleware:
    """A view that meets an unreachable database answers 503 (JSON on /v1, a page elsewhere)
    instead of a 500 with a traceback; Django reconnects on its own once Postgres is back
    (CONN_HEALTH_CHECKS)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, DATABASE_UNAVAILABLE):
            return service_unavailable(request, exception)
        return None
