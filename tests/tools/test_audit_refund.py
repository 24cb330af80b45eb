"""A trigger call refused because its `attempt` record could not be written gives its budget slot back."""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import respx

from mcp_ci_tools.audit import JsonlFileSink
from tests.conftest import JOB_ID, PROJECT_ID, text_of

pytestmark = pytest.mark.anyio

RESTART = {"project_id": PROJECT_ID, "job_id": JOB_ID}
RESTART_PATH = f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/restart"
RESTARTED = {"message": "Successfully restarted job", "jobs_restarted": 1}


@dataclass
class AttemptsFail:
    """An audit sink whose `attempt` records fail as on a full disk while `full`; other records are kept."""

    full: bool = True
    lines: list[str] = field(default_factory=list)

    def write(self, line: str, *, durable: bool) -> None:
        if self.full and json.loads(line)["event"] == "attempt":
            raise OSError(errno.ENOSPC, "No space left on device")
        self.lines.append(line)


class FullDisk:
    """A `write(2)` for `JsonlFileSink`: while `full`, it writes half a line and fails with ENOSPC."""

    def __init__(self) -> None:
        self.full = True

    def __call__(self, fd: int, data: bytes) -> int:
        if not self.full:
            return os.write(fd, data)
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")


async def remaining(client: object) -> int:
    content = (await client.call_tool("whoami", {})).structured_content  # type: ignore[attr-defined]
    assert content is not None
    budget: int = content["trigger_budget"]["remaining"]
    return budget


async def test_calls_refused_for_the_audit_leave_the_trigger_budget_full(
    make_server, connect, infrabox: respx.MockRouter
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json=RESTARTED)
    sink = AttemptsFail()
    # Neither the duplicate nor the restart-loop guard may answer the identical calls after the recovery.
    client = await connect(make_server(audit_sink=sink, dedupe_seconds=0, max_restarts_per_build=0))

    refusals = [await client.call_tool("restart_job", RESTART) for _ in range(5)]

    assert all(r.is_error and "audit log cannot be written" in text_of(r) for r in refusals)
    assert route.call_count == 0
    assert len(infrabox.calls) == 0
    assert await remaining(client) == 5

    sink.full = False  # the disk recovers: the whole budget is there
    sent = [await client.call_tool("restart_job", RESTART) for _ in range(6)]
    assert [r.is_error for r in sent] == [False] * 5 + [True]
    assert "Trigger budget used up" in text_of(sent[-1])
    assert route.call_count == 5


async def test_a_full_disk_under_the_file_sink_refuses_keeps_the_file_whole_and_the_budget_full(
    make_server, connect, infrabox: respx.MockRouter, tmp_path: Path
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json=RESTARTED)
    path = tmp_path / "audit.jsonl"
    disk = FullDisk()
    client = await connect(make_server(audit_sink=JsonlFileSink(path, write=disk)))

    refused = [await client.call_tool("restart_job", RESTART) for _ in range(5)]
    disk.full = False
    sent = await client.call_tool("restart_job", RESTART)

    assert all(r.is_error for r in refused) and not sent.is_error
    assert route.call_count == 1
    assert await remaining(client) == 4
    records = [json.loads(line) for line in path.read_text().splitlines()]  # every line is whole JSON
    assert [(r["event"], r["tool"]) for r in records if r["tool"] == "restart_job"] == [
        ("attempt", "restart_job"),
        ("result", "restart_job"),
    ]


async def test_a_call_refused_before_the_audit_step_takes_no_slot_and_gives_none_back(
    make_server, connect, infrabox: respx.MockRouter
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json=RESTARTED)
    client = await connect(make_server(audit_sink=AttemptsFail(), trigger_per_minute=2))

    await client.call_tool("restart_job", RESTART)
    invalid = await client.call_tool("restart_job", {**RESTART, "job_id": "nope"})

    assert invalid.is_error and "audit log cannot be written" not in text_of(invalid)
    assert await remaining(client) == 2
    assert route.call_count == 0


async def test_a_symlinked_audit_file_refuses_trigger_calls_with_the_reason_and_spends_nothing(
    make_server, connect, infrabox: respx.MockRouter, tmp_path: Path
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json=RESTARTED)
    target = tmp_path / "authorized_keys"
    target.write_text("ssh-ed25519 AAAA original\n")
    path = tmp_path / "audit.jsonl"
    path.symlink_to(target)
    client = await connect(make_server(audit_sink=JsonlFileSink(path)))

    result = await client.call_tool("restart_job", RESTART)

    assert result.is_error
    assert f"MCP_CI_AUDIT_LOG {path} is a symbolic link" in text_of(result)
    assert target.read_text() == "ssh-ed25519 AAAA original\n"
    assert route.call_count == 0
    assert await remaining(client) == 5
