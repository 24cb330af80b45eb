"""Profiles one start-up in a fresh interpreter: `python benchmarks/profile_child.py ours|floor`.

Started by `python -m benchmarks.profile startup`. pyinstrument starts before anything else is imported,
then the server is built as `mcp-ci-tools` builds it (ours: settings, logging, build_server; floor: the bare
MCPServer script) and answers `initialize` + `tools/list` through the SDK's in-memory legacy client (JSON-RPC
framing, no pipes). Prints the pyinstrument session (`Session.to_json()`) on stdout.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pyinstrument import Profiler

profiler = Profiler(interval=0.0005, async_mode="disabled")
profiler.start()

import importlib.util  # noqa: E402 - after the profiler on purpose
import json  # noqa: E402
import os  # noqa: E402
from pathlib import Path  # noqa: E402

import anyio  # noqa: E402

if TYPE_CHECKING:
    from mcp.server import MCPServer


def _ours() -> MCPServer:  # the path of mcp_ci_tools.__main__.main up to server.run()
    from mcp_ci_tools.__main__ import _configure_logging
    from mcp_ci_tools.config import load_settings

    settings = load_settings([], os.environ)
    _configure_logging()
    from mcp_ci_tools.server import build_server

    return build_server(settings)


def _floor() -> MCPServer:
    spec = importlib.util.spec_from_file_location(
        "floor", Path(__file__).parent / "peers" / "floor_server.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    floor: MCPServer = module.mcp
    return floor


async def _list(server: MCPServer) -> None:
    from mcp import Client

    async with Client(server, mode="legacy") as client:
        await client.list_tools()


anyio.run(_list, _ours() if sys.argv[1] == "ours" else _floor())
session = profiler.stop()
print(json.dumps(session.to_json()))
