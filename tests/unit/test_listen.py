"""The listening sockets we hand to uvicorn: every accepted connection has Nagle's algorithm off.

uvicorn writes a response's head and body in separate writes. With Nagle on, the body of every response
after the first on a kept-alive connection waits for the client's delayed ACK (~40 ms on Linux), so a client
that keeps its connection (every MCP SDK does) saw ~44 ms per call where a fresh connection saw ~1 ms.
asyncio sets TCP_NODELAY on an accepted connection only when the listening socket says IPPROTO_TCP.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from mcp_ci_tools.http_app import listen
from mcp_ci_tools.sandbox.app import bind

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # uvicorn serves on asyncio, and this asks asyncio's own rule


async def _nodelay_of_an_accepted_connection(sock: socket.socket) -> int:
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            server_side = transport.get_extra_info("socket")
            accepted.set_result(server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)  # what uvicorn does with it
    async with server:
        host, port = sock.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()


@pytest.mark.parametrize(
    "make",
    [
        lambda: listen("127.0.0.1", 0),
        lambda: listen("127.0.0.1", 0, reuse_port=True),
        lambda: bind("127.0.0.1", 0),
    ],
    ids=["server", "server worker (SO_REUSEPORT)", "sandbox"],
)
async def test_accepted_connections_send_without_waiting_for_an_ack(
    make: Callable[[], socket.socket],
) -> None:
    assert await _nodelay_of_an_accepted_connection(make()) != 0


def test_a_held_worker_port_is_bound_but_accepts_nothing() -> None:
    with listen("127.0.0.1", 0, reuse_port=True, backlog=0) as held:
        port = held.getsockname()[1]
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))
        # and a worker can still listen on the same port beside it
        with listen("127.0.0.1", port, reuse_port=True) as worker:
            assert worker.getsockname()[1] == port
