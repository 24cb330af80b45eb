"""Counting tool calls in progress, so a graceful shutdown can wait for them to finish."""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

__all__ = ["InFlight"]


class InFlight(ServerMiddleware[Any]):
    """Server middleware: `count` is the number of `tools/call` requests being handled right now.

    It counts at the server, not the transport: over SSE a call is posted and answered on another
    stream, so only the server knows when it has finished.
    """

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        self.count += 1
        try:
            return await call_next(ctx)
        finally:
            self.count -= 1
