from __future__ import annotations

from django.views import defaults

from metering.errors import json_not_found, json_server_error


def _is_api(request) -> bool:
    return request.path.startswith("/v1/")


def not_found(request, exception=None):
    if _is_api(request):
        return json_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return json_server_error(request)
    return defaults.server_error(request)
