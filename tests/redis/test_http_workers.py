"""One replica on several cores: `--workers 2` serves one port from two processes sharing Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult
from prometheus_client.parser import text_string_to_metric_families

import mcp_ci_tools
from tests.conftest import free_port
from tests.processes import wait_until_answering
from tests.redis.conftest import RecordingInfraBox, RedisServer
from tests.redis.test_replicas import JOB, PROJECT, call_abort, token

pytestmark = pytest.mark.anyio


@dataclass
class Replica:
    base: str
    parent: subprocess.Popen[bytes]
    audit: Path
    log: Path

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.parent.pid}/task/{self.parent.pid}/children").read_text().split()
        return [int(pid) for pid in children]


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def audit_verify(path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mcp_ci_tools", "audit", "verify", str(path)]
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)


def read_bytes(pid: int) -> int:
    """Bytes the process has read so far (sockets included): grows only while it serves requests."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no rchar for pid {pid}")


@contextmanager
def two_workers(upstream: str, state_url: str, tmp_path: Path, **settings: str) -> Iterator[Replica]:
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    log = tmp_path / "replica.log"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "INFRABOX_URL": upstream,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_STATE_URL": state_url,
        "MCP_CI_DEDUPE_SECONDS": "0",  # identical calls on purpose: this test is about the budget
        "MCP_CI_AUDIT_LOG": str(audit),
        "TMPDIR": str(tmp_path),  # where the parent makes the workers' metrics directory
        **settings,
    }
    command = [sys.executable, "-m", "mcp_ci_tools", "--transport", "streamable-http", "--port", str(port)]
    with (
        open(log, "w") as stderr,
        subprocess.Popen([*command, "--workers", "2"], env=env, stderr=stderr) as parent,
    ):
        replica = Replica(f"http://127.0.0.1:{port}", parent, audit, log)
        try:
            wait_until_answering(replica.base + "/readyz", parent, timeout_s=30, log=log)
            while log.read_text().count("serving MCP over streamable-http") < 2:  # both workers listen
                assert parent.poll() is None, log.read_text()
                time.sleep(0.05)
            yield replica
        finally:
            if parent.poll() is None:
                parent.kill()
                parent.wait(20)


async def list_projects_legacy(base: str, caller: str, calls: int) -> list[bool]:
    """A 2025-11-25 client (handshake, no session: any worker may answer each request) making `calls` calls."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {caller}"}, timeout=30) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http), mode="legacy") as client,
    ):
        return [not (await client.call_tool("list_projects", {})).is_error for _ in range(calls)]


async def aborts_at_once(base: str, callers: list[str]) -> list[tuple[str, bool]]:
    """One abort_job per caller, all at once, each on a connection of its own: (caller, sent) each."""
    outcomes: list[tuple[str, bool]] = []

    async def one(caller: str) -> None:
        outcomes.append((caller, await call_abort(base, caller)))

    async with anyio.create_task_group() as group:
        for caller in callers:
            group.start_soon(one, caller)
    return outcomes


async def test_two_workers_share_one_port_and_send_exactly_the_budget_per_token(
    redis_server: RedisServer, infrabox_stub: RecordingInfraBox, tmp_path: Path
) -> None:
    alice, bob = token("alice"), token("bob")
    with two_workers(infrabox_stub.url, redis_server.url, tmp_path) as replica:
        workers = replica.workers()
        assert len(workers) == 2
        read_before = {pid: read_bytes(pid) for pid in workers}
        outcomes = await aborts_at_once(replica.base, [alice, bob] * 12)
        legacy = await list_projects_legacy(replica.base, alice, 3)
        served = {pid: read_bytes(pid) - read_before[pid] for pid in workers}

        replica.parent.send_signal(signal.SIGTERM)
        assert replica.parent.wait(30) == 0
        assert not [pid for pid in workers if alive(pid)], "a worker outlived its parent"

    sent = infrabox_stub.sent("DELETE")
    assert sum(auth == f"Bearer {alice}" for _, _, auth in sent) == 5
    assert sum(auth == f"Bearer {bob}" for _, _, auth in sent) == 5
    assert sum(ok for caller, ok in outcomes if caller == alice) == 5
    assert sum(ok for caller, ok in outcomes if caller == bob) == 5
    assert legacy == [True, True, True]
    assert all(count > 4096 for count in served.values()), f"bytes read per worker: {served}"
    logged = replica.log.read_text()
    assert "worker 1/2" in logged and "worker 2/2" in logged
    verified = audit_verify(replica.audit)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def metrics_directories(parent: Path) -> list[Path]:
    return list(parent.glob("mcp-ci-tools-metrics-*"))


def scrape(base: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """One `GET /metrics` on a connection of its own (so either worker may answer): samples by name."""
    response = httpx.get(base + "/metrics", timeout=10, headers={"Connection": "close"})
    assert response.status_code == 200, response.text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


async def test_every_scrape_of_a_replica_counts_the_calls_of_all_its_workers(
    redis_server: RedisServer, infrabox_stub: RecordingInfraBox, tmp_path: Path
) -> None:
    alice, bob = token("alice"), token("bob")
    with two_workers(infrabox_stub.url, redis_server.url, tmp_path) as replica:
        workers = replica.workers()
        read_before = {pid: read_bytes(pid) for pid in workers}
        await aborts_at_once(replica.base, [alice, bob] * 8)
        served = {pid: read_bytes(pid) - read_before[pid] for pid in workers}
        scrapes = [scrape(replica.base) for _ in range(8)]
        metrics_dirs = metrics_directories(tmp_path)

        replica.parent.send_signal(signal.SIGTERM)
        assert replica.parent.wait(30) == 0

    assert len(metrics_dirs) == 1
    assert not metrics_dirs[0].exists(), "the parent removes the workers' metrics directory"
    assert all(count > 4096 for count in served.values()), f"both workers served calls: {served}"
    for samples in scrapes:
        calls = {
            (labels["decision"], labels["outcome"]): value
            for labels, value in samples["mcp_ci_tool_calls_total"]
            if labels["tool"] == "abort_job"
        }
        assert sum(calls.values()) == 16, calls
        assert calls[("allowed", "success")] == 10  # five a token, whichever worker sent them
        assert [value for _, value in samples["mcp_ci_inflight_calls"]] == [0]
        assert [labels for labels, _ in samples["mcp_ci_build_info"]] == [
            {"version": mcp_ci_tools.__version__}
        ]
        durations = samples["mcp_server_operation_duration_seconds_count"]
        assert sum(value for labels, value in durations if labels["gen_ai_tool_name"] == "abort_job") == 16


async def confirmed_abort(base: str, caller: str) -> tuple[list[str], bool]:
    """abort_job under MCP_CI_CONFIRM, the user accepting; every request on a new connection, so the
    round that carries the answer may reach another worker than the round that asked."""
    asked: list[str] = []

    async def accept(context: Any, params: Any) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    async with (
        httpx2.AsyncClient(
            headers={"Authorization": f"Bearer {caller}"},
            timeout=30,
            limits=httpx2.Limits(max_keepalive_connections=0),
        ) as http,
        Client(
            streamable_http_client(base + "/mcp", http_client=http),
            mode="2026-07-28",
            elicitation_callback=accept,
        ) as client,
    ):
        result = await client.call_tool("abort_job", {"project_id": PROJECT, "job_id": JOB})
    assert not result.is_error, result.content
    return asked, not result.is_error


async def test_a_confirmation_answered_on_another_worker_is_accepted(
    redis_server: RedisServer, infrabox_stub: RecordingInfraBox, tmp_path: Path
) -> None:
    with two_workers(infrabox_stub.url, redis_server.url, tmp_path, MCP_CI_CONFIRM="abort_job") as replica:
        outcomes = [await confirmed_abort(replica.base, token(f"user{n}")) for n in range(10)]

    assert [len(asked) for asked, _ in outcomes] == [1] * 10
    assert all(sent for _, sent in outcomes)
    assert len(infrabox_stub.sent("DELETE")) == 10


async def test_a_worker_that_dies_stops_the_replica_with_status_1(
    redis_server: RedisServer, infrabox_stub: RecordingInfraBox, tmp_path: Path
) -> None:
    with two_workers(infrabox_stub.url, redis_server.url, tmp_path) as replica:
        first, second = replica.workers()
        os.kill(first, signal.SIGKILL)

        assert replica.parent.wait(60) == 1
        assert not alive(second)
    assert f"worker pid {first} exited with status -9; stopping the other workers" in replica.log.read_text()


def test_a_port_in_use_stops_the_replica_before_any_worker_starts(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "INFRABOX_URL": "http://127.0.0.1:1",
            "MCP_CI_STATE_URL": "redis://127.0.0.1:1/0",
            "MCP_CI_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
        }
        command = [sys.executable, "-m", "mcp_ci_tools", "--transport", "streamable-http", "--workers", "2"]
        done = subprocess.run(
            [*command, "--port", str(port)], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("mcp-ci-tools: configuration error: MCP_CI_PORT:")
    assert "worker" not in done.stderr
