"""Budgets, learned refusals and failure handling with the state in a real Redis (in-process replicas)."""

from __future__ import annotations

import hashlib
import logging
import time

import anyio
import httpx
import pytest
import redis
from mcp import Client

from mcp_ci_tools.config import ConfigError, load_settings
from mcp_ci_tools.http_app import build_http_app
from mcp_ci_tools.server import build_server
from mcp_ci_tools.state import RedisState
from tests.conftest import JOB_ID, PROJECT_ID, TOKEN, make_settings, text_of
from tests.redis.conftest import replica

pytestmark = pytest.mark.anyio

ABORT = {"project_id": PROJECT_ID, "job_id": JOB_ID}
ABORT_PATH = f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/abort"


async def test_the_window_slides_across_replicas(
    redis_server, tmp_path, audit, redis_clock, infrabox
) -> None:
    route = infrabox.delete(ABORT_PATH).respond(200, json={})
    (one, _), (two, _) = (
        replica(redis_server, tmp_path, audit, redis_clock),
        replica(redis_server, tmp_path, audit, redis_clock),
    )
    async with Client(one) as a, Client(two) as b:
        start, admitted = redis_clock.now, []
        for n, offset in enumerate([0.0, 59.9, 59.9, 59.9, 59.9, 60.0, 60.05, 60.05]):
            redis_clock.now = start + offset
            if not (await (a if n % 2 else b).call_tool("abort_job", ABORT)).is_error:
                admitted.append(offset)

    assert admitted == [0.0, 59.9, 59.9, 59.9, 59.9, 60.05]
    assert route.call_count == 6


async def test_a_learned_refusal_is_shared_and_expires(
    redis_server, tmp_path, audit, clock, infrabox
) -> None:
    route = infrabox.delete(ABORT_PATH)
    route.side_effect = [
        httpx.Response(403, json={"message": "this MCP token does not have trigger permission"}),
        httpx.Response(200, json={}),
    ]
    (one, _), (two, _) = (
        replica(redis_server, tmp_path, audit, clock, permission_ttl=0.5),
        replica(redis_server, tmp_path, audit, clock, permission_ttl=0.5),
    )
    async with Client(one) as a, Client(two) as b:
        refused_by_infrabox = await a.call_tool("abort_job", ABORT)
        refused_here = await b.call_tool("abort_job", ABORT)
        await anyio.sleep(0.6)  # the refusal's TTL lives in Redis, on Redis' clock
        granted_later = await b.call_tool("abort_job", ABORT)

    assert "does not have trigger permission" in text_of(refused_by_infrabox)
    assert "answered earlier" in text_of(refused_here)
    assert "asked again after" in text_of(refused_here)
    assert granted_later.is_error is False
    assert route.call_count == 2


@pytest.mark.parametrize("failure", ["stopped", "frozen"])
async def test_redis_down_refuses_triggers_serves_reads_and_recovers(
    failure, redis_server, tmp_path, audit, clock, infrabox
) -> None:
    trigger = infrabox.delete(ABORT_PATH).respond(200, json={})
    read = infrabox.get("/projects").respond(200, json=[])
    settings = make_settings(tmp_path, state_url=redis_server.url, transport="http", token=None)
    state = RedisState(redis_server.url, prefix="mcp-ci-tools:", timeout=0.25)
    server = build_server(make_settings(tmp_path, state_url=redis_server.url), audit_sink=audit, state=state)
    probe = httpx.AsyncClient(
        transport=httpx.ASGITransport(
            app=build_http_app(build_server(settings, state=state), settings, readiness=state.ready)
        ),
        base_url="http://127.0.0.1",
    )
    async with Client(server) as client, probe:
        assert (await probe.get("/readyz")).status_code == 200
        redis_server.stop() if failure == "stopped" else redis_server.freeze()

        started = time.monotonic()
        refused = await client.call_tool("abort_job", ABORT)
        refusal_seconds = time.monotonic() - started
        served = await client.call_tool("list_projects", {})
        who = await client.call_tool("whoami", {})
        not_ready = await probe.get("/readyz")
        healthy = await probe.get("/healthz")

        redis_server.start() if failure == "stopped" else redis_server.thaw()
        recovered = await client.call_tool("abort_job", ABORT)
        ready_again = await probe.get("/readyz")

    assert refused.is_error and "state store" in text_of(refused)
    assert refusal_seconds < 3
    assert served.is_error is False and read.call_count == 1
    assert who.is_error is False and who.structured_content["trigger_budget"] is None
    assert who.structured_content["trigger_permission"]["allowed"] is False
    assert (not_ready.status_code, healthy.status_code) == (503, 200)
    assert ready_again.status_code == 200
    denied = [(r["tool"], r["reason"]) for r in audit.records if r["decision"] == "denied"]
    if failure == "frozen":  # its data intact: triggers go on at once
        assert recovered.is_error is False, text_of(recovered)
        assert trigger.call_count == 1
        assert denied == [("abort_job", "state_unavailable")]
    else:  # restarted empty: the budgets are gone, so triggers wait a full window (test_state_reset)
        assert recovered.is_error and "lost its data" in text_of(recovered)
        assert trigger.call_count == 0
        assert denied == [("abort_job", "state_unavailable"), ("abort_job", "state_reset")]


async def test_redis_holds_full_token_hashes_never_tokens_and_every_key_expires(
    redis_server, tmp_path, audit, clock, infrabox
) -> None:
    infrabox.delete(ABORT_PATH).respond(
        403, json={"message": "this MCP token does not have trigger permission"}
    )
    infrabox.get("/projects").respond(200, json=[])
    server, _ = replica(redis_server, tmp_path, audit, clock)
    async with Client(server) as client:
        await client.call_tool("abort_job", ABORT)
        await client.call_tool("list_projects", {})
        await client.call_tool("whoami", {})

    db = redis.Redis.from_url(redis_server.url, decode_responses=False)
    try:
        keys = [_raw(key) for key in db.keys("*")]
        dump = b" ".join(keys)
        for key in keys:
            if _raw(db.type(key)) == b"string":
                values = [_raw(db.get(key) or b"")]
            else:
                values = [_raw(value) for value in db.lrange(key, 0, -1)]
            dump += b" " + b" ".join(values)
            # One constant key must outlive everything: the epoch (tests/redis/test_state_reset.py).
            if key != b"mcp-ci-tools:epoch":
                assert 0 < db.pttl(key) <= 3_660_000, (key, db.pttl(key))
    finally:
        db.close()
    assert keys and all(key.startswith(b"mcp-ci-tools:") for key in keys)
    assert TOKEN.encode() not in dump and TOKEN[7:].encode() not in dump
    # Keyed by the full SHA-256: a crafted token sharing the 12-digit fingerprint gets other keys.
    assert hashlib.sha256(TOKEN.encode()).hexdigest().encode() in dump
    assert b"sha256:9a7b30619557" not in dump


async def test_an_unreachable_redis_at_startup_is_reported_with_the_password_masked(caplog) -> None:
    state = RedisState("redis://:hunter2@127.0.0.1:1/0", prefix="p:", timeout=0.1)
    with caplog.at_level(logging.WARNING, logger="mcp_ci_tools.state"):
        await state.start()

    assert "redis://:[MASKED:url-password]@127.0.0.1:1/0 is not answering" in caplog.text
    assert "hunter2" not in caplog.text
    assert await state.ready() is False


@pytest.mark.parametrize("url", ["http://redis:6379", "redis://", "redis://host:port/0", "memcached://x"])
def test_a_malformed_state_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            [], {"INFRABOX_URL": "https://ib", "INFRABOX_MCP_TOKEN": TOKEN, "MCP_CI_STATE_URL": url}
        )

    assert caught.value.variable == "MCP_CI_STATE_URL"


def test_the_state_url_password_never_shows_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            ["--state-url", "redis://:hunter2@host:port/0"],
            {"INFRABOX_URL": "https://ib", "INFRABOX_MCP_TOKEN": TOKEN},
        )

    assert "hunter2" not in str(caught.value)


async def test_duplicate_and_restart_loop_guards_are_shared_by_replicas(
    redis_server, tmp_path, audit, clock, infrabox
) -> None:
    rerun = infrabox.post(f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/rerun").respond(200, json={})
    guarded = {
        "dedupe_seconds": 0.5,
        "max_restarts_per_build": 2,
    }  # TTLs run on Redis' clock: keep them short
    (one, _), (two, _) = (
        replica(redis_server, tmp_path, audit, clock, **guarded),
        replica(redis_server, tmp_path, audit, clock, **guarded),
    )
    async with Client(one) as a, Client(two) as b:
        first = await a.call_tool("rerun_job", ABORT)
        duplicate = await b.call_tool("rerun_job", ABORT)
        await anyio.sleep(0.6)
        second = await b.call_tool("rerun_job", ABORT)
        await anyio.sleep(0.6)
        third = await a.call_tool("rerun_job", ABORT)

    assert first.is_error is False and second.is_error is False
    assert duplicate.structured_content["replayed"] is True
    assert third.is_error and "Restart-loop guard: 2 restart/rerun requests" in text_of(third)
    assert rerun.call_count == 2


def _raw(value: bytes | str) -> bytes:
    """A Redis reply as bytes (the client is typed for both decoded and raw replies)."""
    return value if isinstance(value, bytes) else value.encode()
