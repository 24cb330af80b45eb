"""The audit trail of real runs of the command, read back with `mcp-ci-tools audit verify|show|stats`.

A session against the sandbox, a restart and a rotation in between: one whole chain. A server killed with
SIGKILL while InfraBox has not answered a restart: the call is shown without result, not as tampering.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from tests.processes import INITIALIZE, INITIALIZED

pytestmark = pytest.mark.anyio

P = SEED.payments


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


def _env(tmp_path: Path, url: str, audit: str, role: str = "trigger") -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "INFRABOX_URL": url,
        "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS[role].token,
        "MCP_CI_ALLOW_TRIGGER": "true",
        "MCP_CI_AUDIT_LOG": audit,
    }


def audit_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcp_ci_tools", "audit", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": os.environ["PATH"], **(env or {})},
    )


async def _session(params: StdioServerParameters, errlog: Path, *calls: tuple[str, dict[str, Any]]) -> None:
    with errlog.open("a") as log:
        async with Client(stdio_client(params, errlog=log)) as client:
            for tool, arguments in calls:
                await client.call_tool(tool, arguments)


async def test_a_real_run_with_a_restart_and_a_rotation_verifies_whole_and_reads_back(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "mcp_ci_tools"], env=_env(tmp_path, sandbox.url, str(audit))
    )
    errlog = tmp_path / "server.log"
    await _session(
        params,
        errlog,
        ("list_projects", {}),
        ("diagnose_build", {"project_id": P, "build_id": SEED.failed_build}),
        ("restart_build", {"project_id": P, "build_id": SEED.failed_build}),
        ("abort_job", {"project_id": P, "job_id": "../../etc"}),
    )
    await _session(params, errlog, ("whoami", {}))  # a restart: a new process continues the chain
    audit.rename(tmp_path / "audit.jsonl.1")  # a rotation between sessions
    await _session(params, errlog, ("get_build", {"project_id": P, "build_id": SEED.failed_build}))

    files = [str(tmp_path / "audit.jsonl.1"), str(audit)]
    verified = audit_cli("verify", *files)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.splitlines() == [
        "audit verify: whole: 2 file(s), 7 record(s), chains: audit.jsonl seq 1-7"
    ]

    shown = audit_cli("show", *files, "--tool", "restart_build")
    [line] = shown.stdout.splitlines()
    assert f"restart_build      project={P} build={SEED.failed_build}  allowed/success  HTTP 200" in line
    assert "confirmation=not_required" in line

    as_json = [json.loads(line) for line in audit_cli("show", *files, "--json").stdout.splitlines()]
    assert [call["tool"] for call in as_json] == [
        "list_projects",
        "diagnose_build",
        "restart_build",
        "abort_job",
        "whoami",
        "get_build",
    ]
    restart = as_json[2]
    assert (restart["outcome"], restart["orphan"], restart["attempt_ts"] <= restart["ts"]) == (
        "success",
        False,
        True,
    )
    assert restart["detail"]["new_build_id"]
    # who restarted the build that the restart made? nobody yet; who touched the failed build? two calls
    about = audit_cli("show", *files, "--build", SEED.failed_build).stdout.splitlines()
    assert [line.split()[2] for line in about] == ["diagnose_build", "restart_build", "get_build"]
    new_build = audit_cli("show", *files, "--build", restart["detail"]["new_build_id"]).stdout.splitlines()
    assert [line.split()[2] for line in new_build] == ["restart_build"]  # the call that created it

    stats = json.loads(audit_cli("stats", *files, "--json").stdout)
    assert stats["calls"] == 6
    assert stats["by_tool"]["restart_build"] == {"calls": 1, "allowed": 1, "success": 1, "sent": 1}
    assert stats["by_tool"]["abort_job"] == {"calls": 1, "denied": 1}
    assert stats["denied_by_reason"] == {"invalid_input": 1}
    assert SANDBOX_TOKENS["trigger"].token not in audit_cli("show", *files).stdout

    # the same files, one line edited: exit 1, naming the line
    rotated = tmp_path / "audit.jsonl.1"
    changed = rotated.read_text().replace('"outcome":"success"', '"outcome":"error"', 1)
    rotated.write_text(changed)
    tampered = audit_cli("verify", *files)
    assert tampered.returncode == 1
    assert tampered.stdout.splitlines()[0].startswith(
        f"audit verify: NOT WHOLE: {rotated}:1: edited: seq 1 was edited"
    )


class _SilentInfraBox:
    """Accepts connections and reads requests, and never answers: a restart that is sent and hangs."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._server.close()
        for connection in self._held:
            connection.close()


def _rpc(process: subprocess.Popen[bytes], message: dict[str, Any]) -> None:
    assert process.stdin is not None
    process.stdin.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
    process.stdin.flush()


def test_a_server_killed_mid_call_leaves_an_attempt_shown_without_result(tmp_path: Path) -> None:
    infrabox = _SilentInfraBox()
    audit = tmp_path / "audit-{host}.jsonl"
    env = _env(tmp_path, infrabox.url, str(audit))
    with (tmp_path / "server.log").open("wb") as errlog:
        process = subprocess.Popen(
            [sys.executable, "-m", "mcp_ci_tools"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errlog,
            env=env,
        )
    try:
        _rpc(process, INITIALIZE)
        _rpc(process, INITIALIZED)
        _rpc(
            process,
            {
                "id": 2,
                "method": "tools/call",
                "params": {
                    "name": "restart_build",
                    "arguments": {"project_id": P, "build_id": SEED.failed_build},
                },
            },
        )
        written = tmp_path / f"audit-{socket.gethostname()}.jsonl"  # {host}: one file per replica
        deadline = time.monotonic() + 30
        while b'"event":"attempt"' not in (written.read_bytes() if written.exists() else b""):
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        assert process.stdin is not None
        process.stdin.close()
        infrabox.close()

    shown = audit_cli("show", env={"MCP_CI_AUDIT_LOG": str(audit)})  # the files of the configured pattern
    [line] = shown.stdout.splitlines()
    assert f"restart_build      project={P} build={SEED.failed_build}  allowed/no_result" in line
    assert line.endswith("NO RESULT: the server stopped mid-call; the outcome is unknown")

    verified = audit_cli("verify", str(written))
    assert verified.returncode == 0
    summary, note = verified.stdout.splitlines()
    assert summary.startswith("audit verify: whole: 1 file(s), 1 record(s)") and summary.endswith("1 note(s)")
    assert "restart_build" in note and "has an attempt and no result: the server stopped mid-call" in note
    assert json.loads(audit_cli("stats", str(written), "--json").stdout)["by_tool"]["restart_build"] == {
        "calls": 1,
        "allowed": 1,
        "no_result": 1,
        "sent": 1,
    }
