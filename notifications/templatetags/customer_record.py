"""Notifications' part of the staff customer page, composed by the page's template (the staff
page's app, `dashboard`, never imports this one):

    {% load customer_record %}
    {% customer_alerts_and_webhooks customer %}           the "Alerts" and "Webhook deliveries" cards
    {% customer_notification_entries customer as extra %}  timeline entries, for {% timeline … extra %}
"""
from __future__ import annotations

from django import template

from notifications.customer_record import customer_alerts, customer_timeline_entries, customer_webhook_events

register = template.Library()


@register.inclusion_tag("notifications/staff/_customer_record.html")
def customer_alerts_and_webhooks(customer) -> dict:
    return {"alerts": customer_alerts(customer=customer),
            "webhook_events": customer_webhook_events(customer=customer)}


@register.simple_tag
def customer_notification_entries(customer) -> list:
    return customer_timeline_entries(customer=customer)
