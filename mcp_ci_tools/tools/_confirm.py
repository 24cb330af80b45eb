"""Human confirmation for the trigger tools listed in MCP_CI_CONFIRM, through MCP elicitation.

The question is asked with `Resolve` + `Elicit`, so it works in both protocol eras. The resolver runs
before the tool body, so it first checks, without side effects, that the call would otherwise be sent:
nobody is asked about a call that the permission, the guards or the budget would refuse anyway.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
from mcp_ci_tools.tools._write import ConfirmOutcome, would_send

__all__ = ["ConfirmAnswer", "Confirmation", "build_resolver", "job_resolver", "outcome_of"]


class ConfirmAnswer(BaseModel):
    confirm: bool = Field(description="true to let the agent go ahead")


class _Verdict(BaseModel):
    outcome: ConfirmOutcome


Confirmation = ElicitationResult[ConfirmAnswer]


def outcome_of(answer: Confirmation) -> ConfirmOutcome:
    if isinstance(answer, AcceptedElicitation):
        data = answer.data
        if isinstance(data, ConfirmAnswer):
            return "confirmed" if data.confirm else "declined"
        if isinstance(data, _Verdict):
            return data.outcome
        return "not_asked"
    return "cancelled" if isinstance(answer, CancelledElicitation) else "declined"


async def _resolve(
    deps: Deps,
    tool: str,
    action: str,
    kind: Literal["build", "job"],
    project_id: str,
    target_id: str,
    ctx: Context,
) -> _Verdict | Elicit[ConfirmAnswer]:
    if tool not in deps.confirm_tools:
        return _Verdict(outcome="not_required")
    if not await would_send(deps, tool=tool, kind=kind, project_id=project_id, target_id=target_id):
        return _Verdict(outcome="not_asked")  # the tool body refuses it with the real reason
    elicitation = ctx.client_capabilities.elicitation if ctx.client_capabilities else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return _Verdict(outcome="unsupported")
    return Elicit(
        f"An agent wants to {action} InfraBox {kind} {target_id} in project {project_id} ({tool}). Allow it?",
        ConfirmAnswer,
    )


def build_resolver(deps: Deps, tool: str, action: str):
    async def resolve(project_id: str, build_id: str, ctx: Context) -> _Verdict | Elicit[ConfirmAnswer]:
        return await _resolve(deps, tool, action, "build", project_id, build_id, ctx)

    return Annotated[Confirmation, Resolve(resolve)]


def job_resolver(deps: Deps, tool: str, action: str):
    async def resolve(project_id: str, job_id: str, ctx: Context) -> _Verdict | Elicit[ConfirmAnswer]:
        return await _resolve(deps, tool, action, "job", project_id, job_id, ctx)

    return Annotated[Confirmation, Resolve(resolve)]
