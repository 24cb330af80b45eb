"""Each tool's public face (name, title, description, annotations, schemas) is snapshotted in tests/toolsnaps/.

A change to any of them shows up as a JSON diff in review. `UPDATE_TOOLSNAPS=1 make test` rewrites the
snapshots on purpose; in CI a missing snapshot fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

pytestmark = pytest.mark.anyio

SNAPSHOTS = Path(__file__).parent / "toolsnaps"


def _public_face(tool: Any) -> dict[str, Any]:
    return tool.model_dump(
        mode="json",
        by_alias=True,
        exclude_none=True,
        include={"name", "title", "description", "annotations", "input_schema", "output_schema"},
    )


def _render(face: dict[str, Any]) -> str:
    return json.dumps(face, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


async def test_every_tool_matches_its_snapshot(make_server) -> None:
    async with Client(make_server()) as client:
        tools = (await client.list_tools()).tools
    update = os.environ.get("UPDATE_TOOLSNAPS") == "1"
    problems = []
    for tool in tools:
        path = SNAPSHOTS / f"{tool.name}.json"
        rendered = _render(_public_face(tool))
        if update or (not path.exists() and not os.environ.get("CI")):
            SNAPSHOTS.mkdir(exist_ok=True)
            path.write_text(rendered)
            continue
        if not path.exists():
            problems.append(f"{tool.name}: no snapshot (run UPDATE_TOOLSNAPS=1 make test and commit it)")
        elif path.read_text() != rendered:
            problems.append(f"{tool.name}: differs from {path.name} (review, then UPDATE_TOOLSNAPS=1)")
    stale = {p.stem for p in SNAPSHOTS.glob("*.json")} - {t.name for t in tools}
    problems += [f"{name}: snapshot of a tool that no longer exists" for name in sorted(stale)]
    assert not problems, "\n".join(problems)
