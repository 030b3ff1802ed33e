"""Test-mode keys (README "The metered API"): a flag on the key, every existing key stays live."""
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_trial_claims"),
    ]

    operations = [
        migrations.AddField(
            model_name="apikey",
            name="is_test",
            field=models.BooleanField(default=False),
        ),
    ]
