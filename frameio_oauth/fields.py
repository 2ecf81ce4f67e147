"""A model field that keeps a secret encrypted in the database and plaintext on the instance.

``token.access_token`` reads and writes plaintext; the column (``access_token_ciphertext``, the
field's ``attname``) only ever holds an envelope from :mod:`frameio_oauth.crypto`. The
associated data names the model, the field and the value of ``aad_field`` (the owning user), so
a ciphertext copied into another user's row fails to decrypt instead of leaking. A row never
changes owner (``OAuthToken.save`` refuses it), so every envelope is sealed to the row's owner.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import models
from django.views.decorators.debug import sensitive_variables

from .crypto import get_cipher
from .exceptions import DecryptionError

# Plaintext set on an instance whose owner is not known yet; sealed in pre_save().
_PENDING = "_frameio_oauth_pending"
_CACHE = "_frameio_oauth_plaintext"


class EncryptedTextDescriptor:
    def __init__(self, field: EncryptedTextField) -> None:
        self.field = field

    # Each method here that holds a plaintext hides every local of its frame, and of the
    # frames it calls, from Django's error reports.
    @sensitive_variables()
    def __get__(self, instance: models.Model | None, owner: type | None = None) -> Any:
        if instance is None:
            return self
        pending = instance.__dict__.get(_PENDING, {})
        if self.field.name in pending:
            return pending[self.field.name]
        envelope = instance.__dict__.get(self.field.attname)
        if not envelope:
            # None, or "": Django's default for a column never set.
            return None
        cache = instance.__dict__.setdefault(_CACHE, {})
        cached = cache.get(self.field.name)
        # Keyed by the envelope, so refresh_from_db() or a raw attname write is never stale.
        if cached is not None and cached[0] == envelope:
            return cached[1]
        plaintext = get_cipher().decrypt(envelope, self.field.associated_data(instance))
        cache[self.field.name] = (envelope, plaintext)
        return plaintext

    @sensitive_variables()
    def __set__(self, instance: models.Model, value: str | None) -> None:
        pending = instance.__dict__.setdefault(_PENDING, {})
        pending.pop(self.field.name, None)
        if value is None:
            instance.__dict__[self.field.attname] = None
            return
        if not isinstance(value, str):
            raise TypeError(f"{self.field.name} must be a str or None")
        if getattr(instance, self.field.aad_field, None) is None:
            pending[self.field.name] = value
            instance.__dict__[self.field.attname] = None
            return
        self.field.seal(instance, value)


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """A TextField whose column holds ciphertext bound to ``aad_field`` of its row."""

    def __init__(self, *args: Any, aad_field: str = "pk", **kwargs: Any) -> None:
        self.aad_field = aad_field
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        kwargs["aad_field"] = self.aad_field
        kwargs.pop("editable", None)
        return name, path, args, kwargs

    def get_attname(self) -> str:
        return f"{self.name}_ciphertext"

    def contribute_to_class(
        self, cls: type[models.Model], name: str, private_only: bool = False
    ) -> None:
        super().contribute_to_class(cls, name, private_only=private_only)
        setattr(cls, name, EncryptedTextDescriptor(self))

    def associated_data(self, instance: models.Model) -> bytes:
        """What binds a ciphertext to its row: model, field and owner (``aad_field``)."""
        owner = getattr(instance, self.aad_field, None)
        if owner is None:
            raise DecryptionError(
                f"{self.model._meta.label}.{self.name} has no {self.aad_field} to bind to"
            )
        return f"{self.model._meta.label_lower}:{self.name}:{owner}".encode()

    @sensitive_variables()
    def seal(self, instance: models.Model, plaintext: str) -> None:
        envelope = get_cipher().encrypt(plaintext, self.associated_data(instance))
        instance.__dict__[self.attname] = envelope
        instance.__dict__.setdefault(_CACHE, {})[self.name] = (envelope, plaintext)

    @sensitive_variables()
    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        values = model_instance.__dict__
        pending = values.get(_PENDING, {})
        if self.name in pending:
            self.seal(model_instance, pending.pop(self.name))
        elif add:
            # A new row is sealed to the owner it is inserted with, even if the owner was
            # changed after the secret was set.
            cached = values.get(_CACHE, {}).get(self.name)
            if cached is not None and cached[0] == values.get(self.attname):
                self.seal(model_instance, cached[1])
        return super().pre_save(model_instance, add)


@sensitive_variables()
def without_plaintext(instance: models.Model, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` (a copy of the instance's ``__dict__``, for pickling) minus every plaintext.

    Secrets still pending are sealed first if the owner is known by now, as ``save()`` would;
    with no owner to seal to they cannot leave the process except in the clear, so that is
    refused.
    """
    pending = instance.__dict__.get(_PENDING)
    if pending:
        for field in _encrypted_fields(type(instance)):
            if field.name in pending and getattr(instance, field.aad_field, None) is not None:
                field.seal(instance, pending.pop(field.name))
                state[field.attname] = instance.__dict__[field.attname]
        if pending:
            raise TypeError(
                f"cannot pickle a {type(instance).__name__} whose "
                f"{', '.join(sorted(pending))} is not encrypted yet: set its "
                f"{_encrypted_fields(type(instance))[0].aad_field} first"
            )
    state.pop(_PENDING, None)
    state.pop(_CACHE, None)
    return state


@cache
def _encrypted_fields(model: type[models.Model]) -> tuple[EncryptedTextField, ...]:
    return tuple(f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField))
