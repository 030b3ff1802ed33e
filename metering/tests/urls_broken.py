"""A metered endpoint that fails, to prove that a 5xx answer is not billed, or that hangs, so a
test can kill the worker serving it."""
import time

from django.urls import include, path
from rest_framework.response import Response

from metering.apis import MeteredApi
from plans.models import BuiltinProduct


class BrokenApi(MeteredApi):
    product = BuiltinProduct.GEOCODE

    def get(self, request):
        if request.query_params.get("mode") == "503":
            return Response({"error": "Upstream down", "code": "upstream"}, status=503)
        if request.query_params.get("mode") == "hang":
            time.sleep(120)  # until the test kills this worker
            return Response({"answered": "too late"})
        raise RuntimeError("the upstream geocoder fell over")


urlpatterns = [
    path("v1/broken", BrokenApi.as_view()),
    path("", include("config.urls")),
]
