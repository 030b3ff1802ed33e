from datetime import datetime, timezone

from django.db import migrations


def existing_caps(apps, schema_editor):
    """Hard stops set before billing kept their history count from the start of time."""
    SpendCapChange = apps.get_model("metering", "SpendCapChange")
    UsageLimits = apps.get_model("metering", "UsageLimits")
    NotificationSettings = apps.get_model("notifications", "NotificationSettings")
    epoch = datetime(2000, 1, 1, tzinfo=timezone.utc)
    for row in NotificationSettings.objects.filter(spend_cap__isnull=False, cap_mode="stop"):
        SpendCapChange.objects.create(customer_id=row.customer_id, spend_cap=row.spend_cap, at=epoch)
        UsageLimits.objects.filter(customer_id=row.customer_id).update(spend_cap=row.spend_cap)


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0006_spend_cap_changes"),
        ("notifications", "0002_default_usage_limits"),
    ]

    operations = [migrations.RunPython(existing_caps, migrations.RunPython.noop)]
