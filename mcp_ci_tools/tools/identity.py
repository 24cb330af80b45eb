"""whoami: what this server may do with its token, without calling InfraBox."""

from __future__ import annotations

from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from mcp_ci_tools import __version__
from mcp_ci_tools.audit import AuditRecord
from mcp_ci_tools.domain.timestamps import rfc3339
from mcp_ci_tools.policy import BudgetState, StateReset, StateStoreUnavailable
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._host import ToolHost
from mcp_ci_tools.tools._views import BudgetOut

__all__ = ["TriggerPermissionOut", "WhoamiResult", "register"]


class TriggerPermissionOut(BaseModel):
    declared: bool = Field(
        description="the operator declared allow_trigger for this token (MCP_CI_ALLOW_TRIGGER)"
    )
    refused_by_infrabox_at: str | None = Field(
        description="when InfraBox answered 403 'no trigger permission' (RFC 3339); null if it never did"
    )
    allowed: bool = Field(description="whether trigger tools will send requests now")


class WhoamiResult(BaseModel):
    server_version: str
    infrabox_url: str
    token_fingerprint: str = Field(
        description="sha256: + 12 hex digits; matches InfraBox's token_hash prefix"
    )
    token_sha256: str = Field(
        description="the token's full SHA-256 (InfraBox's token_hash): the key budgets and audit lines are kept by"
    )
    trigger_permission: TriggerPermissionOut
    trigger_budget: BudgetOut | None = Field(description="null while the shared state store is unavailable")
    read_budgets: dict[str, BudgetOut] = Field(
        description="per InfraBox read bucket: list_projects, list_builds, list_jobs, get_job_log"
    )
    hint: str


def register(server: ToolHost, deps: Deps) -> None:
    @server.tool(
        name="whoami",
        title="Show this server's InfraBox identity and budgets",
        description=(
            "Show which InfraBox this server talks to, the token's fingerprint and full SHA-256 (never the token), whether "
            "trigger tools (restart/rerun/abort) are allowed, and how much of the trigger and read budgets is left. "
            "Makes no request to InfraBox and uses no budget."
        ),
        annotations=ToolAnnotations(
            title="Who am I (InfraBox identity and budgets)",
            read_only_hint=True,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )
    async def whoami() -> WhoamiResult:
        caller = deps.caller()
        permission = deps.permission
        reset_until: float | None = None
        try:
            budget: BudgetState | None = await deps.trigger_budget.peek(caller.key)
            refused = await permission.refused_at(caller.key)
            await deps.continuity.check()
        except StateReset as reset:
            reset_until = reset.until
        except StateStoreUnavailable:
            budget, refused = None, None
        allowed = permission.declared and refused is None and budget is not None and reset_until is None
        refused_at = None if refused is None else rfc3339(refused)
        if budget is None:
            hint = "The shared state store is not answering: trigger tools are refused until it does; reads work."
        elif reset_until is not None:
            hint = (
                "The shared state store lost its data: trigger tools are refused for every token until "
                f"{rfc3339(reset_until)}; reads work."
            )
        elif not allowed:
            hint = "Trigger tools are refused for this token; read tools work."
        elif budget.remaining == 0:
            hint = f"Trigger budget used up; the next slot frees in {budget.seconds_until_next_slot} s."
        else:
            hint = f"Trigger tools may send {budget.remaining} more request(s) in the current window."
        await deps.audit.write_or_log(
            AuditRecord(
                event="result",
                tool="whoami",
                token=caller.fingerprint,
                token_sha256=caller.key,
                request_id=deps.new_request_id(),
                decision="allowed",
                outcome="success",
            ),
            durable=False,
        )
        return WhoamiResult(
            server_version=__version__,
            infrabox_url=deps.infrabox_url,
            token_fingerprint=caller.fingerprint,
            token_sha256=caller.key,
            trigger_permission=TriggerPermissionOut(
                declared=permission.declared, refused_by_infrabox_at=refused_at, allowed=allowed
            ),
            trigger_budget=None if budget is None else BudgetOut.of(budget),
            read_budgets={
                bucket: BudgetOut.of(state)
                for bucket, state in (await deps.read_budgets.states(caller.key)).items()
            },
            hint=hint,
        )
