"""Kept-alive connections to InfraBox, over real loopback sockets: an idle connection the server closed is
never used again (so a write is not sent into a dead socket), and one it kept open is reused."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.client._sockets import _readable
from tests.conftest import JOB_ID, PROJECT_ID, TOKEN

pytestmark = pytest.mark.anyio

P, J = uuid.UUID(PROJECT_ID), uuid.UUID(JOB_ID)
BODY = json.dumps({"message": "Successfully aborted job"}).encode()


@dataclass
class FakeInfraBox:
    """Answers every request 200; `close_after_answer` hangs up once an answer is sent (as a server
    whose keep-alive timeout is shorter than the client's does), without saying `Connection: close`."""

    close_after_answer: bool
    connections: int = 0
    requests: list[str] = field(default_factory=list)
    url: str = ""
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)  # set once a connection is closed

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                self.requests.append(head.split(b" ", 2)[0].decode() + " " + head.split(b" ", 2)[1].decode())
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
                await writer.drain()
                if self.close_after_answer:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()
            await writer.wait_closed()
            self.hung_up.set()


async def _serve(infrabox: FakeInfraBox) -> AsyncIterator[FakeInfraBox]:
    server = await asyncio.start_server(infrabox.handle, "127.0.0.1", 0)
    infrabox.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    async with server:
        yield infrabox


@pytest.fixture
async def hanging_up() -> AsyncIterator[FakeInfraBox]:
    async for infrabox in _serve(FakeInfraBox(close_after_answer=True)):
        yield infrabox


@pytest.fixture
async def keeping_alive() -> AsyncIterator[FakeInfraBox]:
    async for infrabox in _serve(FakeInfraBox(close_after_answer=False)):
        yield infrabox


async def test_a_write_after_the_server_hung_up_goes_on_a_new_connection(hanging_up: FakeInfraBox) -> None:
    client = InfraBoxClient(hanging_up.url, TOKEN)
    try:
        await client.abort_job(P, J, request_id="first")
        await hanging_up.hung_up.wait()  # on loopback our socket reads EOF as soon as theirs is closed

        answer = await client.abort_job(P, J, request_id="second")
    finally:
        await client.aclose()

    assert answer.message == "Successfully aborted job"
    abort = f"DELETE /api/v1/mcp/projects/{PROJECT_ID}/jobs/{JOB_ID}/abort"
    assert hanging_up.requests == [abort, abort]  # each sent exactly once
    assert hanging_up.connections == 2


async def test_a_connection_the_server_keeps_open_is_reused(keeping_alive: FakeInfraBox) -> None:
    client = InfraBoxClient(keeping_alive.url, TOKEN)
    try:
        for request_id in ("one", "two", "three"):
            await client.abort_job(P, J, request_id=request_id)
    finally:
        await client.aclose()

    assert len(keeping_alive.requests) == 3
    assert keeping_alive.connections == 1


def test_readable_tells_an_idle_socket_from_a_hung_up_or_closed_one() -> None:
    ours, theirs = socket.socketpair()
    try:
        assert _readable(ours) is False
        theirs.close()
        assert _readable(ours) is True
    finally:
        ours.close()
    assert _readable(ours) is True  # closed on our side: fileno() is -1
    assert _readable(None) is True
