"""Prometheus metrics: one registry per server, every label from a fixed set (`labels.py`).

Tool calls are counted from the audit records (one `result` record per call), MCP operations by a server
middleware, InfraBox requests through the client's `RequestObserver` seam (`requests.py`). Nothing here
sees a token: audit records carry fingerprints, and those are not used as labels either.
"""

from __future__ import annotations

import hmac
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.multiprocess import MultiProcessCollector

from mcp_ci_tools import __version__
from mcp_ci_tools.audit import AuditRecord, AuditSink
from mcp_ci_tools.observe.labels import (
    AUDITED,
    BUDGETS,
    DECISIONS,
    ENDPOINTS,
    ERROR_TYPES,
    HTTP_METHODS,
    MCP_METHODS,
    OUTCOMES,
    REASONS,
    STATE_OPERATIONS,
    STATUS_CLASSES,
    TOOLS,
    TRIGGER_TOOLS,
    fixed,
)

__all__ = [
    "CONTENT_TYPE",
    "INFRABOX_BUCKETS",
    "OPERATION_BUCKETS",
    "CountedAuditSink",
    "Metrics",
    "MetricsServer",
    "bearer_matches",
    "serve_metrics",
]

log = logging.getLogger("mcp_ci_tools.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
# The buckets the MCP semantic conventions recommend for mcp.server.operation.duration.
OPERATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
# InfraBox answers within the client's timeout (30 s by default, 600 s at most).
INFRABOX_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 600)


class Metrics:
    """The metrics of one server instance, in their own `CollectorRegistry` (never the global one).

    With `shared_dir` (a worker of several serving one port, started with `PROMETHEUS_MULTIPROC_DIR` set
    to that directory) every value also lives in prometheus_client's per-process files there, and `render`
    adds up the files of all the workers: a scrape that reaches any worker shows the whole replica. Gauges
    are then live sums, and the build info (which files cannot hold) comes from this process alone.
    """

    def __init__(self, *, version: str = __version__, shared_dir: str | None = None) -> None:
        self.registry = CollectorRegistry()
        self._shared_dir = shared_dir
        self._local = CollectorRegistry() if shared_dir else self.registry  # what the files cannot hold
        registry = self.registry
        self.tool_calls = Counter(
            "mcp_ci_tool_calls",
            "Tool calls by tool, policy decision, outcome and audit reason (one per audited call).",
            ["tool", "decision", "outcome", "reason"],
            registry=registry,
        )
        self.operation_duration = Histogram(
            "mcp_server_operation_duration_seconds",
            "Duration of each MCP request or notification handled (semconv mcp.server.operation.duration).",
            ["mcp_method_name", "gen_ai_tool_name", "error_type"],
            buckets=OPERATION_BUCKETS,
            registry=registry,
        )
        self.infrabox_duration = Histogram(
            "mcp_ci_infrabox_request_duration_seconds",
            "Duration of each attempt of a request to InfraBox, by endpoint template and status class.",
            ["endpoint", "method", "status_class"],
            buckets=INFRABOX_BUCKETS,
            registry=registry,
        )
        self.budget_refusals = Counter(
            "mcp_ci_trigger_budget_refusals",
            "Trigger calls refused by a budget: the per-token trigger budget or the restart-loop guard.",
            ["budget"],
            registry=registry,
        )
        self.inflight = Gauge(
            "mcp_ci_inflight_calls",
            "tools/call requests being handled now.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.open_sessions = Gauge(
            "mcp_ci_open_sessions",
            "Open Streamable HTTP sessions and SSE streams on this replica (0 over stdio).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.state_store_errors = Counter(
            "mcp_ci_state_store_errors",
            "Failed Redis operations of the shared state store, by operation.",
            ["operation"],
            registry=registry,
        )
        self.audit_write_failures = Counter(
            "mcp_ci_audit_write_failures", "Audit records the sink could not write.", registry=registry
        )
        Info("mcp_ci_build", "The running mcp-ci-tools version.", registry=self._local).info(
            {"version": version}
        )
        for budget in sorted(BUDGETS):  # present at 0 from the start, so rate() and alerts see them
            self.budget_refusals.labels(budget=budget)
        for operation in sorted(STATE_OPERATIONS):
            self.state_store_errors.labels(operation=operation)

    # Observers -------------------------------------------------------------------------------------

    def observe_record(self, record: AuditRecord) -> None:
        """An `AuditLog` observer: counts each call once, from its `result` record."""
        if record.event != "result":
            return
        task = record.detail.get("task")
        if task is not None and task != "task_created":  # a task's later records are not calls
            return
        self.tool_calls.labels(
            tool=fixed(record.tool, AUDITED),
            decision=fixed(record.decision, DECISIONS),
            outcome=fixed(record.outcome, OUTCOMES),
            reason=fixed(record.reason, REASONS),
        ).inc()
        if record.decision == "denied" and record.tool in TRIGGER_TOOLS:
            budget = {"rate_limited": "trigger", "restart_loop": "restarts"}.get(record.reason or "")
            if budget is not None:
                self.budget_refusals.labels(budget=budget).inc()

    def observe_operation(self, method: str, tool: str | None, error_type: str, seconds: float) -> None:
        """One MCP request or notification handled (`tool` for tools/call)."""
        self.operation_duration.labels(
            mcp_method_name=fixed(method, MCP_METHODS),
            gen_ai_tool_name="" if tool is None else fixed(tool, TOOLS),
            error_type=fixed(error_type, ERROR_TYPES),
        ).observe(seconds)

    def observe_infrabox(self, template: str, method: str, status: int | None, seconds: float) -> None:
        """One attempt of a request to InfraBox; `status` None when no status line came."""
        status_class = "error" if status is None else f"{status // 100}xx"
        self.infrabox_duration.labels(
            endpoint=fixed(template, ENDPOINTS),
            method=fixed(method, HTTP_METHODS),
            status_class=fixed(status_class, STATUS_CLASSES),
        ).observe(seconds)

    def state_store_error(self, operation: str) -> None:
        """A `state.open_state(on_error=...)` observer."""
        self.state_store_errors.labels(operation=fixed(operation, STATE_OPERATIONS)).inc()

    def counted(self, sink: AuditSink) -> CountedAuditSink:
        """`sink`, with every failed write counted."""
        return CountedAuditSink(sink, self.audit_write_failures)

    def inflight_changed(self, delta: int) -> None:
        """An `InFlight` listener: a call began (+1) or ended (-1)."""
        self.inflight.inc(delta)

    def track_sessions(self, count: Callable[[], int]) -> None:
        # Workers serve /mcp stateless and refuse SSE: they have no sessions, and the files' 0 is right.
        if self._shared_dir is None:
            self.open_sessions.set_function(count)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric (of every worker, with `shared_dir`)."""
        if self._shared_dir is None:
            return generate_latest(self.registry)
        replica = CollectorRegistry()
        MultiProcessCollector(replica, path=self._shared_dir)  # type: ignore[no-untyped-call]
        return generate_latest(replica) + generate_latest(self._local)


class CountedAuditSink:
    """An `AuditSink` that counts the writes its inner sink refused (then raises as it did)."""

    def __init__(self, sink: AuditSink, failures: Counter) -> None:
        self._sink = sink
        self._failures = failures

    def write(self, line: str, *, durable: bool) -> None:
        try:
            self._sink.write(line, durable=durable)
        except OSError:
            self._failures.inc()
            raise


def bearer_matches(authorization: str | None, token: str | None) -> bool:
    """Whether an `Authorization` header carries `Bearer <token>` (compared in constant time); any header
    passes when no token is configured."""
    if token is None:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None  # wsgiref would log every request to stderr


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class MetricsServer:
    """/metrics on its own port in a background thread (stdio mode); `close()` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: Metrics, host: str, port: int, *, token: str | None = None) -> MetricsServer:
    """Serve `metrics` at http://host:port/metrics (any other path: 404), requiring `token` if given.

    Raises `OSError` if the address cannot be bound. Writes nothing to stdout, logs no request.
    """
    exposition = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: metrics are at /metrics\n"]
        if not bearer_matches(environ.get("HTTP_AUTHORIZATION"), token):
            start_response(
                "401 Unauthorized",
                [("Content-Type", "text/plain"), ("WWW-Authenticate", 'Bearer realm="metrics"')],
            )
            return [b"metrics require 'Authorization: Bearer <MCP_CI_METRICS_TOKEN>'\n"]
        result: Iterable[bytes] = exposition(environ, start_response)
        return result

    server_class: type[_ThreadingServer] = _ThreadingServer
    if ":" in host:

        class _V6(_ThreadingServer):
            address_family = socket.AF_INET6

        server_class = _V6
    server = make_server(host.strip("[]"), port, app, server_class=server_class, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    return MetricsServer(server, thread)
