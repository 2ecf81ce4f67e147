"""Pending sign-in flows: what the start of a flow leaves in the session for its callback.

Each flow remembers its state, PKCE verifier, redirect URI, where to go afterwards, and who
started it, so that the callback can refuse an answer that comes back to anyone else.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.cache import cache
from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

if TYPE_CHECKING:
    from django.contrib.auth.base_user import AbstractBaseUser
    from django.contrib.auth.models import AnonymousUser

SESSION_KEY = "frameio_oauth_flows"
# A user may start the flow in several tabs; keep a few pending states, each briefly.
MAX_PENDING_FLOWS = 5
FLOW_LIFETIME = 600
# In a flow saved without a starter (before flows recorded one), nobody matches.
_UNKNOWN_STARTER = "?"
# RFC 7636 section 4.1: what a code verifier may be. Anything else was not written here.
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


class FlowProblem(enum.Enum):
    MISSING_STATE = "missing_state"
    UNKNOWN_STATE = "unknown_state"  # never ours, used, evicted, or from another session
    EXPIRED_STATE = "expired_state"


class FlowRejected(Exception):
    """The callback's state names no pending flow of this session that it can complete."""

    def __init__(self, problem: FlowProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class PendingFlow:
    state: str = field(repr=False)
    verifier: str | None = field(repr=False)
    redirect_uri: str
    next: str
    # The pk, as a string, of the user who started the flow; None for an anonymous visitor.
    starter: str | None
    created: float

    def started_by(self, user: AbstractBaseUser | AnonymousUser) -> bool:
        return self.starter == starter_of(user)


def starter_of(user: AbstractBaseUser | AnonymousUser) -> str | None:
    return str(user.pk) if user.is_authenticated else None


def _saved(request: HttpRequest) -> dict[str, dict[str, Any]]:
    """The session's pending flows; anything else found under the key (another version's
    format, a project's own use of it) counts as none."""
    value = request.session.get(SESSION_KEY)
    if not isinstance(value, dict):
        return {}
    return {
        state: saved
        for state, saved in value.items()
        if isinstance(state, str) and isinstance(saved, dict)
    }


def _created(saved: dict[str, Any]) -> float:
    created = saved.get("created")
    if isinstance(created, bool) or not isinstance(created, int | float):
        return 0.0
    return float(created) if math.isfinite(created) else 0.0


@sensitive_variables()
def remember(request: HttpRequest, flow: PendingFlow) -> None:
    """Keep ``flow`` in the session, dropping expired flows and, past the limit, the oldest."""
    flows = {
        state: saved
        for state, saved in _saved(request).items()
        if _created(saved) > time.time() - FLOW_LIFETIME
    }
    while len(flows) >= MAX_PENDING_FLOWS:
        flows.pop(min(flows, key=lambda state: _created(flows[state])))
    flows[flow.state] = {
        "verifier": flow.verifier,
        "redirect_uri": flow.redirect_uri,
        "next": flow.next,
        "starter": flow.starter,
        "created": flow.created,
    }
    request.session[SESSION_KEY] = flows


@sensitive_variables()
def claim(request: HttpRequest, state: str) -> PendingFlow:
    """Consume the pending flow whose state matches; each state works exactly once."""
    if not state:
        raise FlowRejected(FlowProblem.MISSING_STATE)
    flows = _saved(request)
    match = None
    for candidate in list(flows):
        # Compare every pending state in constant time; do not stop at the first hit.
        if hmac.compare_digest(candidate.encode(), state.encode()):
            match = candidate
    if match is None:
        raise FlowRejected(FlowProblem.UNKNOWN_STATE)
    saved = flows.pop(match)
    request.session[SESSION_KEY] = flows
    # Save now, before the slow exchange, so a replayed callback cannot reuse the state.
    request.session.save()
    # Two requests racing with one session (a reload during the exchange) both read the state
    # before either saved; the cache's atomic add lets exactly one of them through.
    if not cache.add(spent_key(state), 1, FLOW_LIFETIME):
        raise FlowRejected(FlowProblem.UNKNOWN_STATE)
    if _created(saved) <= time.time() - FLOW_LIFETIME:
        raise FlowRejected(FlowProblem.EXPIRED_STATE)
    verifier, redirect_uri = saved.get("verifier"), saved.get("redirect_uri")
    if not _is_verifier(verifier) or not isinstance(redirect_uri, str):
        # Not what remember() writes: nothing to complete the exchange with.
        raise FlowRejected(FlowProblem.UNKNOWN_STATE)
    starter = saved.get("starter", _UNKNOWN_STARTER)
    next_url = saved.get("next")
    return PendingFlow(
        state=match,
        verifier=verifier,
        redirect_uri=redirect_uri,
        next=next_url if isinstance(next_url, str) else "",
        starter=starter if isinstance(starter, str | None) else _UNKNOWN_STARTER,
        created=_created(saved),
    )


def _is_verifier(value: object) -> bool:
    # None is a flow started with PKCE off.
    return value is None or (isinstance(value, str) and _VERIFIER.fullmatch(value) is not None)


def was_spent(state: str) -> bool:
    return bool(state) and cache.get(spent_key(state)) is not None


def spent_key(state: str) -> str:
    return "frameio_oauth:spent-state:" + hashlib.sha256(state.encode()).hexdigest()
