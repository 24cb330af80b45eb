"""Traces as a collector receives them: one trace from the client's `_meta.traceparent` through the SDK's
server span and our InfraBox CLIENT spans, the same context sent to InfraBox, and its id in the audit log.

The OpenTelemetry SDK records into memory here, only while a test asks for it: the global tracer provider
can be set once per process, so it is a switch that is a no-op (as without the SDK) for every other test.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from opentelemetry import context, propagate, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracer, SpanKind

from mcp_ci_tools.observe import start_tracing
from mcp_ci_tools.observe.tracing import current_trace_id
from tests.conftest import BUILD_ID, PROJECT_ID, TOKEN

pytestmark = pytest.mark.anyio

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
BUILD = {
    "id": BUILD_ID,
    "build_number": 7,
    "restart_counter": 1,
    "state": "failure",
    "project_id": PROJECT_ID,
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _SwitchedTracer(trace.Tracer):
    def __init__(self, switch: _Switch, name: str, version: str | None) -> None:
        self._switch, self._name, self._version = switch, name, version

    def _current(self) -> trace.Tracer:
        return self._switch.sdk.get_tracer(self._name, self._version) if self._switch.on else NoOpTracer()

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._current().start_span(*args, **kwargs)

    @contextmanager
    def start_as_current_span(self, *args: Any, **kwargs: Any) -> Iterator[trace.Span]:  # type: ignore[override]
        with self._current().start_as_current_span(*args, **kwargs) as span:
            yield span


class _Switch(trace.TracerProvider):
    def __init__(self) -> None:
        self.sdk = TracerProvider()
        self.exporter = InMemorySpanExporter()
        self.sdk.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.on = False

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Any = None,
    ) -> trace.Tracer:
        return _SwitchedTracer(self, instrumenting_module_name, instrumenting_library_version)


_SWITCH = _Switch()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans finished during the test, as the SDK exports them."""
    if trace.get_tracer_provider() is not _SWITCH:
        trace.set_tracer_provider(_SWITCH)
    assert trace.get_tracer_provider() is _SWITCH, "another tracer provider was installed first"
    _SWITCH.exporter.clear()
    _SWITCH.on = True
    try:
        yield _SWITCH.exporter
    finally:
        _SWITCH.on = False
        _SWITCH.exporter.clear()


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def hex_span(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def recording(routes: list[tuple[Any, list[httpx.Response]]]) -> list[httpx.Request]:
    sent: list[httpx.Request] = []
    for route, answers in routes:
        queue = list(answers)

        def answer(request: httpx.Request, queue: list[httpx.Response] = queue) -> httpx.Response:
            sent.append(request)
            return queue.pop(0) if len(queue) > 1 else queue[0]

        route.mock(side_effect=answer)
    return sent


async def call_in_trace(client: Any, tool: str, arguments: dict[str, Any]) -> Any:
    """Call `tool` from inside the trace of TRACEPARENT, sent as `_meta.traceparent` (the SDK's client, when
    it traces, sends the span it opens in that trace instead)."""
    token = context.attach(propagate.extract({"traceparent": TRACEPARENT}))
    try:
        return await client.call_tool(tool, arguments, meta={"traceparent": TRACEPARENT})
    finally:
        context.detach(token)


def assert_clean(finished: tuple[ReadableSpan, ...]) -> None:
    secrets = (TOKEN, hashlib.sha256(TOKEN.encode()).hexdigest())
    for span in finished:
        assert not UUID.search(span.name), span.name
        for value in (span.attributes or {}).values():
            assert not any(secret in str(value) for secret in secrets), (span.name, value)


async def test_one_trace_from_the_client_through_our_infrabox_span_to_infrabox_and_the_audit(
    make_server, connect, infrabox, audit, spans
) -> None:
    sent = recording(
        [
            (infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}"), [httpx.Response(200, json=BUILD)]),
            (infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}/jobs"), [httpx.Response(200, json=[])]),
        ]
    )
    client = await connect(make_server())

    result = await call_in_trace(client, "get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    assert not result.is_error
    finished = spans.get_finished_spans()
    [server] = [s for s in finished if s.kind == SpanKind.SERVER and s.name == "tools/call get_build"]
    assert hex_trace(server) == TRACE_ID and server.parent is not None
    # its parent: the traceparent as sent, or the span the SDK's client opened in that trace to send it
    senders = {hex_span(s) for s in finished if s.name.startswith("MCP send")}
    assert f"{server.parent.span_id:016x}" in {PARENT_ID, *senders}
    calls = {s.name: s for s in finished if s.kind == SpanKind.CLIENT and not s.name.startswith("MCP ")}
    build_span = calls["GET /api/v1/mcp/projects/{project_id}/builds/{build_id}"]
    assert set(calls) == {build_span.name, build_span.name + "/jobs"}
    for span in calls.values():
        assert hex_trace(span) == TRACE_ID
        assert span.parent is not None and span.parent.span_id == server.context.span_id
    assert dict(build_span.attributes or {}) == {
        "http.request.method": "GET",
        "url.template": "/api/v1/mcp/projects/{project_id}/builds/{build_id}",
        "server.address": "infrabox.test",
        "infrabox.project.id": PROJECT_ID,
        "infrabox.build.id": BUILD_ID,
        "http.response.status_code": 200,
    }
    [build_request] = [r for r in sent if r.url.path.endswith(BUILD_ID)]
    assert build_request.headers["traceparent"] == f"00-{TRACE_ID}-{hex_span(build_span)}-01"
    assert {record["trace_id"] for record in audit.records} == {TRACE_ID}
    assert_clean(finished)


async def test_each_retry_is_its_own_span_and_sends_its_own_traceparent(
    make_server, connect, infrabox, spans
) -> None:
    sent = recording(
        [
            (
                infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}"),
                [httpx.Response(503), httpx.Response(200, json=BUILD)],
            ),
            (infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}/jobs"), [httpx.Response(200, json=[])]),
        ]
    )
    client = await connect(make_server())

    await call_in_trace(client, "get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    attempts = [
        s
        for s in spans.get_finished_spans()
        if s.name == "GET /api/v1/mcp/projects/{project_id}/builds/{build_id}"
    ]
    assert [(s.attributes or {}).get("http.response.status_code") for s in attempts] == [503, 200]
    assert [(s.attributes or {}).get("http.request.resend_count") for s in attempts] == [None, 1]
    assert (attempts[0].attributes or {})["error.type"] == "503"
    assert attempts[0].status.status_code == trace.StatusCode.ERROR
    sent_parents = [r.headers["traceparent"].split("-")[2] for r in sent if r.url.path.endswith(BUILD_ID)]
    assert sent_parents == [hex_span(s) for s in attempts]


async def test_without_a_client_trace_the_server_span_starts_one_and_the_audit_carries_it(
    make_server, connect, infrabox, audit, spans
) -> None:
    client = await connect(make_server(allow_trigger=False))

    await client.call_tool("restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    [server] = [s for s in spans.get_finished_spans() if s.name == "tools/call restart_build"]
    assert [record["trace_id"] for record in audit.records] == [hex_trace(server)]


def test_without_the_sdk_the_api_still_carries_the_clients_trace_id() -> None:
    from opentelemetry.propagate import extract

    assert current_trace_id() is None
    with NoOpTracer().start_as_current_span("x", context=extract({"traceparent": TRACEPARENT})):
        assert current_trace_id() == TRACE_ID


# --- start-up from the OTEL_* variables -------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"OTEL_SERVICE_NAME": "x"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"},
    ],
)
def test_tracing_stays_off_unless_the_variables_ask_for_it(environ, monkeypatch) -> None:
    installed: list[object] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)

    assert start_tracing(environ) is None
    assert installed == []


def test_an_otlp_endpoint_installs_a_provider_named_mcp_ci_tools(monkeypatch) -> None:
    installed: list[Any] = []
    monkeypatch.setattr(trace, "set_tracer_provider", installed.append)

    tracing = start_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})

    assert tracing is not None and installed == [tracing]
    assert installed[0].resource.attributes["service.name"] == "mcp-ci-tools"
    tracing.shutdown()


def test_without_the_extra_an_endpoint_gives_one_warning_and_no_tracing(monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails as if not installed
    caplog.set_level(logging.WARNING, logger="mcp_ci_tools.tracing")

    assert start_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}) is None
    [warning] = caplog.records
    assert "mcp-ci-tools[otel]" in warning.getMessage()
