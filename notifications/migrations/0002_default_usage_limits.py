"""Customers who signed up before alerts existed get the default ones (80% and 100%).

New customers get theirs when they are created (notifications.receivers).
"""

from django.db import migrations

DEFAULT_THRESHOLDS = (80, 100)


def forwards(apps, schema_editor):
    Customer = apps.get_model("accounts", "Customer")
    UsageLimits = apps.get_model("metering", "UsageLimits")
    have = set(UsageLimits.objects.values_list("customer_id", flat=True))
    rows = []
    for customer in Customer.objects.select_related("plan").exclude(pk__in=have).iterator():
        included = customer.plan.included_calls
        calls = sorted({-(-included * percent // 100) for percent in DEFAULT_THRESHOLDS} - {0})
        rows.append(UsageLimits(customer=customer, alert_at_calls=calls, call_ceiling=None))
    UsageLimits.objects.bulk_create(rows, batch_size=500)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("metering", "0002_usage_limits"),
        ("accounts", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
