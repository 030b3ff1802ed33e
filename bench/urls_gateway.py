"""The hot-path bench's endpoints (its readiness probe) in front of the project's own routes."""
from django.urls import include, path

from bench.urls import urlpatterns as bench_urlpatterns

urlpatterns = [*bench_urlpatterns, path("", include("config.urls"))]
