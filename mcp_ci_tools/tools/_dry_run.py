"""What every trigger tool answers, and the answer of a dry run (`dry_run: true`): nothing sent."""

from __future__ import annotations

from typing import TypedDict

from pydantic import BaseModel, Field

from mcp_ci_tools.tools._pipeline import TriggerPreview
from mcp_ci_tools.tools._views import BudgetOut

__all__ = ["DRY_RUN_HELP", "DryRunFields", "DryRunOut", "TriggerResult", "dry_run_fields"]

DRY_RUN_HELP = "true: check all, send nothing"


class DryRunOut(BaseModel):
    """What a dry run found; the real call checks everything again."""

    would_send: bool
    refused_by: str | None = Field(description="the check that would refuse the call")
    preview: str = Field(description="the request that would be sent and the target as it is now")


class TriggerResult(BaseModel):
    """The fields every trigger tool's result has, sent or dry run."""

    project_id: str
    request_id: str = Field(description="X-Request-ID sent to InfraBox (a dry run's: its audit record's)")
    trigger_budget: BudgetOut
    replayed: bool = Field(description="not sent again: the answer of an identical call moments ago")
    next_step: str
    dry_run: DryRunOut | None = Field(None, description="set by a dry run: nothing was sent")


class DryRunFields(TypedDict):
    request_id: str
    trigger_budget: BudgetOut
    replayed: bool
    next_step: str
    dry_run: DryRunOut


def dry_run_fields(found: TriggerPreview, tool: str) -> DryRunFields:
    """The shared fields of a dry run's result, from what `preview_trigger` found."""
    request = found.request or "nothing (an id is not valid)"
    target = found.target or "not read (the call is refused before it)"
    asks = "; MCP_CI_CONFIRM would ask the user first" if found.asks_user else ""
    if found.would_send:
        next_step = (
            f"Dry run: every check passes. Call {tool} again without dry_run to send it{asks}; its budget "
            "and guards are checked again then, and the target may have changed."
        )
    else:
        next_step = (
            f"Dry run: the real call would be refused by the {found.refused_by} check: {found.refusal}"
        )
    return DryRunFields(
        request_id=found.request_id,
        trigger_budget=BudgetOut.of(found.budget),
        replayed=False,
        next_step=next_step,
        dry_run=DryRunOut(
            would_send=found.would_send,
            refused_by=found.refused_by,
            preview=f"would send {request}; target now: {target}{asks}",
        ),
    )
