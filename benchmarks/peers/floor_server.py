"""The floor: a bare `MCPServer` with one async tool that does nothing. Run it as a script: stdio, or with
`--http PORT` Streamable HTTP on loopback, as `MCPServer.run` serves it (its defaults: sessions, SSE answers).

With `--http PORT API_URL` (and the token in `FLOOR_INFRABOX_TOKEN`) it also has `get_build`: the same two
InfraBox requests our get_build makes, sent at once with one plain `httpx.AsyncClient`, and their JSON
returned as they came, with no checks, budgets, audit or views. It is what an MCP layer over InfraBox costs
at the least, for comparing CPU per call over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import httpx
from mcp.server import MCPServer

mcp = MCPServer("bench-floor")


@mcp.tool()
async def noop() -> str:
    """Do nothing and say ok."""
    return "ok"


def add_get_build(api_url: str, token: str) -> None:
    http = httpx.AsyncClient(
        base_url=api_url + "/",
        timeout=30,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )

    async def get(path: str) -> Any:
        response = await http.get(path, headers={"X-Request-ID": str(uuid.uuid4())})
        response.raise_for_status()
        return response.json()

    @mcp.tool()
    async def get_build(project_id: str, build_id: str) -> dict[str, Any]:
        """A build and its jobs, as InfraBox answers them."""
        base = f"projects/{project_id}/builds/{build_id}"
        build, jobs = await asyncio.gather(get(base), get(base + "/jobs"))
        return {"build": build, "jobs": jobs}


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--http"]:
        if len(sys.argv) > 3:
            add_get_build(sys.argv[3], os.environ["FLOOR_INFRABOX_TOKEN"])
        mcp.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        mcp.run()
