"""What a tool module registers its tools on: `MCPServer`, or anything with the same `tool` decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from mcp.types import ToolAnnotations

__all__ = ["ToolHost"]

_Fn = TypeVar("_Fn", bound=Callable[..., Any])


class ToolHost(Protocol):
    def tool(
        self,
        name: str | None = ...,
        title: str | None = ...,
        description: str | None = ...,
        annotations: ToolAnnotations | None = ...,
    ) -> Callable[[_Fn], _Fn]: ...
