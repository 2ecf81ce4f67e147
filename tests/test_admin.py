from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import pytest
import responses
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import HttpRequest
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import resolve
from django.utils import timezone

from frameio_oauth import admin as admin_module
from frameio_oauth.admin import OAuthTokenAdmin
from frameio_oauth.models import OAuthToken
from tests.support.frameio import REVOKE_URL, TOKEN_URL

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/frameio_oauth/oauthtoken/"


def ciphertexts(token: OAuthToken) -> tuple[str, str]:
    return OAuthToken.objects.values_list(
        "access_token_ciphertext", "refresh_token_ciphertext"
    ).get(pk=token.pk)


def refresh_behind_the_admins_back(token: OAuthToken) -> None:
    """What a refresh committing in another process looks like to the admin: new secrets."""
    row = OAuthToken.objects.get(pk=token.pk)
    row.access_token = "access-after-refresh"
    row.refresh_token = "refresh-after-refresh"
    row.save(update_fields=["access_token", "refresh_token"])


def secrets_of(token: OAuthToken) -> list[bytes]:
    raw = OAuthToken.objects.values_list("access_token_ciphertext", "refresh_token_ciphertext").get(
        pk=token.pk
    )
    return [token.access_token.encode(), token.refresh_token.encode(), *(v.encode() for v in raw)]


def refresh_selected(browser: Client, tokens: list[OAuthToken]) -> Any:
    form = {"action": "refresh_now", "_selected_action": [t.pk for t in tokens]}
    return browser.post(CHANGELIST, form, follow=True)


def test_change_list_renders_without_token_text(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    response = admin_browser.get(CHANGELIST)
    assert response.status_code == 200
    assert b"alice@frame.example" in response.content
    for secret in secrets_of(token):
        assert secret not in response.content


def test_change_page_renders_fingerprints_not_tokens(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    response = admin_browser.get(f"{CHANGELIST}{token.pk}/change/")
    assert response.status_code == 200
    assert b"sha256:" in response.content
    assert token.key_id.encode() in response.content
    for secret in secrets_of(token):
        assert secret not in response.content
    assert b'name="access_token' not in response.content


def test_change_page_of_an_undecryptable_row_still_renders(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    mine, theirs = make_token(user), make_token(other_user)
    OAuthToken.objects.filter(pk=theirs.pk).update(
        access_token_ciphertext=OAuthToken.objects.values_list(
            "access_token_ciphertext", flat=True
        ).get(pk=mine.pk)
    )
    response = admin_browser.get(f"{CHANGELIST}{theirs.pk}/change/")
    assert response.status_code == 200
    assert b"cannot be decrypted" in response.content


def test_search_finds_by_username_and_provider_email(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user)
    make_token(other_user)
    by_name = admin_browser.get(CHANGELIST, {"q": "alice"})
    assert by_name.context["cl"].result_count == 1
    by_email = admin_browser.get(CHANGELIST, {"q": "bob@frame.example"})
    assert [t.user for t in by_email.context["cl"].result_list] == [other_user]


def test_status_filter_narrows_the_list(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user)
    make_token(other_user, status=OAuthToken.Status.REAUTH_REQUIRED)
    response = admin_browser.get(CHANGELIST, {"status__exact": "reauth_required"})
    assert [t.user for t in response.context["cl"].result_list] == [other_user]


def test_there_is_no_add_page(admin_browser: Client) -> None:
    assert admin_browser.get(f"{CHANGELIST}add/").status_code == 403


def test_refresh_now_action_refreshes_through_services(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, json={"access_token": "NEW", "expires_in": 3600})
    response = refresh_selected(admin_browser, [token])
    assert b"1 token was refreshed" in response.content
    refreshed = OAuthToken.objects.get(pk=token.pk)
    assert refreshed.access_token == "NEW"
    assert refreshed.refresh_token == token.refresh_token


def test_refresh_now_reports_a_failure_and_keeps_the_token(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(TOKEN_URL, status=503)
    response = refresh_selected(admin_browser, [token])
    assert b"503" in response.content
    assert OAuthToken.objects.get(pk=token.pk).access_token == token.access_token


def revoke_selected(browser: Client, tokens: list[OAuthToken], *, confirm: bool = True) -> Any:
    form: dict[str, Any] = {"action": "delete_selected", "_selected_action": [t.pk for t in tokens]}
    if confirm:
        form["post"] = "yes"  # what Django's confirmation page sends back
    return browser.post(CHANGELIST, form, follow=True)


def test_the_delete_action_asks_for_confirmation_and_revokes_nothing_until_then(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    response = revoke_selected(admin_browser, [token], confirm=False)
    assert response.status_code == 200
    assert b"Are you sure" in response.content
    assert b'name="post" value="yes"' in response.content
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.filter(pk=token.pk).exists()


def test_the_confirmed_delete_action_revokes_and_removes_the_rows(
    admin_browser: Client,
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    provider_http.post(REVOKE_URL, body="")
    response = revoke_selected(admin_browser, tokens)
    assert b"2 tokens were revoked and removed" in response.content
    assert b"Successfully deleted" not in response.content
    assert not OAuthToken.objects.exists()
    assert len(provider_http.calls) == 2


def test_the_delete_action_during_an_outage_keeps_the_row_and_says_why(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    response = revoke_selected(admin_browser, [token])
    assert b"1 token is disconnected; Frame.io did not confirm its revocation" in response.content
    assert b"HTTP 503" in response.content
    assert OAuthToken.objects.get(pk=token.pk).status == OAuthToken.Status.REVOKED


def test_the_history_records_a_removal_as_a_deletion_and_a_pending_one_as_a_change(
    admin_browser: Client,
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    removed, kept = make_token(user), make_token(other_user)
    provider_http.post(REVOKE_URL, body="")
    revoke_selected(admin_browser, [removed])
    provider_http.replace(responses.POST, REVOKE_URL, status=503)
    revoke_selected(admin_browser, [kept])
    entries = {
        int(entry.object_id): (entry.action_flag, entry.change_message)
        for entry in LogEntry.objects.all()
    }
    assert entries == {removed.pk: (DELETION, ""), kept.pk: (CHANGE, "Revocation pending")}


def test_the_delete_button_on_a_row_frameio_keeps_does_not_log_a_deletion(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    admin_browser.post(f"{CHANGELIST}{token.pk}/delete/", {"post": "yes"}, follow=True)
    assert OAuthToken.objects.filter(pk=token.pk).exists()
    flags = list(LogEntry.objects.values_list("action_flag", flat=True))
    assert flags == [CHANGE]


def test_an_action_that_runs_out_of_time_leaves_the_rest_unattempted_and_says_so(
    admin_browser: Client,
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    monkeypatch.setattr(admin_module, "ACTION_BUDGET", -1.0)
    response = revoke_selected(admin_browser, tokens)
    assert b"2 tokens were not attempted: the action ran out of time" in response.content
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.count() == 2


def test_refresh_now_works_under_atomic_requests(
    admin_browser: Client,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    token = make_token(user)
    provider_http.post(TOKEN_URL, json={"access_token": "AT-new", "expires_in": 3600})
    response = refresh_selected(admin_browser, [token])
    assert b"1 token was refreshed" in response.content
    assert OAuthToken.objects.get(pk=token.pk).access_token == "AT-new"


def test_a_tokens_page_is_view_only(admin_browser: Client, user: Any, make_token: Any) -> None:
    token = make_token(user)
    response = admin_browser.get(f"{CHANGELIST}{token.pk}/change/")
    assert response.context["has_change_permission"] is False
    assert b'name="_save"' not in response.content


def test_posting_the_change_form_leaves_a_row_refreshed_meanwhile_untouched(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    # An admin save would write every column from its own unlocked read: had a refresh
    # committed after that read, the spent refresh token would go back. Any write at all
    # changes the ciphertext (a fresh nonce), so an unchanged ciphertext means no write.
    token = make_token(user)
    assert admin_browser.get(f"{CHANGELIST}{token.pk}/change/").status_code == 200
    refresh_behind_the_admins_back(token)
    after_refresh = ciphertexts(token)
    response = admin_browser.post(f"{CHANGELIST}{token.pk}/change/", {})
    assert response.status_code == 403
    assert ciphertexts(token) == after_refresh


def test_a_staff_user_with_the_change_permission_can_still_refresh_now(
    client: Client,
    django_user_model: Any,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    token = make_token(user)
    staff = django_user_model.objects.create_user("staff", "s@x.example", "pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="change_oauthtoken"))
    client.force_login(staff)
    provider_http.post(TOKEN_URL, json={"access_token": "NEW", "expires_in": 3600})
    response = refresh_selected(client, [token])
    assert b"1 token was refreshed" in response.content
    assert OAuthToken.objects.get(pk=token.pk).access_token == "NEW"


def test_the_view_only_page_still_offers_delete(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    response = admin_browser.get(f"{CHANGELIST}{token.pk}/change/")
    assert f"{CHANGELIST}{token.pk}/delete/".encode() in response.content


def test_deleting_a_token_from_its_page_revokes_it_at_frameio(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    response = admin_browser.post(f"{CHANGELIST}{token.pk}/delete/", {"post": "yes"}, follow=True)
    assert not OAuthToken.objects.filter(pk=token.pk).exists()
    assert [call.request.url for call in provider_http.calls] == [REVOKE_URL]
    form = parse_qs(str(provider_http.calls[0].request.body))
    assert form["token"] == [token.refresh_token]
    assert b"1 token was revoked and removed" in response.content
    assert b"deleted successfully" not in response.content


def test_deleting_a_token_during_an_outage_keeps_the_row_to_revoke_later(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=503)
    response = admin_browser.post(f"{CHANGELIST}{token.pk}/delete/", {"post": "yes"}, follow=True)
    assert b"1 token is disconnected; Frame.io did not confirm its revocation" in response.content
    assert OAuthToken.objects.get(pk=token.pk).status == OAuthToken.Status.REVOKED


@pytest.fixture
def admin_request(rf: RequestFactory, django_user_model: Any) -> Any:
    request = rf.post(CHANGELIST)
    request.user = django_user_model.objects.create_superuser("root", "r@x.example", "pw")
    request.session = {}
    request._messages = FallbackStorage(request)
    return request


def test_delete_queryset_revokes_every_row_at_frameio(
    admin_request: Any,
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    make_token(user)
    make_token(other_user)
    provider_http.post(REVOKE_URL, body="")
    OAuthTokenAdmin(OAuthToken, admin.site).delete_queryset(admin_request, OAuthToken.objects.all())
    assert not OAuthToken.objects.exists()
    assert len(provider_http.calls) == 2
    assert [str(m) for m in get_messages(admin_request)] == ["2 tokens were revoked and removed."]


def test_deleting_a_row_removed_meanwhile_says_so(
    admin_request: Any, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    OAuthToken.objects.filter(pk=token.pk).delete()
    OAuthTokenAdmin(OAuthToken, admin.site).delete_model(admin_request, token)
    assert len(provider_http.calls) == 0
    assert [str(m) for m in get_messages(admin_request)] == ["1 token had already been removed."]


def test_the_list_shows_why_and_when_a_failing_token_is_tried_next_and_filters_on_it(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    failing = make_token(
        user,
        failure_count=2,
        last_error="token endpoint answered HTTP 503",
        next_refresh_at=timezone.now() + timedelta(minutes=3),
    )
    make_token(other_user)
    response = admin_browser.get(CHANGELIST, {"failing": "yes"})
    assert [row.pk for row in response.context["cl"].result_list] == [failing.pk]
    assert b"token endpoint answered HTTP 503" in response.content
    assert b"in 2\xc2\xa0minutes" in response.content or b"in 3\xc2\xa0minutes" in response.content


def test_the_delete_confirmation_names_every_token_without_a_query_per_row(
    admin_browser: Client, django_user_model: Any, make_token: Any
) -> None:
    tokens = [
        make_token(django_user_model.objects.create_user(f"user{i}", password="pw"))
        for i in range(5)
    ]
    with CaptureQueriesContext(connection) as few:
        revoke_selected(admin_browser, tokens[:1], confirm=False)
    with CaptureQueriesContext(connection) as many:
        response = revoke_selected(admin_browser, tokens, confirm=False)
    assert b"Frame.io token of user4" in response.content
    assert len(many) == len(few)


def test_a_grant_refused_by_frameio_is_listed_among_the_failing(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    # invalid_grant sets last_error but counts no failure.
    refused = make_token(
        user,
        status=OAuthToken.Status.REAUTH_REQUIRED,
        last_error="token endpoint answered invalid_grant",
    )
    make_token(other_user)
    response = admin_browser.get(CHANGELIST, {"failing": "yes"})
    assert [row.pk for row in response.context["cl"].result_list] == [refused.pk]


def test_the_changelist_runs_outside_request_transactions_on_every_database() -> None:
    # The actions call the provider, on whichever alias a router gives tokens.
    view = resolve(CHANGELIST).func
    assert view._non_atomic_requests == set(settings.DATABASES)  # type: ignore[attr-defined]


def test_a_confirmed_delete_that_django_would_refuse_revokes_nothing(
    admin_browser: Client,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As when a project's model protects tokens (on_delete=PROTECT) from this deletion.
    token = make_token(user)

    def protected(self: Any, objs: Any, request: Any) -> Any:
        return [], {}, set(), ["a protected row"]

    monkeypatch.setattr(OAuthTokenAdmin, "get_deleted_objects", protected)
    response = revoke_selected(admin_browser, [token])
    assert b"Cannot delete" in response.content
    assert len(provider_http.calls) == 0
    assert OAuthToken.objects.filter(pk=token.pk).exists()


def test_a_token_stored_without_a_refresh_token_shows_a_dash_not_a_fingerprint(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    # A grant issued without the offline scope has no refresh token to fingerprint.
    token = make_token(user, refresh_token=None)
    response = admin_browser.get(f"{CHANGELIST}{token.pk}/change/")
    assert response.status_code == 200
    assert response.content.count(b"sha256:") == 1
    assert '<div class="readonly">—</div>'.encode() in response.content


def test_the_succeeded_filter_lists_only_tokens_whose_last_attempt_succeeded(
    admin_browser: Client, user: Any, other_user: Any, make_token: Any
) -> None:
    make_token(user, failure_count=1, last_error="token endpoint answered HTTP 503")
    healthy = make_token(other_user)
    response = admin_browser.get(CHANGELIST, {"failing": "no"})
    assert [row.pk for row in response.context["cl"].result_list] == [healthy.pk]


def list_cell(response: Any, column: str) -> str:
    """The text of ``column``'s only cell in the change list."""
    content = response.content.decode()
    start = content.index(f'<td class="field-{column}">') + len(f'<td class="field-{column}">')
    return content[start : content.index("</td>", start)]


def test_the_list_shows_an_expired_token_as_expired_and_its_overdue_refresh_as_due(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    past = timezone.now() - timedelta(minutes=1)
    make_token(user, expires_at=past, next_refresh_at=past)
    response = admin_browser.get(CHANGELIST)
    assert "expired" in list_cell(response, "state")
    assert list_cell(response, "next_attempt") == "due"


def test_the_list_shows_a_dash_for_a_token_with_no_refresh_scheduled(
    admin_browser: Client, user: Any, make_token: Any
) -> None:
    make_token(user, status=OAuthToken.Status.REAUTH_REQUIRED, next_refresh_at=None)
    assert list_cell(admin_browser.get(CHANGELIST), "next_attempt") == "—"


def test_refresh_now_that_runs_out_of_time_leaves_the_rest_unrefreshed_and_says_so(
    admin_browser: Client,
    user: Any,
    other_user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tokens = [make_token(user), make_token(other_user)]
    monkeypatch.setattr(admin_module, "ACTION_BUDGET", -1.0)
    response = refresh_selected(admin_browser, tokens)
    assert b"2 tokens were not attempted: the action ran out of time" in response.content
    assert b"token was refreshed" not in response.content
    assert len(provider_http.calls) == 0
    assert [t.access_token for t in OAuthToken.objects.order_by("pk")] == [
        t.access_token for t in tokens
    ]


def test_the_delete_action_removes_a_row_frameio_cannot_revoke_and_says_it_was_not_confirmed(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    # No retry can change this refusal, so the row goes (see services.disconnect).
    token = make_token(user)
    provider_http.post(REVOKE_URL, status=400, json={"error": "unsupported_token_type"})
    response = revoke_selected(admin_browser, [token])
    assert (
        b"1 token was removed, but Frame.io did not confirm its revocation. Reason: "
        in response.content
    )
    assert b"unsupported_token_type" in response.content
    assert not OAuthToken.objects.exists()
    entry = LogEntry.objects.get()
    assert (int(entry.object_id), entry.action_flag, entry.change_message) == (
        token.pk,
        DELETION,
        "Revocation not confirmed",
    )


def test_deleting_a_token_from_a_popup_answers_as_djangos_popups_expect(
    admin_browser: Client, user: Any, make_token: Any, provider_http: responses.RequestsMock
) -> None:
    token = make_token(user)
    provider_http.post(REVOKE_URL, body="")
    response = admin_browser.post(
        f"{CHANGELIST}{token.pk}/delete/?_popup=1", {"post": "yes", "_popup": "1"}
    )
    assert response.status_code == 200
    assert "admin/popup_response.html" in [t.name for t in response.templates]
    assert b"&quot;action&quot;: &quot;delete&quot;" in response.content
    assert not OAuthToken.objects.filter(pk=token.pk).exists()


def test_a_staff_user_who_may_delete_but_not_change_tokens_lands_on_the_admin_index(
    client: Client,
    django_user_model: Any,
    user: Any,
    make_token: Any,
    provider_http: responses.RequestsMock,
) -> None:
    # Without the change permission the token list (where others land) is not theirs to see.
    token = make_token(user)
    staff = django_user_model.objects.create_user("staff", "s@x.example", "pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="delete_oauthtoken"))
    client.force_login(staff)
    provider_http.post(REVOKE_URL, body="")
    response = client.post(f"{CHANGELIST}{token.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
    assert not OAuthToken.objects.filter(pk=token.pk).exists()


class EditableTokenAdmin(OAuthTokenAdmin):
    """A project's subclass that turns the change form back on."""

    def has_change_permission(self, request: HttpRequest, obj: OAuthToken | None = None) -> bool:
        return True


def test_a_subclass_that_turns_editing_back_on_still_cannot_save_a_token_from_its_page(
    admin_request: Any, user: Any, make_token: Any
) -> None:
    token = make_token(user)
    before = ciphertexts(token)
    admin_request._dont_enforce_csrf_checks = True
    with pytest.raises(PermissionDenied):
        EditableTokenAdmin(OAuthToken, admin.site).changeform_view(admin_request, str(token.pk))
    assert ciphertexts(token) == before
