from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from django.core.validators import MaxLengthValidator
from django.db import IntegrityError
from django.test import Client, override_settings

from frameio_oauth import services
from frameio_oauth.exceptions import GrantRefused
from frameio_oauth.models import OAuthToken
from frameio_oauth.provider import UserInfo
from tests.support.frameio import GRANT, REVOKE_URL, TOKEN_URL, USERINFO_URL
from tests.support.settings import FRAMEIO_OAUTH
from tests.support.signups import taken_once_looked_up

pytestmark = pytest.mark.django_db

SIGNUP = {**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True}
INFO = UserInfo(id="fio-42", email="alice@frame.example", name="Alice")


def sign_in(info: UserInfo = INFO) -> Any:
    """What the callback asks of the services for a visitor who is not signed in."""
    return services.connect_or_sign_in(None, GRANT, info)


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
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(GrantRefused) as caught:
        sign_in()
    assert caught.value.reason.value == "signup_conflict"


def test_a_sign_up_refused_by_another_unique_constraint_is_not_retried(
    another_unique_constraint: list[str],
) -> None:
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(GrantRefused):
        sign_in()
    assert another_unique_constraint == ["alice"]


def test_an_email_username_sign_up_refused_by_another_constraint_is_a_clear_conflict(
    another_unique_constraint: list[str],
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(GrantRefused) as caught:
        sign_in()
    assert caught.value.reason.value == "signup_conflict"


def test_an_email_username_sign_up_refuses_an_address_taken_in_another_case(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    django_user_model.objects.create(username="alice", email="Alice@Frame.Example")
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(GrantRefused) as caught:
        sign_in()
    assert caught.value.reason.value == "email_taken"


def test_a_disabled_user_linked_to_the_identity_is_not_signed_in(
    user: Any, make_token: Any
) -> None:
    make_token(user, provider_user_id=INFO.id)
    user.is_active = False
    user.save()
    with pytest.raises(GrantRefused) as caught:
        sign_in()
    assert caught.value.reason.value == "inactive"


def test_a_sign_up_for_a_user_model_without_an_email_field_still_creates_the_user(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A custom user model may name no e-mail field at all: the address is then not stored.
    monkeypatch.setattr(django_user_model, "EMAIL_FIELD", "mail")
    with override_settings(FRAMEIO_OAUTH=SIGNUP):
        created = sign_in()
    stored = django_user_model.objects.get(pk=created.pk)
    assert (stored.username, stored.email) == ("alice", "")
    assert not stored.has_usable_password()


def test_a_sign_up_whose_every_free_name_is_taken_meanwhile_asks_to_try_again(
    django_user_model: Any,
) -> None:
    # Another sign-up takes each name between its lookup and this one's save.
    with (
        override_settings(FRAMEIO_OAUTH=SIGNUP),
        taken_once_looked_up() as tried,
        pytest.raises(GrantRefused) as caught,
    ):
        sign_in()
    assert caught.value.reason.value == "busy"
    assert tried == ["alice", "alice-2", "alice-3", "alice-4", "alice-5"]


def test_an_email_username_sign_up_without_an_email_address_is_refused(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    with override_settings(FRAMEIO_OAUTH=SIGNUP), pytest.raises(GrantRefused) as caught:
        sign_in(UserInfo(id="fio-42"))
    assert caught.value.reason.value == "no_email"
    assert not django_user_model.objects.exists()


def test_an_email_username_sign_up_that_loses_a_race_for_the_address_says_it_is_taken(
    another_unique_constraint: list[str],
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The address was free when looked up; another sign-up with it committed before the save.
    monkeypatch.setattr(django_user_model, "USERNAME_FIELD", "email")
    with (
        override_settings(FRAMEIO_OAUTH=SIGNUP),
        taken_once_looked_up([INFO.email]),
        pytest.raises(GrantRefused) as caught,
    ):
        sign_in()
    assert caught.value.reason.value == "email_taken"


def test_a_sign_up_whose_email_does_not_fit_the_user_model_is_refused_and_given_back(
    client: Client,
    provider_http: responses.RequestsMock,
    django_user_model: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As a project's custom user model may have it: shorter than Frame.io's addresses.
    email = django_user_model._meta.get_field("email")
    monkeypatch.setattr(email, "max_length", 20)
    monkeypatch.setattr(email, "validators", [*email.validators, MaxLengthValidator(20)])
    provider_http.post(TOKEN_URL, json={"access_token": "AT-1", "refresh_token": "RT-1"})
    provider_http.get(USERINFO_URL, json={"id": "fio-42", "email": "a.long.address@frame.example"})
    provider_http.post(REVOKE_URL, body="")
    with override_settings(FRAMEIO_OAUTH=SIGNUP):
        started = client.post("/frameio/login/")
        state = parse_qs(urlsplit(started["Location"]).query)["state"][0]
        response = client.get("/frameio/callback/", {"state": state, "code": "C"})
    assert response.status_code == 502
    assert b'data-error-code="unusable_answer"' in response.content
    assert not OAuthToken.objects.exists()
    assert not django_user_model.objects.exists()
    # Nothing here holds the grant: it goes back to Frame.io.
    revoked = [call for call in provider_http.calls if call.request.url == REVOKE_URL]
    assert parse_qs(revoked[0].request.body)["token"] == ["RT-1"]


@pytest.mark.parametrize(
    ("info", "username"),
    [
        (UserInfo(id="fio-1", email="a+b/c=d@frame.example"), "a+bcd"),
        (UserInfo(id="fio 1/x"), "frameio-fio1x"),
        (UserInfo(id="\u00e9l\u00e8ve"), "frameio-\u00e9l\u00e8ve"),
        (UserInfo(id="fio-3", email="&&&@frame.example"), "frameio-fio-3"),
    ],
    ids=["slash-in-local-part", "space-and-slash-in-id", "accented-id", "nothing-usable"],
)
def test_a_signed_up_users_name_passes_djangos_own_username_validators(
    django_user_model: Any, info: UserInfo, username: str
) -> None:
    with override_settings(FRAMEIO_OAUTH=SIGNUP):
        created = sign_in(info)
    assert created.get_username() == username
    field = django_user_model._meta.get_field(django_user_model.USERNAME_FIELD)
    field.run_validators(created.get_username())  # raises ValidationError if not
