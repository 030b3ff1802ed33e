import django.core.validators
import django.utils.timezone
from django.db import migrations, models

import plans.models

# The analyzers Tollbooth ships become rows; plans' entitlement lists become links to them.
BUILTINS = [("geocode", "Geocoding", 10), ("text", "Text analysis", 20), ("image", "Image analysis", 30)]


def products_fill(apps, schema_editor):
    Product = apps.get_model("plans", "Product")
    Plan = apps.get_model("plans", "Plan")
    by_slug = {}
    for slug, name, order in BUILTINS:
        by_slug[slug], _ = Product.objects.get_or_create(
            slug=slug, defaults=dict(name=name, kind="builtin", sort_order=order, methods="GET,POST"))
    for plan in Plan.objects.all():
        unknown = sorted(set(plan.entitlements) - set(by_slug))
        if unknown:
            raise RuntimeError(f"Plan {plan.slug} lists unknown products {unknown}: fix its entitlements first.")
        plan.products.set([by_slug[slug] for slug in plan.entitlements])


def products_unfill(apps, schema_editor):
    Plan = apps.get_model("plans", "Plan")
    for plan in Plan.objects.all():
        plan.entitlements = list(plan.products.order_by("sort_order", "slug").values_list("slug", flat=True))
        plan.save(update_fields=["entitlements"])


class Migration(migrations.Migration):

    dependencies = [
        ("plans", "0004_terms_names"),
    ]

    operations = [
        migrations.CreateModel(
            name="Product",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("slug", models.SlugField(help_text="The /v1/<slug>/ segment of its URLs.", max_length=40, unique=True)),
                ("name", models.CharField(max_length=60)),
                ("description", models.CharField(blank=True, max_length=300)),
                ("kind", models.CharField(choices=[("builtin", "Built in (served by Tollbooth)"), ("upstream", "Your service (forwarded)")], default="upstream", max_length=10)),
                ("upstream_url", models.URLField(blank=True, help_text="Base URL calls are forwarded to, e.g. http://10.0.0.5:8080/api.", max_length=500, validators=[django.core.validators.URLValidator(schemes=["http", "https"])])),
                ("methods", models.CharField(default="GET,POST", help_text="Allowed HTTP methods, comma separated.", max_length=100, validators=[plans.models.validate_methods])),
                ("timeout_seconds", models.PositiveIntegerField(default=30, help_text="A call the upstream has not answered by then ends in 504 upstream_timeout (1 to 300).", validators=[django.core.validators.MinValueValidator(1), django.core.validators.MaxValueValidator(300)])),
                ("body_limit_bytes", models.PositiveIntegerField(default=10485760, help_text="Largest request body forwarded; larger ones get 413.")),
                ("health_path", models.CharField(default="/", help_text="“Check upstream” GETs the base URL + this.", max_length=200)),
                ("active", models.BooleanField(default=True, help_text="Untick to stop serving it without deleting it.")),
                ("signing_secret", models.CharField(blank=True, max_length=100)),
                ("service_token_hash", models.CharField(blank=True, db_index=True, max_length=64)),
                ("service_token_last4", models.CharField(blank=True, max_length=8)),
                ("sort_order", models.PositiveIntegerField(default=0)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
            ],
            options={
                "ordering": ["sort_order", "slug"],
            },
        ),
        migrations.AddField(
            model_name="plan",
            name="products",
            field=models.ManyToManyField(blank=True, help_text="API products this plan may call.", related_name="plans", to="plans.product"),
        ),
        migrations.RunPython(products_fill, products_unfill),
    ]
