"""A metered endpoint selling the product that tests add as rows ("routing"), standing in for
whatever serves it (the gateway forwards, this answers): entitlement and meter are the real ones."""
from django.urls import include, path
from rest_framework.response import Response

from metering.apis import MeteredApi

TEST_PRODUCT = "routing"


class RoutingApi(MeteredApi):
    product = TEST_PRODUCT

    def get(self, request):
        return Response({"route": "ok"})


urlpatterns = [
    path("test/v1/routing", RoutingApi.as_view()),
    path("", include("config.urls")),
]
