"""What every tool needs, passed in once by `server.build_server` (tools never build their own clients)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mcp_ci_tools.audit import AuditLog
from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.policy import Budget, Clock, ReadBudgets, TriggerPermission

__all__ = ["Caller", "Deps", "InFlight"]


class InFlight:
    """Counts tool calls in progress, so a graceful shutdown can wait for them."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> None:
        self.count += 1

    def __exit__(self, *exc_info: object) -> None:
        self.count -= 1


@dataclass(frozen=True)
class Caller:
    """Who is calling: their token's fingerprint, and a client that sends their token and no other."""

    fingerprint: str
    client: InfraBoxClient


@dataclass(frozen=True)
class Deps:
    caller: Callable[[], Caller]  # the caller of the current request (stdio: the configured token)
    permission: TriggerPermission
    trigger_budget: Budget
    read_budgets: ReadBudgets
    audit: AuditLog
    infrabox_url: str
    clock: Clock
    new_request_id: Callable[[], str]
    inflight: InFlight = field(default_factory=InFlight)
