"""`mcp-ci-tools --sandbox` as a user runs it: over every transport, and leaving nothing behind on any exit.

Each run gets its own TMPDIR, so the sandbox's temporary directory can be looked for afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED
from tests.conftest import free_port
from tests.processes import wait_until_answering

pytestmark = pytest.mark.anyio


def _env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}


def _left_behind(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("mcp-ci-tools-sandbox-*"))


@contextmanager
def _serving(tmp_path: Path, transport: str) -> Iterator[tuple[str, list[str]]]:
    """The server's base URL, and a list that receives its stderr once it has stopped (on SIGTERM)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "mcp_ci_tools",
        "--sandbox",
        "--transport",
        transport,
        "--port",
        str(port),
    ]
    with subprocess.Popen(command, env=_env(tmp_path), stderr=subprocess.PIPE, text=True) as process:
        base = f"http://127.0.0.1:{port}"
        wait_until_answering(base + "/healthz", process)
        stopped: list[str] = []
        try:
            yield base, stopped
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            stopped.append(process.communicate(timeout=20)[1])
            stopped.append(str(process.returncode))


@pytest.mark.parametrize("transport", ["streamable-http", "sse", "http"])
async def test_the_sandbox_serves_over_http_and_callers_use_its_printed_tokens(
    tmp_path: Path, transport: str
) -> None:
    with _serving(tmp_path, transport) as (base, stopped):
        assert _left_behind(tmp_path)  # the sandbox's data, while it runs
        headers = {"Authorization": f"Bearer {SANDBOX_TOKENS['trigger'].token}"}
        async with AsyncExitStack() as stack:
            if transport == "sse":
                client = await stack.enter_async_context(
                    Client(sse_client(base + "/sse", headers=headers, timeout=30))
                )
            else:
                http = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=30))
                client = await stack.enter_async_context(
                    Client(streamable_http_client(base + "/mcp", http_client=http))
                )
            projects = await client.call_tool("list_projects", {})
            rerun = await client.call_tool(
                "rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
            )
    log, status = stopped

    assert status == "0"
    assert projects.structured_content is not None
    assert {p["name"] for p in projects.structured_content["projects"]} == {
        "payments-service",
        "web-frontend",
    }
    assert rerun.is_error is False and rerun.structured_content and rerun.structured_content["new_job_id"]
    assert "INFRABOX_MCP_TOKEN must not be set" not in log
    assert f"sandbox token trigger         {SANDBOX_TOKENS['trigger'].token}" in log
    assert "'Authorization: Bearer <token>'" in log
    assert _left_behind(tmp_path) == []  # removed at exit


async def test_stdio_leaves_nothing_behind_when_the_client_goes_away(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_ci_tools", "--sandbox"], env=_env(tmp_path)
    )
    with open(tmp_path / "server.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await client.call_tool("list_projects", {})
            assert _left_behind(tmp_path)

    assert _left_behind(tmp_path) == []  # the SDK client waits for the server process to exit


def test_stdio_leaves_nothing_behind_on_sigterm(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "mcp_ci_tools", "--sandbox"]
    with subprocess.Popen(
        command,
        env=_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        deadline = time.monotonic() + 20
        log = ""
        while "serving MCP over stdio" not in log:
            assert time.monotonic() < deadline and process.poll() is None, log
            log += process.stderr.readline()
        assert _left_behind(tmp_path)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)

    assert process.returncode == -signal.SIGTERM  # as without --sandbox: ended by the signal

    assert _left_behind(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["--help"], 0),
        (["--transport", "websocket"], 2),  # a configuration error after the sandbox started
        (["--trigger-per-minute", "0"], 2),
    ],
)
def test_help_and_configuration_errors_leave_nothing_behind(
    tmp_path: Path, args: list[str], status: int
) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "mcp_ci_tools", "--sandbox", *args],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert completed.returncode == status, completed.stderr
    assert _left_behind(tmp_path) == []
    if status == 2:
        assert re.search(r"^mcp-ci-tools: configuration error: MCP_CI_\w+: ", completed.stderr, re.M)
