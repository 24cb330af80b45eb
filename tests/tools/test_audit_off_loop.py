"""Audit writes run off the event loop: a stalled write stalls only its own call.

The sink here blocks the `attempt` record of a trigger until the test releases it, as a slow disk's
fsync would. Meanwhile another caller's read must complete, and the trigger must still not be sent
before its own `attempt` record is written.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import pytest
from mcp import Client

from tests.conftest import BUILD_ID, JOB_ID, PROJECT_ID

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"


class StallingSink:
    """Holds every `attempt` line until `release` is set; other lines are written at once."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.two_lines = threading.Event()
        self._lock = threading.Lock()

    def write(self, line: str, *, durable: bool) -> None:
        record = json.loads(line)
        if record["event"] == "attempt":
            self.stalled.set()
            assert self.release.wait(10), "the test never released the stalled write"
        with self._lock:
            self.lines.append(record)
            if len(self.lines) >= 2:
                self.two_lines.set()


async def test_a_stalled_audit_write_stalls_only_its_own_call(make_server, infrabox) -> None:
    sink = StallingSink()
    restart = infrabox.post(f"{P}/jobs/{JOB_ID}/restart").respond(200, json={"jobs_restarted": 1})
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json={"id": BUILD_ID, "build_number": 7})
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=[])
    server = make_server(audit_sink=sink)
    results: dict[str, Any] = {}

    async with Client(server) as trigger_client, Client(server) as read_client:

        async def restart_job() -> None:
            results["restart"] = await trigger_client.call_tool(
                "restart_job", {"project_id": PROJECT_ID, "job_id": JOB_ID}
            )

        async with anyio.create_task_group() as group:
            group.start_soon(restart_job)
            assert await anyio.to_thread.run_sync(sink.stalled.wait, 10)

            with anyio.fail_after(5):  # the event loop is free: the read runs to its end
                read = await read_client.call_tool(
                    "get_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID}
                )

            assert not read.is_error
            assert "restart" not in results  # the trigger still waits for its durable attempt record
            assert not restart.called
            sink.release.set()

    assert not results["restart"].is_error
    assert restart.call_count == 1
    assert [(r["tool"], r["event"]) for r in sink.lines] == [
        ("get_build", "result"),
        ("restart_job", "attempt"),
        ("restart_job", "result"),
    ]


async def test_a_cancelled_call_still_writes_its_result_record(make_server, infrabox) -> None:
    sink = StallingSink()
    infrabox.post(f"{P}/jobs/{JOB_ID}/restart").respond(200, json={"jobs_restarted": 1})
    server = make_server(audit_sink=sink)

    async with Client(server) as client:
        with anyio.move_on_after(0.5) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(
                    client.call_tool, "restart_job", {"project_id": PROJECT_ID, "job_id": JOB_ID}
                )
                assert await anyio.to_thread.run_sync(sink.stalled.wait, 10)
                # the caller gives up while the attempt is being written; the write is not abandoned
                threading.Timer(1.0, sink.release.set).start()
        assert scope.cancelled_caught
        assert await anyio.to_thread.run_sync(sink.two_lines.wait, 10)

    assert [r["event"] for r in sink.lines if r["tool"] == "restart_job"] == ["attempt", "result"]
