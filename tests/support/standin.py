"""Run the local Frame.io stand-in (``python -m frameio_oauth.standin``, django-oauth-toolkit)
as a real server on loopback, in either of its modes, and play the part of the user's browser
on its pages."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from frameio_oauth.standin import Mode, client_settings
from frameio_oauth.views import SESSION_KEY

ROOT = Path(__file__).resolve().parents[2]
CONFIDENTIAL = {"CLIENT_ID": "example-confidential", "CLIENT_SECRET": "example-secret"}
PUBLIC = {"CLIENT_ID": "example-public"}


@dataclass
class Standin:
    url: str
    process: subprocess.Popen[str]
    users: dict[str, str] = field(default_factory=dict)
    mode: Mode = Mode.IMS

    def settings(self, client: dict[str, str], **extra: Any) -> dict[str, Any]:
        """A FRAMEIO_OAUTH dict for this stand-in's mode: the matching preset ("adobe-ims" or
        "frameio") with its scopes, every endpoint pointed here, and its issuer."""
        from tests.support.settings import FRAMEIO_OAUTH

        # PROVIDER and SCOPES come from the mode: the preset's own scopes are what it grants.
        mine = ("CLIENT_ID", "CLIENT_SECRET", "PROVIDER", "SCOPES")
        base = {k: v for k, v in FRAMEIO_OAUTH.items() if k not in mine}
        return {
            **base,
            **client,
            "PKCE": "CLIENT_SECRET" not in client,
            # ISSUER among them: the stand-in runs with FRAMEIO_STANDIN_SEND_ISS.
            **client_settings(self.url, self.mode),
            "HTTP_TIMEOUT": 10,
            **extra,
        }

    @property
    def authorize_url(self) -> str:
        return self.url + self.mode.shape.authorize_path

    def user_info(self, response: requests.Response) -> dict[str, Any]:
        """The user in a user-info answer, out of its envelope if the mode has one."""
        payload: dict[str, Any] = response.json()
        envelope = self.mode.shape.userinfo_envelope
        return dict(payload[envelope]) if envelope else payload

    def stats(self) -> dict[str, int]:
        return dict(requests.get(f"{self.url}/_standin/stats", timeout=5).json()["token_requests"])

    def reset_stats(self) -> None:
        requests.post(f"{self.url}/_standin/stats/reset", timeout=5).raise_for_status()

    def me(self, access_token: str) -> requests.Response:
        return requests.get(
            self.url + self.mode.shape.userinfo_path,
            headers={"Authorization": f"Bearer {access_token}"},
            timeout=5,
        )

    def consent(self, authorize_url: str, username: str) -> str:
        """Sign in at the stand-in, approve the consent page; return the callback URL."""
        browser = requests.Session()
        login_url = f"{self.url}/accounts/login/"
        page = browser.get(login_url, timeout=10)
        fields = form_fields(page.text)
        fields.update(username=username, password=self.users[username])
        browser.post(login_url, data=fields, timeout=10, headers={"Referer": login_url})
        page = browser.get(authorize_url, timeout=10)
        fields = form_fields(page.text, form_id="authorizationForm")
        assert fields, f"no consent form at the stand-in: {page.status_code} {page.text[:300]}"
        fields["allow"] = "Authorize"
        answer = browser.post(
            page.url, data=fields, allow_redirects=False, timeout=10, headers={"Referer": page.url}
        )
        assert answer.status_code == 302, answer.text[:300]
        return answer.headers["Location"]


class _FormParser(HTMLParser):
    def __init__(self, form_id: str | None) -> None:
        super().__init__()
        self.form_id = form_id
        self.inside = form_id is None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and self.form_id is not None:
            self.inside = attributes.get("id") == self.form_id
        if tag == "input" and self.inside and attributes.get("type") == "hidden":
            self.fields[attributes.get("name") or ""] = attributes.get("value") or ""


def scopes_of(text: str) -> set[str]:
    """The scopes in a scope string, whichever separator the server used (IMS: commas)."""
    return set(re.split(r"[\s,]+", text.strip())) - {""}


def form_fields(html: str, form_id: str | None = None) -> dict[str, str]:
    parser = _FormParser(form_id)
    parser.feed(html)
    return parser.fields


def start_standin(
    db_path: Path, redirect_uris: list[str], users: dict[str, str], *, mode: Mode = Mode.IMS
) -> Standin:
    """The packaged stand-in on a free port, as a client site's developer would start it."""
    env = {
        **os.environ,
        "FRAMEIO_STANDIN_DB": str(db_path),
        "FRAMEIO_STANDIN_REDIRECT_URIS": " ".join(redirect_uris),
        "FRAMEIO_STANDIN_SEND_ISS": "1",
        "FRAMEIO_STANDIN_USERS": ",".join(
            f"{name}:{password}:{name}@example.com" for name, password in users.items()
        ),
    }
    log = open(db_path.with_suffix(".log"), "w")  # noqa: SIM115 - lives as long as the server
    legacy = ["--legacy"] if mode is Mode.LEGACY else []
    process = subprocess.Popen(
        [sys.executable, "-m", "frameio_oauth.standin", "--port", "0", *legacy],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("standin ready on "):
        process.kill()
        raise RuntimeError(f"the stand-in did not start: {line!r}; see {log.name}")
    url = line.removeprefix("standin ready on ")
    return Standin(url=url, process=process, users=users, mode=mode)


def running_standin(
    tmp_path_factory: pytest.TempPathFactory,
    users: dict[str, str],
    *,
    mode: Mode = Mode.IMS,
    redirect_uris: tuple[str, ...] = ("http://testserver/frameio/callback/",),
) -> Iterator[Standin]:
    """For a fixture: ``yield from running_standin(...)`` starts one and stops it after."""
    folder = tmp_path_factory.mktemp(f"standin-{mode.value}")
    server = start_standin(folder / "standin.sqlite3", list(redirect_uris), users, mode=mode)
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


def sign_in_with_frameio(
    client: Any, standin: Standin, username: str, next_url: str = "/done/"
) -> tuple[Any, dict[str, str]]:
    """start page → its button → authorize at the stand-in → callback. Returns the callback
    response and the callback's query plus the flow's PKCE verifier (if any) under
    "verifier"."""
    page = client.get("/frameio/login/", {"next": next_url})
    assert page.status_code == 200
    # What the browser sends when the button is pressed: the form's hidden fields, the CSRF
    # token among them, with the CSRF cookie the page set.
    fields = form_fields(page.content.decode(), form_id="frameio-start-form")
    assert fields.get("csrfmiddlewaretoken"), "the start page has no CSRF token"
    start = client.post("/frameio/login/", fields)
    assert start.status_code == 302
    pending = client.session[SESSION_KEY]
    callback_url = standin.consent(start["Location"], username)
    parts = urlsplit(callback_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://testserver/frameio/callback/"
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    response = client.get(parts.path, query)
    return response, {**query, "verifier": pending[query["state"]]["verifier"] or ""}
