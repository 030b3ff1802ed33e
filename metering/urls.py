from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from . import apis

urlpatterns = [
    path("geocode", apis.GeocodeApi.as_view(), name="geocode"),
    path("geocode/reverse", apis.ReverseGeocodeApi.as_view(), name="geocode-reverse"),
    path("text/analyze", apis.TextAnalyzeApi.as_view(), name="text-analyze"),
    path("image/analyze", apis.ImageAnalyzeApi.as_view(), name="image-analyze"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's start-up script as a file: no inline script, so the
    # Content-Security-Policy needs no 'unsafe-inline' for scripts.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="docs"),
]
