"""Budget refunds with the budgets in a real Redis, shared by replicas."""

from __future__ import annotations

import errno
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import respx
from mcp import Client

from mcp_ci_tools.policy import Budget, StateStoreUnavailable
from mcp_ci_tools.state import RedisState
from tests.budget_refunds import CASE_IDS, CASES, Case
from tests.conftest import JOB_ID, PROJECT_ID, FakeClock, ListSink, text_of
from tests.redis.conftest import RedisServer, replica

pytestmark = pytest.mark.anyio

RESTART = {"project_id": PROJECT_ID, "job_id": JOB_ID}
RESTART_PATH = f"/projects/{PROJECT_ID}/jobs/{JOB_ID}/restart"


@pytest.fixture
async def redis_budgets(
    redis_server: RedisServer, redis_clock: FakeClock
) -> AsyncIterator[Callable[[int], Budget]]:
    """Budgets on a real Redis, each over its own connection, as separate replicas' budgets are."""
    states: list[RedisState] = []

    def make_budget(limit: int) -> Budget:
        state = RedisState(redis_server.url, prefix="refund-test:", timeout=1.0)
        states.append(state)
        return Budget("trigger", limit, storage=state.storage, clock=redis_clock, timeout=4.0)

    yield make_budget
    for state in states:
        await state.aclose()


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_budget_refunds_in_redis(
    case: Case, redis_budgets: Callable[[int], Budget], redis_clock
) -> None:
    await case(redis_budgets, redis_clock)


async def test_a_refund_with_redis_down_raises_state_unavailable(redis_server, redis_budgets) -> None:
    budget = redis_budgets(5)
    _, hit = await budget.take_refundable("k")
    redis_server.stop()

    with pytest.raises(StateStoreUnavailable):
        await budget.refund(hit)


@dataclass
class AttemptsFail:
    """An audit sink whose `attempt` records fail as on a full disk; `before_failing` runs first."""

    before_failing: Callable[[], None] = lambda: None
    lines: list[str] = field(default_factory=list)

    def write(self, line: str, *, durable: bool) -> None:
        if json.loads(line)["event"] == "attempt":
            self.before_failing()
            raise OSError(errno.ENOSPC, "No space left on device")
        self.lines.append(line)


async def remaining(client: Client) -> int | None:
    content = (await client.call_tool("whoami", {})).structured_content
    assert content is not None
    budget = content["trigger_budget"]
    return None if budget is None else int(budget["remaining"])


async def test_calls_refused_for_the_audit_on_one_replica_leave_the_shared_budget_full(
    redis_server, tmp_path, redis_clock, infrabox: respx.MockRouter
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json={"message": "ok", "jobs_restarted": 1})
    broken = replica(redis_server, tmp_path, AttemptsFail(), redis_clock)[0]
    healthy = replica(redis_server, tmp_path, ListSink(), redis_clock)[0]

    async with Client(broken) as a, Client(healthy) as b:
        refusals = [await a.call_tool("restart_job", RESTART) for _ in range(5)]
        seen_by_the_other_replica = await remaining(b)
        seen_here = await remaining(a)

    assert all(r.is_error and "audit log cannot be written" in text_of(r) for r in refusals)
    assert (seen_by_the_other_replica, seen_here) == (5, 5)
    assert route.call_count == 0


async def test_a_refund_that_cannot_reach_redis_still_refuses_for_the_audit(
    redis_server, tmp_path, redis_clock, infrabox: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    route = infrabox.post(RESTART_PATH).respond(200, json={})
    server = replica(redis_server, tmp_path, AttemptsFail(before_failing=redis_server.stop), redis_clock)[0]

    async with Client(server) as client:
        refused = await client.call_tool("restart_job", RESTART)

    assert refused.is_error and "audit log cannot be written" in text_of(refused)
    assert route.call_count == 0
    assert any("could not give back the trigger budget slot" in r.getMessage() for r in caplog.records)
