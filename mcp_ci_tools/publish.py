"""Smaller tool definitions on the wire: every byte of tools/list is paid for in the agent's context on every turn.

Input schemas keep everything that tells the model how to call (types, descriptions, defaults, formats);
pydantic's generated titles go, and `anyOf: [{type: X}, {type: null}]` becomes `type: [X, "null"]`.
Output schemas are published one level deep: every top-level field with its type, nested objects as
`{"type": "object"}`, no descriptions, defaults or `required` lists. They accept exactly what the tools
return (a looser schema, never a different one); the typed pydantic models behind them stay the contract
in code and in the toolsnaps tests.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerMiddleware, ServerRequestContext

__all__ = ["CompactToolList", "compact_schema", "output_schema"]


def _collapse_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    options = schema.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and {"type": "null"} in options):
        return schema
    other = next(option for option in options if option != {"type": "null"})
    if not isinstance(other.get("type"), str) or set(other) - {"type", "format"}:
        return schema
    merged = {key: value for key, value in schema.items() if key != "anyOf"}
    merged.update(other)
    merged["type"] = [other["type"], "null"]
    return merged


def compact_schema(schema: Any, *, output: bool) -> Any:
    """`schema` without titles (and, for outputs, descriptions and defaults), nullable types collapsed."""
    if isinstance(schema, list):
        return [compact_schema(item, output=output) for item in schema]
    if not isinstance(schema, dict):
        return schema
    dropped = {"title", "pattern"} | ({"description", "default"} if output else set())
    result: dict[str, Any] = {}
    for key, value in schema.items():
        if key in dropped and not isinstance(value, dict):
            continue
        if key == "properties" and isinstance(value, dict):
            result[key] = {name: compact_schema(sub, output=output) for name, sub in value.items()}
        else:
            result[key] = compact_schema(value, output=output)
    return _collapse_nullable(result)


def _shallow(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema or "properties" in schema or "additionalProperties" in schema:
        return {"type": "object"}
    if schema.get("type") == "array":
        items = schema.get("items", {})
        return {"type": "array", "items": _shallow(items) if isinstance(items, dict) else {}}
    if isinstance(schema.get("anyOf"), list):
        options = [_shallow(option) for option in schema["anyOf"]]
        if all(set(option) == {"type"} and isinstance(option["type"], str) for option in options):
            return {"type": [option["type"] for option in options]}  # e.g. an optional nested object
        return {"anyOf": options}
    return schema


def output_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The one-level-deep published form of an output model's schema."""
    compact = compact_schema(schema, output=True)
    properties = {
        name: _collapse_nullable(_shallow(sub)) for name, sub in compact.get("properties", {}).items()
    }
    return {"type": "object", "properties": properties}


class CompactToolList(ServerMiddleware[Any]):
    """Server middleware: `tools/list` answers carry the compact schemas; everything else is untouched.

    The registered tools keep their full schemas (the server validates arguments and results against
    them, and `MCPServer.list_tools()` still returns them); only what goes on the wire is compacted,
    once per tool. The chain hands middleware the wire form of the answer (camelCase keys).
    """

    def __init__(self) -> None:
        self._published: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if (
            ctx.method != "tools/list"
            or not isinstance(result, dict)
            or not isinstance(result.get("tools"), list)
        ):
            return result
        return {**result, "tools": [self._compact(tool) for tool in result["tools"]]}

    def _compact(self, tool: dict[str, Any]) -> dict[str, Any]:
        known = self._published.get(tool["name"])
        if known is not None and known[0] == tool:
            return known[1]
        compact = {**tool, "inputSchema": compact_schema(tool["inputSchema"], output=False)}
        if tool.get("outputSchema") is not None:
            compact["outputSchema"] = output_schema(tool["outputSchema"])
        self._published[tool["name"]] = (tool, compact)
        return compact
