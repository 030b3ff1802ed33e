"""A metered endpoint that fails, to prove that a 5xx answer is not billed."""
from django.urls import include, path
from rest_framework.response import Response

from metering.apis import MeteredApi
from plans.models import Product


class BrokenApi(MeteredApi):
    product = Product.GEOCODE

    def get(self, request):
        if request.query_params.get("mode") == "503":
            return Response({"error": "Upstream down", "code": "upstream"}, status=503)
        raise RuntimeError("the upstream geocoder fell over")


urlpatterns = [
    path("v1/broken", BrokenApi.as_view()),
    path("", include("config.urls")),
]
