"""Run oidc-provider (tests/interop/server.mjs) on loopback as a second, independent
authorization server, and play the part of the user's browser on its login and consent pages.

The stand-in (tests/support/standin.py) is django-oauth-toolkit; this one is panva's
oidc-provider, a Node.js OpenID Connect server with no code in common with it or with this app.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote_plus, urljoin, urlsplit

import requests
from django.test import Client

from tests.support.standin import form_fields

ROOT = Path(__file__).resolve().parents[2]
INTEROP_DIR = ROOT / "tests" / "interop"
CALLBACK_URL = "http://testserver/frameio/callback/"
CONFIDENTIAL = {"CLIENT_ID": "interop-confidential", "CLIENT_SECRET": "interop-secret"}
PUBLIC = {"CLIENT_ID": "interop-public"}
# RFC 6749 §2.3.1: HTTP Basic carries both form-urlencoded, so a colon, a plus, a percent sign
# or a space in either must survive the round trip (oidc-provider takes printable ASCII only).
RESERVED_CHARACTERS = {
    "CLIENT_ID": "interop:reserved+chars",
    "CLIENT_SECRET": "s3cr+t with:colon%25&=/~",
}
CLIENTS = (CONFIDENTIAL, PUBLIC, RESERVED_CHARACTERS)
# What Frame.io V4 asks for, spelled as an RFC 6749 server reads a scope: space-separated.
SCOPES = ["openid", "email", "offline_access"]
READY = "interop server ready on "
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Account:
    password: str
    sub: str
    email: str


@dataclass
class InteropServer:
    issuer: str
    process: subprocess.Popen[str]
    accounts: dict[str, Account] = field(default_factory=dict)

    def settings(
        self, client: dict[str, str], *, prompt_consent: bool = True, **extra: Any
    ) -> dict[str, Any]:
        """A FRAMEIO_OAUTH dict pointing every endpoint at this server.

        The legacy "frameio" preset, not "adobe-ims": oidc-provider reads scope as RFC 6749
        §3.3 says, space-separated, and takes IMS's "openid,email,offline_access" for one
        unknown scope. ``prompt=consent`` rides on AUTHORIZE_URL (the app keeps its query):
        oidc-provider ignores offline_access without it, as OpenID Connect Core §11 asks.
        """
        from tests.support.settings import FRAMEIO_OAUTH

        base = {k: v for k, v in FRAMEIO_OAUTH.items() if k not in ("CLIENT_ID", "CLIENT_SECRET")}
        query = "?prompt=consent" if prompt_consent else ""
        return {
            **base,
            **client,
            "PROVIDER": "frameio",
            "SCOPES": SCOPES,
            "AUTHORIZE_URL": f"{self.issuer}/auth{query}",
            "TOKEN_URL": f"{self.issuer}/token",
            "REVOKE_URL": f"{self.issuer}/token/revocation",
            "USERINFO_URL": f"{self.issuer}/me",
            "ISSUER": self.issuer,
            "HTTP_TIMEOUT": 10,
            **extra,
        }

    def stats(self) -> dict[str, int]:
        """What the server counted since the last reset: ``token:<grant_type>`` for each token
        issued, ``token:<grant_type>:<error>`` for each refused, ``refresh_scope:<scope>`` for
        each refresh request (``refresh_scope:`` when it named no scope), ``grant_revoked``
        for each grant the server ended."""
        answer = requests.get(f"{self.issuer}/_interop/stats", timeout=5)
        answer.raise_for_status()
        return dict(answer.json())

    def reset_stats(self) -> None:
        requests.post(f"{self.issuer}/_interop/stats", timeout=5).raise_for_status()

    def userinfo(self, access_token: str) -> requests.Response:
        return requests.get(
            f"{self.issuer}/me", headers={"Authorization": f"Bearer {access_token}"}, timeout=5
        )

    def refresh_directly(self, client: dict[str, str], refresh_token: str) -> requests.Response:
        """A refresh request sent by the test itself, as the client would send it."""
        return self._client_post(
            "/token", client, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    def revoke_directly(self, client: dict[str, str], token: str, hint: str) -> requests.Response:
        """An RFC 7009 revocation sent by the test itself, as the client would send it."""
        return self._client_post(
            "/token/revocation", client, {"token": token, "token_type_hint": hint}
        )

    def _client_post(
        self, path: str, client: dict[str, str], form: dict[str, str]
    ) -> requests.Response:
        auth = None
        if "CLIENT_SECRET" in client:
            # RFC 6749 §2.3.1: each part form-urlencoded before Basic encodes them.
            auth = (
                quote_plus(client["CLIENT_ID"], safe=""),
                quote_plus(client["CLIENT_SECRET"], safe=""),
            )
        else:
            form = {**form, "client_id": client["CLIENT_ID"]}
        return requests.post(f"{self.issuer}{path}", data=form, auth=auth, timeout=5)

    def consent(self, authorize_url: str, username: str) -> str:
        """Sign in on the server's login page, allow on its consent page; return the URL the
        server sends the browser back to (the app's callback)."""
        browser = requests.Session()
        response = browser.get(authorize_url, allow_redirects=False, timeout=10)
        for _ in range(10):
            if response.is_redirect:
                location = urljoin(response.url, response.headers["Location"])
                if not location.startswith(f"{self.issuer}/"):
                    return location
                response = browser.get(location, allow_redirects=False, timeout=10)
                continue
            assert response.status_code == 200, f"{response.status_code} {response.text[:300]}"
            fields = form_fields(response.text)
            if fields.get("prompt") == "login":
                account = self.accounts[username]
                fields.update(username=username, password=account.password)
            elif fields.get("prompt") == "consent":
                fields["decision"] = "allow"
            else:
                raise AssertionError(f"not a login or consent page: {response.text[:300]}")
            response = browser.post(response.url, data=fields, allow_redirects=False, timeout=10)
        raise AssertionError("the server never sent the browser back to the app")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_server(
    log_path: Path, accounts: dict[str, Account], *, access_token_ttl: int = 600
) -> InteropServer:
    config = {
        "users": {
            name: {"password": account.password, "sub": account.sub, "email": account.email}
            for name, account in accounts.items()
        },
        "redirectUris": [CALLBACK_URL],
        "clients": [
            {"clientId": client["CLIENT_ID"], "clientSecret": client.get("CLIENT_SECRET")}
            for client in CLIENTS
        ],
        "accessTokenTtl": access_token_ttl,
    }
    node = shutil.which("node")
    assert node is not None
    log = open(log_path, "w")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [node, "server.mjs"],
        cwd=INTEROP_DIR,
        env={**os.environ, "FRAMEIO_INTEROP_CONFIG": json.dumps(config)},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    line = _first_line(process, START_TIMEOUT)
    if not line.startswith(READY):
        process.kill()
        process.wait(timeout=10)
        raise RuntimeError(f"the interop server did not start: {line!r}; see {log_path}")
    return InteropServer(issuer=line.removeprefix(READY), process=process, accounts=accounts)


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The server's first line on stdout, or "" if it printed none in time (or exited)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while (remaining := deadline - time.monotonic()) > 0:
            if selector.select(remaining):
                return process.stdout.readline().strip()
    return ""


def sign_in(
    client: Client, server: InteropServer, username: str, next_url: str = "/done/"
) -> tuple[Any, dict[str, str]]:
    """Start page → its button → the server's login and consent pages → the app's callback.
    Returns the callback's response and query."""
    page = client.get("/frameio/login/", {"next": next_url})
    assert page.status_code == 200
    # What a browser sends when the button is pressed: the form's hidden fields, the CSRF
    # token among them.
    fields = form_fields(page.content.decode(), form_id="frameio-start-form")
    start = client.post("/frameio/login/", fields)
    assert start.status_code == 302
    parts = urlsplit(server.consent(start["Location"], username))
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == CALLBACK_URL
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    response = client.get(parts.path, query)
    return response, query
