"""A cheaper answer to httpcore's "has the server closed this idle connection?" question.

Before every request, and again when an answer is closed, httpcore walks its whole pool and asks each idle
connection's stream for `get_extra_info("is_readable")`. httpcore's anyio stream answers by looking the raw
socket up through anyio's typed attributes, which build a dict of every attribute (and call `getpeername`)
on each lookup: with 16 kept-alive connections that is most of what a request costs the pool. The streams
made here find their raw socket once and ask only the question itself (a zero-timeout poll); everything
else goes to the stream they wrap, unchanged.
"""

# ruff: noqa: ASYNC109 - the `timeout` parameters are httpcore's interface, passed through as they come

from __future__ import annotations

import select
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpcore

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = ["check_idle_sockets_cheaply"]

_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)  # httpcore's own


def check_idle_sockets_cheaply(transport: httpx.AsyncHTTPTransport) -> None:
    """Make `transport`'s pool (direct or through a proxy) open its connections through `_Backend`."""
    # httpx 0.28 takes no network backend; the pool's is replaced before the first connection is made.
    pool = transport._pool
    pool._network_backend = _Backend(pool._network_backend)


def _readable(sock: socket.socket | None) -> bool:
    """True when a read would not block: data or EOF waits, or the socket is gone (as httpcore reads it)."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return _readable(self._socket)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AsyncNetworkBackend):
    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[_SocketOption] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _Stream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)
