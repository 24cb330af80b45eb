"""The real command and a client's `_meta.traceparent`: the audit records its trace id with tracing off (no
SDK configured), and with `OTEL_TRACES_EXPORTER=console` the spans go to stderr, flushed at exit, while
stdout carries MCP messages only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import BUILD_ID, PROJECT_ID, TOKEN
from tests.e2e.test_stdio import _env
from tests.processes import INITIALIZE, INITIALIZED

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _session(tmp_path: Path, **extra: str) -> tuple[list[dict[str, Any]], str]:
    """Initialize, call restart_build (refused locally: no trigger permission) with a traceparent, close
    stdin; the messages on stdout and the stderr text."""
    messages = [
        INITIALIZE,
        INITIALIZED,
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {
                "name": "restart_build",
                "arguments": {"project_id": PROJECT_ID, "build_id": BUILD_ID},
                "_meta": {"traceparent": TRACEPARENT},
            },
        },
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "mcp_ci_tools"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**_env(tmp_path, **extra), "PYTHONUNBUFFERED": "1"},
        text=True,
    )
    assert process.stdin and process.stdout
    for message in messages:
        process.stdin.write(json.dumps(message) + "\n")
    process.stdin.flush()
    lines: list[str] = []
    while not any('"id":2' in line.replace(" ", "") for line in lines):
        line = process.stdout.readline()
        assert line, "server closed stdout early"
        lines.append(line)
    process.stdin.close()
    assert process.stderr
    lines.append(process.stdout.read())
    err = process.stderr.read()
    process.wait(timeout=30)
    process.stdout.close()
    process.stderr.close()
    return [json.loads(line) for text in lines for line in text.splitlines() if line.strip()], err


def _audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def test_without_tracing_the_audit_records_the_clients_trace_id(tmp_path) -> None:
    messages, stderr = _session(tmp_path)

    assert [m.get("id") for m in messages] == [1, 2]
    assert [(r["tool"], r["reason"], r["trace_id"]) for r in _audit(tmp_path)] == [
        ("restart_build", "trigger_not_allowed", TRACE_ID)
    ]
    assert "tracing: exporting" not in stderr


def test_console_spans_go_to_stderr_at_exit_and_stdout_stays_mcp(tmp_path) -> None:
    messages, stderr = _session(tmp_path, OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="ci-tools-test")

    assert [m.get("id") for m in messages] == [1, 2]
    assert [r["trace_id"] for r in _audit(tmp_path)] == [TRACE_ID]
    assert '"name": "tools/call restart_build"' in stderr
    assert f'"trace_id": "0x{TRACE_ID}"' in stderr
    assert '"service.name": "ci-tools-test"' in stderr
    assert TOKEN not in stderr
