"""The floor: a bare `MCPServer` with one async tool that does nothing. Run it as a script: stdio, or with
`--http PORT` Streamable HTTP on loopback, as `MCPServer.run` serves it (its defaults: sessions, SSE answers)."""

from __future__ import annotations

from mcp.server import MCPServer

mcp = MCPServer("bench-floor")


@mcp.tool()
async def noop() -> str:
    """Do nothing and say ok."""
    return "ok"


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--http"]:
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
