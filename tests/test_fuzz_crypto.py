"""Property tests of the envelope decoder: whatever is stored, it either decrypts to what was
encrypted or raises DecryptionError, never anything else and never a wrong plaintext."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from frameio_oauth import crypto
from frameio_oauth.exceptions import DecryptionError
from tests.support.settings import OLD_TEST_KEY, TEST_KEY

AAD = b"frameio_oauth.oauthtoken:access_token:1"
CIPHER = crypto.TokenCipher((TEST_KEY, OLD_TEST_KEY))
PLAINTEXT = "rotating-refresh-token-\u00e9\u6f22"
GOOD = CIPHER.encrypt(PLAINTEXT, AAD)

fuzz = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def opens_or_refuses(envelope: str | bytes) -> None:
    try:
        plaintext = CIPHER.decrypt(envelope, AAD)
    except DecryptionError:
        return
    # Only the genuine envelope opens, and to exactly what was sealed in it.
    assert plaintext == PLAINTEXT


@fuzz
@given(st.text())
@example("v1:")
@example("v1::")
@example(f"v1:{CIPHER.primary_kid}:")
@example(f"v1:{CIPHER.primary_kid}:{'A' * 10_000}")
@example(f"v1:{CIPHER.primary_kid}:\u00e9\u00e9")
def test_any_text_opens_to_its_plaintext_or_raises_decryption_error(text: str) -> None:
    opens_or_refuses(text)


@fuzz
@given(st.binary())
def test_any_bytes_open_to_their_plaintext_or_raise_decryption_error(data: bytes) -> None:
    opens_or_refuses(data)


@fuzz
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.characters())
def test_an_envelope_with_one_character_changed_never_opens(index: int, char: str) -> None:
    changed = GOOD[:index] + char + GOOD[index + 1 :]
    if changed == GOOD:
        return
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(changed, AAD)


@fuzz
@given(st.integers(min_value=0, max_value=len(GOOD) - 1), st.text(min_size=1))
@example(0, "=")  # stray padding, which a lenient decoder skips
@example(0, "==")
def test_a_cut_or_extended_envelope_never_opens(cut: int, tail: str) -> None:
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(GOOD[:cut], AAD)
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(GOOD + tail, AAD)


def test_the_genuine_envelope_opens_under_the_bytes_it_was_stored_as() -> None:
    assert CIPHER.decrypt(GOOD.encode("ascii"), AAD) == PLAINTEXT


def test_an_envelope_spelled_in_standard_base64_never_opens() -> None:
    # "+" and "/" decode to the same bytes as "-" and "_" under a lenient decoder.
    envelope = next(e for e in iter(lambda: CIPHER.encrypt(PLAINTEXT, AAD), None) if "-" in e)
    with pytest.raises(DecryptionError):
        CIPHER.decrypt(envelope.replace("-", "+"), AAD)
