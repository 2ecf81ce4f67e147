"""Idempotent start-up data: the demo users and the two example OAuth clients."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from oauth2_provider.models import get_application_model

from .config import SeedUser, current

CONFIDENTIAL_CLIENT_ID = "example-confidential"
CONFIDENTIAL_CLIENT_SECRET = "example-secret"
PUBLIC_CLIENT_ID = "example-public"


def seed_users(users: tuple[SeedUser, ...]) -> None:
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
    config = current()
    with transaction.atomic():
        seed_users(config.users)
        seed_applications(" ".join(config.redirect_uris))
