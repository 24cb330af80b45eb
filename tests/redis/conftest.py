"""A real redis-server on a free loopback port, started and stopped by the tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import limits.aio.storage.redis.redispy as limits_redispy
import pytest
from mcp.server import MCPServer

from mcp_ci_tools.audit import AuditSink
from mcp_ci_tools.server import build_server
from mcp_ci_tools.state import RedisState
from tests.conftest import FakeClock, free_port, make_settings


@dataclass
class RedisServer:
    """One redis-server process that a test may stop, freeze and start again on the same port."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = [
            shutil.which("redis-server") or "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(19)  # SIGSTOP: the port stays open, nothing answers

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(18)  # SIGCONT


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed: apt-get install redis-server")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.thaw()
        server.stop()


@dataclass
class RecordingInfraBox:
    """An InfraBox stand-in that accepts every write and read and records who sent what."""

    url: str = ""
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, authorization

    def sent(self, method: str | None = None) -> list[tuple[str, str, str]]:
        return [r for r in self.requests if method is None or r[0] == method]


@pytest.fixture
def infrabox_stub() -> Iterator[RecordingInfraBox]:
    import threading

    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    record = RecordingInfraBox()

    async def endpoint(request: Request) -> JSONResponse:
        record.requests.append((request.method, request.url.path, request.headers.get("authorization", "")))
        if request.method == "GET":
            return JSONResponse(
                [{"id": "a1000000-0000-4000-8000-000000000001", "name": "p", "type": "github"}]
            )
        return JSONResponse({"message": "ok", "jobs_aborted": 1})

    app = Starlette(routes=[Route("/api/v1/mcp/{path:path}", endpoint, methods=["GET", "POST", "DELETE"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    record.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    try:
        yield record
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def redis_clock(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The fake clock, also for the timestamps `limits` writes into Redis."""
    monkeypatch.setattr(limits_redispy, "time", clock)
    return clock


def replica(
    redis_server: RedisServer, tmp_path: Path, sink: AuditSink, clock: FakeClock, **overrides: object
) -> tuple[MCPServer, RedisState]:
    """One replica in this process on the shared redis-server (no dedupe guard unless asked), and its state."""
    settings = make_settings(tmp_path, state_url=redis_server.url, **{"dedupe_seconds": 0, **overrides})
    state = RedisState(
        redis_server.url, prefix=settings.state_prefix, timeout=settings.state_timeout, clock=clock
    )
    return build_server(settings, audit_sink=sink, clock=clock, state=state), state
