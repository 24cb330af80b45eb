"""Metrics as a scrape shows them: the counts after known calls, labels only from their fixed sets, and the
fixed sets kept in step with the code (a new tool, reason, endpoint or MCP method fails here first)."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import httpx
import pytest
from mcp import MCPError
from mcp_types.methods import CLIENT_NOTIFICATIONS, CLIENT_REQUESTS
from prometheus_client.parser import text_string_to_metric_families

from mcp_ci_tools.audit import AuditLog, AuditRecord
from mcp_ci_tools.observe import Metrics, bearer_matches
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
    RESOURCE_READS,
    STATE_OPERATIONS,
    STATUS_CLASSES,
    TOOLS,
)
from mcp_ci_tools.server import metrics_of
from mcp_ci_tools.state import RedisState, StateUnavailable
from tests.conftest import BUILD_ID, JOB_ID, PROJECT_ID, TOKEN, BrokenSink, free_port

pytestmark = pytest.mark.anyio

PACKAGE = Path(__file__).parents[2] / "mcp_ci_tools"
BUILD = {
    "id": BUILD_ID,
    "build_number": 7,
    "restart_counter": 1,
    "state": "failure",
    "project_id": PROJECT_ID,
}
ALLOWED_VALUES: dict[str, frozenset[str]] = {
    "tool": AUDITED,
    "decision": DECISIONS,
    "outcome": OUTCOMES,
    "reason": REASONS,
    "mcp_method_name": MCP_METHODS,
    "gen_ai_tool_name": TOOLS | {""},
    "error_type": ERROR_TYPES,
    "endpoint": ENDPOINTS,
    "method": HTTP_METHODS,
    "status_class": STATUS_CLASSES,
    "budget": BUDGETS,
    "operation": STATE_OPERATIONS,
}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample called `name` in a scrape: its labels (sorted, `le` included) → value."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def calls(text: str) -> dict[tuple[str, str, str, str], float]:
    return {
        (labels["tool"], labels["decision"], labels["outcome"], labels["reason"]): value
        for key, value in samples(text, "mcp_ci_tool_calls_total").items()
        for labels in [dict(key)]
    }


def assert_labels_fixed(text: str) -> None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for label, value in sample.labels.items():
                if label in ("le", "version"):
                    continue
                assert value in ALLOWED_VALUES[label] | {"other"}, (sample.name, label, value)


# --- after known calls ----------------------------------------------------------------------------------


async def test_tool_calls_are_counted_once_each_by_decision_outcome_and_reason(
    make_server, connect, infrabox
) -> None:
    infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}").respond(200, json=BUILD)
    infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}/jobs").respond(200, json=[])
    infrabox.post(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}/restart").respond(403, json={"message": "x"})
    server = make_server(trigger_per_minute=1)
    client = await connect(server)
    for _ in range(2):
        assert not (
            await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
        ).is_error
    # the one budget slot goes to the first trigger, which InfraBox refuses (403); the second is out of budget
    assert (
        await client.call_tool("restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    ).is_error
    assert (await client.call_tool("rerun_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})).is_error
    assert (await client.call_tool("abort_job", {"project_id": PROJECT_ID, "job_id": "../x"})).is_error

    text = metrics_of(server).render().decode()

    assert calls(text) == {
        ("get_build", "allowed", "success", ""): 2,
        ("restart_build", "allowed", "error", "project_not_enabled"): 1,
        ("rerun_job", "denied", "denied", "rate_limited"): 1,
        ("abort_job", "denied", "denied", "invalid_input"): 1,
    }
    assert samples(text, "mcp_ci_trigger_budget_refusals_total") == {
        (("budget", "restarts"),): 0,
        (("budget", "trigger"),): 1,
    }
    assert_labels_fixed(text)
    assert TOKEN not in text and hashlib.sha256(TOKEN.encode()).hexdigest() not in text


async def test_infrabox_requests_are_timed_per_attempt_by_path_template_and_status_class(
    make_server, connect, infrabox
) -> None:
    infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}").mock(
        side_effect=[httpx.Response(503), httpx.ConnectError("refused"), httpx.Response(200, json=BUILD)]
    )
    infrabox.get(f"/projects/{PROJECT_ID}/jobs/{JOB_ID}").respond(404, json={"message": "gone"})
    server = make_server()
    client = await connect(server)
    await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    text = metrics_of(server).render().decode()
    counts = {
        (labels["endpoint"], labels["method"], labels["status_class"]): value
        for key, value in samples(text, "mcp_ci_infrabox_request_duration_seconds_count").items()
        for labels in [dict(key)]
    }

    build, job = (
        "/api/v1/mcp/projects/{project_id}/builds/{build_id}",
        "/api/v1/mcp/projects/{project_id}/jobs/{job_id}",
    )
    assert counts[(build, "GET", "5xx")] == 1
    assert counts[(build, "GET", "error")] == 1
    assert counts[(build, "GET", "2xx")] == 1
    assert counts[(job, "GET", "4xx")] == 1
    assert PROJECT_ID not in text and BUILD_ID not in text and JOB_ID not in text


async def test_every_mcp_operation_is_timed_with_the_semconv_attributes(
    make_server, connect, infrabox
) -> None:
    infrabox.get(f"/projects/{PROJECT_ID}/builds/{BUILD_ID}").respond(500)
    server = make_server()
    client = await connect(server)
    await client.list_tools()
    await client.call_tool("whoami", {})
    await client.call_tool("get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    with pytest.raises(MCPError):
        await client.read_resource("file:///etc/passwd")

    text = metrics_of(server).render().decode()
    counts = {
        (labels["mcp_method_name"], labels["gen_ai_tool_name"], labels["error_type"]): value
        for key, value in samples(text, "mcp_server_operation_duration_seconds_count").items()
        for labels in [dict(key)]
    }

    assert counts[("tools/list", "", "")] == 1
    assert counts[("tools/call", "whoami", "")] == 1
    assert counts[("tools/call", "get_build", "tool_error")] == 1
    assert counts[("resources/read", "", "-32602")] == 1  # the JSON-RPC error code, as semconv's error.type
    assert "passwd" not in text
    buckets = {dict(key)["le"] for key in samples(text, "mcp_server_operation_duration_seconds_bucket")}
    assert {"0.01", "0.02", "300.0", "+Inf"} <= buckets
    assert_labels_fixed(text)


async def test_gauges_build_info_and_failed_audit_writes(make_server, connect, infrabox) -> None:
    server = make_server(allow_trigger=False, audit_sink=BrokenSink())
    client = await connect(server)
    await client.call_tool("restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    await client.call_tool("whoami", {})

    text = metrics_of(server).render().decode()

    assert samples(text, "mcp_ci_audit_write_failures_total") == {(): 2}
    assert samples(text, "mcp_ci_inflight_calls") == {(): 0}
    assert samples(text, "mcp_ci_open_sessions") == {(): 0}
    [(labels, value)] = samples(text, "mcp_ci_build_info").items()
    assert value == 1 and dict(labels).keys() == {"version"}


def test_unknown_label_values_are_reported_as_other() -> None:
    metrics = Metrics()
    log = AuditLog(BrokenSinkless(), observers=[metrics.observe_record])
    record = AuditRecord(
        event="result",
        tool=f"tool-{PROJECT_ID}",
        token="sha256:abc",
        token_sha256="0" * 64,
        request_id="r",
        decision="denied",
        outcome="denied",
        reason="InfraBox said: no",
    )
    log.write_now(record, durable=False)
    log.write_now(AuditRecord(**{**record.__dict__, "event": "attempt"}), durable=False)  # not a call
    metrics.observe_operation("x/" + PROJECT_ID, "evil", "-1", 0.1)
    metrics.observe_infrabox("/api/v1/mcp/projects/" + PROJECT_ID, "PATCH", 999, 0.1)

    text = metrics.render().decode()

    assert calls(text) == {("other", "denied", "denied", "other"): 1}
    assert PROJECT_ID not in text
    assert_labels_fixed(text)


class BrokenSinkless:
    def write(self, line: str, *, durable: bool) -> None:
        return None


async def test_a_failed_redis_operation_is_counted_by_operation() -> None:
    metrics = Metrics()
    state = RedisState(
        f"redis://127.0.0.1:{free_port()}/0",
        prefix="t:",
        timeout=0.2,
        on_error=metrics.state_store_error,
    )
    with pytest.raises(StateUnavailable):
        await state.get("k")
    with pytest.raises(StateUnavailable):
        await state.set("k", "v", 10)
    assert not await state.ready()
    await state.aclose()

    errors = {
        dict(key)["operation"]: value
        for key, value in samples(metrics.render().decode(), "mcp_ci_state_store_errors_total").items()
    }

    assert errors == {"get": 1, "set": 1, "ping": 1, "delete": 0, "continuity": 0, "start": 0}


def test_two_servers_have_separate_registries(make_server) -> None:
    first, second = make_server(), make_server()

    assert metrics_of(first).registry is not metrics_of(second).registry


@pytest.mark.parametrize(
    ("header", "token", "passes"),
    [
        (None, None, True),
        ("Bearer whatever", None, True),
        ("Bearer s3cret-metrics-token", "s3cret-metrics-token", True),
        ("bearer s3cret-metrics-token", "s3cret-metrics-token", True),
        (None, "s3cret-metrics-token", False),
        ("Bearer s3cret-metrics-tokenX", "s3cret-metrics-token", False),
        ("Basic s3cret-metrics-token", "s3cret-metrics-token", False),
        ("s3cret-metrics-token", "s3cret-metrics-token", False),
    ],
)
def test_the_metrics_token_check(header: str | None, token: str | None, passes: bool) -> None:
    assert bearer_matches(header, token) is passes


# --- the fixed sets follow the code ---------------------------------------------------------------------


async def test_the_tool_set_is_the_registered_tools(make_server) -> None:
    server = make_server()
    registered = {tool.name for tool in await server.list_tools()}

    assert registered == TOOLS
    assert {path.stem for path in (Path(__file__).parents[1] / "toolsnaps").glob("*.json")} == TOOLS


def test_the_resource_reads_are_the_names_the_code_audits_them_under() -> None:
    audited = {
        node.value.value
        for _, tree in _sources()
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword)
        and node.arg == "tool"
        and isinstance(node.value, ast.Constant)
        and str(node.value.value).startswith("resource:")
    }
    assert audited == RESOURCE_READS


def _sources() -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text()))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "sandbox" not in path.parts and "observe" not in path.parts
    ]


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _values(node: ast.expr) -> set[str]:
    """The strings an expression of constants and conditionals can evaluate to (not those it compares)."""
    if isinstance(node, ast.IfExp):
        return _values(node.body) | _values(node.orelse)
    return {node.value} if isinstance(node, ast.Constant) and isinstance(node.value, str) else set()


def reasons_in_code() -> set[str]:
    """Every audit reason the code can write: `reason = "..."` (class attributes and assignments, either arm
    of a conditional), `reason="..."` keywords, everything `audit_reason` returns, and Forbidden's kinds."""
    found: set[str] = set()
    for _, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                named = any(
                    (isinstance(t, ast.Name) and t.id == "reason")
                    or (isinstance(t, ast.Attribute) and t.attr == "reason")
                    for t in targets
                )
                if named and node.value is not None:
                    found |= _values(node.value)
            elif (
                isinstance(node, ast.keyword)
                and node.arg == "reason"
                and isinstance(node.value, ast.Constant)
            ):
                found |= _strings(node.value)
            elif isinstance(node, ast.FunctionDef) and node.name == "audit_reason":
                found |= {s for s in _strings(node) if s.isidentifier()} - {"reason"}
            elif isinstance(node, ast.FunctionDef) and node.name == "_raise_for_status":
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Assign) and any(
                        isinstance(t, ast.Name) and t.id == "kind" for t in inner.targets
                    ):
                        found |= _values(inner.value)
    return found


def test_every_reason_in_the_code_has_its_label_value() -> None:
    found = reasons_in_code()

    assert {"rate_limited", "restart_loop", "deduplicated", "state_reset", "no_trigger_permission"} <= found
    assert found <= REASONS, f"add to observe/labels.py REASONS: {sorted(found - REASONS)}"


def test_every_endpoint_template_of_the_client_has_its_label_value() -> None:
    tree = ast.parse((PACKAGE / "client" / "_client.py").read_text())
    templates = {
        "/api/v1/mcp/" + template
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_Path"
        for template in _values(node.args[0])
    }

    assert templates == ENDPOINTS


def test_every_mcp_method_a_client_sends_has_its_label_value() -> None:
    methods = {method for method, _ in CLIENT_REQUESTS} | {method for method, _ in CLIENT_NOTIFICATIONS}

    assert methods <= MCP_METHODS, f"add to observe/labels.py MCP_METHODS: {sorted(methods - MCP_METHODS)}"


def test_the_json_rpc_codes_are_those_the_sdk_defines() -> None:
    import mcp_types.jsonrpc as jsonrpc

    codes = {
        str(value)
        for name, value in vars(jsonrpc).items()
        if name.isupper() and isinstance(value, int) and -32768 <= value <= -32000
    }

    assert codes <= ERROR_TYPES, sorted(codes - ERROR_TYPES)
