"""MCP Tasks across replicas on one real Redis: any replica answers tasks/get, a task outlives the replica
that created it, and two replicas polling one task at once look at the build once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from mcp_ci_tools.sandbox import SandboxHandle, start_in_thread
from mcp_ci_tools.server import build_server
from tests.e2e.test_http import http_settings, serving
from tests.e2e.test_tasks import (
    ALICE,
    SkewClock,
    Wire,
    poll_to_end,
    restart,
    wait_args,
)
from tests.redis.conftest import RedisServer


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0.1, tick_interval_s=0.02) as handle:
        yield handle


@pytest.fixture
def long_jobs_sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    """Jobs that run for longer than a test takes: a build restarted here is still running when read."""
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=30.0, tick_interval_s=0.02) as handle:
        yield handle


class SlowJobReads(httpx.AsyncBaseTransport):
    """Forwards to the sandbox; every job list takes `delay` seconds longer and is counted in `reads`."""

    def __init__(self, reads: list[str], delay: float) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._reads, self._delay = reads, delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "GET" and request.url.path.endswith("/jobs"):
            self._reads.append(request.url.path)
            await anyio.sleep(self._delay)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextmanager
def replica(
    sandbox: SandboxHandle, redis: RedisServer, tmp_path: Path, n: int, clock: SkewClock, reads: list[str]
) -> Iterator[str]:
    settings = http_settings(sandbox, tmp_path, state_url=redis.url, audit_log=tmp_path / f"audit-{n}.jsonl")
    server = build_server(settings, clock=clock, transport=SlowJobReads(reads, 0.4))
    with serving(settings, server) as base:
        yield base


def events(tmp_path: Path) -> list[str]:
    found = []
    for path in sorted(tmp_path.glob("audit-*.jsonl")):
        for line in path.read_text().splitlines():
            task = json.loads(line).get("detail", {}).get("task", "")
            if task.startswith("task_"):
                found.append(task)
    return found


def test_a_task_created_on_one_replica_is_answered_by_another_after_the_first_is_gone(
    sandbox: SandboxHandle, redis_server: RedisServer, tmp_path: Path
) -> None:
    clock = SkewClock()
    reads: list[str] = []
    with replica(sandbox, redis_server, tmp_path, 1, clock, reads) as first:
        wire = Wire(first, ALICE)
        build_id = restart(wire)
        created = wire.call("wait_for_build", wait_args(build_id))["result"]
    with replica(sandbox, redis_server, tmp_path, 2, clock, reads) as second:
        polls = poll_to_end(Wire(second, ALICE), clock, created["taskId"])
        stranger = Wire(second, "ib_mcp_" + "0" * 48).task("tasks/get", created["taskId"])
    assert created["resultType"] == "task"
    assert polls[-1]["status"] == "completed" and polls[-1]["result"]["structuredContent"]["ended"] is True
    assert polls[-1]["createdAt"] == created["createdAt"]
    assert stranger["error"] == {"code": -32602, "message": "Failed to retrieve task: Task not found"}
    assert events(tmp_path) == ["task_created", "task_completed"]


@contextmanager
def two_replicas_and_a_task(
    sandbox: SandboxHandle, redis: RedisServer, tmp_path: Path, reads: list[str]
) -> Iterator[tuple[str, str, str]]:
    """Two replicas on one Redis (their InfraBox job reads recorded in `reads`) and a task made on the first."""
    clock = SkewClock()
    with (
        replica(sandbox, redis, tmp_path, 1, clock, reads) as first,
        replica(sandbox, redis, tmp_path, 2, clock, reads) as second,
    ):
        wire = Wire(first, ALICE)
        yield first, second, wire.call("wait_for_build", wait_args(restart(wire)))["result"]["taskId"]


def test_two_replicas_polling_one_task_at_once_look_at_the_build_once(
    sandbox: SandboxHandle, redis_server: RedisServer, tmp_path: Path
) -> None:
    reads: list[str] = []
    with two_replicas_and_a_task(sandbox, redis_server, tmp_path, reads) as (first, second, task_id):
        wires = [Wire(first, ALICE), Wire(second, ALICE)]
        with ThreadPoolExecutor(2) as pool:
            answers: list[dict[str, Any]] = list(pool.map(lambda w: w.task("tasks/get", task_id), wires))
    assert len(reads) == 1, reads
    assert {a["result"]["taskId"] for a in answers} == {task_id}
    assert all(a["result"]["status"] in ("working", "completed") for a in answers)


def test_a_cancel_during_another_replicas_poll_still_ends_the_task(
    long_jobs_sandbox: SandboxHandle, redis_server: RedisServer, tmp_path: Path
) -> None:
    # The build must still be running when the poll reads it: a look that finds it ended completes the task
    # even with a cancel waiting (the result is known by then), and 0.1 s jobs could end during the read.
    reads: list[str] = []
    with two_replicas_and_a_task(long_jobs_sandbox, redis_server, tmp_path, reads) as (
        first,
        second,
        task_id,
    ):
        with ThreadPoolExecutor(1) as pool:
            polling = pool.submit(Wire(first, ALICE).task, "tasks/get", task_id)
            while not reads:  # the first replica holds the poll lock while it reads the jobs
                time.sleep(0.01)
            cancelled = Wire(second, ALICE).task("tasks/cancel", task_id)
            polled = polling.result()
        after = Wire(second, ALICE).task("tasks/get", task_id)["result"]
    assert "error" not in cancelled and polled["result"]["status"] == "cancelled"  # applied by the poller
    assert after["status"] == "cancelled" and len(reads) == 1
    assert events(tmp_path) == ["task_created", "task_cancelled"]
