"""At start-up the audit file is checked and its torn tail repaired: the real command over stdio."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import BUILD_ID, PROJECT_ID, text_of
from tests.e2e.test_stdio import COMMAND, _env

pytestmark = pytest.mark.anyio

TORN = b'{"ts":"2027-01-15T08:00:00.000Z","token":"sha256:0123456789ab","event":"result","tool":"restart_jo'


async def test_a_torn_tail_is_repaired_at_start_up_before_any_call(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_bytes(b'{"ts":"2027-01-15T08:00:00.000Z","event":"attempt"}\n' + TORN)
    audit.chmod(0o600)
    params = StdioServerParameters(command=COMMAND, args=[], env=_env(tmp_path))
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            await client.list_tools()  # started; no tool called, nothing else written
            lines = [json.loads(line) for line in audit.read_text().splitlines()]

    assert [line["event"] for line in lines] == ["attempt", "torn"]
    assert lines[1]["bytes"] == len(TORN)
    assert base64.b64decode(lines[1]["fragment_b64"]) == TORN
    assert (tmp_path / "audit.jsonl.torn").exists()
    stderr = (tmp_path / "stderr.log").read_text()
    assert f"audit log {audit} ended in a torn line: {len(TORN)} byte(s) kept in {audit}.torn" in stderr


async def test_an_audit_file_that_cannot_be_trusted_is_one_warning_line_and_triggers_refuse(
    tmp_path: Path,
) -> None:
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    (tmp_path / "audit.jsonl").symlink_to(target)
    env = _env(tmp_path, MCP_CI_ALLOW_TRIGGER="true")
    params = StdioServerParameters(command=COMMAND, args=[], env=env)
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            refused = await client.call_tool(
                "restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID}
            )

    stderr = (tmp_path / "stderr.log").read_text().splitlines()
    warnings = [line for line in stderr if "WARNING" in line and "audit log unusable" in line]
    assert len(warnings) == 1, stderr
    assert f"(MCP_CI_AUDIT_LOG={tmp_path / 'audit.jsonl'})" in warnings[0]
    assert "symbolic link" in warnings[0] and "trigger tools refuse until it is fixed" in warnings[0]
    assert not any("Traceback" in line for line in stderr)
    assert any("serving MCP over stdio" in line for line in stderr)  # it started anyway
    assert refused.is_error and "audit" in text_of(refused).lower()
    assert target.read_text() == ""


def test_over_http_readyz_is_503_while_the_audit_file_cannot_be_written_and_recovers(tmp_path: Path) -> None:
    import subprocess
    import sys

    import httpx

    from tests.conftest import free_port
    from tests.processes import wait_until_answering

    target = tmp_path / "elsewhere.jsonl"
    target.write_text("")
    audit = tmp_path / "audit.jsonl"
    audit.symlink_to(target)
    port = free_port()
    env = {
        "PATH": "",
        "HOME": str(tmp_path),
        "INFRABOX_URL": "http://127.0.0.1:9",
        "MCP_CI_AUDIT_LOG": str(audit),
    }
    command = [sys.executable, "-m", "mcp_ci_tools", "--transport", "http", "--port", str(port)]
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as server:
        base = f"http://127.0.0.1:{port}"
        try:
            health = wait_until_answering(base + "/healthz", server)
            unready = httpx.get(base + "/readyz", timeout=5)
            audit.unlink()  # the operator fixes it: the server may now create the file itself
            ready = httpx.get(base + "/readyz", timeout=5)
        finally:
            server.terminate()
            stderr = server.communicate(timeout=20)[1]

    assert health.status_code == 200  # alive
    assert unready.status_code == 503 and unready.json() == {"status": "not ready"}  # out of rotation
    assert ready.status_code == 200  # back without a restart
    assert sum("audit log unusable" in line for line in stderr.splitlines()) == 1  # warned once
    assert target.read_text() == ""  # nothing written through the symlink
