"""Why a callback ends on the error page, in the visitor's words, with the status that says
whose fault it is: the views map each domain error to one of these."""

from __future__ import annotations

import logging
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .exceptions import GrantRefused, UnusableProviderValue
from .flows import FlowProblem, FlowRejected

logger = logging.getLogger("frameio_oauth.views")


class Refused(Exception):
    """A callback that ends on the error page: ``code`` for templates, the visitor's message,
    and the status."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


FLOW_PROBLEMS = {
    FlowProblem.MISSING_STATE: gettext_lazy("The sign-in link is incomplete; start again."),
    FlowProblem.UNKNOWN_STATE: gettext_lazy(
        "This sign-in link is unknown, used or expired; start again."
    ),
    FlowProblem.EXPIRED_STATE: gettext_lazy("The sign-in took too long; start again."),
}
GRANT_REFUSALS: dict[GrantRefused.Reason, tuple[Any, int]] = {
    GrantRefused.Reason.NO_ACCOUNT: (
        gettext_lazy(
            "No account here is connected to this Frame.io user. Sign in first, then connect."
        ),
        403,
    ),
    GrantRefused.Reason.LINKED_ELSEWHERE: (
        gettext_lazy("This Frame.io account is already connected to another user."),
        409,
    ),
    GrantRefused.Reason.INACTIVE: (gettext_lazy("This account is disabled."), 403),
    GrantRefused.Reason.NO_EMAIL: (
        gettext_lazy("Frame.io gave no e-mail address to create an account with."),
        403,
    ),
    GrantRefused.Reason.EMAIL_TAKEN: (
        gettext_lazy(
            "An account with this e-mail already exists here. Sign in to it first, then connect."
        ),
        409,
    ),
    GrantRefused.Reason.SIGNUP_CONFLICT: (
        gettext_lazy(
            "An account here already has details of this Frame.io user (its e-mail address?). "
            "Sign in to it first, then connect."
        ),
        409,
    ),
    GrantRefused.Reason.BUSY: (
        gettext_lazy("Another sign-in for this account just finished; try again."),
        409,
    ),
}


def for_flow(exc: FlowRejected) -> Refused:
    return Refused(exc.problem.value, str(FLOW_PROBLEMS[exc.problem]))


def for_grant(exc: GrantRefused) -> Refused:
    message, status = GRANT_REFUSALS[exc.reason]
    return Refused(exc.reason.value, str(message), status=status)


PROVIDER_ERRORS = {
    "access_denied": gettext_lazy("You declined access on Frame.io, so nothing was connected."),
    "login_required": gettext_lazy("Frame.io asked you to sign in; please try again."),
    "consent_required": gettext_lazy("Frame.io needs your consent; please try again."),
    "temporarily_unavailable": gettext_lazy(
        "Frame.io is temporarily unavailable; please try again later."
    ),
    "server_error": gettext_lazy("Frame.io had a problem; please try again later."),
}


def for_unusable_value(exc: UnusableProviderValue) -> Refused:
    # Frame.io's fault, not the visitor's (502), and no retry will help: say so plainly.
    logger.warning("sign-in refused: %s", exc)
    return Refused(
        "unusable_answer",
        _(
            "Frame.io sent account details this site cannot store, so nothing was connected. "
            "Please tell the site's administrators."
        ),
        status=502,
    )


def for_provider_error(error: str) -> Refused:
    message = PROVIDER_ERRORS.get(error, _("Frame.io did not authorize the connection."))
    return Refused(error if error in PROVIDER_ERRORS else "provider_error", str(message))
