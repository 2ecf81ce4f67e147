"""Why a callback ends on the error page, in the visitor's words, with the status that says
whose fault it is: the views map each domain error to one of these."""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .exceptions import GrantRefused, UnusableProviderValue
from .flows import FlowProblem, FlowRejected

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

logger = logging.getLogger("frameio_oauth.views")


class NextStep(enum.Enum):
    """What the error page offers after the message."""

    TRY_AGAIN = "try_again"  # the start page again, keeping next
    SIGN_IN = "sign_in"  # the site's own sign-in (LOGIN_URL), then the start page
    NONE = "none"  # nothing here can help: only the way back to the site


class Refused(Exception):
    """A callback that ends on the error page: ``code`` for templates, the visitor's message,
    the status, and what the page offers next."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int = 400,
        next_step: NextStep = NextStep.TRY_AGAIN,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.next_step = next_step


@dataclass(frozen=True)
class GrantRefusal:
    message: StrPromise  # translated when the page is rendered
    status: int
    next_step: NextStep = NextStep.TRY_AGAIN


FLOW_PROBLEMS = {
    FlowProblem.MISSING_STATE: gettext_lazy("The sign-in link is incomplete; start again."),
    FlowProblem.UNKNOWN_STATE: gettext_lazy(
        "This sign-in link is unknown, used or expired; start again."
    ),
    FlowProblem.EXPIRED_STATE: gettext_lazy("The sign-in took too long; start again."),
}
# 403: this visitor may not have it; 409: it collides with what is stored here.
GRANT_REFUSALS: dict[GrantRefused.Reason, GrantRefusal] = {
    GrantRefused.Reason.NO_ACCOUNT: GrantRefusal(
        gettext_lazy(
            "No account here is connected to this Frame.io user. Sign in first, then connect."
        ),
        403,
        NextStep.SIGN_IN,
    ),
    GrantRefused.Reason.LINKED_ELSEWHERE: GrantRefusal(
        gettext_lazy("This Frame.io account is already connected to another user."), 409
    ),
    GrantRefused.Reason.INACTIVE: GrantRefusal(
        gettext_lazy("This account is disabled."), 403, NextStep.NONE
    ),
    GrantRefused.Reason.NO_EMAIL: GrantRefusal(
        gettext_lazy("Frame.io gave no e-mail address to create an account with."),
        403,
        NextStep.SIGN_IN,
    ),
    GrantRefused.Reason.EMAIL_TAKEN: GrantRefusal(
        gettext_lazy(
            "An account with this e-mail already exists here. Sign in to it first, then connect."
        ),
        409,
        NextStep.SIGN_IN,
    ),
    GrantRefused.Reason.SIGNUP_CONFLICT: GrantRefusal(
        gettext_lazy(
            "An account here already has details of this Frame.io user (its e-mail address?). "
            "Sign in to it first, then connect."
        ),
        409,
        NextStep.SIGN_IN,
    ),
    GrantRefused.Reason.BUSY: GrantRefusal(
        gettext_lazy("Another sign-in for this account just finished; try again."), 409
    ),
}


def for_flow(exc: FlowRejected) -> Refused:
    return Refused(exc.problem.value, str(FLOW_PROBLEMS[exc.problem]))


def for_grant(exc: GrantRefused) -> Refused:
    refusal = GRANT_REFUSALS[exc.reason]
    return Refused(
        exc.reason.value, str(refusal.message), status=refusal.status, next_step=refusal.next_step
    )


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
