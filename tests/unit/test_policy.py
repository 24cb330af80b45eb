"""Id parsing, trigger permission and the sliding-window budget (fake clock, no sleeping)."""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest

from mcp_ci_tools.policy import (
    Budget,
    BudgetExhausted,
    InvalidId,
    TriggerNotAllowed,
    TriggerPermission,
    parse_id,
)
from tests.budget_refunds import CASE_IDS, CASES, Case
from tests.conftest import BUILD_ID, FakeClock

pytestmark = pytest.mark.anyio


def test_parse_id_returns_a_canonical_uuid() -> None:
    assert parse_id("build_id", BUILD_ID.upper()) == uuid.UUID(BUILD_ID)
    assert str(parse_id("build_id", BUILD_ID.upper())) == BUILD_ID


@pytest.mark.parametrize(
    "value", ["", "../x", "%2e%2e", BUILD_ID + "\n", "urn:uuid:" + BUILD_ID, None, 7, "x" * 10_000]
)
def test_parse_id_refuses_anything_else_and_describes_it_briefly(value: object) -> None:
    with pytest.raises(InvalidId) as caught:
        parse_id("job_id", value)

    assert caught.value.argument == "job_id"
    assert caught.value.reason == "invalid_input"
    assert len(caught.value.shown_value) < 80


def test_a_rejected_value_that_holds_a_token_is_masked() -> None:
    with pytest.raises(InvalidId) as caught:
        parse_id("job_id", "ib_mcp_" + "a" * 48)

    assert "a" * 20 not in caught.value.shown_value


async def test_permission_declared_false_refuses() -> None:
    with pytest.raises(TriggerNotAllowed) as caught:
        await TriggerPermission(False).check("sha256:a")
    assert caught.value.learned is False


async def test_permission_learned_from_infrabox_refuses_that_token_only(clock: FakeClock) -> None:
    permission = TriggerPermission(True, clock=clock)
    await permission.check("sha256:a")

    await permission.learn_refusal("sha256:a")

    with pytest.raises(TriggerNotAllowed) as caught:
        await permission.check("sha256:a")
    assert caught.value.learned is True
    assert await permission.refused_at("sha256:a") == clock.now
    await permission.check("sha256:b")
    assert await permission.refused_at("sha256:b") is None


async def test_budget_admits_at_most_n_in_any_sixty_seconds(clock: FakeClock) -> None:
    budget = Budget("trigger", 5, clock=clock)
    start, admitted = clock.now, []
    for offset in [0.0, 59.9, 59.9, 59.9, 59.9, 60.0, 60.0, 60.05, 60.05, 119.0, 119.95, 120.1]:
        clock.now = start + offset
        try:
            await budget.take("sha256:a")
            admitted.append(offset)
        except BudgetExhausted:
            pass

    assert admitted == [0.0, 59.9, 59.9, 59.9, 59.9, 60.05, 119.95, 120.1]
    assert all(sum(a <= t < a + 60 for t in admitted) <= 5 for a in admitted)


async def test_budget_says_when_the_next_slot_frees(clock: FakeClock) -> None:
    budget = Budget("trigger", 2, clock=clock)
    await budget.take("k")
    clock.advance(15)
    state = await budget.take("k")
    assert (state.remaining, state.seconds_until_next_slot) == (0, 45)
    clock.advance(0.5)

    with pytest.raises(BudgetExhausted) as caught:
        await budget.take("k")

    assert caught.value.retry_after_s == 45
    assert caught.value.reason == "rate_limited"


async def test_budgets_are_separate_per_key(clock: FakeClock) -> None:
    budget = Budget("trigger", 1, clock=clock)
    await budget.take("sha256:a")

    state = await budget.take("sha256:b")

    assert state.remaining == 0


async def test_one_hundred_concurrent_takes_admit_exactly_five(clock: FakeClock) -> None:
    budget = Budget("trigger", 5, clock=clock)
    outcomes: list[bool] = []

    async def take() -> None:
        try:
            await budget.take("k")
            outcomes.append(True)
        except BudgetExhausted:
            outcomes.append(False)

    async with anyio.create_task_group() as group:
        for _ in range(100):
            group.start_soon(take)

    assert outcomes.count(True) == 5


async def test_peek_does_not_consume(clock: FakeClock) -> None:
    budget = Budget("trigger", 1, clock=clock)

    for _ in range(3):
        assert (await budget.peek("k")).remaining == 1


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_budget_refunds_in_memory(case: Case, clock: FakeClock) -> None:
    from limits.aio.storage import MemoryStorage

    storage = MemoryStorage()  # shared by every budget the case makes, as one process's budgets are

    await case(lambda limit: Budget("trigger", limit, storage=storage, clock=clock), clock)


def test_limits_still_has_the_sweep_hook_our_memory_storage_throttles() -> None:
    from limits.aio.storage import MemoryStorage

    # memory_storage() overrides this name-mangled method; a limits release that renames it would quietly
    # bring back a worker-thread hop per key on every budget check.
    assert callable(getattr(MemoryStorage, "_MemoryStorage__schedule_expiry", None))


async def test_memory_budgets_still_free_expired_windows_and_stay_exact(clock: FakeClock) -> None:
    from mcp_ci_tools.state import memory_storage

    storage: Any = memory_storage(clock=clock)
    budget = Budget("trigger", 2, storage=storage, clock=clock)
    for caller in range(20):
        await budget.take(f"caller-{caller}")
    await budget.take("caller-0")
    with pytest.raises(BudgetExhausted):
        await budget.take("caller-0")  # within the second since the last sweep: still exact

    clock.advance(61)
    await budget.take("late")  # more than a second later: this hit sweeps
    await storage.timer

    assert [key.split("/")[2] for key in storage.events] == ["late"]  # the 20 expired windows are gone
    assert (await budget.peek("caller-0")).remaining == 2
