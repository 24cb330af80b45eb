"""The read tools against a hostile InfraBox, through the SDK `Client` and the real server: dates at the
calendar's edge and hostile bodies give a result or a clear ToolError, and answers full of multi-MB
non-UUID ids leave nothing of them behind (tests/hostile_infrabox.py serves the answers)."""

from __future__ import annotations

import gc
import json
import math
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.types import CallToolResult

from mcp_ci_tools.domain.timestamps import parse_timestamp
from mcp_ci_tools.server import build_server
from mcp_ci_tools.state import MemoryState
from tests.conftest import BUILD_ID, JOB_ID, PROJECT_ID, FakeClock, ListSink, make_settings, text_of
from tests.hostile_infrabox import Answer, HostileInfraBox, body, deep, endless, gzip_bomb

pytestmark = pytest.mark.anyio

PREFIX = f"/api/v1/mcp/projects/{PROJECT_ID}"
BUILD_ARGS = {"project_id": PROJECT_ID, "build_id": BUILD_ID}
JOB_ARGS = {"project_id": PROJECT_ID, "job_id": JOB_ID}
ARGUMENTS = {
    "get_build": BUILD_ARGS,
    "diagnose_build": BUILD_ARGS,
    "get_job": JOB_ARGS,
    "list_builds": {"project_id": PROJECT_ID},
}
Routes = dict[str, Callable[[], Answer]]


def as_json(value: Any) -> Callable[[], Answer]:
    raw = json.dumps(value).encode()
    return lambda: body(raw)


def routed(routes: Routes) -> Callable[[httpx.Request], Answer]:
    def answer(request: httpx.Request) -> Answer:
        make = routes.get(request.url.path.removeprefix(PREFIX))
        return make() if make else body(b'{"message": "not found"}', 404)

    return answer


@asynccontextmanager
async def serve(
    routes: Routes, clock: FakeClock, audit: ListSink, tmp_path: Path
) -> AsyncIterator[tuple[Client, MemoryState]]:
    async def no_sleep(seconds: float) -> None:
        return None

    state = MemoryState(clock=clock)
    server = build_server(
        make_settings(tmp_path),
        transport=HostileInfraBox(routed(routes)),
        clock=clock,
        sleep=no_sleep,
        audit_sink=audit,
        state=state,
        new_request_id=lambda: "req-1",
    )
    async with Client(server) as client:
        yield client, state


def build(**overrides: Any) -> dict[str, Any]:
    return {
        "id": BUILD_ID,
        "build_number": 42,
        "status": "failure",
        "created_at": "2027-01-15T07:50:00+00:00",
        **overrides,
    }


def job(**overrides: Any) -> dict[str, Any]:
    return {
        "id": JOB_ID,
        "name": "test",
        "state": "failure",
        "build_id": BUILD_ID,
        "start_date": "2027-01-15T07:50:00+00:00",
        "end_date": "2027-01-15T07:52:30+00:00",
        "message": "3 tests failed",
        **overrides,
    }


def durations(value: Any) -> list[Any]:
    """Every `duration_s` in a tool result, however deep."""
    if isinstance(value, dict):
        return [v for k, v in value.items() if k == "duration_s"] + [
            d for v in value.values() for d in durations(v)
        ]
    if isinstance(value, list):
        return [d for v in value for d in durations(v)]
    return []


EDGE_DATES = [
    (
        "0001-01-01T00:00:00",
        "0001-01-01T00:00:01",
    ),  # naive year 1: .timestamp() raised "year 0 is out of range"
    ("9999-12-31T23:59:59", None),  # still running since the end of time
    ("+275760-09-13", "+275760-09-14"),
    ("-62135596800", "NaN"),
    ("2027-01-15T07:50:00+00:00", "0001-01-01T00:00:00+14:00"),
    ("1969-12-31T23:59:59Z", "2027-01-15T07:50:00Z"),
]


@pytest.mark.parametrize(("start", "end"), EDGE_DATES)
@pytest.mark.parametrize("tool", ["get_build", "get_job", "diagnose_build", "list_builds"])
async def test_jobs_dated_at_the_calendar_edge_give_a_result_without_a_duration(
    tool: str, start: str, end: str | None, clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    edge_job = job(start_date=start, end_date=end)
    routes: Routes = {
        f"/builds/{BUILD_ID}": as_json(build(created_at=start, finished_at=end)),
        f"/builds/{BUILD_ID}/jobs": as_json([edge_job]),
        f"/jobs/{JOB_ID}": as_json(edge_job),
        f"/jobs/{JOB_ID}/log": as_json("line 1\nline 2\n"),
        f"/jobs/{JOB_ID}/testruns": as_json([]),
        "/builds": as_json([build(created_at=start, finished_at=end)]),
    }
    async with serve(routes, clock, audit, tmp_path) as (client, _):
        result = await client.call_tool(tool, ARGUMENTS[tool])

    assert not result.is_error, text_of(result)
    assert result.structured_content is not None
    if tool != "list_builds":
        found = durations(result.structured_content)
        assert found and all(d is None or (math.isfinite(d) and d >= 0) for d in found)
        if parse_timestamp(start) is None:  # no start inside the calendar: no duration at all
            assert set(found) == {None}


HOSTILE: dict[str, tuple[Callable[[], Answer], str]] = {
    "nested 100k deep": (lambda: deep(100_000), "with JSON nested deeper than 32 levels"),
    "endless": (endless, "sent more than"),
    "gzip bomb": (gzip_bomb, "sent more than"),
    "html with 200": (lambda: body(b"<html><h1>Gateway</h1></html>"), "with a body that is not JSON"),
    "invalid utf-8": (lambda: body(b'{"id": "\xc3\x28"}'), "with a body that is not UTF-8"),
    "empty": (lambda: body(b""), "with an empty body"),
    "a list for an object": (as_json([[build()]]), "in an unknown shape"),
    "null": (as_json(None), "in an unknown shape"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("tool", ["get_build", "get_job", "diagnose_build", "list_builds"])
async def test_a_hostile_body_is_a_clear_tool_error(
    tool: str, case: str, clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    hostile, problem = HOSTILE[case]
    target = {
        "get_build": f"/builds/{BUILD_ID}",
        "diagnose_build": f"/builds/{BUILD_ID}/jobs",
        "get_job": f"/jobs/{JOB_ID}",
        "list_builds": "/builds",
    }[tool]
    routes: Routes = {f"/builds/{BUILD_ID}": as_json(build()), f"/builds/{BUILD_ID}/jobs": as_json([job()])}
    routes[target] = hostile
    async with serve(routes, clock, audit, tmp_path) as (client, _):
        result = await client.call_tool(tool, ARGUMENTS[tool])

    text = text_of(result)
    assert result.is_error
    assert (
        text.startswith(f"Error executing tool {tool}: InfraBox gave no usable answer (") and problem in text
    )
    assert "Nothing was changed" in text and "(request id req-1)" in text
    assert audit.records[-1]["outcome"] == "error" and audit.records[-1]["reason"] == "upstream_error"


async def test_diagnose_build_with_an_endless_log_still_diagnoses(
    clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    routes: Routes = {
        f"/builds/{BUILD_ID}": as_json(build()),
        f"/builds/{BUILD_ID}/jobs": as_json([job()]),
        f"/jobs/{JOB_ID}/log": lambda: endless(b" " * (1024 * 1024)),
        f"/jobs/{JOB_ID}/testruns": lambda: deep(100_000),
    }
    async with serve(routes, clock, audit, tmp_path) as (client, _):
        result = await client.call_tool("diagnose_build", BUILD_ARGS)

    assert not result.is_error, text_of(result)
    assert "log not available (UpstreamBroken)" in json.dumps(result.structured_content)


# Memory: what InfraBox sends is not kept --------------------------------------------------------------------

BIG = 1_000_000


def huge_ids_answer(n: int) -> Routes:
    """A build list with three builds, and a build whose three jobs have ids of a million characters each."""
    big_builds = (
        b"["
        + b",".join(b'{"id": "%d-%d%s", "build_number": %d}' % (n, i, b"x" * BIG, i) for i in range(3))
        + b"]"
    )
    big_jobs = (
        b"["
        + b",".join(
            b'{"id": "%d-%d%s", "build_id": "%s", "name": "%s", "state": "failure"}'
            % (n, i, b"j" * BIG, BUILD_ID.encode(), b"n" * 300_000)
            for i in range(3)
        )
        + b"]"
    )
    return {
        "/builds": lambda: body(big_builds),
        f"/builds/{BUILD_ID}": as_json(build()),
        f"/builds/{BUILD_ID}/jobs": lambda: body(big_jobs),
    }


async def test_fifty_answers_of_multi_mb_non_uuid_ids_leave_no_retained_state(
    clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def answer(request: httpx.Request) -> Answer:
        calls["n"] += 1
        make = huge_ids_answer(calls["n"]).get(request.url.path.removeprefix(PREFIX))
        return make() if make else body(b"{}", 404)

    async def no_sleep(seconds: float) -> None:
        return None

    state = MemoryState(clock=clock)
    server = build_server(
        make_settings(tmp_path),
        transport=HostileInfraBox(answer, record=False),
        clock=clock,
        sleep=no_sleep,
        audit_sink=audit,
        state=state,
        new_request_id=lambda: "req",
    )
    results: list[CallToolResult] = []
    async with Client(server) as client:

        async def one_round() -> None:
            clock.advance(5)  # stay inside the read budgets (30 list calls a minute)
            results.append(await client.call_tool("list_builds", {"project_id": PROJECT_ID}))
            results.append(await client.call_tool("get_build", BUILD_ARGS))
            results.clear()

        await one_round()  # warm up: imports, pools and caches settle
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(25):  # 50 calls, each answered with 3 MB of ids
                await one_round()
            gc.collect()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()

    diff = after.compare_to(before, "lineno")
    grown = sum(stat.size_diff for stat in diff)
    assert grown < 1_000_000, f"{grown} bytes retained after 50 calls: {diff[:3]}"
    stored = state._values
    assert all(len(key) < 200 and len(value) < 200 for key, (value, _) in stored.items())
    # Only the one canonical build was learned (its build number); none of the 300 odd job or build ids.
    assert [key for key in stored if key.startswith("lineage:")] == [
        f"lineage:{PROJECT_ID}:number:{BUILD_ID}"
    ]
    assert len(audit.lines) == 52 and max(len(line) for line in audit.lines) < 2_000
