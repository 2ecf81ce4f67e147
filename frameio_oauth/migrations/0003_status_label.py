# The "revoked" status is labelled for what it means: disconnected, revocation pending. Labels
# live only in Python; this changes nothing in the database.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("frameio_oauth", "0002_provider_user_id_constraint"),
    ]

    operations = [
        migrations.AlterField(
            model_name="oauthtoken",
            name="status",
            field=models.CharField(
                choices=[
                    ("active", "Active"),
                    ("reauth_required", "Re-authorization required"),
                    ("revoked", "Disconnected, revocation pending"),
                ],
                default="active",
                max_length=32,
                verbose_name="status",
            ),
        ),
    ]
