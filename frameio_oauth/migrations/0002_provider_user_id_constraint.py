# The unique Frame.io user id as a constraint, not unique=True: on PostgreSQL this drops the
# varchar_pattern_ops (LIKE) index Django adds for unique text fields, which no query used and
# every refresh wrote to.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("frameio_oauth", "0001_initial"),
    ]

    operations = [
        migrations.AlterField(
            model_name="oauthtoken",
            name="provider_user_id",
            field=models.CharField(max_length=255, verbose_name="provider user id"),
        ),
        migrations.AddConstraint(
            model_name="oauthtoken",
            constraint=models.UniqueConstraint(
                fields=("provider_user_id",), name="frameio_oauth_unique_provider_user_id"
            ),
        ),
    ]
