"""OpenTelemetry traces: start-up from the standard `OTEL_*` variables, the current trace id for the audit,
and a CLIENT span (plus W3C `traceparent`) for every attempt of every request to InfraBox.

Only the OpenTelemetry API is imported at module level (the `mcp` SDK depends on it). The SDK and the OTLP
exporter come with the optional extra `mcp-ci-tools[otel]` and are imported by `start_tracing` only.
Without a configured SDK the API's tracer is a no-op that still carries the context a client sent in
`_meta.traceparent`: the audit gets that trace id and InfraBox gets that `traceparent`.
"""

from __future__ import annotations

import importlib
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from mcp_ci_tools import __version__
from mcp_ci_tools.observe.metrics import Metrics

__all__ = ["DEFAULT_SERVICE_NAME", "InfraBoxRequests", "Tracing", "current_trace_id", "start_tracing"]

log = logging.getLogger("mcp_ci_tools.tracing")

DEFAULT_SERVICE_NAME = "mcp-ci-tools"
_TRACER = trace.get_tracer("mcp_ci_tools", __version__)


def current_trace_id() -> str | None:
    """The 32-hex trace id of the current span (an `AuditLog` trace-id source), None outside a trace."""
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


class _Target(Protocol):
    """What `InfraBoxRequests` reads of the client's `RequestTarget` (Observe does not import the client)."""

    @property
    def method(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def ids(self) -> Mapping[str, str]: ...
    @property
    def server_address(self) -> str: ...
    @property
    def server_port(self) -> int | None: ...


class _Attempt(Protocol):
    """What it reads and writes of the client's `Attempt`."""

    @property
    def target(self) -> _Target: ...
    @property
    def number(self) -> int: ...
    @property
    def headers(self) -> dict[str, str]: ...
    @property
    def status(self) -> int | None: ...


class InfraBoxRequests:
    """The client's `RequestObserver`: per attempt, a CLIENT span named by method and path template (ids
    are attributes, never in the name), the W3C trace headers sent with it, and the duration metric."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self._metrics = metrics

    @contextmanager
    def attempt(self, attempt: _Attempt) -> Iterator[None]:
        target = attempt.target
        attributes: dict[str, Any] = {
            "http.request.method": target.method,
            "url.template": target.template,
            "server.address": target.server_address,
        }
        if target.server_port is not None:
            attributes["server.port"] = target.server_port
        for name, value in target.ids.items():  # project_id -> infrabox.project.id
            attributes[f"infrabox.{name.removesuffix('_id')}.id"] = value
        if attempt.number > 1:
            attributes["http.request.resend_count"] = attempt.number - 1
        started = time.perf_counter()
        with _TRACER.start_as_current_span(
            f"{target.method} {target.template}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,  # exception texts can hold URLs; the type is enough
            set_status_on_exception=False,
        ) as span:
            propagate.inject(attempt.headers)
            try:
                yield
            except BaseException as error:
                if attempt.status is None or attempt.status < 400:
                    kind = type(error).__name__.lstrip("_") if isinstance(error, Exception) else "cancelled"
                    span.set_attribute("error.type", kind)
                    span.set_status(StatusCode.ERROR)
                raise
            finally:
                status = attempt.status
                if status is not None:
                    span.set_attribute("http.response.status_code", status)
                    if status >= 400:
                        span.set_attribute("error.type", str(status))
                        span.set_status(StatusCode.ERROR)
                if self._metrics is not None:
                    self._metrics.observe_infrabox(
                        target.template, target.method, status, time.perf_counter() - started
                    )


class Tracing(Protocol):
    def shutdown(self) -> None:
        """Flush the spans not yet exported, then stop exporting."""


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def start_tracing(environ: Mapping[str, str]) -> Tracing | None:
    """Install an OpenTelemetry SDK tracer provider as the `OTEL_*` variables in `environ` ask, or nothing.

    Tracing is on when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`), or when an OTLP
    endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; off with
    `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`. Without the `otel` extra: one warning, no
    tracing. `console` writes to stderr (stdout carries MCP over stdio).
    """
    if _is_true(environ.get("OTEL_SDK_DISABLED")):
        return None
    names = [
        name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()
    ]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not names:
        if not endpoint:
            return None
        names = ["otlp"]
    names = [name for name in names if name != "none"]
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        log.warning(
            "OTEL_* variables ask for traces, but the OpenTelemetry SDK is not installed "
            "(pip install 'mcp-ci-tools[otel]'): no traces are exported"
        )
        return None
    attributes: dict[str, Any] = {SERVICE_VERSION: __version__}
    if not environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME  # else Resource.create takes OTEL_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))
    exporters: list[SpanExporter] = []
    for name in names:
        if name == "console":
            exporters.append(ConsoleSpanExporter(out=sys.stderr))
        elif name == "otlp":
            exporter = _otlp_exporter(environ)
            if exporter is not None:
                exporters.append(exporter)
        else:
            log.warning(
                "OTEL_TRACES_EXPORTER=%s: unknown exporter, ignored (use otlp, console or none)", name[:40]
            )
    if not exporters:
        return None
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    log.info("tracing: exporting spans via %s", ", ".join(names))
    return provider


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    module = {
        "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    }.get(protocol)
    if module is None:
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL=%s is not supported (use http/protobuf or grpc)", protocol[:40]
        )
        return None
    try:
        exporter_class = importlib.import_module(module).OTLPSpanExporter
    except ImportError:
        package = "opentelemetry-exporter-otlp-proto-" + ("grpc" if protocol == "grpc" else "http")
        log.warning(
            "OTLP over %s needs %s, which is not installed: no traces are exported", protocol, package
        )
        return None
    return exporter_class()
