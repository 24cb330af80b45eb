"""Shared fixtures: a fake clock (ours and `limits`' together), audit sinks, a respx InfraBox, servers, clients."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import limits.aio.storage.memory as limits_memory
import pytest
import respx
from mcp import Client
from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent

from mcp_ci_tools.config import Settings
from mcp_ci_tools.server import build_server

TOKEN = "ib_mcp_" + "0123456789abcdef" * 3
INFRABOX_URL = "https://infrabox.test"
API = INFRABOX_URL + "/api/v1/mcp"
PROJECT_ID = "5b0e8a0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
BUILD_ID = "7d3f1c2b-4a5e-4f60-9b8a-1c2d3e4f5a6b"
JOB_ID = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
NEW_ID = "11111111-2222-4333-8444-555555555555"


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def text_of(result: CallToolResult) -> str:
    """The text a tool result shows the model (its one text content item)."""
    first = result.content[0]
    assert isinstance(first, TextContent), first
    return first.text


class FakeClock:
    """Wall-clock time that only moves when a test says so; also stands in for `limits`' `time` module."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class ListSink:
    """Keeps audit lines in memory, with whether each was asked to be durable."""

    lines: list[str] = field(default_factory=list)
    durable: list[bool] = field(default_factory=list)

    def write(self, line: str, *, durable: bool) -> None:
        self.lines.append(line)
        self.durable.append(durable)

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


class BrokenSink:
    def write(self, line: str, *, durable: bool) -> None:
        raise OSError(28, "No space left on device")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # limits' memory storage uses asyncio locks


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(limits_memory, "time", fake)
    return fake


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def audit() -> ListSink:
    return ListSink()


@pytest.fixture
def infrabox() -> Iterator[respx.MockRouter]:
    """InfraBox, mocked at the httpx transport; any request to an unmocked route fails the test."""
    with respx.mock(base_url=API, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


def make_settings(tmp_path: Path | None = None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "infrabox_url": INFRABOX_URL,
        "token": TOKEN,
        "allow_trigger": True,
        "audit_log": (tmp_path or Path("/nonexistent")) / "audit.jsonl",
    }
    values.update(overrides)
    return Settings(**values)


ServerFactory = Callable[..., MCPServer]


@pytest.fixture
def make_server(clock: FakeClock, sleeps: list[float], audit: ListSink, tmp_path: Path) -> ServerFactory:
    """build_server with the fake clock, a recording sleep, the in-memory audit and sequential request ids."""

    def factory(*, audit_sink: Any = None, **overrides: Any) -> MCPServer:
        counter = iter(range(1, 1_000_000))

        async def fake_sleep(seconds: float) -> None:
            sleeps.append(seconds)

        return build_server(
            make_settings(tmp_path, **overrides),
            clock=clock,
            sleep=fake_sleep,
            audit_sink=audit if audit_sink is None else audit_sink,
            new_request_id=lambda: f"req-{next(counter)}",
        )

    return factory


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def connect(mode: str) -> AsyncIterator[Callable[[MCPServer], Any]]:
    """Connects an in-memory SDK `Client` in the parametrised protocol mode."""
    from contextlib import AsyncExitStack

    async with AsyncExitStack() as stack:

        async def open_client(server: MCPServer) -> Client:
            return await stack.enter_async_context(Client(server, mode=mode))

        yield open_client
