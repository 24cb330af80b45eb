"""Tool definitions, one module per resource. `register_all` adds every tool to a server."""

from __future__ import annotations

from mcp.server import MCPServer

from mcp_ci_tools.tools import build_reads, builds, diagnose, identity, job_reads, jobs, projects, wait
from mcp_ci_tools.tools._compact import compact_tools
from mcp_ci_tools.tools._deps import Caller, Deps, InFlight

__all__ = ["Caller", "Deps", "InFlight", "register_all"]


def register_all(server: MCPServer, deps: Deps, *, toolsets: tuple[str, ...] = ("read", "trigger")) -> None:
    """Register the tools of the enabled toolsets; the others are absent from tools/list."""
    # Reads first: the order of tools/list is the order a model meets them in.
    if "read" in toolsets:
        diagnose.register(server, deps)
        projects.register(server, deps)
        build_reads.register(server, deps)
        job_reads.register(server, deps)
        wait.register(server, deps)
    if "trigger" in toolsets:
        builds.register(server, deps)
        jobs.register(server, deps)
    identity.register(server, deps)
    compact_tools(server)
