"""Arguments refused completely: a tool call with an unknown or ill-typed argument changes nothing and is audited.

The SDK ignores arguments a tool does not declare, so `restart_job(..., dry_run=true)` would restart the
job, and it rejects ill-typed ones before any tool code runs, so those refusals were never audited.
`ArgumentCheck` runs first on every `tools/call` (the SDK's tool-call interceptor): it validates the
arguments exactly as the SDK will, and refuses an unknown name or a bad value with an error the model can
act on (naming the argument, the accepted ones, and a likely correction), audited as `invalid_input`.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolRequestParams, CallToolResult, TextContent
from pydantic import ValidationError

from mcp_ci_tools.audit import AuditRecord
from mcp_ci_tools.domain.masking import describe_value
from mcp_ci_tools.policy import InvalidArgument
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._errors import Target, to_tool_error

__all__ = ["ArgumentCheck"]

_ID_ARGUMENTS = ("project_id", "build_id", "job_id")


class ArgumentCheck(Extension):
    """Refuses tool calls whose arguments the tool would not take as given; `learn` each tool first."""

    identifier = "mcp-ci-tools/arguments"

    def __init__(self, deps: Deps) -> None:
        self._deps = deps
        self._functions: dict[str, Callable[..., Any]] = {}
        self._tools: dict[str, Tool] = {}

    def settings(self) -> dict[str, Any]:
        return {"unknown_arguments": "refused", "refusals": "audited"}

    def learn(self, name: str, fn: Callable[..., Any]) -> None:
        """Know tool `name` by its function, built the way the SDK builds it, so both validate alike."""
        self._functions[name] = fn  # built at its first call: start-up builds every tool once, in the SDK

    def _tool(self, name: str) -> Tool | None:
        if name not in self._tools and name in self._functions:
            self._tools[name] = Tool.from_function(self._functions[name], name=name)
        return self._tools.get(name)

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        tool = self._tool(params.name)
        arguments = params.arguments or {}
        refusal = None if tool is None else _refusal(tool, arguments)
        if refusal is None:
            return await call_next(ctx)
        await self._audit(params.name, arguments)
        error = to_tool_error(refusal, Target(action="call", kind="tool", project_id=""))
        return CallToolResult(
            content=[TextContent(type="text", text=f"Error executing tool {params.name}: {error}")],
            is_error=True,
        )

    async def _audit(self, tool: str, arguments: Mapping[str, Any]) -> None:
        ids = {key: value for key in _ID_ARGUMENTS if isinstance(value := arguments.get(key), str)}
        record = AuditRecord(
            event="result",
            tool=tool,
            token=(caller := self._deps.caller()).fingerprint,
            token_sha256=caller.key,
            request_id=self._deps.new_request_id(),
            decision="denied",
            outcome="denied",
            reason=InvalidArgument.reason,
            project_id=ids.get("project_id"),
            build_id=ids.get("build_id"),
            job_id=ids.get("job_id"),
        )
        await self._deps.audit.write_or_log(record, durable=False)  # refused, nothing sent: see _audit_denied


def _refusal(tool: Tool, arguments: Mapping[str, Any]) -> InvalidArgument | None:
    accepted = {field.alias or name for name, field in tool.fn_metadata.arg_model.model_fields.items()}
    unknown = sorted(set(arguments) - accepted)
    if unknown:
        return InvalidArgument(_shown_name(unknown[0]), _not_an_argument(tool.name, unknown[0], accepted))
    try:
        tool.fn_metadata.validate_arguments(dict(arguments))
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        name = ".".join(str(part) for part in first["loc"]) or "arguments"
        given = arguments.get(str(first["loc"][0])) if first["loc"] else None
        shown = "" if first["type"] == "missing" else f"; got {_given(given)}"
        return InvalidArgument(name, f"{first['msg'].lower()}{shown}")
    return None


def _given(value: object) -> str:
    if isinstance(value, str):
        return describe_value(value)
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else f"a JSON {type(value).__name__} of {len(text)} characters"


def _shown_name(name: str) -> str:
    return name if len(name) <= 64 and name.isprintable() else describe_value(name)


def _not_an_argument(tool: str, name: str, accepted: set[str]) -> str:
    takes = f"it takes {', '.join(sorted(accepted))}" if accepted else "it takes no arguments"
    close = difflib.get_close_matches(name[:64], accepted, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"not an argument of {tool}{hint}; {takes}"
