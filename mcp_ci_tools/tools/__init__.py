"""Tool definitions, one module per resource. `register_all` adds the tools of the enabled toolsets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mcp.server import MCPServer
from mcp.types import ToolAnnotations

from mcp_ci_tools.tools import builds, diagnosis, identity, jobs, logs, projects, prompts, resources, wait
from mcp_ci_tools.tools._arguments import ArgumentCheck
from mcp_ci_tools.tools._deps import Caller, Deps

__all__ = ["ArgumentCheck", "Caller", "Deps", "register_all"]

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


class _Recording:
    """Registers tools on the server and remembers each one's function (for `ArgumentCheck`)."""

    def __init__(self, server: MCPServer) -> None:
        self._server = server
        self.functions: dict[str, Callable[..., Any]] = {}

    def tool(
        self,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: ToolAnnotations | None = None,
    ) -> Callable[[_Fn], _Fn]:
        register = self._server.tool(name=name, title=title, description=description, annotations=annotations)

        def decorator(fn: _Fn) -> _Fn:
            self.functions[name or fn.__name__] = fn
            return register(fn)

        return decorator


def register_all(server: MCPServer, deps: Deps) -> dict[str, Callable[..., Any]]:
    """Register the tools of `deps.toolsets` (the others are absent from tools/list); return their functions."""
    host = _Recording(server)
    # Reads first: the order of tools/list is the order a model meets them in.
    if "read" in deps.toolsets:
        diagnosis.register(host, deps)
        projects.register(host, deps)
        builds.register_reads(host, deps)
        jobs.register_reads(host, deps)
        logs.register(host, deps)
        wait.register(host, deps)
        resources.register(server, deps)
        prompts.register(server, deps)
    if "trigger" in deps.toolsets:
        builds.register_triggers(host, deps)
        jobs.register_triggers(host, deps)
    identity.register(host, deps)
    return host.functions
