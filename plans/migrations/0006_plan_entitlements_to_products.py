from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("plans", "0005_products"),
        # billing's terms fill reads Plan.entitlements: the column must outlive it.
        ("billing", "0004_terms_fill"),
    ]

    operations = [
        migrations.RemoveField(
            model_name="plan",
            name="entitlements",
        ),
    ]
