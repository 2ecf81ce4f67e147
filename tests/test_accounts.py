from __future__ import annotations

from typing import Any

import pytest
from django.db import IntegrityError
from django.test import override_settings

from frameio_oauth import accounts
from frameio_oauth.exceptions import CallbackError
from frameio_oauth.provider import UserInfo
from tests.settings import FRAMEIO_OAUTH

pytestmark = pytest.mark.django_db

SIGNUP = {**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}
INFO = UserInfo(id="fio-42", email="alice@frame.example", name="Alice")


@pytest.fixture
def another_unique_constraint(django_user_model: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every user save fails as a custom user's unique e-mail would: the name is free."""
    tried: list[str] = []

    def save(user: Any, *args: Any, **kwargs: Any) -> None:
        tried.append(user.get_username())
        raise IntegrityError("duplicate key value violates unique constraint on email")

    monkeypatch.setattr(django_user_model, "save", save)
    return tried


def test_a_sign_up_refused_by_another_unique_constraint_is_a_clear_conflict(
    another_unique_constraint: list[str],
) -> None:
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(CallbackError) as caught:
        accounts.user_for_identity(INFO)
    assert (caught.value.code, caught.value.status) == ("signup_conflict", 409)


def test_a_sign_up_refused_by_another_unique_constraint_is_not_retried(
    another_unique_constraint: list[str],
) -> None:
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(CallbackError):
        accounts.user_for_identity(INFO)
    assert another_unique_constraint == ["alice"]


def test_an_email_username_sign_up_refused_by_another_constraint_is_a_clear_conflict(
    another_unique_constraint: list[str],
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(CallbackError) as caught:
        accounts.user_for_identity(INFO)
    assert caught.value.code == "signup_conflict"


def test_an_email_username_sign_up_refuses_an_address_taken_in_another_case(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    django_user_model.objects.create(username="alice", email="Alice@Frame.Example")
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(CallbackError) as caught:
        accounts.user_for_identity(INFO)
    assert caught.value.code == "email_taken"
