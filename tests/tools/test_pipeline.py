"""The trigger pipeline itself: its declared order, and a preview (the confirmation question) that never
disagrees with the real call, whatever check refuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import respx
from mcp.server.mcpserver.exceptions import ToolError

from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.server import build_deps
from mcp_ci_tools.state import MemoryState
from mcp_ci_tools.tools._deps import Deps
from mcp_ci_tools.tools._pipeline import TRIGGER_CHECKS, run_trigger, would_send
from mcp_ci_tools.tools.builds import RESTART_BUILD
from tests.conftest import BUILD_ID, INFRABOX_URL, NEW_ID, PROJECT_ID, FakeClock, ListSink, make_settings

pytestmark = pytest.mark.anyio

OTHER_PROJECT = "a1000000-0000-4000-8000-000000000001"
RESTART_PATH = f"/projects/{PROJECT_ID}/builds/{BUILD_ID}/restart"


def _deps(tmp_path: Path, clock: FakeClock, audit: ListSink, **overrides: Any) -> Deps:
    counter = iter(range(1, 1_000_000))
    return build_deps(
        make_settings(tmp_path, **overrides),
        client=InfraBoxClient(INFRABOX_URL, clock=clock),
        state=MemoryState(clock=clock),
        audit_sink=audit,
        clock=clock,
        new_request_id=lambda: f"req-{next(counter)}",
    )


def test_the_checks_run_in_the_documented_order() -> None:
    assert [check.name for check in TRIGGER_CHECKS] == [
        "id",
        "toolset",
        "project",
        "permission",
        "duplicate",
        "loop",
        "confirmation",
        "unchanged",
        "budget",
        "audit",
    ]
    # The preview leaves out exactly the steps that act (audit) or that it exists to decide (confirmation, and
    # whether the target changed since the user confirmed).
    assert [check.name for check in TRIGGER_CHECKS if check.preview is None] == [
        "confirmation",
        "unchanged",
        "audit",
    ]


async def test_a_trigger_of_a_toolset_that_is_not_served_is_refused_audited_and_not_sent(
    tmp_path: Path, clock: FakeClock, audit: ListSink, infrabox: respx.MockRouter
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json={"build_id": NEW_ID})
    deps = _deps(tmp_path, clock, audit, toolsets=("read",))

    with pytest.raises(ToolError, match="MCP_CI_TOOLSETS"):
        await run_trigger(deps, RESTART_BUILD, PROJECT_ID, BUILD_ID, confirmation="not_required")

    assert not route.called
    [record] = audit.records
    assert (record["decision"], record["reason"]) == ("denied", "toolset_disabled")


async def _spend_budget(deps: Deps) -> None:
    for _ in range(5):
        await deps.trigger_budget.take(deps.caller().key)


async def _claim_identical_call(deps: Deps) -> None:
    key = deps.dedupe.key(
        deps.caller().key, "restart_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID}
    )
    await deps.dedupe.claim(key)


async def _fill_restart_window(deps: Deps) -> None:
    lineage = await deps.lineage.of(PROJECT_ID, "build", BUILD_ID)
    for _ in range(3):
        await deps.restart_guard.record(deps.caller().key, lineage)


async def _learn_refusal(deps: Deps) -> None:
    await deps.permission.learn_refusal(deps.caller().key)


async def _nothing(deps: Deps) -> None:
    return None


Scenario = tuple[dict[str, Any], Callable[[Deps], Any], str, str]
REFUSALS: dict[str, Scenario] = {
    # name: (settings, what happened before, build id, the refusal the real call reports)
    "bad id": ({}, _nothing, "../admin", "build_id must be a UUID"),
    "toolset": ({"toolsets": ("read",)}, _nothing, BUILD_ID, "MCP_CI_TOOLSETS"),
    "project": ({"projects": (OTHER_PROJECT,)}, _nothing, BUILD_ID, "allow-list"),
    "declared permission": ({"allow_trigger": False}, _nothing, BUILD_ID, "no trigger permission"),
    "learned permission": ({}, _learn_refusal, BUILD_ID, "answered earlier"),
    "duplicate": ({}, _claim_identical_call, BUILD_ID, "Not sent again"),
    "restart loop": ({}, _fill_restart_window, BUILD_ID, "Restart-loop guard"),
    "budget": ({}, _spend_budget, BUILD_ID, "Trigger budget used up"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
async def test_the_preview_refuses_exactly_what_the_call_refuses(
    name: str, tmp_path: Path, clock: FakeClock, audit: ListSink, infrabox: respx.MockRouter
) -> None:
    settings, before, build_id, refusal = REFUSALS[name]
    route = infrabox.post(RESTART_PATH).respond(200, json={"build_id": NEW_ID})
    deps = _deps(tmp_path, clock, audit, **settings)
    await before(deps)

    assert await would_send(deps, RESTART_BUILD, PROJECT_ID, build_id) is False
    assert audit.records == []  # the preview writes nothing
    with pytest.raises(ToolError, match=refusal):
        await run_trigger(deps, RESTART_BUILD, PROJECT_ID, build_id, confirmation="confirmed")
    assert not route.called


async def test_a_preview_that_passes_changes_nothing_and_the_call_then_goes_through(
    tmp_path: Path, clock: FakeClock, audit: ListSink, infrabox: respx.MockRouter
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json={"build_id": NEW_ID, "restart_counter": 2})
    deps = _deps(tmp_path, clock, audit, confirm=("restart_build",))
    key = deps.caller().key

    for _ in range(3):
        assert await would_send(deps, RESTART_BUILD, PROJECT_ID, BUILD_ID) is True
    assert (await deps.trigger_budget.peek(key)).remaining == 5
    assert audit.records == []

    with pytest.raises(ToolError, match="did not confirm"):
        await run_trigger(deps, RESTART_BUILD, PROJECT_ID, BUILD_ID, confirmation="declined")
    done = await run_trigger(deps, RESTART_BUILD, PROJECT_ID, BUILD_ID, confirmation="confirmed")

    assert done.answer.new_build_id == NEW_ID
    assert done.budget.remaining == 4
    assert route.call_count == 1
    assert [(r["event"], r["decision"], r.get("reason")) for r in audit.records] == [
        ("result", "denied", "declined"),
        ("attempt", "allowed", None),
        ("result", "allowed", None),
    ]
