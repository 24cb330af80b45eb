"""Waiting for a server process started by a test (the real command, as an operator runs it)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["INITIALIZE", "INITIALIZED", "wait_until_answering"]

# The 2025-11-25 handshake of a raw JSON-RPC client over stdio: `initialize` (id 1), then `initialized`.
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def wait_until_answering(
    url: str,
    process: subprocess.Popen[Any],
    *,
    status: int = 200,
    timeout_s: float = 20.0,
    log: Path | None = None,
) -> httpx.Response:
    """Poll `url` until it answers with `status`; if the process exits first, fail with its stderr (a text
    pipe) or the `log` file it writes to."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr is not None else ""
            if log is not None:
                stderr = log.read_text()
            raise AssertionError(f"the server exited with {process.returncode}: {str(stderr)[-2000:]}")
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == status:
                return answer
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer {status} within {timeout_s:.0f} s")
        time.sleep(0.1)
