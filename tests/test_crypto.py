from __future__ import annotations

import base64

import pytest
from django.test import override_settings

from frameio_oauth import crypto
from frameio_oauth.exceptions import DecryptionError, SettingsError
from tests.support.settings import FRAMEIO_OAUTH, OLD_TEST_KEY, TEST_KEY

AAD = b"frameio_oauth.oauthtoken:access_token:1"


def cipher(*keys: str) -> crypto.TokenCipher:
    return crypto.TokenCipher(tuple(keys))


def test_round_trip_returns_the_plaintext() -> None:
    c = cipher(TEST_KEY)
    assert c.decrypt(c.encrypt("s3cret-token", AAD), AAD) == "s3cret-token"


def test_envelope_names_version_and_key_id_and_hides_plaintext() -> None:
    envelope = cipher(TEST_KEY).encrypt("s3cret-token", AAD)
    version, kid, body = envelope.split(":")
    assert version == "v1"
    assert kid == crypto.key_id(base64.urlsafe_b64decode(TEST_KEY))
    assert "s3cret" not in envelope
    assert b"s3cret" not in base64.urlsafe_b64decode(body)


def test_same_plaintext_encrypts_differently_each_time() -> None:
    c = cipher(TEST_KEY)
    assert c.encrypt("same", AAD) != c.encrypt("same", AAD)


def test_key_id_is_derived_from_the_key_itself() -> None:
    assert cipher(TEST_KEY).primary_kid == cipher(TEST_KEY, OLD_TEST_KEY).primary_kid
    assert cipher(TEST_KEY).primary_kid != cipher(OLD_TEST_KEY).primary_kid


def test_wrong_key_raises_instead_of_returning_anything() -> None:
    envelope = cipher(OLD_TEST_KEY).encrypt("s3cret", AAD)
    with pytest.raises(DecryptionError, match="not in FRAMEIO_OAUTH"):
        cipher(TEST_KEY).decrypt(envelope, AAD)


def test_any_configured_key_decrypts_but_only_the_first_encrypts() -> None:
    old_envelope = cipher(OLD_TEST_KEY).encrypt("s3cret", AAD)
    both = cipher(TEST_KEY, OLD_TEST_KEY)
    assert both.decrypt(old_envelope, AAD) == "s3cret"
    assert crypto.envelope_key_id(both.encrypt("x", AAD)) == both.primary_kid


def test_other_associated_data_fails_to_decrypt() -> None:
    c = cipher(TEST_KEY)
    envelope = c.encrypt("s3cret", AAD)
    with pytest.raises(DecryptionError, match="another row"):
        c.decrypt(envelope, b"frameio_oauth.oauthtoken:access_token:2")


def test_tampered_ciphertext_fails_to_decrypt() -> None:
    c = cipher(TEST_KEY)
    envelope = c.encrypt("s3cret", AAD)
    head, body = envelope.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(DecryptionError):
        c.decrypt(f"{head}:{base64.urlsafe_b64encode(bytes(raw)).decode()}", AAD)


def test_relabelled_key_id_fails_to_decrypt() -> None:
    both = cipher(TEST_KEY, OLD_TEST_KEY)
    envelope = both.encrypt("s3cret", AAD)
    old_kid = crypto.key_id(base64.urlsafe_b64decode(OLD_TEST_KEY))
    relabelled = envelope.replace(f":{both.primary_kid}:", f":{old_kid}:")
    with pytest.raises(DecryptionError):
        both.decrypt(relabelled, AAD)


@pytest.mark.parametrize("value", ["plaintext-token", "v2:abc:def", "v1:abc", ""])
def test_a_value_that_is_not_an_envelope_raises(value: str) -> None:
    with pytest.raises(DecryptionError):
        cipher(TEST_KEY).decrypt(value, AAD)


def test_generated_keys_are_valid_and_distinct() -> None:
    first, second = crypto.generate_key(), crypto.generate_key()
    assert first != second
    assert len(crypto.decode_key(first)) == 32


@pytest.mark.parametrize("key", ["not base64 at all!", base64.urlsafe_b64encode(b"short").decode()])
def test_malformed_keys_are_refused(key: str) -> None:
    with pytest.raises(SettingsError):
        crypto.decode_key(key)


def test_an_empty_key_list_is_refused() -> None:
    with pytest.raises(SettingsError, match="empty"):
        crypto.TokenCipher(())


def test_get_cipher_follows_override_settings() -> None:
    before = crypto.get_cipher().primary_kid
    with override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ENCRYPTION_KEYS": [OLD_TEST_KEY]}):
        assert crypto.get_cipher().primary_kid != before
    assert crypto.get_cipher().primary_kid == before
