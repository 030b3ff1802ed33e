from decimal import Decimal

from django.db import migrations

# README "Plans". After this migration the plans are data: staff edit them in Django admin.
PLANS = [
    dict(slug="free", name="Free", price="0", included_calls=1_000, overage_price="0", hard_cap=True,
         rate_per_minute=10, trial_days=0, entitlements=["geocode", "text"], is_default=True, sort_order=10,
         description="Kick the tyres: geocoding and text analysis.",
         features=["1,000 calls / month", "10 calls / minute", "Geocoding and text analysis", "Community support"]),
    dict(slug="starter", name="Starter", price="49", included_calls=50_000, overage_price="0.001",
         rate_per_minute=100, trial_days=14, entitlements=["geocode", "text", "image"], sort_order=20,
         description="For a product that is starting to ship.",
         features=["50,000 calls / month", "100 calls / minute", "All APIs incl. image analysis",
                   "$0.001 per extra call", "Email support", "Webhooks"]),
    dict(slug="pro", name="Professional", price="199", included_calls=500_000, overage_price="0.0005",
         rate_per_minute=500, trial_days=14, entitlements=["geocode", "text", "image"], sort_order=30,
         description="For teams running production traffic.",
         features=["500,000 calls / month", "500 calls / minute", "All APIs", "$0.0005 per extra call",
                   "Priority support", "Webhooks", "Usage alerts"]),
    dict(slug="enterprise", name="Enterprise", price="999", included_calls=5_000_000, overage_price="0.0002",
         rate_per_minute=2_000, trial_days=30, entitlements=["geocode", "text", "image"], sort_order=40,
         description="High volume with a service level agreement.",
         features=["5,000,000 calls / month", "2,000 calls / minute", "All APIs", "$0.0002 per extra call",
                   "SLA 99.9%", "Dedicated support", "Webhooks", "Usage alerts"]),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("plans", "Plan")
    for row in PLANS:
        values = dict(row, price=Decimal(row["price"]), overage_price=Decimal(row["overage_price"]))
        Plan.objects.update_or_create(slug=values.pop("slug"), defaults=values)


def unseed(apps, schema_editor):
    apps.get_model("plans", "Plan").objects.filter(slug__in=[p["slug"] for p in PLANS], customers=None).delete()


class Migration(migrations.Migration):
    dependencies = [("plans", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
