from django.db import migrations, models


class Migration(migrations.Migration):
    """Products are rows now (plans.Product): a usage row keeps the product's slug, any product's."""

    dependencies = [
        ("metering", "0006_spend_cap_changes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="usagerecord",
            name="product",
            field=models.CharField(max_length=40),
        ),
    ]
