"""SIGTERM while a trigger call is in flight: the call completes, the audit file is whole, exit status 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.conftest import JOB_ID, NEW_ID, PROJECT_ID, TOKEN, free_port, text_of
from tests.processes import wait_until_answering

pytestmark = pytest.mark.anyio


@contextmanager
def slow_infrabox(received: threading.Event, delay_s: float) -> Iterator[str]:
    """An InfraBox stand-in whose rerun answers only after `delay_s`."""

    async def rerun(request: Request) -> JSONResponse:
        received.set()
        await anyio.sleep(delay_s)
        return JSONResponse({"message": "Successfully rerun job", "new_job_id": NEW_ID})

    app = Starlette(routes=[Route("/api/v1/mcp/projects/{pid}/jobs/{jid}/rerun", rerun, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


async def test_sigterm_lets_the_call_in_flight_finish_and_exits_cleanly(tmp_path: Path) -> None:
    received = threading.Event()
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    with slow_infrabox(received, delay_s=1.5) as upstream:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "INFRABOX_URL": upstream,
            "MCP_CI_ALLOW_TRIGGER": "true",
            "MCP_CI_AUDIT_LOG": str(audit),
        }
        command = [
            sys.executable,
            "-m",
            "mcp_ci_tools",
            "--transport",
            "streamable-http",
            "--port",
            str(port),
        ]
        with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as process:
            try:
                base = f"http://127.0.0.1:{port}"
                await anyio.to_thread.run_sync(
                    lambda: wait_until_answering(base + "/healthz", process, timeout_s=30)
                )
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with (
                    httpx2.AsyncClient(headers=headers, timeout=30) as http,
                    Client(streamable_http_client(base + "/mcp", http_client=http)) as client,
                ):
                    await client.list_tools()  # as clients do first; the result is validated against it
                    results = []

                    async def call() -> None:
                        results.append(
                            await client.call_tool("rerun_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})
                        )

                    async with anyio.create_task_group() as group:
                        group.start_soon(call)
                        await anyio.to_thread.run_sync(received.wait, 10)
                        process.send_signal(signal.SIGTERM)
                exit_code = await anyio.to_thread.run_sync(lambda: process.wait(20))
            finally:
                if process.poll() is None:
                    process.kill()
            stderr = process.stderr.read() if process.stderr else ""

    [result] = results
    assert result.is_error is False, text_of(result)
    assert result.structured_content["new_job_id"] == NEW_ID
    assert exit_code == 0, stderr
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["event"], r.get("outcome")) for r in records] == [("attempt", None), ("result", "success")]
    assert "waiting up to 10 s for calls in flight" in stderr
    assert TOKEN not in stderr
