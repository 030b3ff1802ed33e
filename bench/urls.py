"""Three endpoints doing the same tiny work: bare DRF, metered (ours), and the seed's sequence."""
from __future__ import annotations

from django.db import connection
from django.urls import path
from django_redis import get_redis_connection
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.keyformat import key_hash
from metering.apis import MeteredApi
from plans.models import BuiltinProduct

BODY = {"ok": True, "results": [{"name": "Paris", "lat": 48.85, "lon": 2.35}]}


class BareApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        return Response(BODY)


class MeteredBenchApi(MeteredApi):
    product = BuiltinProduct.GEOCODE

    def get(self, request):
        return Response(BODY)


class OneRoundTripApi(BareApi):
    """The bare view plus one Redis PING: the floor for any limiter that asks Redis per call."""

    def get(self, request):
        get_redis_connection("default").ping()
        return Response(BODY)


class SeedSequenceApi(APIView):
    """The seed design, per call: 1 SQL key lookup and 5 separate Redis round trips."""

    authentication_classes: list = []
    permission_classes: list = []

    def get(self, request):
        digest = key_hash(request.META["HTTP_X_API_KEY"])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT k.id, k.customer_id, p.rate_per_minute FROM accounts_apikey k "
                "JOIN accounts_customer c ON c.id = k.customer_id JOIN plans_plan p ON p.id = c.plan_id "
                "WHERE k.key_hash = %s AND k.revoked_at IS NULL", [digest])
            key_id, customer_id, rate = cursor.fetchone()
        r = get_redis_connection("default")
        window = f"seed:{customer_id}:rl"
        if int(r.incr(window)) == 1:
            r.expire(window, 60)
        r.get(f"seed:{customer_id}:month")
        r.incr(f"seed:{customer_id}:month")
        r.hincrby(f"seed:{customer_id}:usage", f"geocode|{key_id}", 1)
        return Response(BODY)


urlpatterns = [
    path("bench/bare", BareApi.as_view()),
    path("bench/metered", MeteredBenchApi.as_view()),
    path("bench/seed", SeedSequenceApi.as_view()),
    path("bench/ping", OneRoundTripApi.as_view()),
]
