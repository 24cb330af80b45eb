"""Observability: Prometheus metrics (`metrics`), OpenTelemetry traces (`tracing`), their fixed label sets
(`labels`). Observe knows neither MCP nor the InfraBox client: the entry wires it to both through their
seams (the audit log's observers and trace-id source, the client's `RequestObserver`, the state store's
`on_error`, the MCP middleware in `inflight`)."""

from mcp_ci_tools.observe.metrics import (
    CONTENT_TYPE,
    CountedAuditSink,
    Metrics,
    MetricsServer,
    bearer_matches,
    serve_metrics,
)
from mcp_ci_tools.observe.tracing import InfraBoxRequests, Tracing, current_trace_id, start_tracing

__all__ = [
    "CONTENT_TYPE",
    "CountedAuditSink",
    "InfraBoxRequests",
    "Metrics",
    "MetricsServer",
    "Tracing",
    "bearer_matches",
    "current_trace_id",
    "serve_metrics",
    "start_tracing",
]
