"""Alert emails: a usage threshold reached, a spend cap reached."""
from __future__ import annotations

from decimal import Decimal

from accounts.emails import email_send

from .models import UsageAlert
from .selectors import CENT, alert_settings_get, threshold_calls


def usage_alert_email_send(*, alert_id: int) -> None:
    alert = UsageAlert.objects.select_related("customer__owner", "customer__plan").get(pk=alert_id)
    customer, plan = alert.customer, alert.customer.plan
    context = {"customer": customer, "plan": plan, "alert": alert}
    if alert.kind == UsageAlert.Kind.SPEND_CAP:
        context.update(spend_cap=(Decimal(alert.threshold) / 100).quantize(CENT), hard_stop=alert_settings_get(customer=customer).hard_stop)
        email_send(to=customer.email, template="spend_cap_reached", context=context)
        return
    context.update(percent=alert.threshold, threshold_calls=threshold_calls(plan=plan, percent=alert.threshold))
    email_send(to=customer.email, template="usage_threshold_reached", context=context)
