"""The soak benchmark's token endpoint: rotating refresh tokens with reuse detection.

Run by ``soak.py`` as its own process on 127.0.0.1 (ephemeral port unless ``--port``). Prints
``port <n>`` once it listens. Served like ``_provider.py``, by its ``serve``, every token
answer ``--delay`` seconds after its request arrived; but it keeps the state of every grant,
as Frame.io may:

* each grant has one current refresh token; a refresh answers a new access token that lives
  ``--lifetime`` seconds and a new refresh token, and the one presented is spent;
* presenting a spent refresh token answers 400 ``invalid_grant`` and revokes the grant (its
  current refresh token stops working too): counted as ``reused``;
* a refresh token it never issued answers 400 ``invalid_grant`` (``unknown``), and so does any
  request of a revoked grant (``revoked_requests``).

The grants are seeded by the benchmark: ``POST /admin/seed`` with a file path as its body,
the file holding one ``<grant id> <refresh token>`` line per grant. ``GET /admin/stats``
answers the counters and the token requests that arrived in each wall-clock second
(``time.time()``, comparable with the other processes on the machine). Neither waits.
"""

from __future__ import annotations

import argparse
import secrets
import time
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

from _provider import Request, json_response, serve


class Grants:
    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.current: dict[str, int] = {}  # live refresh token -> grant id
        self.spent: dict[str, int] = {}  # spent refresh token -> grant id
        self.live: dict[int, str] = {}  # grant id -> its live refresh token
        self.revoked: set[int] = set()
        self.dead: set[str] = set()  # the live refresh tokens of revoked grants
        self.counts: Counter[str] = Counter()
        self.per_second: Counter[int] = Counter()  # token requests by arrival second

    def seed(self, path: str) -> int:
        added = 0
        for line in Path(path).read_text().splitlines():
            grant_text, token = line.split()
            grant = int(grant_text)
            old = self.live.pop(grant, None)
            if old is not None:
                self.current.pop(old, None)
            self.current[token] = grant
            self.live[grant] = token
            self.revoked.discard(grant)
            added += 1
        return added

    def refresh(self, form: dict[str, list[str]]) -> tuple[int, dict[str, object]]:
        """The status and JSON body answering one token request."""
        self.counts["requests"] += 1
        if form.get("grant_type", [""])[0] != "refresh_token":
            self.counts["unsupported"] += 1
            return 400, {"error": "unsupported_grant_type"}
        presented = form.get("refresh_token", [""])[0]
        grant = self.current.pop(presented, None)
        if grant is None:
            if presented in self.spent:
                # Reuse detection: someone holds an old token; end the whole grant.
                reused = self.spent[presented]
                self.counts["reused"] += 1
                live = self.live.pop(reused, None)
                if live is not None:
                    self.current.pop(live, None)
                    self.dead.add(live)
                self.revoked.add(reused)
                return 400, {"error": "invalid_grant", "error_description": "token reused"}
            if presented in self.dead:
                self.counts["revoked_requests"] += 1
                return 400, {"error": "invalid_grant", "error_description": "grant revoked"}
            self.counts["unknown"] += 1
            return 400, {"error": "invalid_grant", "error_description": "unknown token"}
        self.spent[presented] = grant
        new = secrets.token_urlsafe(32)
        self.current[new] = grant
        self.live[grant] = new
        self.counts["refreshed"] += 1
        return 200, {
            "access_token": secrets.token_urlsafe(32),
            "refresh_token": new,
            "token_type": "bearer",
            "expires_in": self.lifetime,
            "scope": "account.read offline",
        }

    def stats(self) -> dict[str, object]:
        return {
            "counts": dict(self.counts),
            "per_second": {str(second): n for second, n in sorted(self.per_second.items())},
            "grants": len(self.live),
            "revoked": len(self.revoked),
        }


async def _answer(request: Request, grants: Grants, delay: float) -> bytes:
    if request.path == b"/admin/seed" and request.method == b"POST":
        return json_response(200, {"seeded": grants.seed(request.body.decode())})
    if request.path == b"/admin/stats":
        return json_response(200, grants.stats())
    if request.path.startswith(b"/oauth2/token") and request.method == b"POST":
        grants.per_second[int(time.time())] += 1
        status, answer = grants.refresh(parse_qs(request.body.decode()))
        return await request.answer_after(delay, json_response(status, answer))
    return json_response(404, {"error": "not_found"})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--lifetime", type=int, default=120)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    grants = Grants(args.lifetime)

    def connected() -> None:
        grants.counts["connections"] += 1

    serve(
        lambda request: _answer(request, grants, args.delay),
        args.port,
        backlog=512,
        on_connection=connected,
    )


if __name__ == "__main__":
    main()
