import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0001_initial'),
        ('metering', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='UsageLimits',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('alert_at_calls', models.JSONField(blank=True, default=list)),
                ('call_ceiling', models.PositiveBigIntegerField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('customer', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='usage_limits', to='accounts.customer')),
            ],
            options={
                'verbose_name_plural': 'usage limits',
            },
        ),
    ]
