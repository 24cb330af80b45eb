"""`MCP_CI_AUDIT_LOG=-`: the audit records on standard output for a container's log collector (HTTP only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from tests.conftest import free_port
from tests.processes import wait_until_answering

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


async def test_over_http_the_records_go_to_stdout_and_nothing_else_does(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "INFRABOX_URL": sandbox.url,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_AUDIT_LOG": "-",
    }
    command = [sys.executable, "-m", "mcp_ci_tools", "--transport", "streamable-http", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            wait_until_answering(base + "/readyz", server)
            headers = {"Authorization": f"Bearer {SANDBOX_TOKENS['trigger'].token}"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=30) as http,
                Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
            ):
                rerun = await client.call_tool(
                    "rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
                )
        finally:
            server.terminate()
            out, err = server.communicate(timeout=20)

    assert rerun.is_error is False
    records = [json.loads(line) for line in out.splitlines()]  # every stdout line is an audit record
    assert [(r["event"], r["tool"], r.get("outcome")) for r in records if r["tool"] == "rerun_job"] == [
        ("attempt", "rerun_job", None),
        ("result", "rerun_job", "success"),
    ]
    assert SANDBOX_TOKENS["trigger"].token not in out
    assert "serving MCP" in err and "serving MCP" not in out  # logs stay on stderr
    assert not (tmp_path / "-").exists()


def test_over_stdio_a_dash_is_refused_at_start(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mcp_ci_tools"],
        env={
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            "INFRABOX_URL": "https://infrabox.example.com",
            "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["trigger"].token,
            "MCP_CI_AUDIT_LOG": "-",
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.splitlines() == [
        "mcp-ci-tools: configuration error: MCP_CI_AUDIT_LOG: '-' (standard output) works only with the HTTP "
        "transports: over stdio, stdout carries the MCP messages and nothing else; name a file instead"
    ]
