"""Alert emails: a usage threshold reached, a spend cap reached."""
from __future__ import annotations

from decimal import Decimal

from accounts.emails import email_send
from core.money import CENT
from billing.selectors import usage_live

from .models import UsageAlert
from .selectors import alert_settings_get, threshold_calls


def usage_alert_email_send(*, alert_id: int) -> None:
    alert = UsageAlert.objects.select_related("customer__owner", "customer__plan", "customer__terms").get(pk=alert_id)
    customer, plan = alert.customer, alert.customer.plan
    context = {"customer": customer, "plan": plan, "alert": alert}
    if alert.kind == UsageAlert.Kind.SPEND_CAP:
        context.update(spend_cap=(Decimal(alert.threshold) / 100).quantize(CENT), hard_stop=alert_settings_get(customer=customer).hard_stop)
        email_send(to=customer.email, template="spend_cap_reached", context=context)
        return
    run = usage_live(customer=customer).current
    allowance = run.allowance if run else customer.terms.included_calls
    context.update(percent=alert.threshold, included=allowance,
                   threshold_calls=threshold_calls(allowance=allowance, percent=alert.threshold))
    email_send(to=customer.email, template="usage_threshold_reached", context=context)
