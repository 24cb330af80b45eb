"""What every tool needs, passed in once by `server.build_server` (tools never build their own clients)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcp_ci_tools.audit import AuditLog
from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.domain.timestamps import Clock, Sleep
from mcp_ci_tools.guards import Dedupe, Lineage, ProjectScope, RestartGuard
from mcp_ci_tools.policy import Budget, ReadBudgets, StateContinuity, TriggerPermission

__all__ = ["Caller", "Deps"]


@dataclass(frozen=True)
class Caller:
    """Who is calling: their token's fingerprint, and a client that sends their token and no other."""

    fingerprint: str
    client: InfraBoxClient


@dataclass(frozen=True)
class Deps:
    caller: Callable[[], Caller]  # the caller of the current request (stdio: the configured token)
    toolsets: frozenset[str]
    permission: TriggerPermission
    trigger_budget: Budget
    continuity: StateContinuity
    read_budgets: ReadBudgets
    audit: AuditLog
    infrabox_url: str
    clock: Clock
    sleep: Sleep
    new_request_id: Callable[[], str]
    scope: ProjectScope
    lineage: Lineage
    restart_guard: RestartGuard
    dedupe: Dedupe
    confirm_tools: frozenset[str]
    max_wait_s: int  # wait_for_build's longest wait (MCP_CI_MAX_WAIT)
