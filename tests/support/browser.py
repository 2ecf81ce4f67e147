"""Debian's chromium, driven through its chromedriver, at the size the page tests look at."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.services_probe import browser_paths

WIDTH, HEIGHT = 1280, 800
# Set (to 1) to also save the screenshots the README shows into docs/images/.
DOCS_IMAGES_VARIABLE = "FRAMEIO_DOCS_IMAGES"
DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # pytest_runtest_setup has already failed or skipped the test if either is missing.
    paths = browser_paths()
    assert paths is not None
    binary, chromedriver = paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--force-device-scale-factor=1",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(30)
    # The viewport itself, not the window around it, is 1280x800: what the page gets to fill.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(browser: Any, element_id: str) -> Any:
    """The element once the page that has it has loaded (clicks return before navigation)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 20).until(
        expected_conditions.presence_of_element_located((By.ID, element_id))
    )


# Every element a person would have to scroll sideways: the page itself, or a box inside it
# that scrolls (Django's change list puts its table in one).
SIDEWAYS_SCROLLERS = """
const page = document.documentElement;
const found = [];
if (page.scrollWidth > page.clientWidth) {
  found.push(`the page: ${page.scrollWidth} > ${page.clientWidth}`);
}
for (const box of document.querySelectorAll("body *")) {
  const overflow = getComputedStyle(box).overflowX;
  if ((overflow === "auto" || overflow === "scroll") && box.scrollWidth > box.clientWidth + 1) {
    const name = `${box.tagName.toLowerCase()}.${box.className}`;
    found.push(`${name}: ${box.scrollWidth} > ${box.clientWidth}`);
  }
}
return found;
"""


def sideways_scrollers(browser: Any) -> list[str]:
    """What would scroll sideways in this window; [] when everything fits."""
    return list(browser.execute_script(SIDEWAYS_SCROLLERS))


def resources_from_elsewhere(browser: Any) -> list[str]:
    """Every resource the page loaded from another origin (fonts, scripts, trackers)."""
    return list(
        browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(name => new URL(name).origin !== location.origin);"
        )
    )


def visible_text(browser: Any) -> str:
    return str(browser.execute_script("return document.body.innerText;"))


def headings(browser: Any) -> list[str]:
    """The page's headings in document order, as ``h1: text``."""
    return list(
        browser.execute_script(
            "return Array.from(document.querySelectorAll('h1, h2, h3, h4, h5, h6'))"
            ".map(h => h.tagName.toLowerCase() + ': ' + h.innerText.trim());"
        )
    )


def sign_in(browser: Any, site: str, client: Any, user: Any) -> None:
    """The browser carries ``user``'s session (made by the test client, committed)."""
    from django.conf import settings

    client.force_login(user)
    browser.get(f"{site}/frameio/unknown-page-for-the-cookie/")
    browser.add_cookie(
        {
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        }
    )


def save_screenshot(browser: Any, folder: Path, name: str, *, for_docs: bool = False) -> Path:
    """Save the window as ``folder/name.png``; with ``for_docs`` and FRAMEIO_DOCS_IMAGES set,
    also as docs/images/name.png, where the README's images come from."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    browser.save_screenshot(str(path))
    if for_docs and os.environ.get(DOCS_IMAGES_VARIABLE):
        DOCS_IMAGES.mkdir(exist_ok=True)
        browser.save_screenshot(str(DOCS_IMAGES / f"{name}.png"))
    return path
