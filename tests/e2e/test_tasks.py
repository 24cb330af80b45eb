"""MCP Tasks (SEP-2663) for wait_for_build, as a client sees them: raw JSON-RPC over Streamable HTTP, the
sandbox as InfraBox, a real uvicorn on loopback, and a server clock the test moves past the poll interval."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from mcp_ci_tools.server import build_server
from tests.e2e.test_http import http_settings, serving

ALICE = SANDBOX_TOKENS["trigger"].token
BOB = SANDBOX_TOKENS["read_only"].token
TASKS = "io.modelcontextprotocol/tasks"
MODERN = "2026-07-28"
TASK_FIELDS = {
    "resultType",
    "taskId",
    "status",
    "statusMessage",
    "createdAt",
    "lastUpdatedAt",
    "ttlMs",
    "pollIntervalMs",
}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


class SkewClock:
    """Real time plus an offset the test can move: the server's clock, so a test skips the poll interval."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0.3, tick_interval_s=0.02) as handle:
        yield handle


@pytest.fixture
def slow_sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=60, tick_interval_s=0.05) as handle:
        yield handle


def meta(*, tasks: bool) -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "probe", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}} if tasks else {}},
    }


class Wire:
    """One caller's raw 2026-07-28 JSON-RPC over Streamable HTTP; keeps every exchange for the report."""

    def __init__(self, base: str, token: str) -> None:
        self.base, self.token, self.next_id = base, token, 0
        self.exchanges: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def rpc(self, method: str, params: dict[str, Any], *, tasks: bool = True) -> dict[str, Any]:
        self.next_id += 1
        name = params.get("taskId") or params.get("name")
        headers = {
            "authorization": f"Bearer {self.token}",
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": MODERN,
            "mcp-method": method,
            **({"mcp-name": name} if name else {}),
        }
        request = {
            "jsonrpc": "2.0",
            "id": self.next_id,
            "method": method,
            "params": {**params, "_meta": meta(tasks=tasks)},
        }
        answer = httpx.post(self.base + "/mcp", headers=headers, json=request, timeout=30)
        text = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
        body: dict[str, Any] = json.loads(text)
        self.exchanges.append((request, body))
        return body

    def call(self, tool: str, arguments: dict[str, Any], *, tasks: bool = True) -> dict[str, Any]:
        return self.rpc("tools/call", {"name": tool, "arguments": arguments}, tasks=tasks)

    def task(self, method: str, task_id: str, *, tasks: bool = True) -> dict[str, Any]:
        return self.rpc(method, {"taskId": task_id}, tasks=tasks)


def restart(wire: Wire) -> str:
    answer = wire.call(
        "restart_build", {"project_id": SEED.payments, "build_id": SEED.failed_build}, tasks=False
    )
    new_build: str = answer["result"]["structuredContent"]["new_build_id"]
    return new_build


def wait_args(build_id: str) -> dict[str, Any]:
    return {"project_id": SEED.payments, "build_id": build_id}


def poll_to_end(wire: Wire, clock: SkewClock, task_id: str, *, limit: int = 200) -> list[dict[str, Any]]:
    """tasks/get until the task leaves `working`, moving the server clock past each poll interval."""
    seen = []
    for _ in range(limit):
        result = wire.task("tasks/get", task_id)["result"]
        seen.append(result)
        if result["status"] != "working":
            return seen
        clock.advance(result["pollIntervalMs"] / 1000)
        time.sleep(0.02)
    raise AssertionError(f"the task did not end: {seen[-1]}")


def audit_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def task_events(tmp_path: Path) -> list[str]:
    return [
        r["detail"]["task"]
        for r in audit_lines(tmp_path)
        if "task" in r.get("detail", {}) and r["detail"]["task"].startswith("task_")
    ]


def without_timing(structured: dict[str, Any]) -> dict[str, Any]:
    """The result without what depends on when and how often it looked. The build and its jobs are two reads
    at once, so the build's own status and end time may trail its jobs by a scheduler tick in either call."""
    build = {k: v for k, v in structured["build"].items() if k not in ("status", "finished_at")}
    kept = {k: v for k, v in structured.items() if k not in ("waited_s", "polls", "running_s", "build")}
    return {**kept, "build": build}


def job_states(tmp_path: Path, build_id: str) -> set[str]:
    with closing(sqlite3.connect(tmp_path / "sandbox.sqlite3")) as conn:
        return {row[0] for row in conn.execute("SELECT state FROM job WHERE build_id = ?", (build_id,))}


@contextmanager
def served(sandbox: SandboxHandle, tmp_path: Path, **overrides: Any) -> Iterator[tuple[str, SkewClock]]:
    clock = SkewClock()
    settings = http_settings(sandbox, tmp_path, **overrides)
    with serving(settings, build_server(settings, clock=clock)) as base:
        yield base, clock


def test_discover_advertises_the_tasks_extension(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(sandbox, tmp_path) as (base, _):
        answer = Wire(base, ALICE).rpc("server/discover", {})
    assert answer["result"]["capabilities"]["extensions"][TASKS] == {}


def test_a_declaring_client_gets_a_task_that_completes_with_the_synchronous_result(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with served(sandbox, tmp_path) as (base, clock):
        wire = Wire(base, ALICE)
        build_id = restart(wire)
        created = wire.call("wait_for_build", wait_args(build_id))["result"]
        polls = poll_to_end(wire, clock, created["taskId"])
        synchronous = wire.call("wait_for_build", wait_args(build_id), tasks=False)["result"]
        (tmp_path / "exchange.json").write_text(json.dumps(wire.exchanges[1:], indent=1))

    assert set(created) - {"_meta"} == TASK_FIELDS
    assert created["resultType"] == "task" and created["status"] == "working"
    assert (
        len(created["taskId"]) >= 32 and created["ttlMs"] == 3_600_000 and created["pollIntervalMs"] >= 2000
    )
    assert ISO.match(created["createdAt"]) and ISO.match(created["lastUpdatedAt"])
    working, done = polls[:-1], polls[-1]
    assert working, "the build ended before the first poll; the sandbox should take a few ticks"
    assert all(p["resultType"] == "complete" and p["taskId"] == created["taskId"] for p in polls)
    assert re.fullmatch(r"\d+ of \d+ jobs ended; build \w+", working[0]["statusMessage"])
    assert done["status"] == "completed" and "error" not in done
    assert all("result" not in p for p in working)
    result = done["result"]
    assert result["isError"] is False and set(result) == set(synchronous) - {"_meta"}
    assert without_timing(result["structuredContent"]) == without_timing(synchronous["structuredContent"])
    assert result["structuredContent"]["ended"] is True and result["structuredContent"]["polls"] == len(polls)
    assert result["structuredContent"]["build"]["status"] in ("running", "finished")
    assert [c["type"] for c in result["content"]] == [c["type"] for c in synchronous["content"]] == ["text"]
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    assert "resultType" not in synchronous or synchronous["resultType"] == "complete"
    assert task_events(tmp_path) == ["task_created", "task_completed"]


def test_a_client_that_does_not_declare_tasks_gets_the_bounded_wait(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with served(sandbox, tmp_path) as (base, _):
        wire = Wire(base, ALICE)
        answer = wire.call("wait_for_build", wait_args(SEED.failed_build), tasks=False)["result"]
    assert answer["resultType"] == "complete" and "taskId" not in answer
    assert answer["structuredContent"]["ended"] is True
    assert task_events(tmp_path) == []


def test_the_2025_era_gets_the_bounded_wait_even_when_it_sends_the_meta(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    headers = {
        "authorization": f"Bearer {ALICE}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {"extensions": {TASKS: {}}},
            "clientInfo": {"name": "probe", "version": "0"},
        },
    }
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {
            "name": "wait_for_build",
            "arguments": wait_args(SEED.failed_build),
            "_meta": meta(tasks=True),
        },
    }
    get = {"jsonrpc": "2.0", "id": 3, "method": "tasks/get", "params": {"taskId": "x" * 32}}

    def data(answer: httpx.Response) -> dict[str, Any]:
        text = answer.text
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            text = [line[5:] for line in text.splitlines() if line.startswith("data:")][-1]
        body: dict[str, Any] = json.loads(text)
        return body

    with (
        served(sandbox, tmp_path) as (base, _),
        httpx.Client(base_url=base, headers=headers, timeout=30) as http,
    ):
        opened = http.post("/mcp", json=initialize)
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        waited = data(http.post("/mcp", json=call, headers=session))
        refused = data(http.post("/mcp", json=get, headers=session))
    assert "resultType" not in waited["result"] and waited["result"]["structuredContent"]["ended"] is True
    assert refused["error"]["code"] == -32601  # tasks/* exist in the 2026-07-28 era only
    assert task_events(tmp_path) == []


def test_tasks_methods_need_the_extension_declared(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(sandbox, tmp_path) as (base, _):
        wire = Wire(base, ALICE)
        task_id = wire.call("wait_for_build", wait_args(SEED.failed_build))["result"]["taskId"]
        answers = [
            wire.task(method, task_id, tasks=False)
            for method in ("tasks/get", "tasks/update", "tasks/cancel")
        ]
    for answer in answers:
        assert answer["error"]["code"] == -32021
        assert answer["error"]["data"]["requiredCapabilities"] == {"extensions": {TASKS: {}}}


def test_cancel_ends_the_wait_and_the_build_keeps_running(
    slow_sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with served(slow_sandbox, tmp_path) as (base, clock):
        wire = Wire(base, ALICE)
        build_id = restart(wire)
        task_id = wire.call("wait_for_build", wait_args(build_id))["result"]["taskId"]
        first = wire.task("tasks/get", task_id)["result"]
        cancelled = wire.task("tasks/cancel", task_id)
        clock.advance(60)
        after = wire.task("tasks/get", task_id)["result"]
        again = wire.task("tasks/cancel", task_id)
    assert first["status"] == "working"
    assert (
        set(cancelled["result"]) - {"_meta"} == {"resultType"}
        and cancelled["result"]["resultType"] == "complete"
    )
    assert after["status"] == "cancelled" and "result" not in after and "error" not in after
    assert "build was not touched" in after["statusMessage"]
    assert "error" not in again  # cancelling a cancelled task is acknowledged too
    assert job_states(tmp_path, build_id) <= {"queued", "scheduled", "running"}  # nothing aborted
    assert "running" in job_states(tmp_path, build_id)
    assert task_events(tmp_path) == ["task_created", "task_cancelled"]


def test_update_is_acknowledged(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(sandbox, tmp_path) as (base, _):
        wire = Wire(base, ALICE)
        task_id = wire.call("wait_for_build", wait_args(SEED.failed_build))["result"]["taskId"]
        updated = wire.rpc("tasks/update", {"taskId": task_id, "inputResponses": {}})
    assert set(updated["result"]) - {"_meta"} == {"resultType"}


def test_another_token_is_refused_exactly_like_an_unknown_id(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(sandbox, tmp_path) as (base, _):
        alice, bob = Wire(base, ALICE), Wire(base, BOB)
        task_id = alice.call("wait_for_build", wait_args(SEED.failed_build))["result"]["taskId"]
        stolen = {m: bob.task(m, task_id)["error"] for m in ("tasks/get", "tasks/update", "tasks/cancel")}
        unknown = {m: alice.task(m, "A" * 32)["error"] for m in ("tasks/get", "tasks/update", "tasks/cancel")}
        still = alice.task("tasks/get", task_id)["result"]
    assert stolen == unknown
    assert stolen["tasks/get"] == {"code": -32602, "message": "Failed to retrieve task: Task not found"}
    assert still["status"] != "cancelled"  # bob's cancel did nothing


def test_a_task_expires_with_its_ttl(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(sandbox, tmp_path, task_ttl=120) as (base, clock):
        wire = Wire(base, ALICE)
        created = wire.call("wait_for_build", wait_args(SEED.failed_build))["result"]
        clock.advance(121)
        expired = wire.task("tasks/get", created["taskId"])
        clock.advance(120)
        gone = wire.task("tasks/get", created["taskId"])
    assert created["ttlMs"] == 120_000
    assert expired["error"] == {"code": -32602, "message": "Failed to retrieve task: Task has expired"}
    assert gone["error"] == {"code": -32602, "message": "Failed to retrieve task: Task not found"}
    assert task_events(tmp_path) == ["task_created", "task_expired"]


def test_a_spent_read_budget_keeps_the_task_working(slow_sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(slow_sandbox, tmp_path, read_per_minute=2) as (base, clock):
        wire = Wire(base, ALICE)
        build_id = restart(wire)
        task_id = wire.call("wait_for_build", wait_args(build_id))["result"]["taskId"]
        first = wire.task("tasks/get", task_id)["result"]
        clock.advance(first["pollIntervalMs"] / 1000)
        second = wire.task("tasks/get", task_id)["result"]
        clock.advance(second["pollIntervalMs"] / 1000)
        third = wire.task("tasks/get", task_id)["result"]
    assert first["status"] == second["status"] == third["status"] == "working"
    spent = [p for p in (first, second, third) if "read budget is used up" in p["statusMessage"]]
    assert spent, [p["statusMessage"] for p in (first, second, third)]
    assert "'list_" in spent[0]["statusMessage"]


def test_the_audit_never_holds_the_token_or_the_task_id(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with served(sandbox, tmp_path) as (base, clock):
        wire = Wire(base, ALICE)
        task_id = wire.call("wait_for_build", wait_args(SEED.failed_build))["result"]["taskId"]
        poll_to_end(wire, clock, task_id)
    text = (tmp_path / "audit.jsonl").read_text()
    assert ALICE not in text and task_id not in text
    records = [r for r in audit_lines(tmp_path) if r.get("detail", {}).get("task", "").startswith("task_")]
    assert [r["detail"]["task"] for r in records] == ["task_created", "task_completed"]
    assert {r["build_id"] for r in records} == {SEED.failed_build}
    assert (
        records[0]["token"].startswith("sha256:")
        and records[0]["detail"]["task_ref"] == records[1]["detail"]["task_ref"]
    )


def test_a_tool_error_completes_the_task_with_the_same_error_result(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    unknown = wait_args("b9999999-0000-4000-8000-000000000000")
    with served(sandbox, tmp_path) as (base, clock):
        wire = Wire(base, ALICE)
        task_id = wire.call("wait_for_build", unknown)["result"]["taskId"]
        done = poll_to_end(wire, clock, task_id)[-1]
        synchronous = wire.call("wait_for_build", unknown, tasks=False)["result"]

    def text(result: dict[str, Any]) -> str:
        return re.sub(r"request id [0-9a-f-]+", "request id …", result["content"][0]["text"])

    assert done["status"] == "completed" and done["result"]["isError"] is True is synchronous["isError"]
    assert text(done["result"]) == text(synchronous) and "Error executing tool wait_for_build" in text(
        synchronous
    )
    assert task_events(tmp_path) == ["task_created", "task_completed"]


class Exploding(httpx.AsyncBaseTransport):
    """InfraBox's transport failing in a way nothing expects."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("unexpected")


def test_an_internal_error_fails_the_task_with_a_json_rpc_error(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    clock = SkewClock()
    settings = http_settings(sandbox, tmp_path)
    with serving(settings, build_server(settings, clock=clock, transport=Exploding())) as base:
        wire = Wire(base, ALICE)
        task_id = wire.call("wait_for_build", wait_args(SEED.failed_build))["result"]["taskId"]
        done = poll_to_end(wire, clock, task_id)[-1]
    assert done["status"] == "failed" and "result" not in done
    assert done["error"] == {"code": -32603, "message": "Internal error while waiting for the build"}
    assert done["statusMessage"] == done["error"]["message"]
    assert task_events(tmp_path) == ["task_created", "task_failed"]
