"""Human confirmation for the trigger tools listed in MCP_CI_CONFIRM, through MCP elicitation.

The question is asked with `Resolve` + `Elicit`, so it works in both protocol eras. The resolver runs
before the tool body, so it first previews the trigger checks, without side effects: nobody is asked
about a call that the permission, the guards or the budget would refuse anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from mcp.server.mcpserver import (
    AcceptedElicitation,
    CancelledElicitation,
    Context,
    Elicit,
    ElicitationResult,
    Resolve,
)
from pydantic import BaseModel, Field

from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._pipeline import would_send
from mcp_ci_tools.tools._triggers import ConfirmOutcome, Trigger

__all__ = ["ConfirmAnswer", "Confirmation", "ask_first", "outcome_of"]


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


async def _resolve(
    deps: Deps, trigger: Trigger[Any], project_id: str, target_id: str, ctx: Context
) -> _Resolution:
    if trigger.tool not in deps.confirm_tools:
        return _Verdict(outcome="not_required")
    if not await would_send(deps, trigger, project_id, target_id):
        return _Verdict(outcome="not_asked")  # the tool body refuses it with the real reason
    elicitation = ctx.client_capabilities.elicitation if ctx.client_capabilities else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return _Verdict(outcome="unsupported")
    return Elicit(
        f"An agent wants to {trigger.action} InfraBox {trigger.kind} {target_id} in project {project_id} "
        f"({trigger.tool}). Allow it?",
        ConfirmAnswer,
    )


def ask_first(deps: Deps, trigger: Trigger[Any]) -> Resolve:
    """The `Resolve` for a trigger tool's confirmation parameter; it reads the tool's own id arguments."""
    return Resolve(
        _build_resolver(deps, trigger) if trigger.kind == "build" else _job_resolver(deps, trigger)
    )


def _build_resolver(deps: Deps, trigger: Trigger[Any]) -> Callable[..., Awaitable[_Resolution]]:
    async def resolve(project_id: str, build_id: str, ctx: Context) -> _Resolution:
        return await _resolve(deps, trigger, project_id, build_id, ctx)

    return resolve


def _job_resolver(deps: Deps, trigger: Trigger[Any]) -> Callable[..., Awaitable[_Resolution]]:
    async def resolve(project_id: str, job_id: str, ctx: Context) -> _Resolution:
        return await _resolve(deps, trigger, project_id, job_id, ctx)

    return resolve
