"""The token cipher: AES-256-GCM in a versioned envelope that names its key.

An envelope reads ``v1:<kid>:<urlsafe base64 of nonce || ciphertext || tag>``. The key id is
derived from the key itself, so rotating keys needs no bookkeeping: the first key in
``ENCRYPTION_KEYS`` encrypts, every key decrypts. Callers pass associated data that names the
row and field a secret belongs to, so a ciphertext copied elsewhere does not decrypt. Every
failure raises :class:`DecryptionError`; nothing ever falls back to returning the ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.views.decorators.debug import sensitive_variables

from .conf import SETTING_NAME, conf
from .exceptions import DecryptionError, SettingsError

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KID_LENGTH = 8


def generate_key() -> str:
    """A new random 256-bit key, urlsafe-base64 encoded, ready for ``ENCRYPTION_KEYS``."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


# Every function whose frame holds a key or a plaintext hides all its locals from Django's
# error reports (technical 500 page, error e-mails); so do the frames it calls.
@sensitive_variables()
def decode_key(key: str) -> bytes:
    """The raw bytes of a configured key; raises SettingsError if it is malformed."""
    try:
        raw = base64.urlsafe_b64decode(key.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise SettingsError("an encryption key is not urlsafe base64") from exc
    if len(raw) != KEY_BYTES:
        raise SettingsError(
            f"an encryption key decodes to {len(raw)} bytes; AES-256 needs {KEY_BYTES}"
        )
    return raw


def key_id(raw_key: bytes) -> str:
    """A short public name for a key; a hash, so it reveals nothing about the key."""
    return hashlib.sha256(b"frameio_oauth key id\x00" + raw_key).hexdigest()[:KID_LENGTH]


def envelope_key_id(envelope: str) -> str | None:
    """The key id an envelope was sealed with, or None if it is not an envelope."""
    parts = envelope.split(":", 2)
    if len(parts) != 3 or parts[0] != VERSION:
        return None
    return parts[1]


class TokenCipher:
    """Encrypts with the first key, decrypts with whichever key the envelope names."""

    @sensitive_variables()
    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise SettingsError("FRAMEIO_OAUTH['ENCRYPTION_KEYS'] is empty")
        self._keys: dict[str, AESGCM] = {}
        self.primary_kid = ""
        for index, key in enumerate(keys):
            raw = decode_key(key)
            kid = key_id(raw)
            self._keys.setdefault(kid, AESGCM(raw))
            if index == 0:
                self.primary_kid = kid

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The configured keys' ids, the primary first (ids are not secret)."""
        return tuple(self._keys)

    @sensitive_variables()
    def encrypt(self, plaintext: str, associated_data: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._keys[self.primary_kid].encrypt(
            nonce, plaintext.encode("utf-8"), self._aad(self.primary_kid, associated_data)
        )
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{VERSION}:{self.primary_kid}:{body}"

    @sensitive_variables()
    def decrypt(self, envelope: str | bytes, associated_data: bytes) -> str:
        if isinstance(envelope, bytes):
            # A driver or cache that hands back bytes: envelopes are ASCII.
            try:
                envelope = envelope.decode("ascii")
            except UnicodeDecodeError:
                raise DecryptionError("stored value is not a frameio_oauth v1 envelope") from None
        kid = envelope_key_id(envelope)
        if kid is None:
            raise DecryptionError("stored value is not a frameio_oauth v1 envelope")
        aead = self._keys.get(kid)
        if aead is None:
            raise DecryptionError(
                f"stored value was encrypted with key id {kid[: KID_LENGTH * 2]!r}, which is not "
                "in FRAMEIO_OAUTH['ENCRYPTION_KEYS']"
            )
        body = envelope.split(":", 2)[2]
        try:
            blob = base64.urlsafe_b64decode(body)
            # Only the one spelling encrypt() writes: no "+" or "/", no stray padding or junk,
            # which a lenient decoder would skip.
            if base64.urlsafe_b64encode(blob).decode("ascii") != body:
                raise ValueError("not the canonical urlsafe base64 of its bytes")
            plaintext = aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], self._aad(kid, associated_data)
            )
        except Exception as exc:  # InvalidTag, bad base64, short blob: all mean "not ours"
            raise DecryptionError(
                f"stored value failed authentication under key id {kid!r}: wrong key, "
                "tampered value, or a value copied from another row"
            ) from exc
        try:
            return plaintext.decode("utf-8")
        except UnicodeDecodeError:
            # "from None": the UnicodeDecodeError's args hold the plaintext bytes, and error
            # reports print a chained exception's args.
            raise DecryptionError("stored value decrypted to bytes that are not UTF-8") from None

    @staticmethod
    def _aad(kid: str, associated_data: bytes) -> bytes:
        # The version and kid are authenticated too, so an envelope cannot be relabelled.
        return f"{VERSION}:{kid}:".encode("ascii") + associated_data


_current: TokenCipher | None = None


def get_cipher() -> TokenCipher:
    """The cipher for the current settings. Kept until FRAMEIO_OAUTH changes (the
    setting_changed signal, which override_settings sends), so the hot path reads no settings."""
    global _current
    if _current is None:
        _current = TokenCipher(tuple(conf.encryption_keys))
    return _current


@receiver(setting_changed)
def _forget_cipher(*, setting: str, **kwargs: object) -> None:
    global _current
    if setting == SETTING_NAME:
        _current = None
