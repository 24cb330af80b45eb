"""Budgets that survive a state-store restart: Redis coming back empty makes every replica refuse triggers
for one full window, so InfraBox never gets more than the budget in any 60 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
import respx
from mcp import Client

from tests.conftest import JOB_ID, PROJECT_ID, FakeClock, ListSink, text_of
from tests.redis.conftest import RedisServer, replica

pytestmark = pytest.mark.anyio

ABORT = {"project_id": PROJECT_ID, "job_id": JOB_ID}
ABORT_PATH = f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/abort"


async def _aborts(client: Client, count: int) -> list[Any]:
    return [await client.call_tool("abort_job", ABORT) for _ in range(count)]


async def test_redis_restarted_empty_refuses_triggers_on_every_replica_for_one_window(
    redis_server: RedisServer,
    tmp_path: Path,
    audit: ListSink,
    redis_clock: FakeClock,
    infrabox: respx.MockRouter,
) -> None:
    sent = infrabox.delete(ABORT_PATH).respond(200, json={})
    one, two = (
        replica(redis_server, tmp_path, audit, redis_clock)[0],
        replica(redis_server, tmp_path, audit, redis_clock)[0],
    )
    async with Client(one) as a, Client(two) as b:
        before = await _aborts(a, 6)
        assert [r.is_error for r in before] == [False] * 5 + [True]  # the budget holds

        redis_server.stop()
        redis_server.start()  # empty: no persistence
        for client in (a, b):  # each replica's first call after the restart meets its dropped connection
            await client.call_tool("whoami", {})
        redis_clock.advance(1)
        after_a = await a.call_tool("abort_job", ABORT)
        after_b = await b.call_tool("abort_job", ABORT)
        async with Client(replica(redis_server, tmp_path, audit, redis_clock)[0]) as c:
            after_c = await c.call_tool("abort_job", ABORT)  # started after the reset
            who = await c.call_tool("whoami", {})

            redis_clock.advance(60)
            later = await c.call_tool("abort_job", ABORT)

    assert all(r.is_error for r in (after_a, after_b, after_c))
    assert "lost its data" in text_of(after_a)
    assert "until 2027-01-15T08:01:01Z" in text_of(after_a)
    assert text_of(after_b) == text_of(after_a)
    assert who.structured_content is not None
    assert who.structured_content["trigger_permission"]["allowed"] is False
    assert "lost its data" in who.structured_content["hint"]
    assert later.is_error is False, text_of(later)
    assert sent.call_count == 6  # 5 before the reset, 1 a full window later: never more than 5 in 60 s
    reasons = [r["reason"] for r in audit.records if r["decision"] == "denied"]
    assert reasons == ["rate_limited", "state_reset", "state_reset", "state_reset"]


async def test_a_first_start_on_an_empty_store_is_not_a_reset(
    redis_server: RedisServer,
    tmp_path: Path,
    audit: ListSink,
    redis_clock: FakeClock,
    infrabox: respx.MockRouter,
) -> None:
    infrabox.delete(ABORT_PATH).respond(200, json={})
    async with Client(replica(redis_server, tmp_path, audit, redis_clock)[0]) as client:
        first = await client.call_tool("abort_job", ABORT)

    assert first.is_error is False, text_of(first)


async def test_the_epoch_is_one_key_that_never_expires_and_holds_no_token(
    redis_server: RedisServer, tmp_path: Path, audit: ListSink, redis_clock: FakeClock
) -> None:
    async with Client(replica(redis_server, tmp_path, audit, redis_clock)[0]) as client:
        await client.call_tool("whoami", {})

    db = redis.Redis.from_url(redis_server.url)
    try:
        epoch = db.get("mcp-ci-tools:epoch")
        ttl = db.pttl("mcp-ci-tools:epoch")
    finally:
        db.close()
    assert isinstance(epoch, bytes) and len(epoch) == 32
    assert ttl == -1
