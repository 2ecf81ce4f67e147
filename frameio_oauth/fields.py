"""A model field that keeps a secret encrypted in the database and plaintext on the instance.

``token.access_token`` reads and writes plaintext; the column (``access_token_ciphertext``, the
field's ``attname``) only ever holds an envelope from :mod:`frameio_oauth.crypto`. The
associated data names the model, the field and the value of ``aad_field`` (the owning user), so
a ciphertext copied into another user's row fails to decrypt instead of leaking.

An instance remembers which owner each of its envelopes is sealed to (when the row is loaded, see
:func:`bind_loaded`, and when a value is sealed), and which owner its row had when last read or
written. Giving the row a new owner and saving it re-seals the secrets under that owner, first
reading from the row any secret the instance did not load (see :func:`follow_owner_change`); an
envelope of unknown origin (written raw to the attname) is left as it is and decrypts only under
the owner of the row it is in.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache, cached_property
from typing import Any

from django.db import models
from django.views.decorators.debug import sensitive_variables

from .crypto import get_cipher
from .exceptions import DecryptionError

# Plaintext set on an instance whose owner is not known yet; sealed in pre_save().
_PENDING = "_frameio_oauth_pending"
_CACHE = "_frameio_oauth_plaintext"
# {field name: (envelope, value of aad_field it is sealed to)}: no secret, only what binds one.
_BOUND = "_frameio_oauth_bound"
# {attname of an owner field: its value in the row when last read or written}: not secret.
_OWNERS = "_frameio_oauth_owners"
_UNKNOWN = object()


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
        plaintext = get_cipher().decrypt(envelope, self.field.sealed_under(instance, envelope))
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

    def associated_data(self, instance: models.Model, owner: Any = None) -> bytes:
        """What binds a ciphertext to its row: model, field and owner (``aad_field`` of
        ``instance`` unless ``owner`` is given)."""
        if owner is None:
            owner = getattr(instance, self.aad_field, None)
        if owner is None:
            raise DecryptionError(
                f"{self.model._meta.label}.{self.name} has no {self.aad_field} to bind to"
            )
        return f"{self.model._meta.label_lower}:{self.name}:{owner}".encode()

    @cached_property
    def owner_names(self) -> frozenset[str]:
        """The names ``update_fields`` may give the owner field by (``user``, ``user_id``)."""
        opts = self.model._meta
        owner = opts.pk if self.aad_field == "pk" else opts.get_field(self.aad_field)
        return frozenset({str(owner.name), str(owner.attname)})  # type: ignore[union-attr]

    @cached_property
    def owner_attname(self) -> str:
        """The attname of ``aad_field`` (``user_id``; the pk's for ``"pk"``)."""
        opts = self.model._meta
        if self.aad_field == "pk":
            return str(opts.pk.attname)
        return str(opts.get_field(self.aad_field).attname)  # type: ignore[union-attr]

    def sealed_under(self, instance: models.Model, envelope: str) -> bytes:
        """The associated data ``envelope`` was sealed under: the owner it was loaded or
        sealed with, or, for an envelope this instance knows nothing about, the current one."""
        bound = instance.__dict__.get(_BOUND)
        entry = bound.get(self.name) if bound else None
        if entry is not None and entry[0] == envelope:
            return self.associated_data(instance, entry[1])
        return self.associated_data(instance)

    @sensitive_variables()
    def seal(self, instance: models.Model, plaintext: str) -> None:
        owner = getattr(instance, self.aad_field, None)
        envelope = get_cipher().encrypt(plaintext, self.associated_data(instance, owner))
        instance.__dict__[self.attname] = envelope
        instance.__dict__.setdefault(_CACHE, {})[self.name] = (envelope, plaintext)
        instance.__dict__.setdefault(_BOUND, {})[self.name] = (envelope, owner)

    @sensitive_variables()
    def pre_save(self, model_instance: models.Model, add: bool) -> Any:
        pending = model_instance.__dict__.get(_PENDING, {})
        if self.name in pending:
            self.seal(model_instance, pending.pop(self.name))
        else:
            self._reseal_for_new_owner(model_instance)
        return super().pre_save(model_instance, add)

    @sensitive_variables()
    def _reseal_for_new_owner(self, instance: models.Model) -> None:
        envelope = instance.__dict__.get(self.attname)
        bound = instance.__dict__.get(_BOUND)
        entry = bound.get(self.name) if bound else None
        if not envelope or entry is None or entry[0] != envelope:
            return  # nothing stored, or written raw: it stays bound to whichever row it is in
        owner = getattr(instance, self.aad_field, None)
        if owner is None:
            return  # no owner to bind to; the database refuses the row anyway
        if self.associated_data(instance, owner) == self.associated_data(instance, entry[1]):
            return
        # The plaintext (cached, or decrypted under the owner the envelope is sealed to), sealed
        # to the new owner: saved as it is, the row would hold a ciphertext nothing can read.
        self.seal(instance, getattr(instance, self.name))


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
                state[_BOUND] = instance.__dict__[_BOUND]
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


def bind_loaded(instance: models.Model, loaded: Collection[str]) -> None:
    """Note the owner each envelope just read from the database is sealed to, and the row's
    owner.

    ``loaded`` names the attnames read together from one row. An envelope is bound only when
    its owner was read with it, so the binding is always the row's own.
    """
    # On the hot path (every token read): no associated data is built here, only noted.
    values = instance.__dict__
    for field in _encrypted_fields(type(instance)):
        owner_attname = field.owner_attname
        if owner_attname not in loaded:
            continue
        owner = values[owner_attname]
        values.setdefault(_OWNERS, {})[owner_attname] = owner
        envelope = values.get(field.attname)
        if envelope and field.attname in loaded:
            values.setdefault(_BOUND, {})[field.name] = (envelope, owner)


def follow_owner_change(
    instance: models.Model, using: str, update_fields: frozenset[str] | None
) -> frozenset[str] | None:
    """Ready a stored row's instance for a save that may give it a new owner; returns the
    ``update_fields`` to save with.

    Every secret of a row whose owner changes must be re-sealed (by ``pre_save``) and written:
    one left sealed to the old owner could never be read again. So a secret the instance did
    not load (deferred), or loaded without its owner, is read from the row together with the
    owner it is sealed to, and a new owner saved with ``update_fields`` writes the secrets too.
    A save that writes a secret sealed to an owner it does not write is refused.
    """
    values = instance.__dict__
    pending = values.get(_PENDING, {})
    bound = values.get(_BOUND, {})
    owners = values.get(_OWNERS, {})
    to_read: list[EncryptedTextField] = []
    also_write: set[str] = set()
    for field in _encrypted_fields(type(instance)):
        owner_attname = field.owner_attname
        if owner_attname not in values:
            continue  # the owner is deferred: this save leaves it as it is in the row
        owner = values[owner_attname]
        if owner == owners.get(owner_attname, _UNKNOWN):
            continue  # the owner the row has: nothing to re-seal
        if update_fields is not None and not field.owner_names & update_fields:
            if {field.name, field.attname} & update_fields and owner_attname in owners:
                raise ValueError(
                    f"cannot save {field.model._meta.label}.{field.name} alone: it is sealed to "
                    f"the new {field.aad_field}, which this save does not write; include "
                    f"{sorted(field.owner_names)[0]!r} in update_fields"
                )
            continue
        also_write.add(field.name)
        if field.name in pending:
            continue  # sealed to the new owner in pre_save
        envelope = values.get(field.attname, _UNKNOWN)
        entry = bound.get(field.name)
        if envelope is None or (entry is not None and entry[0] == envelope):
            continue  # nothing stored, or its owner known: pre_save re-seals it
        to_read.append(field)
    if to_read:
        _read_sealed(instance, using, to_read)
    if update_fields is None or not also_write:
        return update_fields
    return update_fields | also_write


def _read_sealed(instance: models.Model, using: str, fields: list[EncryptedTextField]) -> None:
    """Read ``fields`` from the row with the owner they are sealed to, and bind them."""
    values = instance.__dict__
    owner_attnames = sorted({field.owner_attname for field in fields})
    columns = [*owner_attnames, *(field.attname for field in fields)]
    model = type(instance)
    row = model._base_manager.using(using).filter(pk=instance.pk).values(*columns).first()
    if row is None:
        raise ValueError(
            f"cannot give {model._meta.label} {instance.pk} a new owner: its row is gone, so "
            "the secrets it did not load cannot be re-sealed"
        )
    for field in fields:
        envelope, owner = row[field.attname], row[field.owner_attname]
        if field.attname not in values:  # deferred: now loaded, and written by the save
            values[field.attname] = envelope
        elif values[field.attname] != envelope:
            continue  # written raw on the instance: it stays bound to whichever row it is in
        if envelope:
            values.setdefault(_BOUND, {})[field.name] = (envelope, owner)


def note_saved_owner(instance: models.Model, update_fields: frozenset[str] | None) -> None:
    """After a save: the row's owner is the instance's if the save wrote it."""
    values = instance.__dict__
    for field in _encrypted_fields(type(instance)):
        owner_attname = field.owner_attname
        if owner_attname in values and (update_fields is None or field.owner_names & update_fields):
            values.setdefault(_OWNERS, {})[owner_attname] = values[owner_attname]
