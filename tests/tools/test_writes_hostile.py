"""Trigger tools against a hostile InfraBox, through the SDK `Client`: a write is never retried, a 2xx
status is a success even when its answer cannot be read (with no invented ids), and a write that got no
status by the deadline is reported as of unknown outcome (tests/hostile_infrabox.py serves the answers)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_ci_tools.server import build_server
from mcp_ci_tools.state import MemoryState
from tests.conftest import BUILD_ID, JOB_ID, PROJECT_ID, FakeClock, ListSink, make_settings, text_of
from tests.hostile_infrabox import Answer, HostileInfraBox, drip, endless, stall

pytestmark = pytest.mark.anyio

BUILD_ARGS = {"project_id": PROJECT_ID, "build_id": BUILD_ID}
JOB_ARGS = {"project_id": PROJECT_ID, "job_id": JOB_ID}


async def call(
    tool: str,
    arguments: dict[str, str],
    answer: Answer,
    clock: FakeClock,
    audit: ListSink,
    tmp_path: Path,
    **settings: Any,
) -> tuple[Any, HostileInfraBox]:
    async def no_sleep(seconds: float) -> None:
        return None

    infrabox = HostileInfraBox(answer)
    server = build_server(
        make_settings(tmp_path, **settings),
        transport=infrabox,
        clock=clock,
        sleep=no_sleep,
        audit_sink=audit,
        state=MemoryState(clock=clock),
        new_request_id=lambda: "req-1",
    )
    async with Client(server) as client:
        return await client.call_tool(tool, arguments), infrabox


def outcome_of(audit: ListSink) -> dict[str, Any]:
    return next(r for r in reversed(audit.records) if r.get("event") == "result")


async def test_an_endless_200_to_restart_build_is_a_success_that_names_no_new_build(
    clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    result, infrabox = await call("restart_build", BUILD_ARGS, endless(), clock, audit, tmp_path)

    assert not result.is_error, text_of(result)
    content = result.structured_content
    assert content is not None and content["new_build_id"] is None and content["restart_counter"] is None
    assert "list_builds" in content["next_step"]  # where to find the build whose id could not be read
    record = outcome_of(audit)
    assert (record["outcome"], record["http_status"]) == ("success", 200)
    assert record["detail"] == {"answer_unread": "sent more than 1 MiB"}
    assert len(infrabox.requests) == 1


async def test_an_endless_500_to_restart_job_is_an_unknown_outcome_sent_once(
    clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    result, infrabox = await call("restart_job", JOB_ARGS, endless(status=500), clock, audit, tmp_path)

    assert result.is_error
    assert "was sent, but the outcome is unknown (InfraBox answered 500)" in text_of(result)
    assert outcome_of(audit)["outcome"] == "unknown"
    assert len(infrabox.requests) == 1


async def test_a_rerun_with_no_status_by_the_deadline_is_an_unknown_outcome_sent_once(
    clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    started = time.monotonic()
    result, infrabox = await call(
        "rerun_job", JOB_ARGS, stall(after_s=5.0), clock, audit, tmp_path, timeout=0.3
    )

    assert time.monotonic() - started < 0.3 + 1.5
    assert result.is_error
    assert "the outcome is unknown (sent, but no answer came back (no complete answer within 0.3 s))" in (
        text_of(result)
    )
    assert len(infrabox.requests) == 1


async def test_an_abort_whose_200_answer_drips_past_the_deadline_is_a_success(
    clock: FakeClock, audit: ListSink, tmp_path: Path
) -> None:
    answer = drip(b'{"message": "Successfully aborted job"}', every_s=0.5)
    result, infrabox = await call("abort_job", JOB_ARGS, answer, clock, audit, tmp_path, timeout=0.3)

    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["request_id"]
    assert outcome_of(audit)["detail"] == {"answer_unread": "sent no complete answer within 0.3 s"}
    assert len(infrabox.requests) == 1
