"""What every tool needs, passed in once by `server.build_server` (tools never build their own clients)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

import anyio

from mcp_ci_tools.audit import AuditLog
from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.domain.timestamps import Clock, Sleep
from mcp_ci_tools.guards import Dedupe, Lineage, ProjectScope, RestartGuard
from mcp_ci_tools.policy import Budget, ReadBudgets, TriggerPermission
from mcp_ci_tools.state import MemoryState

__all__ = ["Caller", "Deps", "InFlight", "counted_in_flight"]


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
    scope: ProjectScope = field(default_factory=ProjectScope)
    lineage: Lineage = field(default_factory=lambda: Lineage(MemoryState(), ttl_s=3660))
    restart_guard: RestartGuard = field(default_factory=lambda: RestartGuard(None))
    dedupe: Dedupe = field(default_factory=lambda: Dedupe(MemoryState(), window_s=0, in_flight_ttl_s=0))
    confirm_tools: frozenset[str] = frozenset()
    sleep: Sleep = anyio.sleep


P = ParamSpec("P")
R = TypeVar("R")


def counted_in_flight(
    pipeline: Callable[Concatenate[Deps, P], Awaitable[R]],
) -> Callable[Concatenate[Deps, P], Awaitable[R]]:
    """Count the calls of a tool pipeline in `deps.inflight` while they run."""

    @functools.wraps(pipeline)
    async def counted(deps: Deps, *args: P.args, **kwargs: P.kwargs) -> R:
        with deps.inflight:
            return await pipeline(deps, *args, **kwargs)

    return counted
