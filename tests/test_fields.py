"""The encrypted field: the database holds ciphertext only, bound to its row's owner; the
model reads plaintext, refuses what is not text, and never pickles a plaintext."""

from __future__ import annotations

import pickle
from typing import Any
from unittest import mock

import pytest
from django.test import override_settings
from django.utils import timezone

from frameio_oauth.crypto import TokenCipher, get_cipher
from frameio_oauth.exceptions import DecryptionError
from frameio_oauth.models import OAuthToken
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY
from tests.support.tokens import raw_ciphertexts

pytestmark = pytest.mark.django_db


def test_the_database_holds_ciphertext_only(user: Any, make_token: Any) -> None:
    token = make_token(user, access_token="plain-access-XYZ", refresh_token="plain-refresh-XYZ")
    access, refresh = raw_ciphertexts(token.pk)
    assert access.startswith(f"v1:{get_cipher().primary_kid}:")
    assert refresh.startswith("v1:")
    assert "XYZ" not in access + refresh


def test_secrets_read_back_as_plaintext_from_a_fresh_query(user: Any, make_token: Any) -> None:
    make_token(user, access_token="plain-access", refresh_token="plain-refresh")
    token = OAuthToken.objects.get(user=user)
    assert token.access_token == "plain-access"
    assert token.refresh_token == "plain-refresh"


def test_a_missing_refresh_token_is_stored_as_null(user: Any, make_token: Any) -> None:
    token = make_token(user, refresh_token=None)
    assert raw_ciphertexts(token.pk)[1] is None
    assert OAuthToken.objects.get(pk=token.pk).refresh_token is None


def test_a_secret_set_before_the_user_is_sealed_on_save(user: Any) -> None:
    token = OAuthToken(provider_user_id="p1", expires_at=timezone.now())
    token.access_token = "set-early"
    token.user = user
    token.save()
    assert raw_ciphertexts(token.pk)[0].startswith("v1:")
    assert OAuthToken.objects.get(pk=token.pk).access_token == "set-early"


def test_a_secret_set_before_the_user_reads_back_before_the_save(user: Any) -> None:
    token = OAuthToken(provider_user_id="p1", expires_at=timezone.now())
    token.access_token = "set-early"
    assert token.access_token == "set-early"
    assert token.access_token_ciphertext is None  # not sealed until the user is known


def test_a_secret_that_is_not_text_is_refused_and_the_one_before_kept(user: Any) -> None:
    token = OAuthToken(user=user, provider_user_id="p1", expires_at=timezone.now())
    token.access_token = "kept"
    with pytest.raises(TypeError, match="access_token must be a str or None"):
        token.access_token = b"bytes"  # type: ignore[assignment]
    assert token.access_token == "kept"


def test_a_token_whose_access_token_was_never_set_reads_as_none(user: Any) -> None:
    token = OAuthToken(user=user, provider_user_id="p1", expires_at=timezone.now())
    assert token.access_token is None


def test_reading_with_a_wrong_key_raises(user: Any, make_token: Any) -> None:
    make_token(user)
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY]}):
        token = OAuthToken.objects.get(user=user)
        with pytest.raises(DecryptionError):
            token.access_token  # noqa: B018


def test_a_ciphertext_copied_to_another_users_row_fails_to_decrypt(
    user: Any, other_user: Any, make_token: Any
) -> None:
    mine = make_token(user)
    theirs = make_token(other_user)
    OAuthToken.objects.filter(pk=theirs.pk).update(
        access_token_ciphertext=raw_ciphertexts(mine.pk)[0]
    )
    with pytest.raises(DecryptionError, match="another row"):
        OAuthToken.objects.get(pk=theirs.pk).access_token  # noqa: B018


def test_a_ciphertext_written_raw_into_another_users_row_still_fails_to_decrypt(
    user: Any, other_user: Any, make_token: Any
) -> None:
    mine = make_token(user)
    theirs = OAuthToken.objects.get(pk=make_token(other_user).pk)
    theirs.access_token_ciphertext = raw_ciphertexts(mine.pk)[0]
    theirs.save()
    with pytest.raises(DecryptionError, match="another row"):
        OAuthToken.objects.get(pk=theirs.pk).access_token  # noqa: B018


def test_a_token_refreshed_from_the_database_reads_what_another_process_wrote(
    user: Any, make_token: Any
) -> None:
    token = make_token(user)
    elsewhere = OAuthToken.objects.get(pk=token.pk)
    elsewhere.access_token = "written-elsewhere"
    elsewhere.save()
    token.refresh_from_db()
    assert token.access_token == "written-elsewhere"


def test_a_token_refreshed_from_the_database_field_by_field_reads_the_new_secret(
    user: Any, make_token: Any
) -> None:
    token = make_token(user)
    elsewhere = OAuthToken.objects.get(pk=token.pk)
    elsewhere.access_token = "written-elsewhere"
    elsewhere.save()
    token.refresh_from_db(fields=["access_token"])
    assert token.access_token == "written-elsewhere"
    assert token.refresh_token == f"refresh-{user.pk}-secret"


# --- pickling ---------------------------------------------------------------------------------


def test_a_pickled_token_carries_no_plaintext(user: Any, make_token: Any) -> None:
    make_token(user, access_token="pickle-access-XYZ", refresh_token="pickle-refresh-XYZ")
    token = OAuthToken.objects.get(user=user)
    assert token.access_token == "pickle-access-XYZ"  # both plaintexts now cached
    assert token.refresh_token == "pickle-refresh-XYZ"
    assert b"XYZ" not in pickle.dumps(token)


def test_an_unpickled_token_decrypts_normally(user: Any, make_token: Any) -> None:
    make_token(user, access_token="pickle-access", refresh_token="pickle-refresh")
    token = OAuthToken.objects.get(user=user)
    token.access_token  # noqa: B018
    copy = pickle.loads(pickle.dumps(token))
    assert (copy.access_token, copy.refresh_token) == ("pickle-access", "pickle-refresh")


def test_pickling_a_token_keeps_its_own_plaintext_cache(user: Any, make_token: Any) -> None:
    token = make_token(user)
    pickle.dumps(token)
    with mock.patch.object(TokenCipher, "decrypt", side_effect=AssertionError("decrypted")):
        assert token.access_token == f"access-{user.pk}-secret"


def test_a_token_whose_secrets_have_no_owner_yet_refuses_to_pickle() -> None:
    token = OAuthToken(provider_user_id="p1", expires_at=timezone.now())
    token.access_token = "no-owner-yet"
    with pytest.raises(TypeError, match="access_token is not encrypted yet"):
        pickle.dumps(token)


def test_a_token_given_its_owner_after_its_secrets_pickles_them_sealed(user: Any) -> None:
    token = OAuthToken(provider_user_id="p1", expires_at=timezone.now())
    token.access_token = "sealed-at-pickle-XYZ"
    token.user = user
    blob = pickle.dumps(token)
    assert b"XYZ" not in blob
    assert pickle.loads(blob).access_token == "sealed-at-pickle-XYZ"
