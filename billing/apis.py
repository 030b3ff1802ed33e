"""GET /v1/usage: the caller's usage this period, rated by the invoice's own code (README "The metered API" and "Billing").

It lives in billing, not metering, because its money figures are the invoice's: the same runs,
allowances and overage as `billing.rating`, and nothing computed a second way.
"""
from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from metering.api_docs import ACCESS_ERROR_EXAMPLES, error_example, errors_documented, ok_example
from metering.authentication import mode_header_set
from metering.throttling import RateLimited, UsageReadThrottle

from .selectors import usage_live


@extend_schema_serializer(component_name="UsageRun")
class RunSerializer(serializers.Serializer):
    plan = serializers.CharField(help_text="The plan these days were on.")
    start = serializers.DateField(help_text="First day of the run (UTC).")
    end = serializers.DateField(help_text="Last day of the run, included (UTC); the period's end for the current run.")
    included = serializers.IntegerField(help_text="Calls included for these days: the plan's monthly calls × days ÷ days in the month.")
    calls = serializers.IntegerField(help_text="Billed calls made on these days.")
    overage_calls = serializers.IntegerField(help_text="Calls beyond `included` (0 on a hard-capped plan).")
    overage_amount = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="Their cost so far, USD.")


class UsageApi(APIView):
    # The caller's own usage this period (as GitHub's /rate_limit): not billed, outside the plan's
    # rate limit, but limited on its own (USAGE_API_PER_MINUTE per customer). A comment, not a
    # docstring: drf-spectacular would publish a docstring.

    throttle_classes = [UsageReadThrottle]

    def throttled(self, request, wait):
        raise RateLimited(wait=wait)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        mode_header_set(request, response)  # `Tollbooth-Mode` as on every answer to a known key
        return response

    @extend_schema_serializer(component_name="UsageOutput")
    class OutputSerializer(serializers.Serializer):
        period = serializers.CharField(help_text="The month, `YYYY-MM`, UTC.")
        plan = serializers.CharField(help_text="Your plan's name.")
        calls = serializers.IntegerField(help_text="Billed calls this month, all keys and products together (trial days excluded).")
        trial_calls = serializers.IntegerField(help_text="Calls made on trial days this month: free, and counted toward no allowance.")
        included = serializers.IntegerField(help_text="Calls included this month: the runs' allowances together.")
        remaining = serializers.IntegerField(help_text="Included calls left on your current plan this month.")
        overage_calls = serializers.IntegerField(help_text="Calls beyond the included ones (0 on a hard-capped plan).")
        overage_amount = serializers.DecimalField(
            max_digits=12, decimal_places=2, help_text="Overage so far this month, USD (before tax)."
        )
        rate_limit_per_minute = serializers.IntegerField(help_text="Calls allowed in any 60 seconds right now.")
        by_product = serializers.DictField(child=serializers.IntegerField(), help_text=(
            "Calls this month per product: `geocode`, `text`, `image`."
        ))
        runs = RunSerializer(many=True, help_text=(
            "The month split where your plan changed: each run has its own included calls and overage, as on the invoice."
        ))

    @extend_schema(
        operation_id="usage", summary="Your usage this month", tags=["Account"],
        description=(
            "This month's billed calls, what your plan includes and the overage so far: the same numbers as "
            "the portal and your invoice. A month in which you changed plan is split into runs, each with the "
            "calls its days include. Free, and outside your plan's rate limit; it has its own limit of "
            f"{settings.USAGE_API_PER_MINUTE} calls a minute (then 429 `rate_limited`). Counts are current "
            "to within a few seconds."
        ),
        responses={200: OutputSerializer, **errors_documented(401, 402, 403, 429)},
        examples=[
            ok_example("Mid-month on Starter", {
                "period": "2026-11", "plan": "Starter", "calls": 51500, "trial_calls": 0, "included": 50000,
                "remaining": 0, "overage_calls": 1500, "overage_amount": "1.50", "rate_limit_per_minute": 100,
                "by_product": {"geocode": 40210, "text": 9870, "image": 1420},
                "runs": [{"plan": "Starter", "start": "2026-11-01", "end": "2026-11-30", "included": 50000,
                          "calls": 51500, "overage_calls": 1500, "overage_amount": "1.50"}],
            }),
            *ACCESS_ERROR_EXAMPLES,
            error_example("Rate limit", 429, "Rate limit exceeded", "rate_limited"),
        ],
    )
    def get(self, request):
        config = request.auth
        live = usage_live(customer=config.customer_id, version=config.version, cached=True)
        return Response({
            "period": live.rating.period,
            "plan": live.terms_now.name,
            "calls": live.rating.calls,
            "trial_calls": live.rating.trial_calls,
            "included": live.included,
            "remaining": live.remaining,
            "overage_calls": live.overage_calls,
            "overage_amount": str(live.rating.overage),
            "rate_limit_per_minute": config.rate_per_minute,
            "by_product": live.by_product,
            "runs": [
                {"plan": run.terms.name, "start": run.first, "end": run.last, "included": run.allowance,
                 "calls": run.calls, "overage_calls": run.overage_calls, "overage_amount": str(run.overage)}
                for run in live.rating.runs
            ],
        })
