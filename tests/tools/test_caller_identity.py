"""Callers are told apart by the full SHA-256 of their token, never by the 48-bit fingerprint.

A token crafted so that its fingerprint (`sha256:` + 12 hex digits) equals a victim's cannot be found in a
test run, so the two callers here share a fingerprint by construction: everything kept per caller (trigger
and read budgets, the learned 403, the duplicate guard, the rejected-token record) must still be apart,
and the audit must tell them apart by `token_sha256`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import respx
from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from mcp_ci_tools.client import InfraBoxClient
from mcp_ci_tools.domain.tokens import fingerprint, token_hash
from mcp_ci_tools.server import build_deps
from mcp_ci_tools.state import MemoryState
from mcp_ci_tools.tools._deps import Caller, Deps
from mcp_ci_tools.tools._pipeline import run_trigger
from mcp_ci_tools.tools._read import run_read
from mcp_ci_tools.tools.jobs import ABORT_JOB
from tests.conftest import INFRABOX_URL, PROJECT_ID, TOKEN, FakeClock, ListSink, make_settings

pytestmark = pytest.mark.anyio

VICTIM = "ib_mcp_" + "a1" * 24
ATTACKER = "ib_mcp_" + "b2" * 24
SHARED_FINGERPRINT = "sha256:9a7b30619557"


def _jobs(n: int) -> list[str]:
    return [str(uuid.UUID(int=0x9E8D7C6B5A4F4E3D8C2B1A0F00000000 + i)) for i in range(n)]


def _two_callers(
    tmp_path: Path, clock: FakeClock, audit: ListSink
) -> tuple[Deps, Caller, Caller, list[Caller]]:
    client = InfraBoxClient(INFRABOX_URL, clock=clock)
    base = build_deps(
        make_settings(tmp_path),
        client=client,
        state=MemoryState(clock=clock),
        audit_sink=audit,
        clock=clock,
    )
    victim, attacker = (
        Caller(fingerprint=SHARED_FINGERPRINT, key=token_hash(token), client=client.with_token(token))
        for token in (VICTIM, ATTACKER)
    )
    current = [victim]
    return dataclasses.replace(base, caller=lambda: current[0]), victim, attacker, current


async def test_a_caller_sharing_the_fingerprint_does_not_spend_the_victims_trigger_budget(
    tmp_path: Path, clock: FakeClock, audit: ListSink, infrabox: respx.MockRouter
) -> None:
    sent = infrabox.delete(path__regex=r"/projects/.*/jobs/.*/abort").respond(
        200, json={"message": "Successfully aborted job"}
    )
    deps, victim, attacker, current = _two_callers(tmp_path, clock, audit)

    current[0] = attacker
    for job in _jobs(5):  # the whole trigger budget (5 a minute)
        await run_trigger(deps, ABORT_JOB, PROJECT_ID, job, confirmation="not_required")
    with pytest.raises(ToolError, match="budget"):
        await run_trigger(deps, ABORT_JOB, PROJECT_ID, _jobs(6)[5], confirmation="not_required")

    current[0] = victim
    # The same job the attacker just aborted: not a duplicate either, since the guard is per caller.
    done = await run_trigger(deps, ABORT_JOB, PROJECT_ID, _jobs(1)[0], confirmation="not_required")

    assert done.budget.remaining == 4
    assert sent.call_count == 6
    assert [r.headers["authorization"] for r in (c.request for c in sent.calls)][-1] == f"Bearer {VICTIM}"
    records = audit.records
    assert {r["token"] for r in records} == {SHARED_FINGERPRINT}
    by_caller = {r["token_sha256"] for r in records}
    assert by_caller == {token_hash(VICTIM), token_hash(ATTACKER)}
    last = records[-1]
    assert (last["token_sha256"], last["outcome"]) == (token_hash(VICTIM), "success")
    refused = [r for r in records if r.get("reason") == "rate_limited"]
    assert [r["token_sha256"] for r in refused] == [token_hash(ATTACKER)]


async def test_a_403_learned_for_one_caller_does_not_refuse_another_with_the_same_fingerprint(
    tmp_path: Path, clock: FakeClock, audit: ListSink, infrabox: respx.MockRouter
) -> None:
    def answer(request: object) -> respx.MockResponse:
        headers = getattr(request, "headers", {})
        if headers.get("authorization") == f"Bearer {ATTACKER}":
            return respx.MockResponse(
                403, json={"message": "this MCP token does not have trigger permission"}
            )
        return respx.MockResponse(200, json={"message": "Successfully aborted job"})

    infrabox.delete(path__regex=r"/projects/.*/jobs/.*/abort").mock(side_effect=answer)
    deps, victim, attacker, current = _two_callers(tmp_path, clock, audit)

    current[0] = attacker
    with pytest.raises(ToolError, match="trigger permission"):
        await run_trigger(deps, ABORT_JOB, PROJECT_ID, _jobs(1)[0], confirmation="not_required")
    current[0] = victim
    await run_trigger(deps, ABORT_JOB, PROJECT_ID, _jobs(2)[1], confirmation="not_required")

    assert await deps.permission.refused_at(attacker.key) is not None
    assert await deps.permission.refused_at(victim.key) is None


async def test_read_budgets_and_rejected_tokens_are_kept_by_the_full_hash(
    tmp_path: Path, clock: FakeClock, audit: ListSink, infrabox: respx.MockRouter
) -> None:
    def answer(request: object) -> respx.MockResponse:
        headers = getattr(request, "headers", {})
        if headers.get("authorization") == f"Bearer {ATTACKER}":
            return respx.MockResponse(401, json={"message": "invalid token"})
        return respx.MockResponse(200, json=[])

    infrabox.get("/projects").mock(side_effect=answer)
    deps, victim, attacker, current = _two_callers(tmp_path, clock, audit)

    async def list_projects() -> object:
        return await run_read(
            deps,
            tool="list_projects",
            kind="projects",
            ids={},
            needs={"list_projects": 1},
            fetch=lambda call: call.client.list_projects(request_id=call.request_id),
        )

    current[0] = attacker
    with pytest.raises(ToolError, match="rejected"):
        await list_projects()
    current[0] = victim
    await list_projects()

    assert await deps.rejected.until(attacker.key) == clock() + 300
    assert await deps.rejected.until(victim.key) is None
    states = {
        key: (await deps.read_budgets.states(key))["list_projects"].remaining
        for key in (victim.key, attacker.key)
    }
    assert states == {victim.key: 29, attacker.key: 29}


async def test_whoami_and_its_audit_line_show_the_fingerprint_and_the_full_hash(
    make_server: Callable[..., MCPServer], connect: Callable[[MCPServer], Any], audit: ListSink
) -> None:
    client = await connect(make_server())

    result = await client.call_tool("whoami", {})

    assert result.structured_content["token_fingerprint"] == fingerprint(TOKEN)
    assert result.structured_content["token_sha256"] == token_hash(TOKEN)
    [record] = audit.records
    assert (record["tool"], record["token"], record["token_sha256"]) == (
        "whoami",
        fingerprint(TOKEN),
        token_hash(TOKEN),
    )
