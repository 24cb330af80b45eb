"""The sessions of each token on this replica: how many are open, and closing them all.

A token's sessions are its Streamable HTTP sessions (the SDK's session manager knows who opened each),
its open SSE streams, and its requests that are opening a session right now. `CallerGuard` caps them per
token; `close` ends them all when InfraBox rejects the token (`policy.RejectedTokens` tells us).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import anyio
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_ci_tools.policy import RejectedTokens

__all__ = ["TokenSessions"]

log = logging.getLogger("mcp_ci_tools.http")


class TokenSessions:
    """Sessions and streams per caller key (the token's SHA-256) on this replica."""

    def __init__(
        self,
        streamable: StreamableHTTPSessionManager | None,
        rejected: RejectedTokens,
        *,
        close_delay_s: float = 1.0,
    ) -> None:
        self.streamable = streamable
        self._rejected = rejected
        self._close_delay_s = close_delay_s
        self._streams: dict[str, set[anyio.Event]] = {}  # open SSE streams per caller key: set to close
        self._opening: Counter[str] = Counter()  # session-opening requests not yet answered, per caller key
        self._closing: set[asyncio.Task[None]] = set()
        rejected.subscribe(self._rejected_here)

    def count(self, key: str) -> int:
        """Streamable HTTP sessions, SSE streams and session-opening requests of the caller `key` here."""
        return len(self._streamable_of(key)) + len(self._streams.get(key, ())) + self._opening[key]

    def total(self) -> int:
        """Every Streamable HTTP session and SSE stream open on this replica, whoever opened it."""
        streamable = 0 if self.streamable is None else len(self.streamable._server_instances)
        return streamable + sum(len(streams) for streams in self._streams.values())

    def _streamable_of(self, key: str) -> list[str]:
        if self.streamable is None:
            return []
        # The SDK keeps who opened each session (the principal our verifier gives: subject = the token's
        # SHA-256) in `_session_owners`; it has no public accessor, and this is the only place that reads it.
        owners = self.streamable._session_owners
        return [session for session, owner in list(owners.items()) if owner.get("subject") == key]

    async def close(self, key: str) -> int:
        """End every Streamable HTTP session and SSE stream of the caller `key` on this replica."""
        closed = 0
        if self.streamable is not None:
            for session in self._streamable_of(key):
                transport = self.streamable._server_instances.get(session)
                if transport is not None:
                    await self.streamable._discard_session(session, transport)
                    closed += 1
        for stream in list(self._streams.get(key, ())):
            stream.set()
            closed += 1
        return closed

    def _rejected_here(self, key: str) -> None:
        # Called from the tool call that learned it: let that call's answer reach the client first.
        loop = asyncio.get_running_loop()

        def close() -> None:
            task = loop.create_task(self._close_rejected(key))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

        loop.call_later(self._close_delay_s, close)

    async def _close_rejected(self, key: str) -> None:
        closed = await self.close(key)
        if closed:
            log.warning(
                "InfraBox rejected token sha256:%s: closed its %d session(s) and stream(s); its requests are "
                "refused for %.0f s",
                key[:12],
                closed,
                self._rejected.ttl_s,
            )

    async def serve_opening(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        """Serve a request that opens a Streamable HTTP session, counted until the SDK has answered it."""
        self._opening[key] += 1
        answered = False

        async def counted_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True  # by now the SDK has registered the session, or refused it
                self._release_opening(key)
            await send(message)

        try:
            await app(scope, receive, counted_send)
        finally:
            if not answered:
                self._release_opening(key)

    def _release_opening(self, key: str) -> None:
        self._opening[key] -= 1
        if self._opening[key] <= 0:
            del self._opening[key]

    async def serve_stream(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, key: str) -> None:
        """Serve an SSE stream, counted while it is open, and ended by `close`."""
        # Closing a stream looks to the SDK like the client going away, so it winds the session down itself
        # (cancelling the request instead would leave the session's streams open).
        closing = anyio.Event()

        async def closable_receive() -> Message:
            message: Message = {"type": "http.disconnect"}
            if closing.is_set():
                return message
            async with anyio.create_task_group() as group:

                async def from_client() -> None:
                    nonlocal message
                    message = await receive()
                    group.cancel_scope.cancel()

                async def from_server() -> None:
                    await closing.wait()
                    group.cancel_scope.cancel()

                group.start_soon(from_client)
                group.start_soon(from_server)
            return message

        response = {"started": False, "ended": False}

        async def tracked_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["started"] = True
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                response["ended"] = True
            await send(message)

        self._streams.setdefault(key, set()).add(closing)
        try:
            await app(scope, closable_receive, tracked_send)
        finally:
            streams = self._streams.get(key, set())
            streams.discard(closing)
            if not streams:
                self._streams.pop(key, None)
        if closing.is_set() and response["started"] and not response["ended"]:
            await send({"type": "http.response.body", "body": b"", "more_body": False})  # end it properly
