"""One free trial per person: TrialClaim, and when each trial began (README "Billing").

Existing trials are remembered: each customer that had one claims its mailbox (the first
account of a mailbox keeps the claim) and gets trial_started_at = created_at, where it began.
"""
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

from accounts.models import TrialClaim as CurrentTrialClaim


def claims_fill(apps, schema_editor):
    Customer = apps.get_model("accounts", "Customer")
    TrialClaim = apps.get_model("accounts", "TrialClaim")
    trials = Customer.objects.filter(trial_ends_at__isnull=False).select_related("owner").order_by("created_at", "pk")
    Customer.objects.filter(trial_ends_at__isnull=False, trial_started_at__isnull=True).update(
        trial_started_at=models.F("created_at"),
    )
    taken: set[str] = set()
    claims = []
    for customer in trials.iterator():
        value = CurrentTrialClaim.email_value(customer.owner.email)
        if value not in taken:
            taken.add(value)
            claims.append(TrialClaim(kind="email", value=value, customer=customer, created_at=customer.created_at))
    TrialClaim.objects.bulk_create(claims, batch_size=1000, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_terms_snapshots'),
    ]

    operations = [
        migrations.AddField(
            model_name='customer',
            name='trial_started_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name='TrialClaim',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('kind', models.CharField(choices=[('email', 'Email'), ('card', 'Card')], max_length=5)),
                ('value', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('customer', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='trial_claims', to='accounts.customer')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('kind', 'value'), name='one_trial_per_email_or_card')],
            },
        ),
        migrations.RunPython(claims_fill, migrations.RunPython.noop),
    ]
