"""wait_for_build's last progress notification precedes its result on the wire, on every transport.

Read raw, as the bytes arrive: a client library may run progress callbacks as tasks of their own, so what
it reports can trail the result; the order the server sends in is what this checks. The SSE case is
repeated, since a lost last notification there was seen in 3 of 6 runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle
from tests.e2e.test_http import INIT, MCP_HEADERS, http_settings, sandbox, serving

__all__ = ["sandbox"]  # the fixture, used by name

pytestmark = pytest.mark.anyio

ALICE = SANDBOX_TOKENS["trigger"].token
RUNS = 12


def _wait_call(request_id: int) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {
            "name": "wait_for_build",
            "arguments": {"project_id": SEED.payments, "build_id": SEED.failed_build, "timeout_s": 5},
            "_meta": {"progressToken": f"p-{request_id}"},
        },
    }


def _order(messages: list[dict[str, Any]], request_id: int) -> tuple[list[float], int]:
    """The progress values sent for `request_id` before its result, and how many messages came after it."""

    def ours(message: dict[str, Any]) -> bool:
        return bool(
            message.get("method") == "notifications/progress"
            and message["params"]["progressToken"] == f"p-{request_id}"
        )

    progress: list[float] = []
    for index, message in enumerate(messages):
        if ours(message):
            progress.append(message["params"]["progress"])
        elif message.get("id") == request_id:
            return progress, sum(ours(later) for later in messages[index + 1 :])
    raise AssertionError(f"no result for {request_id} in {messages}")


async def test_over_sse_the_last_progress_precedes_the_result_every_time(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    headers = {"authorization": f"Bearer {ALICE}"}
    with serving(http_settings(sandbox, tmp_path, transport="sse", read_per_minute=1000)) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            http.stream("GET", "/sse", headers=headers) as stream,
        ):
            lines = stream.aiter_lines()  # kept referenced: a dropped iterator would close the stream
            endpoint = ""
            async for line in lines:
                if line.startswith("data: /messages/"):
                    endpoint = line.removeprefix("data: ")
                    break
            await http.post(endpoint, json=INIT, headers=headers)
            await http.post(
                endpoint, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers
            )
            messages: list[dict[str, Any]] = []
            for run in range(2, 2 + RUNS):
                assert (await http.post(endpoint, json=_wait_call(run), headers=headers)).status_code == 202
                async for line in lines:
                    if line.startswith("data: {"):
                        messages.append(json.loads(line.removeprefix("data: ")))
                        if messages[-1].get("id") == run:
                            break

    for run in range(2, 2 + RUNS):
        progress, after = _order(messages, run)
        assert progress == [4.0], (run, progress)  # one look: 4 of 4 jobs ended, sent before the result
        assert after == 0


async def test_over_streamable_http_the_last_progress_precedes_the_result(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    headers = {**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
    with serving(http_settings(sandbox, tmp_path, read_per_minute=1000)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            opened = await http.post("/mcp", json=INIT, headers=headers)
            session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
            await http.post(
                "/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session
            )
            runs = []
            for run in range(2, 6):
                answer = await http.post("/mcp", json=_wait_call(run), headers=session)
                events = [
                    json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")
                ]
                runs.append(_order(events, run))

    assert runs == [([4.0], 0)] * 4


def test_over_stdio_the_last_progress_precedes_the_result(sandbox: SandboxHandle, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "INFRABOX_URL": sandbox.url,
        "INFRABOX_MCP_TOKEN": ALICE,
        "MCP_CI_READ_PER_MINUTE": "1000",
        "MCP_CI_AUDIT_LOG": str(tmp_path / "audit.jsonl"),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "mcp_ci_tools"],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as server:
        assert server.stdin is not None and server.stdout is not None

        def send(message: dict[str, Any]) -> None:
            assert server.stdin is not None
            server.stdin.write(json.dumps(message) + "\n")
            server.stdin.flush()

        def until(request_id: int) -> list[dict[str, Any]]:
            assert server.stdout is not None
            read: list[dict[str, Any]] = []
            while not read or read[-1].get("id") != request_id:
                line = server.stdout.readline()
                assert line, "the server closed stdout"
                read.append(json.loads(line))
            return read

        send(INIT)
        until(1)
        send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        runs = []
        for run in range(2, 2 + RUNS):
            send(_wait_call(run))
            runs.append(_order(until(run), run))
        server.stdin.close()
        server.wait(timeout=20)

    assert runs == [([4.0], 0)] * RUNS
