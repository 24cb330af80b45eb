"""Human confirmation for the trigger tools listed in MCP_CI_CONFIRM, through MCP elicitation.

The question is asked with `Resolve` + `Elicit`, so it works in both protocol eras. The resolvers run
before the tool body, so they first preview the trigger checks, without side effects: nobody is asked
about a call that the permission, the guards or the budget would refuse anyway. The question shows the
target as it is now (`look_at_target`), and the tool body gets that same look (`Seen`), so the pipeline can
refuse to send when the target changed after the user answered. On 2026-07-28 the resolvers run again on the
round that carries the answer, and a question that reads differently (the target changed) is asked anew.
"""

# No `from __future__ import annotations`: each confirmation resolver's annotation holds the `Resolve` of
# the look it shares with the tool body, a closure the SDK reads at registration.

import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    Elicit,
    ElicitationResult,
    Resolve,
)
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._errors import without_request_id
from mcp_ci_tools.tools._pipeline import would_send
from mcp_ci_tools.tools._target import TargetState, look_at_target
from mcp_ci_tools.tools._triggers import ConfirmOutcome, Trigger

__all__ = ["AskFirst", "ConfirmAnswer", "Confirmation", "Seen", "ask_first", "outcome_of"]


class ConfirmAnswer(BaseModel):
    confirm: bool = Field(description="true to let the agent go ahead")


class _Verdict(BaseModel):
    outcome: ConfirmOutcome


Confirmation = ElicitationResult[ConfirmAnswer]
_Resolution = _Verdict | Elicit[ConfirmAnswer]


def outcome_of(answer: Confirmation) -> ConfirmOutcome:
    if isinstance(answer, AcceptedElicitation):
        data: object = answer.data  # a resolver's own verdict arrives here too, not only the user's answer
        if isinstance(data, ConfirmAnswer):
            return "confirmed" if data.confirm else "declined"
        if isinstance(data, _Verdict):
            return data.outcome
        return "not_asked"
    return "cancelled" if isinstance(answer, CancelledElicitation) else "declined"


@dataclass(frozen=True)
class Seen:
    """What the confirmation step found before asking: an outcome that needs no question (`verdict`), or the
    target as the question shows it (`state`; None when it could not be read, which the question says)."""

    verdict: ConfirmOutcome | None
    state: TargetState | None = None
    unreadable: str | None = None


async def _look(
    deps: Deps, trigger: Trigger[Any], project_id: str, target_id: str, dry_run: bool, ctx: Context
) -> Seen:
    if dry_run:
        return Seen(verdict="not_asked")  # a dry run asks nobody
    if trigger.tool not in deps.confirm_tools:
        return Seen(verdict="not_required")
    if not await would_send(deps, trigger, project_id, target_id):
        return Seen(verdict="not_asked")  # the tool body refuses it with the real reason
    elicitation = ctx.client_capabilities.elicitation if ctx.client_capabilities else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return Seen(verdict="unsupported")
    try:
        return Seen(verdict=None, state=await look_at_target(deps, trigger, project_id, target_id))
    except ToolError as error:
        # Without the request id: on 2026-07-28 a question that reads differently on the answering round is
        # asked anew, and a target that stays unreadable would otherwise be asked about again and again.
        return Seen(verdict=None, unreadable=without_request_id(str(error)))


def _question(trigger: Trigger[Any], project_id: str, target_id: str, seen: Seen) -> Elicit[ConfirmAnswer]:
    now = seen.state.summary if seen.state else f"its current state could not be read ({seen.unreadable})"
    request = trigger.request(uuid.UUID(project_id), uuid.UUID(target_id))  # valid: the checks passed
    return Elicit(
        f"An agent wants to {trigger.action} InfraBox {trigger.kind} {target_id} in project {project_id} "
        f"({trigger.tool}). Now: {now}. It would send {request}. Allow it?",
        ConfirmAnswer,
    )


def _answer(seen: Seen, trigger: Trigger[Any], project_id: str, target_id: str) -> _Resolution:
    if seen.verdict is not None:
        return _Verdict(outcome=seen.verdict)
    return _question(trigger, project_id, target_id, seen)


@dataclass(frozen=True)
class AskFirst:
    """The two resolvers of a trigger tool: `confirmation` (the user's answer) and `seen` (the look the
    question showed), each a `Resolve` for one parameter of the tool."""

    confirmation: Resolve
    seen: Resolve


def ask_first(deps: Deps, trigger: Trigger[Any]) -> AskFirst:
    """The resolvers for a trigger tool's confirmation parameters; they read the tool's own id arguments."""
    return _build_resolvers(deps, trigger) if trigger.kind == "build" else _job_resolvers(deps, trigger)


def _build_resolvers(deps: Deps, trigger: Trigger[Any]) -> AskFirst:
    async def look(project_id: str, build_id: str, dry_run: bool, ctx: Context) -> Seen:
        return await _look(deps, trigger, project_id, build_id, dry_run, ctx)

    async def confirm(project_id: str, build_id: str, seen: Annotated[Seen, Resolve(look)]) -> _Resolution:
        return _answer(seen, trigger, project_id, build_id)

    return AskFirst(confirmation=Resolve(confirm), seen=Resolve(look))


def _job_resolvers(deps: Deps, trigger: Trigger[Any]) -> AskFirst:
    async def look(project_id: str, job_id: str, dry_run: bool, ctx: Context) -> Seen:
        return await _look(deps, trigger, project_id, job_id, dry_run, ctx)

    async def confirm(project_id: str, job_id: str, seen: Annotated[Seen, Resolve(look)]) -> _Resolution:
        return _answer(seen, trigger, project_id, job_id)

    return AskFirst(confirmation=Resolve(confirm), seen=Resolve(look))
