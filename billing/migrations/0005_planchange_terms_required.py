from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_terms_fill")]

    operations = [
        migrations.AlterField(
            model_name="planchange",
            name="terms",
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="plans.terms"),
        ),
    ]
