"""Tool definitions, one module per resource. `register_all` adds the tools of the enabled toolsets."""

from __future__ import annotations

from mcp.server import MCPServer

from mcp_ci_tools.tools import builds, diagnosis, identity, jobs, logs, projects, wait
from mcp_ci_tools.tools._deps import Caller, Deps

__all__ = ["Caller", "Deps", "register_all"]


def register_all(server: MCPServer, deps: Deps) -> None:
    """Register the tools of `deps.toolsets`; the others are absent from tools/list."""
    # Reads first: the order of tools/list is the order a model meets them in.
    if "read" in deps.toolsets:
        diagnosis.register(server, deps)
        projects.register(server, deps)
        builds.register_reads(server, deps)
        jobs.register_reads(server, deps)
        logs.register(server, deps)
        wait.register(server, deps)
    if "trigger" in deps.toolsets:
        builds.register_triggers(server, deps)
        jobs.register_triggers(server, deps)
    identity.register(server, deps)
