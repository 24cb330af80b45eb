"""What every tool needs, passed in once by `server.build_server` (tools never build their own clients)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcp_ci_tools.audit import AuditLog
from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.policy import Budget, Clock, ReadBudgets, TriggerPermission

__all__ = ["Deps"]


@dataclass(frozen=True)
class Deps:
    client: InfraBoxClient
    permission: TriggerPermission
    trigger_budget: Budget
    read_budgets: ReadBudgets
    audit: AuditLog
    infrabox_url: str
    token_fingerprint: str
    clock: Clock
    new_request_id: Callable[[], str]
