# Each grant records the authorization server that issued it, the only one its tokens are ever
# sent to (docs: security, "A token goes back only to its server"; docs: migrating).
#
# Existing rows: AddField gives every row the server the site's settings name while this runs
# (the field's default is evaluated once; PostgreSQL adds the column with that constant, no
# table rewrite). A row whose own preset (the provider column) is not the configured one, as
# after a switch of PROVIDER, or on a legacy site that relied on the old default "frameio",
# was issued by that preset's server instead, and says so; it is then asked to connect again
# rather than being sent to the configured server.

from typing import Any

from django.db import migrations, models

import frameio_oauth.models
from frameio_oauth.conf import PRESETS, conf


def record_other_presets_servers(apps: Any, schema_editor: Any) -> None:
    tokens = apps.get_model("frameio_oauth", "OAuthToken").objects.using(
        schema_editor.connection.alias
    )
    for name, preset in PRESETS.items():
        if name != conf.provider_name:
            tokens.filter(provider=name).update(authorization_server=preset.server)


class Migration(migrations.Migration):
    dependencies = [
        ("frameio_oauth", "0003_status_label"),
    ]

    operations = [
        migrations.AddField(
            model_name="oauthtoken",
            name="authorization_server",
            field=models.TextField(
                default=frameio_oauth.models.configured_authorization_server,
                verbose_name="authorization server",
            ),
        ),
        migrations.RunPython(record_other_presets_servers, migrations.RunPython.noop),
    ]
