"""The one table that turns failures into `ToolError` text the model reads.

Every message says what happened, whether anything was sent or done, and what to do next.
Tools never build error text inline; anything not handled here stays a crash, which the SDK hides
from the model (it sees only "Error executing tool ...") while the traceback goes to the stderr log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mcp.server.mcpserver.exceptions import ToolError

from mcp_ci_tools.audit import AuditUnavailable
from mcp_ci_tools.client import (
    Forbidden,
    InfraBoxError,
    InfraBoxUnreachable,
    NotFound,
    NotPossibleNow,
    OutcomeUnknown,
    RateLimited,
    TokenRejected,
    UpstreamBroken,
)
from mcp_ci_tools.domain.logtext import OffsetOutOfRange, PatternTooSlow
from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.terminal import terminal_safe
from mcp_ci_tools.domain.timestamps import rfc3339
from mcp_ci_tools.guards import (
    ConfirmationRefused,
    DedupeRecord,
    Duplicate,
    ProjectNotAllowed,
    RestartLoop,
    TargetChanged,
)
from mcp_ci_tools.policy import (
    BudgetExhausted,
    InvalidArgument,
    InvalidId,
    PolicyDenied,
    StateReset,
    StateStoreUnavailable,
    ToolsetDisabled,
    TriggerNotAllowed,
)

__all__ = ["Target", "audit_reason", "to_tool_error", "without_request_id"]

_EXAMPLE_UUID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"


@dataclass(frozen=True)
class Target:
    """What a call was about, for messages: `action` reads like "restart" and `kind` is "build" or "job"."""

    action: str
    kind: str
    project_id: str
    target_id: str | None = None
    write: bool = True
    infrabox_url: str = ""
    token_fingerprint: str = ""
    caller_brings_token: bool = (
        False  # HTTP: the caller's own token, so the caller must act, not the operator
    )

    @property
    def thing(self) -> str:
        return f"{self.kind} {self.target_id}" if self.target_id else f"project {self.project_id}"


def audit_reason(error: Exception) -> str:
    """The audit `reason` code for a refusal or failure."""
    if isinstance(error, PolicyDenied):
        return error.reason
    if isinstance(error, AuditUnavailable):
        return "audit_unavailable"
    if isinstance(error, PatternTooSlow):
        return "grep_too_slow"
    if isinstance(error, OffsetOutOfRange):
        return "offset_out_of_range"
    if isinstance(error, Forbidden):
        return error.kind
    names = {
        TokenRejected: "token_rejected",
        NotFound: "not_found",
        NotPossibleNow: "not_possible_now",
        RateLimited: "upstream_rate_limited",
        OutcomeUnknown: "outcome_unknown",
        InfraBoxUnreachable: "unreachable",
        UpstreamBroken: "upstream_error",
    }
    return names.get(type(error), "error")


def _said(error: InfraBoxError) -> str:
    # Made safe before repr(), which would otherwise turn an escape sequence into text the masker cannot read.
    return f" InfraBox said: {_quoted(error.reason)!r}." if error.reason else ""


def _quoted(text: str) -> str:
    """InfraBox-written text as the model may see it: terminal-safe, then its secrets masked."""
    return mask(terminal_safe(text))


def _request(error: InfraBoxError) -> str:
    return f" (request id {error.request_id})" if error.request_id else ""


_REQUEST_ID = re.compile(r" \(request id [^)]*\)")


def without_request_id(message: str) -> str:
    """A failure's message without the request id `_request` put in it (it differs on every attempt)."""
    return _REQUEST_ID.sub("", message)


def _nothing_done(target: Target) -> str:
    return "Nothing was done." if target.write else "Nothing was changed."


def _message(error: Exception, t: Target) -> str:
    match error:
        case InvalidId():
            return (
                f"{error.argument} must be a UUID such as {_EXAMPLE_UUID}; got {error.shown_value}. "
                "Nothing was sent to InfraBox. Use an id exactly as list_projects, list_builds or get_build return it."
            )
        case PatternTooSlow():
            return (
                f"{error}, so it was stopped. Simplify it: avoid nested repeats such as (a+)+ and alternatives "
                "that overlap such as (a|a)*, or use a plain substring, then call get_job_log again. The log was "
                "read from InfraBox; nothing was changed."
            )
        case OffsetOutOfRange():
            return (
                f"byte_offset {error.byte_offset} is outside the log: InfraBox has its bytes {error.first} to "
                f"{error.total} now. Nothing was changed. Use get_job_log with a byte_offset from {error.first} "
                f"to {error.total} (next_offset and prev_offset of a result), or without it for the end."
            )
        case InvalidArgument():
            return f"{error.argument}: {error.problem}. Nothing was sent to InfraBox; check the value and call again."
        case ToolsetDisabled():
            return (
                f"This server does not serve the {error.toolset} tools (MCP_CI_TOOLSETS), so the {t.action} of "
                f"{t.thing} was not sent. Use the tools listed by tools/list; the operator must add "
                f"{error.toolset} to MCP_CI_TOOLSETS to enable them."
            )
        case TriggerNotAllowed(learned=False):
            return (
                f"This server's InfraBox token ({t.token_fingerprint}) has no trigger permission (allow_trigger), "
                f"so the {t.action} of {t.thing} was not sent. Read tools still work. To trigger, an InfraBox admin "
                "must grant allow_trigger to this token, and the operator must set MCP_CI_ALLOW_TRIGGER=true and "
                "restart the server."
            )
        case TriggerNotAllowed(learned=True):
            recheck = (
                f" InfraBox will be asked again after {rfc3339(error.recheck_at)}."
                if error.recheck_at is not None
                else ""
            )
            return (
                f"InfraBox answered earlier that this token ({t.token_fingerprint}) does not have trigger permission "
                f"(allow_trigger), so the {t.action} of {t.thing} was not sent. Read tools still work. An InfraBox "
                f"admin must grant allow_trigger to this token.{recheck}"
            )
        case ProjectNotAllowed():
            return (
                f"Project {t.project_id} is outside this server's project allow-list (MCP_CI_PROJECTS), so nothing "
                f"was sent. Allowed projects: {', '.join(error.allowed)}. Use list_projects to see them."
            )
        case RestartLoop():
            return (
                f"Restart-loop guard: {error.count} restart/rerun requests were already sent for this build lineage "
                f"(the build, its restarts and their jobs) in the last {error.window_s} s, so the {t.action} of "
                f"{t.thing} was not sent. Restarting again rarely fixes a build that keeps failing: use "
                f"diagnose_build to find out why. The window frees a slot in {error.retry_after_s} s."
            )
        case Duplicate(record=DedupeRecord(state="failed")):
            return (
                f"Not sent again: an identical {t.action} of {t.thing} was sent {error.age_s:.0f} s ago and failed; "
                "check the build's state with get_build before trying anything else. "
                f"That call's answer was: {error.record.error}"
            )
        case Duplicate():
            return (
                f"Not sent again: an identical {t.action} of {t.thing} was sent {error.age_s:.0f} s ago and its "
                "outcome is not known yet (still in flight, or no answer came). Check the build's state with "
                "get_build before deciding; sending it twice could trigger it twice."
            )
        case ConfirmationRefused(outcome="unsupported"):
            return (
                f"The {t.action} of {t.thing} must be confirmed by the user (MCP_CI_CONFIRM), but this client cannot "
                "ask (no elicitation support), so nothing was sent. Use a client that supports elicitation, or the "
                "operator can remove this tool from MCP_CI_CONFIRM to turn the confirmation off."
            )
        case ConfirmationRefused(outcome="not_asked"):
            return (
                f"The {t.action} of {t.thing} must be confirmed by the user, and the user was not asked, so nothing "
                "was sent. Call the tool again to be asked."
            )
        case TargetChanged():
            return (
                f"Not sent: the {t.thing} changed after the user confirmed the {t.action}. The user saw {error.shown}; "
                f"it is now {error.now}. The confirmation was for what the user saw, so nothing was sent. Check it "
                "again with get_build or get_job, and call again only if the action still makes sense: the user is "
                "asked anew."
            )
        case ConfirmationRefused():
            return (
                f"The user did not confirm the {t.action} of {t.thing} ({error.outcome}), so nothing was sent. "
                "Do not retry unless the user asks for it."
            )
        case StateReset():
            return (
                f"The shared state store (MCP_CI_STATE_URL) lost its data (it restarted empty or failed over), "
                f"and with it the record of recent trigger requests, so the {t.action} of {t.thing} was not sent: "
                "to be sure InfraBox's limit holds, trigger calls of every token are refused for one full window, "
                f"until {rfc3339(error.until)}. Read tools still work. Retry after that; the operator should enable "
                "Redis persistence (see deploy/)."
            )
        case StateStoreUnavailable():
            return (
                f"The shared state store (budgets and guards, MCP_CI_STATE_URL) is not answering, so the {t.action} "
                f"of {t.thing} was not sent: trigger calls fail closed rather than risk exceeding InfraBox's rate "
                "limit. Read tools still work. Retry in a few seconds; if it persists, the operator must check Redis."
            )
        case BudgetExhausted() if error.budget != "trigger":
            state = error.state
            return (
                f"Read budget '{error.budget}' used up: at most {state.limit} such requests in any "
                f"{state.window_seconds} s, mirroring InfraBox's own bucket (which counts refused calls, so "
                f"hammering it locks the token out). Nothing was sent. Retry in {error.retry_after_s} s, or use "
                "diagnose_build, which answers most questions in one call."
            )
        case BudgetExhausted():
            state = error.state
            return (
                f"Trigger budget used up: at most {state.limit} restart/rerun/abort requests in any "
                f"{state.window_seconds} s (InfraBox counts refused calls too, so hammering it locks the token out). "
                f"The {t.action} of {t.thing} was not sent. Retry in {error.retry_after_s} s."
            )
        case AuditUnavailable():
            return (
                f"The audit log cannot be written ({error}), so trigger calls are refused and the {t.action} of "
                f"{t.thing} was not sent. The operator must fix MCP_CI_AUDIT_LOG (disk space, permissions)."
            )
        case TokenRejected() if t.caller_brings_token:
            return (
                f"InfraBox rejected your token ({t.token_fingerprint}) as unknown, expired or revoked."
                f"{_said(error)} {_nothing_done(t)} Connect again with a valid token of your own "
                "(an ib_mcp_ token in the Authorization header, scheme Bearer; create one in the InfraBox UI or ask "
                "the project's admin): "
                "this server closes the sessions of this token, and retrying with it will not help."
                + _request(error)
            )
        case TokenRejected():
            return (
                f"InfraBox rejected this server's token ({t.token_fingerprint}).{_said(error)} {_nothing_done(t)} "
                "The operator must configure a valid, unexpired token (INFRABOX_MCP_TOKEN); retrying will not help."
                + _request(error)
            )
        case Forbidden(kind="no_trigger_permission"):
            return (
                f"InfraBox refused the {t.action} of {t.thing}: this token ({t.token_fingerprint}) does not have "
                f"trigger permission (allow_trigger).{_said(error)} Nothing was done, and later trigger calls of "
                "this token are refused here without contacting InfraBox until the refusal expires "
                "(MCP_CI_PERMISSION_TTL). An InfraBox admin must grant allow_trigger to this token."
                + _request(error)
            )
        case Forbidden():
            return (
                f"Project {t.project_id} is not enabled for this token ({t.token_fingerprint}).{_said(error)} "
                f"{_nothing_done(t)} Use list_projects to see the projects this token may use."
                + _request(error)
            )
        case NotFound():
            return (
                f"{t.kind.capitalize()} {t.target_id or t.project_id} was not found in project {t.project_id}. "
                f"{_nothing_done(t)} Check the ids with list_projects, list_builds or get_build."
                + _request(error)
            )
        case NotPossibleNow():
            return (
                f"InfraBox refused the {t.action} of {t.thing} in its current state.{_said(error)} Nothing was done. "
                "Check the current state with get_build or get_job and choose an action it allows."
                + _request(error)
            )
        case RateLimited():
            return (
                f"InfraBox's own rate limit was hit; the {t.action} of {t.thing} was not done. "
                f"Wait {error.retry_after_s} s before calling InfraBox again." + _request(error)
            )
        case OutcomeUnknown():
            return (
                f"The {t.action} of {t.thing} was sent, but the outcome is unknown ({error}). It may or may not have "
                "happened: check the build's state (get_build or list_builds) before retrying, because a blind retry "
                "can trigger it twice." + _request(error)
            )
        case InfraBoxUnreachable():
            return (
                f"Could not reach InfraBox at {t.infrabox_url} ({error}); nothing was sent. Check that InfraBox is up "
                "and INFRABOX_URL is right, then retry." + _request(error)
            )
        case UpstreamBroken() if t.write:
            return (
                f"InfraBox gave an unexpected answer to the {t.action} of {t.thing} ({error}).{_said(error)} "
                "Check the build's state with get_build before retrying." + _request(error)
            )
        case UpstreamBroken() if error.retry_after_s is not None:
            return (
                f"InfraBox is temporarily unavailable ({error}); nothing was changed. Retry in "
                f"{error.retry_after_s} s." + _request(error)
            )
        case UpstreamBroken():
            return (
                f"InfraBox gave no usable answer ({error}).{_said(error)} Nothing was changed; retry in a moment."
                + _request(error)
            )
    raise TypeError(f"no message for {type(error).__name__}")  # pragma: no cover - guarded by test_errors


def to_tool_error(error: Exception, target: Target) -> ToolError:
    # The client cleans upstream text, but this is the guarantee: every message the model reads is
    # terminal-safe and masked here, whatever it quotes (InfraBox's messages, exception texts, arguments).
    return ToolError(_quoted(_message(error, target)))
