"""What every tool needs, passed in once by `server.build_server` (tools never build their own clients)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mcp_ci_tools.audit import AuditLog
from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.domain.timestamps import Clock, Sleep
from mcp_ci_tools.domain.tokens import fingerprint, token_hash
from mcp_ci_tools.guards import Dedupe, Lineage, ProjectScope, RestartGuard
from mcp_ci_tools.policy import Budget, ReadBudgets, RejectedTokens, StateContinuity, TriggerPermission

__all__ = ["Caller", "Deps"]


@dataclass(frozen=True)
class Caller:
    """Who is calling, and a client that sends their token and no other.

    `key` (the token's full SHA-256 in hex) keys everything kept per caller: budgets, guards, the learned
    permission, state-store records, sessions. `fingerprint` (its first 12 hex digits) is only for people to
    read in errors, logs and the audit: 48 bits can be collided on purpose, 256 cannot.
    """

    fingerprint: str
    key: str
    client: InfraBoxClient
    brings_own_token: bool = (
        False  # an HTTP caller: their own header, not the operator's setting, is at fault
    )

    @classmethod
    def of(cls, token: str, client: InfraBoxClient, *, brings_own_token: bool = False) -> Caller:
        """The caller of `token`; `client` must already send `token` (`InfraBoxClient.with_token`)."""
        return cls(
            fingerprint=fingerprint(token),
            key=token_hash(token),
            client=client,
            brings_own_token=brings_own_token,
        )


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
    rejected: RejectedTokens  # tokens InfraBox answered 401 for: their sessions are closed (HTTP)
