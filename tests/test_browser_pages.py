"""The app's own pages as a person sees them in Debian's chromium at 1280x800: what each one
says, the way back to the site, nothing to scroll sideways, nothing loaded from elsewhere, no
internal ids. Each saves a screenshot (the connected page also for the README)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
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


@pytest.fixture
def browser(module_browser: Any) -> Iterator[Any]:
    yield module_browser
    module_browser.delete_all_cookies()


@pytest.fixture
def site(live_server: Any) -> str:
    return str(live_server.url)


def assert_a_page_people_can_use(browser: Any, heading: str, back_path: str) -> None:
    """One h1, first, saying ``heading``; a way back to ``back_path`` on this site; nothing
    sideways; nothing from elsewhere; a visible focus on the first thing a keyboard reaches."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    found = headings(browser)
    assert found[0] == f"h1: {heading}"
    assert [h for h in found if h.startswith("h1:")] == [found[0]]
    back = browser.find_element(By.ID, "frameio-back")
    assert back.text == "Back to the site"
    origin = browser.execute_script("return location.origin;")
    assert back.get_attribute("href") == origin + back_path
    assert sideways_scrollers(browser) == []
    assert resources_from_elsewhere(browser) == []
    ActionChains(browser).send_keys(Keys.TAB).perform()
    focused = browser.switch_to.active_element
    assert focused.get_attribute("id") == "frameio-back"
    assert focused.value_of_css_property("outline-style") != "none"


def assert_no_internal_ids(browser: Any, token: OAuthToken) -> None:
    text = visible_text(browser)
    assert token.provider_user_id not in text
    assert f"user {token.user_id}" not in text
    assert f"token {token.pk}" not in text


def test_the_start_page_shows_one_button_and_the_way_back(
    browser: Any, site: str, screenshots: Path
) -> None:
    browser.get(f"{site}/frameio/login/?next=/projects/")
    wait_for(browser, "frameio-start")
    save_screenshot(browser, screenshots, "start")
    assert_a_page_people_can_use(browser, "Sign in with Frame.io", "/projects/")
    assert browser.find_element("id", "frameio-start").text == "Continue to Frame.io"


def test_the_sign_in_page_offers_frameio_and_the_password_form_and_signs_in_to_next(
    browser: Any, site: str, screenshots: Path, user: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{site}/frameio/sign-in/?next=/frameio/connected/")
    wait_for(browser, "frameio-sign-in")
    save_screenshot(browser, screenshots, "sign-in")
    # The way back is the site's root: next may be a page that needs the sign-in.
    assert_a_page_people_can_use(browser, "Sign in", "/")
    assert browser.find_element(By.ID, "frameio-sign-in").text == "Sign in with Frame.io"
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys("pw")
    browser.find_element(By.ID, "password-sign-in").click()
    wait_for(browser, "frameio-connect")
    assert headings(browser)[0] == "h1: Frame.io is not connected"


@pytest.fixture
def connected_as(
    browser: Any, site: str, client: Client, user: Any, make_token: Callable[..., OAuthToken]
) -> Callable[..., OAuthToken]:
    """Sign the browser in as ``user`` with a token made from ``overrides``; open the
    connected page."""

    def open_page(**overrides: Any) -> OAuthToken:
        token = make_token(user, provider_user_id="fio-7d1c9a", **overrides)
        sign_in(browser, site, client, user)
        browser.get(f"{site}/frameio/connected/")
        wait_for(browser, "frameio-back")
        return token

    return open_page


def test_the_connected_page_of_an_active_grant_says_connected_and_when_it_was_refreshed(
    browser: Any, connected_as: Callable[..., OAuthToken], screenshots: Path
) -> None:
    now = timezone.now()
    token = connected_as(
        provider_email="alice@studio.example",
        expires_at=now + timedelta(hours=23, minutes=57),
        last_refreshed_at=now - timedelta(seconds=20),
    )
    save_screenshot(browser, screenshots, "connected", for_docs=True)
    assert_a_page_people_can_use(browser, "Frame.io is connected", "/")
    assert browser.find_element("id", "frameio-email").text == "alice@studio.example"
    assert browser.find_element("id", "frameio-refreshed").text == "just now"
    assert browser.find_element("id", "frameio-expires").text.startswith("in 23 hours")
    assert_no_internal_ids(browser, token)


def test_the_connected_page_of_a_grant_without_a_refresh_token_says_it_will_need_connecting_again(
    browser: Any, connected_as: Callable[..., OAuthToken], screenshots: Path
) -> None:
    token = connected_as(refresh_token=None, next_refresh_at=None)
    save_screenshot(browser, screenshots, "connected-no-refresh-token")
    assert_a_page_people_can_use(browser, "Frame.io is connected for now", "/")
    note = browser.find_element("id", "frameio-note").text
    assert "cannot be kept fresh" in note
    assert "you will need to connect again" in note
    assert_no_internal_ids(browser, token)


def test_the_connected_page_of_a_refused_grant_asks_to_sign_in_again_and_says_not_connected(
    browser: Any, connected_as: Callable[..., OAuthToken], screenshots: Path
) -> None:
    token = connected_as(
        status=OAuthToken.Status.REAUTH_REQUIRED,
        next_refresh_at=None,
        last_error="token endpoint answered invalid_grant",
    )
    save_screenshot(browser, screenshots, "connected-reauth-required")
    assert_a_page_people_can_use(browser, "Sign in with Frame.io again", "/")
    assert "is connected" not in visible_text(browser)
    assert "invalid_grant" not in visible_text(browser)
    assert browser.find_element("id", "frameio-reconnect").text == "Sign in with Frame.io again"
    assert_no_internal_ids(browser, token)


def test_the_connected_page_of_a_disconnected_grant_awaiting_revocation_says_disconnected(
    browser: Any, connected_as: Callable[..., OAuthToken], screenshots: Path
) -> None:
    token = connected_as(
        status=OAuthToken.Status.REVOKED,
        failure_count=1,
        last_error="revocation: revocation endpoint answered HTTP 503",
    )
    save_screenshot(browser, screenshots, "connected-revocation-pending")
    assert_a_page_people_can_use(browser, "Frame.io is disconnected", "/")
    assert "has not yet confirmed" in browser.find_element("id", "frameio-note").text
    assert browser.find_element("id", "frameio-connect").text == "Connect Frame.io"
    assert "HTTP 503" not in visible_text(browser)
    assert_no_internal_ids(browser, token)


def test_the_error_page_says_what_happened_and_offers_to_start_again(
    browser: Any, site: str, screenshots: Path
) -> None:
    browser.get(f"{site}/frameio/callback/?state=forged&code=anything")
    error = wait_for(browser, "frameio-error")
    save_screenshot(browser, screenshots, "error")
    assert_a_page_people_can_use(browser, "We couldn't sign you in with Frame.io", "/")
    assert error.text == "This sign-in link is unknown, used or expired; start again."
    retry = browser.find_element("id", "frameio-retry")
    assert retry.text == "Try again"
    assert retry.get_attribute("href").endswith("/frameio/login/")


def test_a_message_appears_inside_the_pages_card(
    browser: Any, site: str, client: Client, user: Any, screenshots: Path
) -> None:
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    sign_in(browser, site, client, user)
    browser.get(f"{site}/frameio/connected/")
    before = wait_for(browser, "frameio-connect")
    # Disconnecting when nothing is connected answers with a message and calls nobody.
    browser.execute_script(
        "const form = document.createElement('form'); form.method = 'post';"
        "form.action = '/frameio/disconnect/';"
        "form.appendChild(document.querySelector('[name=csrfmiddlewaretoken]').cloneNode());"
        "document.body.appendChild(form); form.submit();"
    )
    WebDriverWait(browser, 20).until(expected_conditions.staleness_of(before))
    wait_for(browser, "frameio-connect")
    message = browser.find_element("css selector", "main.card .messages li")
    save_screenshot(browser, screenshots, "connected-with-message")
    assert message.text == "Frame.io was not connected."
