"""Builds the MCP server: wires configuration, policy, the InfraBox client, the audit log and the tools."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import httpx
from limits.aio.storage import Storage
from mcp.server import MCPServer

from mcp_ci_tools import __version__
from mcp_ci_tools.audit import AuditLog, AuditSink, JsonlFileSink
from mcp_ci_tools.client import InfraBoxClient, Sleep
from mcp_ci_tools.config import Settings
from mcp_ci_tools.policy import Budget, Clock, ReadBudgets, TriggerPermission
from mcp_ci_tools.tools import Deps, register_all

__all__ = ["build_server"]

INSTRUCTIONS = """\
Tools for the InfraBox CI. Read before you act: find the build and its failing jobs first, then choose the
smallest action: rerun_job (one job), restart_job (a job and its downstream jobs), restart_build (a new build).
Trigger tools (restart_*, rerun_job, abort_*) share a small budget (InfraBox allows 5 a minute and counts
refused calls), are audited, and are never retried automatically: if one reports an unknown outcome, check the
state before trying again. whoami shows whether triggering is allowed and how much budget is left."""


def _new_request_id() -> str:
    return str(uuid.uuid4())


def build_server(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.time,
    sleep: Sleep = anyio.sleep,
    audit_sink: AuditSink | None = None,
    budget_storage: Storage | None = None,
    new_request_id: Callable[[], str] = _new_request_id,
) -> MCPServer:
    """An `MCPServer` with every tool registered; each dependency can be replaced (tests, other transports)."""
    fingerprint = settings.token_fingerprint
    client = InfraBoxClient(
        settings.infrabox_url,
        settings.token.get_secret_value(),
        timeout=settings.timeout,
        transport=transport,
        sleep=sleep,
        clock=clock,
    )
    deps = Deps(
        client=client,
        permission=TriggerPermission(settings.allow_trigger, clock=clock),
        trigger_budget=Budget("trigger", settings.trigger_per_minute, storage=budget_storage, clock=clock),
        read_budgets=ReadBudgets(
            {
                bucket: Budget(bucket, per_minute, storage=budget_storage, clock=clock)
                for bucket, per_minute in (
                    ("list_projects", settings.read_per_minute),
                    ("list_builds", settings.read_per_minute),
                    ("list_jobs", settings.read_per_minute),
                    ("get_job_log", settings.log_per_minute),
                )
            }
        ),
        audit=AuditLog(
            audit_sink or JsonlFileSink(settings.audit_log), token_fingerprint=fingerprint, clock=clock
        ),
        infrabox_url=settings.infrabox_url,
        token_fingerprint=fingerprint,
        clock=clock,
        new_request_id=new_request_id,
    )

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await client.aclose()

    server = MCPServer(
        "mcp-ci-tools",
        title="InfraBox CI tools",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
    )
    register_all(server, deps)
    return server
