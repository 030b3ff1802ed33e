from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class PlansConfig(AppConfig):
    name = "plans"

    def ready(self) -> None:
        from .models import Plan
        from .selectors import plan_offers_forget

        # Upgrade suggestions read a per-process copy of the public plans; a change here drops it.
        post_save.connect(plan_offers_forget, sender=Plan, dispatch_uid="plan_offers_forget_save")
        post_delete.connect(plan_offers_forget, sender=Plan, dispatch_uid="plan_offers_forget_delete")
