"""The token admin as a person sees it in Debian's chromium at 1280x800, with Django's own
sidebars open: the list fits without sideways scrolling, every page names a token by its
user's login name, and revoking says revoke. Each saves a screenshot (the list also for the
README)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import django.contrib.admin
import pytest
from django.test import Client, override_settings
from django.utils import timezone

from frameio_oauth.models import OAuthToken
from tests.support.browser import (
    headings,
    resources_from_elsewhere,
    save_screenshot,
    sideways_scrollers,
    sign_in,
    visible_text,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHANGELIST = "/admin/frameio_oauth/oauthtoken/"
# The test settings leave out django.contrib.staticfiles; the live server serves the admin's
# own CSS and scripts from here, as a project's static files would.
ADMIN_STATIC = Path(django.contrib.admin.__file__).parent / "static"


@pytest.fixture
def browser(module_browser: Any, live_server: Any) -> Iterator[Any]:
    with override_settings(STATIC_ROOT=str(ADMIN_STATIC)):
        yield module_browser
    module_browser.delete_all_cookies()


@pytest.fixture
def admin_site(browser: Any, live_server: Any, client: Client, django_user_model: Any) -> str:
    """The live site, with the browser signed in as the superuser "admin"."""
    site = str(live_server.url)
    admin = django_user_model.objects.create_superuser("admin", "admin@studio.example", "pw")
    sign_in(browser, site, client, admin)
    return site


@pytest.fixture
def tokens(django_user_model: Any, make_token: Callable[..., OAuthToken]) -> dict[str, OAuthToken]:
    """One token in each state the list tells apart, with the errors Frame.io really sends."""
    now = timezone.now()

    def of(name: str, **values: Any) -> OAuthToken:
        user = django_user_model.objects.create_user(name, f"{name}@studio.example")
        return make_token(user, provider_email=f"{name}.{name}@post-production.example", **values)

    return {
        "active": of(
            "alice",
            expires_at=now + timedelta(hours=23, minutes=40),
            last_refreshed_at=now - timedelta(minutes=20),
        ),
        "no_refresh_token": of("bob", refresh_token=None, next_refresh_at=None),
        "reauth_required": of(
            "carol",
            status=OAuthToken.Status.REAUTH_REQUIRED,
            next_refresh_at=None,
            last_refreshed_at=now - timedelta(days=15),
            last_error="token endpoint answered invalid_grant (refresh token expired)",
        ),
        "revocation_pending": of(
            "dave",
            status=OAuthToken.Status.REVOKED,
            failure_count=2,
            next_refresh_at=now + timedelta(minutes=4),
            last_error="revocation: revocation endpoint answered HTTP 503 "
            "(temporarily_unavailable)",
        ),
        "failing": of(
            "erin",
            failure_count=1,
            next_refresh_at=now + timedelta(minutes=2),
            last_refreshed_at=now - timedelta(hours=23),
            last_error="POST https://ims-na1.adobelogin.com timed out at its 10 s deadline",
        ),
    }


def assert_the_admin_fits(browser: Any) -> None:
    assert sideways_scrollers(browser) == []
    assert resources_from_elsewhere(browser) == []


def test_the_token_list_fits_a_1280_pixel_window_and_names_tokens_by_login_name(
    browser: Any, admin_site: str, tokens: dict[str, OAuthToken], screenshots: Path
) -> None:
    browser.get(f"{admin_site}{CHANGELIST}")
    wait_for(browser, "result_list")
    save_screenshot(browser, screenshots, "admin-tokens", for_docs=True)
    assert_the_admin_fits(browser)
    rows = browser.find_elements("css selector", "#result_list tbody tr")
    assert [row.find_element("css selector", "th").text.split("\n")[0] for row in rows] == [
        "erin",
        "dave",
        "carol",
        "bob",
        "alice",
    ]
    text = visible_text(browser)
    assert "no refresh token" in text
    assert "user " + str(tokens["active"].user_id) not in text


def test_a_tokens_page_names_it_by_its_users_login_name_and_offers_revoke(
    browser: Any, admin_site: str, tokens: dict[str, OAuthToken], screenshots: Path
) -> None:
    token = tokens["no_refresh_token"]
    browser.get(f"{admin_site}{CHANGELIST}{token.pk}/change/")
    revoke = wait_for(browser, "content").find_element("css selector", "a.deletelink")
    save_screenshot(browser, screenshots, "admin-token")
    assert_the_admin_fits(browser)
    assert "h2: Frame.io token of bob (Active)" in headings(browser)
    assert revoke.text == "Revoke and remove"
    assert "the user must connect again" in visible_text(browser)


def test_the_revoke_confirmation_says_revoke_and_names_each_token_by_login_name(
    browser: Any, admin_site: str, tokens: dict[str, OAuthToken], screenshots: Path
) -> None:
    from selenium.webdriver.support.ui import Select

    browser.get(f"{admin_site}{CHANGELIST}")
    for name in ("active", "failing"):
        browser.find_element(
            "css selector", f"input[name=_selected_action][value='{tokens[name].pk}']"
        ).click()
    Select(browser.find_element("name", "action")).select_by_value("delete_selected")
    browser.find_element("css selector", "button[name=index], [type=submit][name=index]").click()
    wait_for(browser, "revoked-objects")
    save_screenshot(browser, screenshots, "admin-revoke-confirmation")
    assert_the_admin_fits(browser)
    assert headings(browser)[0] == "h1: Revoke at Frame.io and remove?"
    text = visible_text(browser)
    assert "revoke the 2 selected Frame.io tokens at Frame.io" in text
    assert "delete" not in text.lower()
    assert "Frame.io token of alice (Active)" in text
    assert "Frame.io token of erin (Active)" in text
    confirm = browser.find_element("css selector", "#content form [type=submit]")
    assert confirm.get_attribute("value") == "Yes, revoke and remove"
