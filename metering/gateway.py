"""The gateway (README "Sell your own API"): /v1/<slug>/<path> of an upstream product, metered, then forwarded.

The order of checks costs a client's call nothing until it could be served: an unknown product
(404), a method the product does not take (405), a path that could leave the base URL (400) or
a body announced larger than the product allows (413) are answered before the key is even read;
then the metered routes' gate (metering/gate.py: key, standing, entitlement and the meter),
exactly as for the built-in views (same refusals, same headers). Only then is the upstream
called. Billing follows its answer: a 2xx is billed; its 4xx/5xx pass through unbilled, as do
502 `upstream_unavailable` (refused, reset, closed, or broken off midway through its answer)
and 504 `upstream_timeout` (no answer within the product's timeout). A forwarded answer is
settled once it has gone out (WSGI's close()): a 2xx the client stopped reading is billed, one
the upstream broke off is not.

Both bodies stream: the request from the WSGI input in 64 KiB pieces (cut with 413 past the
limit, for a chunked upload that announced no length), the answer as it arrives. The steady
state runs no SQL: the product comes from plans' in-process copy, the key config from its own.
"""
from __future__ import annotations

import logging

from django.db import connection as db_connection
from django.http import StreamingHttpResponse
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from plans.selectors import ProductView, product_for_slug

from .gate import MeteredGate
from .meter import meter_settle
from .upstream import (
    Base, BadPath, BodyIncomplete, BodyTooLarge, Caller, UpstreamResponse, UpstreamTimeout, UpstreamUnavailable,
    base_parse, body_pieces, call_id_new, request_headers, response_headers, target_build, upstream_send,
)

logger = logging.getLogger(__name__)


class _GatewayError(exceptions.APIException):
    def __init__(self, detail: str | None = None):
        super().__init__(detail=detail or self.default_detail, code=self.default_code)


class ProductNotFound(_GatewayError):
    status_code = status.HTTP_404_NOT_FOUND
    default_detail = "Not found"
    default_code = "not_found"


class BadPathError(_GatewayError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "This path cannot be forwarded"
    default_code = "bad_path"


class BadRequestError(_GatewayError):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "This request cannot be forwarded"
    default_code = "bad_request"


class BodyTooLargeError(_GatewayError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large"
    default_code = "body_too_large"


class UpstreamUnavailableError(_GatewayError):
    status_code = status.HTTP_502_BAD_GATEWAY
    default_detail = "The service behind this API could not be reached; not billed"
    default_code = "upstream_unavailable"


class UpstreamTimeoutError(_GatewayError):
    status_code = status.HTTP_504_GATEWAY_TIMEOUT
    default_detail = "The service behind this API did not answer in time; not billed"
    default_code = "upstream_timeout"


class GatewayApi(MeteredGate, APIView):
    # Not in the OpenAPI schema: each upstream product is listed in the portal's API docs.
    schema = None
    renderer_classes = [JSONRenderer]
    upstream: ProductView | None = None

    @property
    def default_response_headers(self) -> dict:
        # DRF would stamp its own Allow (and Vary) on every answer, the upstream's included.
        return {}

    def perform_content_negotiation(self, request, force=False):
        # The client's Accept is for the upstream; the gateway's own answers are always JSON.
        return self.renderer_classes[0](), "application/json"

    def initial(self, request, *args, **kwargs):
        self.upstream = product = product_for_slug(kwargs["slug"])
        if product is None or not product.active or not product.is_upstream:
            raise ProductNotFound()
        self.product = product.slug
        if request.method not in product.methods:
            raise exceptions.MethodNotAllowed(request.method)
        try:
            self.base = base_parse(product.upstream_url)
        except ValueError:
            logger.error("product %s has no usable upstream URL", product.slug)
            raise UpstreamUnavailableError() from None
        try:
            self.target = target_build(self.base, kwargs.get("rest") or "", request.META.get("QUERY_STRING", ""))
        except BadPath as refusal:
            raise BadPathError(str(refusal)) from None
        self.body_length = _content_length(request.META)
        if self.body_length is not None and self.body_length > product.body_limit_bytes:
            raise BodyTooLargeError(f"Request body larger than {product.body_limit_bytes} bytes")
        super().initial(request, *args, **kwargs)

    def forward(self, request, *args, **kwargs):
        product, config = self.upstream, request.auth
        call = call_id_new()
        caller = Caller(customer=str(config.customer_id), plan=config.plan_name,
                        remote_addr=request.META.get("REMOTE_ADDR", ""), proto=request.scheme, host=request.get_host())
        headers = request_headers(
            meta=request.META, caller=caller, base=self.base, secret=product.signing_secret, call=call,
            method=request.method, target=self.target, content_length=self.body_length,
        )
        _database_release()
        answer = _send(product, self.base, request, self.target, headers, self.body_length)
        result, reply = request.meter, answer.response
        try:
            response = StreamingHttpResponse(answer, status=reply.status, headers=response_headers(reply.headers))
        except Exception:  # a header Django will not send: the upstream's fault, never a 500
            logger.warning("upstream of %s answered headers that cannot be passed on", product.slug, exc_info=True)
            answer.close()
            raise UpstreamUnavailableError() from None
        # The upstream's own 5xx is its answer, passed back: not an error of this server to log.
        response._has_been_logged = True
        if "content-type" not in reply.headers:
            del response["Content-Type"]  # Django's default text/html would be made up
        response["Tollbooth-Call"] = call

        def settle(broke: bool) -> None:
            # Settled once the answer is out: an upstream that breaks off midway is not billed.
            meter_settle(result=result, status_code=status.HTTP_502_BAD_GATEWAY if broke else reply.status)

        answer.on_close = settle
        return response

    get = post = put = patch = delete = head = options = forward

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        if isinstance(exc, exceptions.MethodNotAllowed) and self.upstream is not None:
            response["Allow"] = ", ".join(sorted(self.upstream.methods))
        return response


def _database_release() -> None:
    """Give a pooled database connection back before waiting on the upstream (the key or product
    lookup may have taken one): a thread waiting on a slow service must not hold one of the
    process's few connections (config/gunicorn.py: hundreds of threads, a pool of ten)."""
    if getattr(db_connection, "pool", None) is not None and db_connection.connection is not None \
            and not db_connection.in_atomic_block:
        db_connection.close()


def _content_length(meta) -> int | None:
    raw = (meta.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise BadRequestError("Invalid Content-Length")
    return int(raw)


def _send(
    product: ProductView, base: Base, request, target: str, headers: dict, length: int | None,
) -> UpstreamResponse:
    meta = request.META
    if length:
        body = body_pieces(meta["wsgi.input"], length=length, limit=product.body_limit_bytes)
    elif "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower() and meta.get("wsgi.input_terminated"):
        body = body_pieces(meta["wsgi.input"], length=None, limit=product.body_limit_bytes)
    else:
        body = None
    try:
        answer = UpstreamResponse(upstream_send(base=base, method=request.method, target=target, headers=headers,
                                                body=body, timeout_seconds=product.timeout_seconds))
        try:
            answer.prime()
        except Exception:
            answer.close()
            raise
        return answer
    except BodyTooLarge:
        raise BodyTooLargeError(f"Request body larger than {product.body_limit_bytes} bytes") from None
    except BodyIncomplete:
        raise BadRequestError("The request body ended before its Content-Length") from None
    except UpstreamTimeout as error:
        logger.warning("upstream of %s timed out: %s", product.slug, error)
        raise UpstreamTimeoutError() from None
    except UpstreamUnavailable as error:
        logger.warning("upstream of %s unavailable: %s", product.slug, error)
        raise UpstreamUnavailableError() from None
    except ValueError:  # http.client refuses a header value no server should get (a newline in it)
        raise BadRequestError("A request header cannot be forwarded") from None
