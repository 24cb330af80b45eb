"""Builds the MCP server: wires configuration, policy, the InfraBox client, the audit log and the tools."""

from __future__ import annotations

import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from mcp.server import MCPServer
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.request_state import RequestStateSecurity
from pydantic import AnyHttpUrl

from mcp_ci_tools import __version__
from mcp_ci_tools.audit import (
    STDOUT,
    AuditLog,
    AuditSink,
    JsonlFileSink,
    RecordObserver,
    StdoutSink,
    UnsafeAuditFile,
)
from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.config import Settings
from mcp_ci_tools.domain.timestamps import Clock, Sleep
from mcp_ci_tools.domain.tokens import fingerprint, is_token, token_hash
from mcp_ci_tools.guards import Dedupe, Lineage, ProjectScope, RestartGuard
from mcp_ci_tools.inflight import InFlight, OperationTimer
from mcp_ci_tools.observe import InfraBoxRequests, Metrics, current_trace_id
from mcp_ci_tools.policy import (
    WINDOW_SECONDS,
    Budget,
    ReadBudgets,
    RejectedTokens,
    StateContinuity,
    TriggerPermission,
)
from mcp_ci_tools.publish import CompactToolList
from mcp_ci_tools.state import State, open_state
from mcp_ci_tools.tools import ArgumentCheck, Caller, Deps, register_all
from mcp_ci_tools.tools._tasks import TaskWaits

if TYPE_CHECKING:
    import httpx
    from limits.aio.storage import Storage

__all__ = [
    "INSTRUCTIONS",
    "InfraBoxTokenVerifier",
    "audit_log_usable",
    "audit_sink_for",
    "build_deps",
    "build_server",
    "metrics_of",
    "rejected_tokens",
    "repair_audit_log",
]

log = logging.getLogger("mcp_ci_tools")

INSTRUCTIONS = """\
Tools for the InfraBox CI. Read before you act: diagnose_build explains a red build in one call. Then choose
the smallest action: rerun_job (one job), restart_job (a job and its downstream jobs), restart_build (a new
build). Trigger tools (restart_*, rerun_job, abort_*) share a small budget (InfraBox allows 5 a minute and
counts refused calls), are audited, and are never retried automatically: if one reports an unknown outcome,
check the state before trying again. whoami shows whether triggering is allowed and the budgets left."""


def audit_sink_for(path: Path) -> AuditSink:
    """The sink `MCP_CI_AUDIT_LOG` names: a JSONL file, or standard output for `-`."""
    return StdoutSink() if path == STDOUT else JsonlFileSink(path)


def audit_log_usable(path: Path) -> bool:
    """Whether the audit file can be written now (checked and a torn tail repaired, as a write would): for
    `/readyz`, so a replica whose triggers would refuse is taken out of rotation. Blocking file I/O."""
    if path == STDOUT:
        return True
    try:
        JsonlFileSink(path).repair()
    except OSError:
        return False
    return True


def repair_audit_log(path: Path) -> bool:
    """At start-up: check the audit file and repair a torn tail now, not at the first trigger call.

    Returns whether the file can be used. If not, one warning line names `MCP_CI_AUDIT_LOG` and the reason;
    the server still starts (reads work), and trigger tools refuse, as they do whenever the audit fails.
    """
    if path == STDOUT:
        return True
    try:
        quarantined = JsonlFileSink(path).repair()
    except OSError as error:
        reason = str(error) if isinstance(error, UnsafeAuditFile) else error.strerror or type(error).__name__
        log.warning(
            "audit log unusable (MCP_CI_AUDIT_LOG=%s): %s; trigger tools refuse until it is fixed",
            path,
            " ".join(reason.split()),
        )
        return False
    if quarantined:
        log.warning(
            "audit log %s ended in a torn line: %d byte(s) kept in %s.torn and recorded as a torn record",
            path,
            quarantined,
            path,
        )
    return True


def _new_request_id() -> str:
    return str(uuid.uuid4())


class InfraBoxTokenVerifier:
    """Accepts a bearer credential only if it has the form of an InfraBox MCP token.

    InfraBox has no endpoint to check a token, so the form is all that can be checked here; InfraBox itself
    answers 401 for a token it does not know. The principal is the token's hash, so the SDK binds every
    session to the token that opened it.
    """

    async def verify_token(self, token: str) -> AccessToken | None:
        if not is_token(token):
            return None
        return AccessToken(
            token=token,
            client_id=fingerprint(token),
            scopes=[],
            subject=token_hash(token),
        )


def _http_caller(client: InfraBoxClient) -> Callable[[], Caller]:
    def caller() -> Caller:
        access = get_access_token()
        if access is None:  # the HTTP apps require authentication before any MCP handling
            raise RuntimeError("no authenticated caller for this request")
        return Caller.of(access.token, client.with_token(access.token), brings_own_token=True)

    return caller


def _fixed_caller(client: InfraBoxClient, token: str) -> Callable[[], Caller]:
    fixed = Caller.of(token, client.with_token(token))
    return lambda: fixed


def build_deps(
    settings: Settings,
    *,
    client: InfraBoxClient,
    state: State,
    audit_sink: AuditSink,
    clock: Clock = time.time,
    sleep: Sleep = anyio.sleep,
    new_request_id: Callable[[], str] = _new_request_id,
    rejected: RejectedTokens | None = None,
    audit_observers: Sequence[RecordObserver] = (),
) -> Deps:
    """Everything the tools need, built from `settings` around the given client, state store and sink.

    Every audit record carries the current trace id, and `audit_observers` (metrics) see each one."""
    shared_storage = lambda: state.storage  # noqa: E731 - read when the first budget check runs
    timeout = settings.state_timeout * 4 if state.shared else None

    def read_budgets(storage: Callable[[], Storage] | None, guarded: float | None) -> dict[str, Budget]:
        sizes = {
            "list_projects": settings.read_per_minute,
            "list_builds": settings.read_per_minute,
            "list_jobs": settings.read_per_minute,
            "get_job_log": settings.log_per_minute,
        }
        return {
            name: Budget(name, size, storage=storage, clock=clock, timeout=guarded)
            for name, size in sizes.items()
        }

    token = settings.token
    return Deps(
        caller=_http_caller(client) if token is None else _fixed_caller(client, token.get_secret_value()),
        toolsets=frozenset(settings.toolsets),
        permission=TriggerPermission(
            settings.allow_trigger, state=state, ttl_s=settings.permission_ttl, clock=clock
        ),
        trigger_budget=Budget(
            "trigger", settings.trigger_per_minute, storage=shared_storage, clock=clock, timeout=timeout
        ),
        continuity=StateContinuity(state, window_s=WINDOW_SECONDS),
        read_budgets=ReadBudgets(
            read_budgets(shared_storage, timeout),
            # Triggers never fall back to a per-process budget; reads may, since they change nothing.
            fallback=read_budgets(None, None) if state.shared else None,
        ),
        audit=AuditLog(audit_sink, clock=clock, trace_id=current_trace_id, observers=audit_observers),
        infrabox_url=settings.infrabox_url,
        clock=clock,
        sleep=sleep,
        new_request_id=new_request_id,
        scope=ProjectScope(settings.projects),
        lineage=Lineage(state, ttl_s=settings.restart_window + 60),
        restart_guard=RestartGuard(
            Budget(
                "restarts",
                settings.max_restarts_per_build,
                window_s=settings.restart_window,
                storage=shared_storage,
                clock=clock,
                timeout=timeout,
            )
            if settings.max_restarts_per_build > 0
            else None
        ),
        dedupe=Dedupe(state, window_s=settings.dedupe_seconds, in_flight_ttl_s=600, clock=clock),
        confirm_tools=frozenset(settings.confirm),
        max_wait_s=settings.max_wait,
        rejected=rejected or RejectedTokens(state, clock=clock),
    )


def _shared_lifespan(
    client: InfraBoxClient, state: State
) -> Callable[[MCPServer], AbstractAsyncContextManager[None]]:
    """Entered once per stdio/in-memory connection and once per SSE session (Streamable HTTP: once): the
    state store starts with the first; the connection pool opens whenever sessions begin again, and it and
    the store close when the last one ends."""
    sessions = 0
    started = False

    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[None]:
        nonlocal sessions, started
        if not started:
            started = True
            await state.start()
        if sessions == 0:
            await client.open()
        sessions += 1
        try:
            yield
        finally:
            sessions -= 1
            if sessions == 0:
                await client.aclose()
                await state.aclose()

    return lifespan


def _request_state_security(settings: Settings) -> RequestStateSecurity | None:
    """Sealing under the configured key (shared by workers and replicas), else the SDK's per-process key."""
    if settings.request_state_key is None:
        return None
    return RequestStateSecurity(keys=[settings.request_state_key.get_secret_value()])


def build_server(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Clock = time.time,
    sleep: Sleep = anyio.sleep,
    audit_sink: AuditSink | None = None,
    state: State | None = None,
    new_request_id: Callable[[], str] = _new_request_id,
    inflight: InFlight | None = None,
    metrics: Metrics | None = None,
) -> MCPServer:
    """An `MCPServer` with every tool registered; each dependency can be replaced (tests, other transports).

    With a token in `settings` (stdio) every call uses it. Without one (HTTP transports) every request must
    authenticate with the caller's own token, and that token is used for that caller's calls only.
    `metrics` (by default a new, empty registry) is fed by every layer; `metrics_of(server)` returns it.
    A `state` given here was opened by the caller, who passes `metrics.state_store_error` to it.
    """
    metrics = metrics or Metrics()
    client = InfraBoxClient(
        settings.infrabox_url,
        timeout=settings.timeout,
        transport=transport,
        sleep=sleep,
        clock=clock,
        observer=InfraBoxRequests(metrics),
    )
    if state is None:
        state = open_state(
            settings.state_url,
            prefix=settings.state_prefix,
            timeout=settings.state_timeout,
            clock=clock,
            on_error=metrics.state_store_error,
        )
    deps = build_deps(
        settings,
        client=client,
        state=state,
        audit_sink=metrics.counted(audit_sink or audit_sink_for(settings.audit_log)),
        clock=clock,
        sleep=sleep,
        new_request_id=new_request_id,
        audit_observers=[metrics.observe_record],
    )
    inflight = inflight or InFlight()
    inflight.report_to(metrics.inflight_changed)
    over_http = settings.token is None
    arguments = ArgumentCheck(deps)
    tasks = TaskWaits(deps, state, ttl_s=settings.task_ttl)
    server = MCPServer(
        "mcp-ci-tools",
        title="InfraBox CI tools",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=_shared_lifespan(client, state),
        request_state_security=_request_state_security(settings),
        middleware=[OperationTimer(metrics.observe_operation), inflight, CompactToolList()],
        extensions=[arguments, tasks],
        token_verifier=InfraBoxTokenVerifier() if over_http else None,
        # InfraBox issues the tokens; there is no OAuth flow and no audience to check.
        auth=AuthSettings(
            issuer_url=AnyHttpUrl(settings.infrabox_url),
            resource_server_url=None,
            validate_token_resource=False,
        )
        if over_http
        else None,
    )
    for name, fn in register_all(server, deps).items():
        arguments.learn(name, fn)
        tasks.learn(name, fn)
    _REJECTED[server] = deps.rejected
    _METRICS[server] = metrics
    return server


_REJECTED: weakref.WeakKeyDictionary[MCPServer, RejectedTokens] = weakref.WeakKeyDictionary()
_METRICS: weakref.WeakKeyDictionary[MCPServer, Metrics] = weakref.WeakKeyDictionary()


def metrics_of(server: MCPServer) -> Metrics:
    """The metrics `build_server` feeds for this server: `/metrics` serves them."""
    return _METRICS[server]


def rejected_tokens(server: MCPServer) -> RejectedTokens:
    """The record of tokens InfraBox rejected that `build_server` gave this server's tools: the HTTP layer
    subscribes to it to close their sessions and refuse their requests."""
    return _REJECTED[server]
