"""Teams (README "Teams"): memberships and invitations; every existing customer's owner becomes its
first owner member."""

import django.db.models.deletion
import django.db.models.functions.text
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def owners_become_members(apps, schema_editor):
    Customer = apps.get_model("accounts", "Customer")
    Membership = apps.get_model("accounts", "Membership")
    rows = Customer.objects.values_list("pk", "owner_id", "created_at").iterator(chunk_size=2000)
    batch = []
    for customer_id, owner_id, created_at in rows:
        batch.append(Membership(customer_id=customer_id, user_id=owner_id, role="owner", created_at=created_at))
        if len(batch) == 2000:
            Membership.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    Membership.objects.bulk_create(batch, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0004_api_key_test_mode'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Membership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('owner', 'Owner'), ('developer', 'Developer'), ('billing', 'Billing')], max_length=10)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('customer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='accounts.customer')),
                ('invited_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='membership', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['created_at', 'pk'],
            },
        ),
        migrations.CreateModel(
            name='Invitation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('email', models.EmailField(max_length=150)),
                ('role', models.CharField(choices=[('owner', 'Owner'), ('developer', 'Developer'), ('billing', 'Billing')], max_length=10)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField()),
                ('accepted_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('customer', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='invitations', to='accounts.customer')),
                ('invited_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at', '-pk'],
                'constraints': [models.UniqueConstraint(django.db.models.functions.text.Lower('email'), models.F('customer'), condition=models.Q(('accepted_at__isnull', True), ('revoked_at__isnull', True)), name='one_open_invitation_per_email')],
            },
        ),
        migrations.RunPython(owners_become_members, migrations.RunPython.noop),
    ]
