"""OAuthToken's rules about one row: a token belongs to the user who granted it, its querysets
(due, active), its str(), and its table's constraints and indexes. The encrypted columns are
in test_fields.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.utils import timezone

from frameio_oauth.exceptions import DecryptionError
from frameio_oauth.models import OAuthToken, OwnerChangeRefused
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.tokens import raw_ciphertexts

pytestmark = pytest.mark.django_db


def assert_still_owned_by(user: Any, token_id: int, access: str) -> None:
    row = OAuthToken.objects.get(pk=token_id)
    assert (row.user_id, row.access_token) == (user.pk, access)


REFUSED = "a token belongs to the user who granted it"


def test_saving_a_token_given_to_another_user_is_refused_and_the_row_kept(
    user: Any, other_user: Any, make_token: Any
) -> None:
    token = make_token(user, access_token="owned-access", refresh_token="owned-refresh")
    token.user = other_user
    with pytest.raises(OwnerChangeRefused, match=REFUSED):
        token.save()
    assert_still_owned_by(user, token.pk, "owned-access")


def test_a_loaded_token_given_to_another_user_is_refused(
    user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user, access_token="owned-access")
    token = OAuthToken.objects.get(user=user)
    token.user = other_user
    with pytest.raises(OwnerChangeRefused):
        token.save()
    assert_still_owned_by(user, token.pk, "owned-access")


@pytest.mark.parametrize("fields", [["user"], ["user_id"], ["user", "access_token"]])
def test_a_new_owner_saved_with_update_fields_is_refused(
    user: Any, other_user: Any, make_token: Any, fields: list[str]
) -> None:
    make_token(user, access_token="owned-access")
    token = OAuthToken.objects.get(user=user)
    token.user = other_user
    with pytest.raises(OwnerChangeRefused):
        token.save(update_fields=fields)
    assert_still_owned_by(user, token.pk, "owned-access")


@pytest.mark.parametrize(
    "load",
    [
        lambda user: OAuthToken.objects.defer("access_token", "refresh_token").get(user=user),
        lambda user: OAuthToken.objects.only("id", "user").get(user=user),
        lambda user: OAuthToken.objects.only("id", "access_token").get(user=user),
    ],
    ids=["without-its-secrets", "with-only-its-owner", "without-its-owner"],
)
def test_a_partly_loaded_token_given_to_another_user_is_refused(
    user: Any, other_user: Any, make_token: Any, load: Any
) -> None:
    make_token(user, access_token="owned-access")
    token = load(user)
    token.user = other_user
    with pytest.raises(OwnerChangeRefused):
        token.save()
    assert_still_owned_by(user, token.pk, "owned-access")


def test_a_token_reached_from_its_user_and_given_another_is_refused(
    user: Any, other_user: Any, django_user_model: Any, make_token: Any
) -> None:
    make_token(user, access_token="owned-access")
    token = django_user_model.objects.select_related("frameio_token").get(pk=user.pk).frameio_token
    token.user = other_user
    with pytest.raises(OwnerChangeRefused):
        token.save()
    assert_still_owned_by(user, token.pk, "owned-access")


def test_saving_a_secret_of_a_token_given_a_new_owner_is_refused_as_a_whole(
    user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user, access_token="old-access")
    token = OAuthToken.objects.get(user=user)
    token.user = other_user
    token.access_token = "new-access"
    with pytest.raises(OwnerChangeRefused):
        token.save()
    assert_still_owned_by(user, token.pk, "old-access")


def test_a_save_that_does_not_write_the_owner_costs_no_owner_check(
    user: Any, make_token: Any, django_assert_num_queries: Any
) -> None:
    token = make_token(user)
    token.status = OAuthToken.Status.REAUTH_REQUIRED
    with django_assert_num_queries(1):
        token.save(update_fields=["status"])


def test_a_token_saved_again_by_its_own_user_is_not_refused(user: Any, make_token: Any) -> None:
    token = make_token(user, access_token="first")
    token.access_token = "second"
    token.save()
    assert_still_owned_by(user, token.pk, "second")


def test_a_new_token_is_sealed_to_the_owner_it_is_inserted_with(user: Any, other_user: Any) -> None:
    token = OAuthToken(user=user, provider_user_id="p1", expires_at=timezone.now())
    token.access_token = "sealed-late"
    token.user = other_user  # before the first save: the row is born with this owner
    token.save()
    assert_still_owned_by(other_user, token.pk, "sealed-late")


def test_update_cannot_change_a_tokens_user(user: Any, other_user: Any, make_token: Any) -> None:
    make_token(user)
    with pytest.raises(ValueError, match="cannot change a token's user"):
        OAuthToken.objects.filter(user=user).update(user=other_user)


def test_bulk_update_cannot_change_a_tokens_user(
    user: Any, other_user: Any, make_token: Any
) -> None:
    token = OAuthToken.objects.get(pk=make_token(user).pk)
    token.user = other_user
    with pytest.raises(ValueError, match="cannot change a token's user"):
        OAuthToken.objects.bulk_update([token], ["user", "access_token"])


def test_save_takes_update_fields_as_any_iterable(user: Any, make_token: Any) -> None:
    token = make_token(user)
    token.status = OAuthToken.Status.REAUTH_REQUIRED
    token.save(update_fields=(name for name in ["status"]))
    assert OAuthToken.objects.get(pk=token.pk).status == OAuthToken.Status.REAUTH_REQUIRED


def test_active_lists_only_tokens_that_can_be_refreshed(
    user: Any, other_user: Any, django_user_model: Any, make_token: Any
) -> None:
    active = make_token(user)
    make_token(other_user, status=OAuthToken.Status.REAUTH_REQUIRED)
    make_token(django_user_model.objects.create_user("carol"), status=OAuthToken.Status.REVOKED)
    assert list(OAuthToken.objects.active()) == [active]


def test_a_copied_ciphertext_cannot_be_laundered_by_changing_the_rows_owner(
    user: Any, other_user: Any, django_user_model: Any, make_token: Any
) -> None:
    mine = make_token(user)
    theirs = make_token(other_user)
    OAuthToken.objects.filter(pk=theirs.pk).update(
        access_token_ciphertext=raw_ciphertexts(mine.pk)[0]
    )
    copied = OAuthToken.objects.get(pk=theirs.pk)
    copied.user = django_user_model.objects.create_user("carol")
    with pytest.raises(OwnerChangeRefused):
        copied.save()
    with pytest.raises(DecryptionError, match="another row"):
        OAuthToken.objects.get(pk=theirs.pk).access_token  # noqa: B018


def test_str_names_the_user_by_login_name_and_the_status_by_its_label(
    user: Any, make_token: Any
) -> None:
    token = make_token(user, status=OAuthToken.Status.REAUTH_REQUIRED)
    assert str(OAuthToken.objects.select_related("user").get(pk=token.pk)) == (
        "Frame.io token of alice (Re-authorization required)"
    )


def test_str_never_queries_for_the_user(
    user: Any, make_token: Any, django_assert_num_queries: Any
) -> None:
    token = OAuthToken.objects.get(pk=make_token(user).pk)
    with django_assert_num_queries(0):
        assert str(token) == f"Frame.io token of user {user.pk} (Active)"


def test_str_of_a_token_whose_user_was_deleted_meanwhile_does_not_raise(
    user: Any, make_token: Any
) -> None:
    token = OAuthToken.objects.get(pk=make_token(user).pk)
    user_id = user.pk
    OAuthToken.objects.filter(pk=token.pk).delete()
    user.delete()
    assert str(token) == f"Frame.io token of user {user_id} (Active)"


def test_str_of_a_token_without_a_user_yet_does_not_raise() -> None:
    assert str(OAuthToken()) == "Frame.io token of user — (Active)"


def test_str_and_repr_show_no_secret(user: Any, make_token: Any) -> None:
    token = make_token(user)
    for text in (str(token), repr(token)):
        assert "secret" not in text
        assert "v1:" not in text


def test_one_frameio_account_cannot_be_stored_for_two_users(
    user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user, provider_user_id="fio-shared")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_token(other_user, provider_user_id="fio-shared")
    assert list(OAuthToken.objects.values_list("user_id", flat=True)) == [user.pk]


@pytest.mark.postgres
def test_the_token_table_carries_only_the_indexes_its_queries_use() -> None:
    # Every refresh moves next_refresh_at (an indexed column), so it writes to every index:
    # an index nothing reads, such as the LIKE index Django adds for unique=True text fields,
    # would only slow refreshes down.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = %s",
            [OAuthToken._meta.db_table],
        )
        definitions = sorted(row[0].split(" USING ")[1] for row in cursor.fetchall())
    assert definitions == [
        "btree (id)",
        "btree (provider_user_id)",
        "btree (status, next_refresh_at, id)",
        "btree (user_id)",
    ]


def test_due_finds_only_active_tokens_whose_time_has_come(
    user: Any, other_user: Any, django_user_model: Any, make_token: Any
) -> None:
    past = timezone.now() - timedelta(seconds=1)
    due = make_token(user, next_refresh_at=past)
    make_token(other_user)  # next refresh in the future
    carol = django_user_model.objects.create_user("carol")
    make_token(carol, next_refresh_at=past, status=OAuthToken.Status.REAUTH_REQUIRED)
    assert list(OAuthToken.objects.due()) == [due]


# --- the authorization server that issued a grant -------------------------------------------

V4 = {**FRAMEIO_OAUTH, "PROVIDER": "adobe-ims", "SCOPES": ["openid", "offline_access"]}


def test_a_row_saved_without_its_server_is_the_configured_servers(
    user: Any, make_token: Any
) -> None:
    with override_settings(FRAMEIO_OAUTH=V4):
        token = make_token(user)
    assert OAuthToken.objects.get(pk=token.pk).authorization_server == (
        "https://ims-na1.adobelogin.com"
    )


def test_a_row_of_the_configured_server_is_not_issued_elsewhere(user: Any, make_token: Any) -> None:
    assert not make_token(user).issued_elsewhere()


def test_a_row_of_another_server_is_issued_elsewhere(user: Any, make_token: Any) -> None:
    token = make_token(user)
    with override_settings(FRAMEIO_OAUTH=V4):
        assert token.issued_elsewhere()


def test_the_message_for_a_row_of_another_server_says_connect_again_and_names_both(
    user: Any, make_token: Any
) -> None:
    token = make_token(user)
    with override_settings(FRAMEIO_OAUTH=V4):
        message = token.issued_elsewhere_message()
    assert message.startswith("connect again: ")
    assert "issued by https://applications.frame.io" in message
    assert "now uses https://ims-na1.adobelogin.com" in message


def test_the_message_for_a_row_of_another_server_fits_last_error(
    user: Any, make_token: Any
) -> None:
    token = make_token(user, authorization_server="https://" + "x" * 400)
    message = token.issued_elsewhere_message()
    assert message.startswith("connect again: ")
    assert len(message) == OAuthToken._meta.get_field("last_error").max_length


@pytest.fixture
def before_0004() -> Iterator[Any]:
    """The database as it was before migration 0004 (the models' state then); migrated to
    the latest again afterwards."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes("frameio_oauth")
    before = [("frameio_oauth", "0003_status_label")]
    try:
        executor.migrate(before)
        yield MigrationExecutor(connection).loader.project_state(before).apps
    finally:
        MigrationExecutor(connection).migrate(latest)


def migrate_to_0004() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("frameio_oauth", "0004_authorization_server")])


def old_row(apps: Any, name: str, preset: str) -> None:
    user_model = apps.get_model(settings.AUTH_USER_MODEL)
    apps.get_model("frameio_oauth", "OAuthToken").objects.create(
        user=user_model.objects.create(username=name),
        provider=preset,
        provider_user_id=f"fio-{name}",
        access_token_ciphertext="v1:k:x",
        expires_at=timezone.now(),
    )


def servers_by_user() -> dict[str, str]:
    return dict(OAuthToken.objects.values_list("user__username", "authorization_server"))


@pytest.mark.django_db(transaction=True)
def test_migration_0004_records_the_configured_server_for_the_rows_of_the_configured_preset(
    before_0004: Any,
) -> None:
    old_row(before_0004, "legacy", "frameio")
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "TOKEN_URL": "https://idp.example/t"}):
        migrate_to_0004()
    assert servers_by_user() == {"legacy": "https://idp.example"}


@pytest.mark.django_db(transaction=True)
def test_migration_0004_records_a_rows_own_presets_server_when_the_site_switched_first(
    before_0004: Any,
) -> None:
    # The site switched to V4 (or relied on the old default, "frameio") before migrating:
    # its legacy rows are the legacy server's, never the one now configured.
    old_row(before_0004, "legacy", "frameio")
    old_row(before_0004, "v4", "adobe-ims")
    with override_settings(FRAMEIO_OAUTH=V4):
        migrate_to_0004()
    assert servers_by_user() == {
        "legacy": "https://applications.frame.io",
        "v4": "https://ims-na1.adobelogin.com",
    }
