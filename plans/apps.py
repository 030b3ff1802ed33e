from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class PlansConfig(AppConfig):
    name = "plans"

    def ready(self) -> None:
        from .models import Plan, Product
        from .selectors import plan_offers_forget, products_forget

        # Upgrade suggestions read a per-process copy of the public plans; a change here drops it.
        post_save.connect(plan_offers_forget, sender=Plan, dispatch_uid="plan_offers_forget_save")
        post_delete.connect(plan_offers_forget, sender=Plan, dispatch_uid="plan_offers_forget_delete")
        # A plan's products changing changes its entitlements (upgrade hints read them).
        m2m_changed.connect(plan_offers_forget, sender=Plan.products.through, dispatch_uid="plan_offers_forget_m2m")
        # The API's per-process copy of the products (gateway, labels) is dropped the same way.
        post_save.connect(products_forget, sender=Product, dispatch_uid="products_forget_save")
        post_delete.connect(products_forget, sender=Product, dispatch_uid="products_forget_delete")
