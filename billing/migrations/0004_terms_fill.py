from django.db import migrations, models
import django.db.models.deletion

FIELDS = ("name", "price", "included_calls", "overage_price", "hard_cap", "rate_per_minute", "entitlements")


def fill(apps, schema_editor):
    """Terms before snapshots existed: each plan's values today, the best record there is."""
    Plan = apps.get_model("plans", "Plan")
    Terms = apps.get_model("plans", "Terms")
    Customer = apps.get_model("accounts", "Customer")
    PlanChange = apps.get_model("billing", "PlanChange")
    terms = {plan.pk: Terms.objects.create(plan=plan, **{f: getattr(plan, f) for f in FIELDS}) for plan in Plan.objects.all()}
    for plan_id, snapshot in terms.items():
        PlanChange.objects.filter(to_plan_id=plan_id).update(terms=snapshot)
        Customer.objects.filter(plan_id=plan_id).update(terms=snapshot)
    first_plan = {}
    for customer_id, from_plan_id in PlanChange.objects.order_by("customer_id", "at", "pk").values_list("customer_id", "from_plan_id"):
        first_plan.setdefault(customer_id, from_plan_id)
    for customer in Customer.objects.all().only("pk", "plan_id"):
        Customer.objects.filter(pk=customer.pk).update(signup_terms=terms[first_plan.get(customer.pk, customer.plan_id)])


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_terms_snapshots"),
        ("accounts", "0002_terms_snapshots"),
        ("plans", "0003_terms_snapshots"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
