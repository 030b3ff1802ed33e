from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import apis, gateway

urlpatterns = [
    path("geocode", apis.GeocodeApi.as_view(), name="geocode"),
    path("geocode/reverse", apis.ReverseGeocodeApi.as_view(), name="geocode-reverse"),
    path("text/analyze", apis.TextAnalyzeApi.as_view(), name="text-analyze"),
    path("image/analyze", apis.ImageAnalyzeApi.as_view(), name="image-analyze"),
    # The verify API, for services that keep their own edge (README "Sell your own API").
    path("verify", apis.VerifyApi.as_view(), name="verify"),
    path("calls/<str:call>/settle", apis.CallSettleApi.as_view(), name="call-settle"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script, so the
    # Content-Security-Policy needs no 'unsafe-inline' for scripts.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
    # Keep last: every route above wins over a product's. schema and docs are left out so that
    # /v1/schema and /v1/docs still redirect to their pages with the slash.
    re_path(r"^(?!(?:schema|docs)$)(?P<slug>[-a-zA-Z0-9_]+)(?P<rest>/.*)?$", gateway.GatewayApi.as_view(),
            name="gateway"),
]
