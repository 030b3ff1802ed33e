from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0003_spend_cap_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="webhookendpoint",
            name="event_types",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="request_headers",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="webhookdelivery",
            name="request_body",
            field=models.TextField(blank=True),
        ),
    ]
