"""Connections before any request: a deadline for each request head, and a cap that drops idle connections.

uvicorn bounds an incomplete request only by size (`h11_max_incomplete_event_size`) and the wait between
requests on a kept-alive connection (`timeout_keep_alive`, armed only after a response, and cancelled by the
first byte of the next request). A connection that sends half a request line and then nothing is kept for
ever, and `limit_concurrency` counts such connections: at the limit uvicorn answers 503 to every new request,
health checks included, so a thousand silent sockets would take the server out of its load balancer.

So this protocol (uvicorn's h11 one, plus two rules) is used instead:

- every connection must send a complete request head within `header_timeout` seconds of connecting or of
  its previous response, else it is closed (whatever it sent is dropped unanswered);
- when a new connection would make more than `max_connections`, the connection that has been idle longest
  (connected or kept alive, with no request in flight) is closed to make room. A request in flight or an
  open event stream is never dropped for this, and a new connection is never refused for it, so `/healthz`
  keeps answering while silent sockets are what goes. uvicorn's `limit_concurrency` stays above the cap as
  a backstop for when every connection is busy.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["GuardedH11Protocol", "guarded_protocol"]

log = logging.getLogger("mcp_ci_tools.http")

_REPORT_EVERY_S = 60.0


class _Idle:
    """The connections of one server with no request in flight, the one idle longest first."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self._idle: dict[GuardedH11Protocol, None] = {}
        self._dropped = 0
        self._reported_at = float("-inf")

    def idle(self, connection: GuardedH11Protocol) -> None:
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def busy(self, connection: GuardedH11Protocol) -> None:
        self._idle.pop(connection, None)

    def make_room(self, newcomer: GuardedH11Protocol, open_now: int) -> None:
        for victim in list(self._idle):
            if open_now <= self.max_connections:
                break
            if victim is newcomer or victim.transport.is_closing():
                continue
            self._idle.pop(victim, None)
            victim.drop()
            open_now -= 1
            self._dropped += 1
        now = newcomer.loop.time()
        if self._dropped and now - self._reported_at >= _REPORT_EVERY_S:
            log.warning(
                "%d idle connection(s) dropped to stay within %d connections (MCP_CI_MAX_CONNECTIONS)",
                self._dropped,
                self.max_connections,
            )
            self._dropped, self._reported_at = 0, now


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head deadline and idle connections dropped at the cap."""

    header_timeout: float = 10.0
    connections_idle: _Idle = _Idle(1000)
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        super().connection_made(transport)
        self._await_head()
        open_now = sum(not connection.transport.is_closing() for connection in self.connections)
        self.connections_idle.make_room(self, open_now)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self.connections_idle.busy(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before and not self.cycle.response_complete:  # (before is None at first)
            self._stop_timer()  # a complete request head arrived: from here the app decides
            self.connections_idle.busy(self)

    def on_response_complete(self) -> None:
        self._await_head()  # before the base class, which may start a pipelined request at once
        super().on_response_complete()

    def drop(self) -> None:
        self._stop_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def _await_head(self) -> None:
        self._stop_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self.drop)
        self.connections_idle.idle(self)

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None


def guarded_protocol(*, header_timeout: float, max_connections: int) -> type[GuardedH11Protocol]:
    """The protocol class for one uvicorn server (its own record of idle connections)."""
    timeout, idle = header_timeout, _Idle(max_connections)

    class _Guarded(GuardedH11Protocol):
        header_timeout = timeout
        connections_idle = idle

    return _Guarded
