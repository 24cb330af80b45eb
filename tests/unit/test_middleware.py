"""The two server middlewares: in-flight counting (for a graceful shutdown) and the compact tools/list."""

from __future__ import annotations

import anyio
import pytest
from mcp import Client
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from mcp_ci_tools.inflight import InFlight
from mcp_ci_tools.publish import CompactToolList

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_in_flight_counts_tool_calls_while_they_run_and_only_them(mode: str) -> None:
    inflight = InFlight()
    server = MCPServer("probe", middleware=[inflight])
    seen: list[int] = []

    async def probe() -> str:
        """Says how many calls are in flight."""
        seen.append(inflight.count)
        return "ok"

    async def failing() -> str:
        """Always fails."""
        raise ToolError("no")

    async def slow() -> str:
        """Sleeps."""
        await anyio.sleep(10)
        return "late"

    for tool in (probe, failing, slow):
        server.add_tool(tool)
    async with Client(server, mode=mode) as client:
        await client.list_tools()
        assert inflight.count == 0
        await client.call_tool("probe", {})
        assert (await client.call_tool("failing", {})).is_error
        with anyio.move_on_after(0.2):
            await client.call_tool("slow", {})
        await anyio.sleep(0.05)  # the cancelled call unwinds on the server side

    assert seen == [1]
    assert inflight.count == 0


class _Inner(BaseModel):
    a: str = Field(description="a nested field")


class _Result(BaseModel):
    inner: _Inner
    note: str | None = Field(description="maybe")


async def test_tools_list_publishes_compact_schemas_and_the_server_keeps_the_full_ones() -> None:
    server = MCPServer("probe", middleware=[CompactToolList()])

    async def probe(name: str) -> _Result:
        """A tool with a nested result."""
        return _Result(inner=_Inner(a=name), note=None)

    server.add_tool(probe)
    async with Client(server) as client:
        [listed] = (await client.list_tools()).tools
        [again] = (await client.list_tools()).tools
        called = await client.call_tool("probe", {"name": "x"})
    [full] = await server.list_tools()

    assert listed.output_schema == {
        "type": "object",
        "properties": {"inner": {"type": "object"}, "note": {"type": ["string", "null"]}},
    }
    assert listed.input_schema == {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
    }
    assert again == listed
    assert full.output_schema is not None and "$defs" in full.output_schema
    assert called.structured_content == {"inner": {"a": "x"}, "note": None}
