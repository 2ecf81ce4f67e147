"""Idempotent start-up data: the demo users and the two example OAuth clients."""

from __future__ import annotations

import os
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from oauth2_provider.models import get_application_model

DEFAULT_USERS = "demo:demo:demo@example.com"
DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1:8000/frameio/callback/ http://localhost:8000/frameio/callback/"
)
CONFIDENTIAL_CLIENT_ID = "example-confidential"
CONFIDENTIAL_CLIENT_SECRET = "example-secret"
PUBLIC_CLIENT_ID = "example-public"


@dataclass(frozen=True)
class SeedUser:
    username: str
    password: str
    email: str


def parse_users(spec: str) -> list[SeedUser]:
    users = []
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        # maxsplit keeps colons in the email part harmless; passwords may not contain ":".
        parts = entry.split(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise ImproperlyConfigured(
                f"FRAMEIO_STANDIN_USERS entry {entry!r} is not username:password:email"
            )
        users.append(SeedUser(*parts))
    return users


def seed_users(users: list[SeedUser]) -> None:
    user_model = get_user_model()
    for seed in users:
        user, created = user_model.objects.get_or_create(
            username=seed.username, defaults={"email": seed.email}
        )
        changed = created or user.email != seed.email or not user.is_active
        user.email = seed.email
        user.is_active = True
        # check_password costs one hash; still cheaper than re-hashing on every start.
        if created or not user.check_password(seed.password):
            user.set_password(seed.password)
            changed = True
        if changed:
            user.save()


def seed_applications(redirect_uris: str) -> None:
    application_model = get_application_model()
    common = {
        "redirect_uris": redirect_uris,
        "authorization_grant_type": application_model.GRANT_AUTHORIZATION_CODE,
        # No OIDC: "openid" is just one more scope name here, as far as clients can tell.
        "algorithm": application_model.NO_ALGORITHM,
        "skip_authorization": False,
    }
    application_model.objects.update_or_create(
        client_id=CONFIDENTIAL_CLIENT_ID,
        defaults={
            **common,
            "name": "Example (confidential)",
            "client_type": application_model.CLIENT_CONFIDENTIAL,
            # Stored as-is: DOT would otherwise hash it with PBKDF2, costing ~0.5 s of CPU
            # on every token request, to protect a secret that is printed in the README.
            "client_secret": CONFIDENTIAL_CLIENT_SECRET,
            "hash_client_secret": False,
        },
    )
    application_model.objects.update_or_create(
        client_id=PUBLIC_CLIENT_ID,
        defaults={
            **common,
            "name": "Example (public)",
            "client_type": application_model.CLIENT_PUBLIC,
            "client_secret": "",
            "hash_client_secret": False,
        },
    )


def seed() -> None:
    users = parse_users(os.environ.get("FRAMEIO_STANDIN_USERS") or DEFAULT_USERS)
    redirect_uris = " ".join(
        (os.environ.get("FRAMEIO_STANDIN_REDIRECT_URIS") or DEFAULT_REDIRECT_URIS).split()
    )
    with transaction.atomic():
        seed_users(users)
        seed_applications(redirect_uris)
