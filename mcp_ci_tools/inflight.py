"""Server middleware that watches every MCP message: how many tool calls are in progress (so a graceful
shutdown can wait for them to finish), and how long each operation took (for metrics)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult
from pydantic import ValidationError

__all__ = ["InFlight", "OperationTimer", "OperationTimes"]

# method, tool name (tools/call only), error type ("" on success), seconds
OperationTimes = Callable[[str, str | None, str, float], None]


class InFlight(ServerMiddleware[Any]):
    """Server middleware: `count` is the number of `tools/call` requests being handled right now.

    It counts at the server, not the transport: over SSE a call is posted and answered on another
    stream, so only the server knows when it has finished.
    """

    def __init__(self) -> None:
        self.count = 0
        self._listeners: list[Callable[[int], None]] = []

    def report_to(self, listener: Callable[[int], None]) -> None:
        """Tell `listener` +1 as each call begins and -1 as it ends (a gauge's `inc`, say)."""
        self._listeners.append(listener)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method != "tools/call":
            return await call_next(ctx)
        self._change(1)
        try:
            return await call_next(ctx)
        finally:
            self._change(-1)

    def _change(self, delta: int) -> None:
        self.count += delta
        for listener in self._listeners:
            listener(delta)


class OperationTimer(ServerMiddleware[Any]):
    """Server middleware: tells `record` the duration of every request and notification handled, with the
    MCP semantic conventions' `error.type`: `tool_error` for a tool result with isError, the JSON-RPC error
    code of a protocol error (as the SDK's own OpenTelemetry middleware sets it), `cancelled`, or ""."""

    def __init__(self, record: OperationTimes) -> None:
        self._record = record

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        started = time.perf_counter()
        error_type = ""
        try:
            result = await call_next(ctx)
            if ctx.method == "tools/call" and _is_tool_error(result):
                error_type = "tool_error"
        except MCPError as error:
            error_type = str(error.error.code)
            raise
        except ValidationError:
            error_type = str(INVALID_PARAMS)
            raise
        except anyio.get_cancelled_exc_class():
            error_type = "cancelled"
            raise
        except Exception:
            error_type = str(INTERNAL_ERROR)  # what the client receives for an unexpected failure
            raise
        finally:
            name = ctx.params.get("name") if ctx.method == "tools/call" and ctx.params else None
            self._record(
                ctx.method, name if isinstance(name, str) else None, error_type, time.perf_counter() - started
            )
        return result


def _is_tool_error(result: object) -> bool:
    # The shapes the SDK's own OpenTelemetry middleware counts: the model, or a dict with the wire alias.
    match result:
        case CallToolResult(is_error=True) | {"isError": True}:
            return True
    return False
