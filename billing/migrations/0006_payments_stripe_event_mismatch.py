from django.db import migrations, models


class Migration(migrations.Migration):
    """StripeEvent.Status gains "mismatch": a payment event kept, reported and not applied."""

    dependencies = [("billing", "0005_planchange_terms_required")]

    operations = [
        migrations.AlterField(
            model_name="stripeevent",
            name="status",
            field=models.CharField(
                choices=[("received", "Received"), ("processed", "Processed"), ("ignored", "Ignored"),
                         ("failed", "Failed"), ("mismatch", "Does not match our records")],
                default="received", max_length=10,
            ),
        ),
    ]
