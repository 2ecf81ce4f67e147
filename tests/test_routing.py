"""Token locks, writes and their transactions go to the database the project's routers pick
for tokens, all on one connection. ``tokens`` is a test mirror of ``default``: one database,
two connections, so each test can see which connection did the work."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import responses
from django.db import IntegrityError, connections, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from frameio_oauth import provider, services, signals
from frameio_oauth.exceptions import GrantRefused, RefreshInsideTransaction
from frameio_oauth.models import OAuthToken
from tests.support.frameio import GRANT, NEW, REVOKE_URL, TOKEN_URL
from tests.support.settings import FRAMEIO_OAUTH

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "tokens"])

TABLE = OAuthToken._meta.db_table


@pytest.fixture(autouse=True)
def tokens_routed_to_their_own_alias() -> Iterator[None]:
    with override_settings(DATABASE_ROUTERS=["tests.support.routers.TokensOnTheirOwnAlias"]):
        yield


class Watch:
    """The SQL each alias ran inside the block."""

    def __enter__(self) -> Watch:
        self.default = CaptureQueriesContext(connections["default"])
        self.tokens = CaptureQueriesContext(connections["tokens"])
        self.default.__enter__()
        self.tokens.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tokens.__exit__(*exc)
        self.default.__exit__(*exc)

    def sql(self, alias: str) -> list[str]:
        context = self.default if alias == "default" else self.tokens
        return [query["sql"] for query in context.captured_queries]


def test_a_refresh_locks_writes_and_commits_on_the_routed_database(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    with Watch() as watch:
        services.refresh(due_token.pk)
    assert watch.sql("default") == []
    sent = watch.sql("tokens")
    assert any(sql.startswith("SELECT") and TABLE in sql for sql in sent)
    assert any(sql.startswith("UPDATE") and TABLE in sql for sql in sent)
    assert "COMMIT" in sent
    if connections["tokens"].features.has_select_for_update:
        assert any("FOR UPDATE" in sql for sql in sent)
    assert OAuthToken.objects.get(pk=due_token.pk).access_token == "AT-new"


def test_the_sweep_claims_and_saves_on_the_routed_database(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(TOKEN_URL, json=NEW)
    with Watch() as watch:
        summary = services.refresh_due()
    assert summary.refreshed == 1
    assert watch.sql("default") == []
    assert any(sql.startswith("UPDATE") and TABLE in sql for sql in watch.sql("tokens"))
    if connections["tokens"].features.has_select_for_update_skip_locked:
        assert any("SKIP LOCKED" in sql for sql in watch.sql("tokens"))


def test_a_refresh_refuses_to_nest_in_a_transaction_on_the_token_database(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    with transaction.atomic(using="tokens"), pytest.raises(RefreshInsideTransaction):
        services.refresh(due_token.pk)
    assert len(provider_http.calls) == 0


# Needs row locks: on SQLite the two aliases' connections share one database-wide write lock.
@pytest.mark.postgres
def test_a_transaction_on_another_database_does_not_stop_a_refresh(
    due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    # It cannot roll back the stored rotation, so nothing is at risk.
    provider_http.post(TOKEN_URL, json=NEW)
    with transaction.atomic(using="default"):
        assert services.refresh(due_token.pk).access_token == "AT-new"


def test_disconnect_removes_the_row_on_the_routed_database(
    user: Any, due_token: OAuthToken, provider_http: responses.RequestsMock
) -> None:
    provider_http.post(REVOKE_URL, status=200)
    with Watch() as watch:
        services.disconnect(user)
    assert not any("frameio_oauth" in sql for sql in watch.sql("default"))
    assert not OAuthToken.objects.filter(pk=due_token.pk).exists()


def test_token_obtained_is_sent_after_the_grant_is_committed_on_its_database(
    user: Any, provider_http: responses.RequestsMock
) -> None:
    seen: list[bool] = []
    signals.token_obtained.connect(
        lambda **kwargs: seen.append(connections["tokens"].in_atomic_block),
        weak=False,
        dispatch_uid="routing-obtained",
    )
    try:
        services.store_grant(user, GRANT, provider.UserInfo(id="fio-routed"))
    finally:
        signals.token_obtained.disconnect(dispatch_uid="routing-obtained")
    assert seen == [False]


# Two connections writing one SQLite database would lock each other out.
@pytest.mark.postgres
@override_settings(FRAMEIO_OAUTH={**FRAMEIO_OAUTH, "ALLOW_SIGNUP": True})
def test_a_refused_sign_up_leaves_no_account_on_the_users_database(
    django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost_the_race(*args: Any, **kwargs: Any) -> None:
        raise IntegrityError("duplicate key value violates unique constraint")

    monkeypatch.setattr(OAuthToken, "save", lost_the_race)
    before = django_user_model.objects.count()
    with pytest.raises(GrantRefused) as refused:
        services.connect_or_sign_in(None, GRANT, provider.UserInfo(id="fio-new", email="n@x.io"))
    assert refused.value.reason is GrantRefused.Reason.BUSY
    assert django_user_model.objects.count() == before
