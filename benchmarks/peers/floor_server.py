"""The floor: a bare `MCPServer` with one async tool that does nothing. Run it as a script (stdio)."""

from __future__ import annotations

from mcp.server import MCPServer

mcp = MCPServer("bench-floor")


@mcp.tool()
async def noop() -> str:
    """Do nothing and say ok."""
    return "ok"


if __name__ == "__main__":
    mcp.run()
