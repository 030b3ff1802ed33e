"""Anything the API enforces changed: raise the customer's config version (see keyconfig)."""
from __future__ import annotations

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.models import ApiKey, Customer
from plans.models import Plan

from .models import UsageLimits
from .services import customer_config_bump


@receiver(post_save, sender=Customer)
def customer_changed(sender, instance: Customer, **kwargs) -> None:
    customer_config_bump(customer_ids=[instance.pk])


@receiver([post_save, post_delete], sender=ApiKey)
def api_key_changed(sender, instance: ApiKey, **kwargs) -> None:
    customer_config_bump(customer_ids=[instance.customer_id])


@receiver(post_save, sender=Plan)
def plan_changed(sender, instance: Plan, **kwargs) -> None:
    customer_config_bump(customer_ids=list(instance.customers.values_list("pk", flat=True)))


@receiver([post_save, post_delete], sender=UsageLimits)
def usage_limits_changed(sender, instance: UsageLimits, **kwargs) -> None:
    customer_config_bump(customer_ids=[instance.customer_id])
