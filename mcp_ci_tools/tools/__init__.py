"""Tool definitions, one module per resource. `register_all` adds every tool to a server."""

from __future__ import annotations

from mcp.server import MCPServer

from mcp_ci_tools.tools import builds, identity, jobs
from mcp_ci_tools.tools._deps import Deps

__all__ = ["Deps", "register_all"]


def register_all(server: MCPServer, deps: Deps) -> None:
    identity.register(server, deps)
    builds.register(server, deps)
    jobs.register(server, deps)
