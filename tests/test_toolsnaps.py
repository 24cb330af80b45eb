"""Each tool's whole public face is snapshotted in tests/toolsnaps/<tool>.json, so any change shows in review.

A snapshot holds what the model sees in tools/list (name, title, description, annotations, and the
compact input and output schemas as published) and the full models behind them (`input_model`,
`output_model`: every nested field with its description and pattern), because the published output
schema is only one level deep. A missing, stale or different snapshot fails; only
`UPDATE_TOOLSNAPS=1 make test` writes them, on purpose, for review.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server import MCPServer
from pydantic import BaseModel, Field, create_model

from mcp_ci_tools.publish import CompactToolList

pytestmark = pytest.mark.anyio

SNAPSHOTS = Path(__file__).parent / "toolsnaps"
_PUBLISHED = {"name", "title", "description", "annotations", "input_schema", "output_schema"}


async def tool_faces(server: MCPServer) -> dict[str, dict[str, Any]]:
    """Each tool as a client sees it in tools/list, plus the full models the server holds."""
    async with Client(server) as client:
        listed = (await client.list_tools()).tools
    full = {tool.name: tool for tool in await server.list_tools()}
    faces = {}
    for tool in listed:
        face = tool.model_dump(mode="json", by_alias=True, exclude_none=True, include=_PUBLISHED)
        face["input_model"] = full[tool.name].input_schema
        face["output_model"] = full[tool.name].output_schema
        faces[tool.name] = face
    return faces


def _render(face: dict[str, Any]) -> str:
    return json.dumps(face, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def snapshot_problems(faces: dict[str, dict[str, Any]], directory: Path, *, update: bool) -> list[str]:
    """What differs from the snapshots in `directory`; with `update`, rewrite them instead."""
    problems = []
    for name, face in faces.items():
        path = directory / f"{name}.json"
        rendered = _render(face)
        if update:
            directory.mkdir(exist_ok=True)
            path.write_text(rendered)
        elif not path.exists():
            problems.append(f"{name}: no snapshot (run UPDATE_TOOLSNAPS=1 make test, review and commit it)")
        elif path.read_text() != rendered:
            problems.append(f"{name}: differs from {path.name} (review the change, then UPDATE_TOOLSNAPS=1)")
    stale = sorted({path.stem for path in directory.glob("*.json")} - set(faces))
    for name in stale:
        if update:
            (directory / f"{name}.json").unlink()
        else:
            problems.append(f"{name}: snapshot of a tool that no longer exists")
    return problems


async def test_every_tool_matches_its_snapshot(make_server) -> None:
    faces = await tool_faces(make_server())

    problems = snapshot_problems(faces, SNAPSHOTS, update=os.environ.get("UPDATE_TOOLSNAPS") == "1")

    assert not problems, "\n".join(problems)


# --- the test of the test: each kind of change fails ---------------------------------------------


@pytest.fixture
async def faces(make_server) -> dict[str, dict[str, Any]]:
    return await tool_faces(make_server())


def _copy_of_snapshots(tmp_path: Path) -> Path:
    directory = tmp_path / "toolsnaps"
    directory.mkdir()
    for path in SNAPSHOTS.glob("*.json"):
        (directory / path.name).write_text(path.read_text())
    return directory


async def test_a_missing_snapshot_fails_and_is_not_written(faces, tmp_path: Path) -> None:
    directory = _copy_of_snapshots(tmp_path)
    (directory / "whoami.json").unlink()

    problems = snapshot_problems(faces, directory, update=False)

    assert problems == ["whoami: no snapshot (run UPDATE_TOOLSNAPS=1 make test, review and commit it)"]
    assert not (directory / "whoami.json").exists()


async def test_a_changed_nested_output_field_fails(faces, tmp_path: Path) -> None:
    directory = _copy_of_snapshots(tmp_path)
    changed = copy.deepcopy(faces)
    job_view = changed["get_build"]["output_model"]["$defs"]["JobView"]
    job_view["properties"]["retries"] = {"type": "integer", "description": "times it ran"}

    problems = snapshot_problems(changed, directory, update=False)

    assert problems == ["get_build: differs from get_build.json (review the change, then UPDATE_TOOLSNAPS=1)"]


async def test_a_snapshot_of_a_removed_tool_fails(faces, tmp_path: Path) -> None:
    directory = _copy_of_snapshots(tmp_path)
    (directory / "retired_tool.json").write_text("{}\n")

    assert snapshot_problems(faces, directory, update=False) == [
        "retired_tool: snapshot of a tool that no longer exists"
    ]


def _server_returning(**inner_fields: Any) -> MCPServer:
    """A server with one tool whose output model nests a model `Inner` with `inner_fields`."""
    inner = create_model("Inner", **inner_fields)
    outer = create_model("Outer", inner=(inner, ...))

    async def probe() -> BaseModel:
        """A tool with a nested output model."""
        raise NotImplementedError

    probe.__annotations__ = {"return": outer}
    server = MCPServer("toolsnaps-check", middleware=[CompactToolList()])
    server.add_tool(probe, name="probe")
    return server


async def test_a_new_nested_field_changes_the_snapshot_though_not_the_published_schema(
    tmp_path: Path,
) -> None:
    first = (str, Field(description="the first field"))
    before = await tool_faces(_server_returning(a=first))
    after = await tool_faces(_server_returning(a=first, b=(int, Field(description="a field added later"))))
    snapshot_problems(before, tmp_path, update=True)

    assert before["probe"]["outputSchema"] == after["probe"]["outputSchema"]  # one level deep: blind to it
    assert snapshot_problems(after, tmp_path, update=False) == [
        "probe: differs from probe.json (review the change, then UPDATE_TOOLSNAPS=1)"
    ]
    assert snapshot_problems(before, tmp_path, update=False) == []
