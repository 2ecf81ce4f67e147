"""A person in Debian's chromium signs in with Frame.io: our pages, the stand-in's login and
consent pages, back to the connected page, then disconnects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import override_settings

from frameio_oauth.models import OAuthToken
from tests.support.browser import chromium, wait_for
from tests.support.standin import PUBLIC, Standin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as driver:
        yield driver


def test_a_person_signs_up_with_frameio_and_disconnects(
    browser: Any, live_server: Any, standin: Standin, tmp_path: Path, django_user_model: Any
) -> None:
    from selenium.webdriver.common.by import By

    site = live_server.url.replace("localhost", "127.0.0.1")
    config = standin.settings(PUBLIC, ALLOW_SIGNUP=True, REDIRECT_URI=f"{site}/frameio/callback/")
    with override_settings(FRAMEIO_OAUTH=config, ALLOWED_HOSTS=["127.0.0.1", "testserver"]):
        browser.get(f"{site}/frameio/login/?next=/frameio/connected/")
        browser.find_element(By.ID, "frameio-start").click()
        wait_for(browser, "id_username")
        assert browser.current_url.startswith(f"{standin.url}/accounts/login/")
        browser.find_element(By.NAME, "username").send_keys("demo")
        browser.find_element(By.NAME, "password").send_keys(standin.users["demo"])
        browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()

        consent = wait_for(browser, "authorizationForm")
        assert browser.current_url.startswith(standin.authorize_url)
        consent.find_element(By.CSS_SELECTOR, "[name=allow]").click()

        assert wait_for(browser, "frameio-email").text == "demo@example.com"
        assert browser.current_url == f"{site}/frameio/connected/"
        browser.save_screenshot(str(tmp_path / "connected.png"))
        token = OAuthToken.objects.get()
        assert token.user.email == "demo@example.com"
        assert token.access_token not in browser.page_source

        browser.find_element(By.ID, "frameio-disconnect").click()
        wait_for(browser, "frameio-connect")
        assert "Frame.io is disconnected." in browser.page_source
    assert not OAuthToken.objects.exists()


def test_declining_at_frameio_shows_the_friendly_error_page(
    browser: Any, live_server: Any, standin: Standin
) -> None:
    from selenium.webdriver.common.by import By

    site = live_server.url.replace("localhost", "127.0.0.1")
    config = standin.settings(PUBLIC, REDIRECT_URI=f"{site}/frameio/callback/")
    with override_settings(FRAMEIO_OAUTH=config, ALLOWED_HOSTS=["127.0.0.1", "testserver"]):
        browser.get(f"{site}/frameio/login/")
        browser.find_element(By.ID, "frameio-start").click()
        wait_for(browser, "id_username").send_keys("erin")
        browser.find_element(By.NAME, "password").send_keys(standin.users["erin"])
        browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
        wait_for(browser, "authorizationForm").find_element(
            By.CSS_SELECTOR, "[value=Cancel]"
        ).click()
        error = wait_for(browser, "frameio-error")
        assert error.get_attribute("data-error-code") == "access_denied"
        assert "You declined access" in error.text
    assert not OAuthToken.objects.exists()


def test_a_signed_in_person_who_follows_a_link_to_the_start_url_connects_only_by_pressing_it(
    browser: Any, live_server: Any, standin: Standin, user: Any, client: Any
) -> None:
    from django.conf import settings
    from django.contrib.sessions.backends.db import SessionStore
    from selenium.webdriver.common.by import By

    from frameio_oauth.views import SESSION_KEY

    site = live_server.url.replace("localhost", "127.0.0.1")
    config = standin.settings(PUBLIC, REDIRECT_URI=f"{site}/frameio/callback/")
    # Signed in to the site with a password, as in the reported attack.
    client.force_login(user)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    with override_settings(FRAMEIO_OAUTH=config, ALLOWED_HOSTS=["127.0.0.1", "testserver"]):
        browser.get(f"{site}/frameio/login/")
        browser.add_cookie({"name": settings.SESSION_COOKIE_NAME, "value": session_key})

        # What a link or a script on another site does: a GET of the start URL.
        browser.get(f"{site}/frameio/login/?next=/frameio/connected/")
        button = wait_for(browser, "frameio-start")
        assert browser.current_url.startswith(f"{site}/frameio/login/")
        assert user.username in browser.page_source  # the page says which account
        assert SESSION_KEY not in SessionStore(session_key).load()

        button.click()
        wait_for(browser, "id_username").send_keys("demo")
        browser.find_element(By.NAME, "password").send_keys(standin.users["demo"])
        browser.find_element(By.CSS_SELECTOR, "form [type=submit]").click()
        wait_for(browser, "authorizationForm").find_element(By.CSS_SELECTOR, "[name=allow]").click()
        assert wait_for(browser, "frameio-email").text == "demo@example.com"
    assert OAuthToken.objects.get().user == user
