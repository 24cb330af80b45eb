"""Three `mcp-ci-tools` processes on one Redis share one exact trigger budget per token."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import free_port, text_of
from tests.processes import wait_until_answering
from tests.redis.conftest import RecordingInfraBox, RedisServer

pytestmark = pytest.mark.anyio

PROJECT = "a1000000-0000-4000-8000-000000000001"
JOB = "c1000000-0000-4000-8000-000000004403"


def token(name: str) -> str:
    return "ib_mcp_" + hashlib.sha256(name.encode()).hexdigest()[:48]


@contextmanager
def replica(upstream: str, state_url: str, tmp_path: Path, n: int) -> Iterator[str]:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "INFRABOX_URL": upstream,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_STATE_URL": state_url,
        "MCP_CI_DEDUPE_SECONDS": "0",  # identical calls on purpose: this test is about the budget
        "MCP_CI_AUDIT_LOG": str(tmp_path / f"audit-{n}.jsonl"),
    }
    command = [sys.executable, "-m", "mcp_ci_tools", "--transport", "streamable-http", "--port", str(port)]
    with (
        open(tmp_path / f"replica-{n}.log", "w") as log,
        subprocess.Popen(command, env=env, stderr=log) as process,
    ):
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_answering(base + "/readyz", process, timeout_s=30, log=tmp_path / f"replica-{n}.log")
            yield base
        finally:
            process.terminate()
            process.wait(20)


async def call_abort(base: str, caller_token: str) -> bool:
    """One abort_job over Streamable HTTP (2026-07-28, stateless); True if it was sent."""
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {caller_token}"}, timeout=30) as http,
        Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
    ):
        result = await client.call_tool("abort_job", {"project_id": PROJECT, "job_id": JOB})
    if result.is_error:
        assert "Trigger budget used up" in text_of(result), text_of(result)
    return not result.is_error


async def test_replicas_together_send_exactly_the_budget_per_token(
    redis_server: RedisServer, infrabox_stub: RecordingInfraBox, tmp_path: Path
) -> None:
    alice, bob = token("alice"), token("bob")
    with ExitStack() as stack:
        bases = [
            stack.enter_context(replica(infrabox_stub.url, redis_server.url, tmp_path, n)) for n in range(3)
        ]
        outcomes: list[tuple[str, bool]] = []

        async def one(base: str, caller: str) -> None:
            outcomes.append((caller, await call_abort(base, caller)))

        async with anyio.create_task_group() as group:
            for i in range(24):
                group.start_soon(one, bases[i % 3], alice if i % 2 == 0 else bob)
        late = stack.enter_context(replica(infrabox_stub.url, redis_server.url, tmp_path, 3))
        late_outcome = await call_abort(late, alice)

    sent = infrabox_stub.sent("DELETE")
    assert sum(auth == f"Bearer {alice}" for _, _, auth in sent) == 5
    assert sum(auth == f"Bearer {bob}" for _, _, auth in sent) == 5
    assert sum(ok for caller, ok in outcomes if caller == alice) == 5
    assert sum(ok for caller, ok in outcomes if caller == bob) == 5
    assert late_outcome is False, "a replica started later sees the budget already spent"
