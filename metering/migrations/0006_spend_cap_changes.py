import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_terms_snapshots"),
        ("metering", "0005_usage_limits_spend_cap"),
    ]

    operations = [
        migrations.CreateModel(
            name="SpendCapChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("spend_cap", models.DecimalField(blank=True, decimal_places=2, max_digits=12, null=True)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                ("customer", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="spend_cap_changes", to="accounts.customer")),
            ],
            options={"indexes": [models.Index(fields=["customer", "at"], name="metering_sp_custome_4f8093_idx")]},
        ),
    ]
