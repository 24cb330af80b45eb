"""Waiting for a server process started by a test (the real command, as an operator runs it)."""

from __future__ import annotations

import subprocess
import time

import httpx

__all__ = ["wait_until_answering"]


def wait_until_answering(
    url: str, process: subprocess.Popen[str], *, status: int = 200, timeout_s: float = 20.0
) -> httpx.Response:
    """Poll `url` until it answers with `status`; fail with the server's stderr if the process exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            stderr = process.stderr.read() if process.stderr is not None else ""
            raise AssertionError(f"the server exited with {process.returncode}: {stderr[-2000:]}")
        try:
            answer = httpx.get(url, timeout=2)
            if answer.status_code == status:
                return answer
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not answer {status} within {timeout_s:.0f} s")
        time.sleep(0.1)
