"""What `Budget.refund` must guarantee, written once and run on every storage (memory here, Redis in tests/redis).

Each case gets `make_budget(limit)` (budgets made by it share one storage, as replicas do) and the fake clock
that both the budget and `limits` read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

import anyio

from mcp_ci_tools.policy import Budget, BudgetExhausted
from tests.conftest import FakeClock

MakeBudget = Callable[[int], Budget]
Case = Callable[[MakeBudget, FakeClock], Awaitable[None]]


async def a_refund_gives_the_slot_back(make_budget: MakeBudget, clock: FakeClock) -> None:
    budget = make_budget(5)
    state, hit = await budget.take_refundable("k")
    assert state.remaining == 4

    assert await budget.refund(hit) is True

    assert (await budget.peek("k")).remaining == 5


async def a_second_refund_of_the_same_take_frees_nothing(make_budget: MakeBudget, clock: FakeClock) -> None:
    budget = make_budget(5)
    _, hit = await budget.take_refundable("k")
    await budget.take("k")

    assert await budget.refund(hit) is True
    assert await budget.refund(hit) is False

    assert (await budget.peek("k")).remaining == 4  # the other take's slot stays spent


async def a_take_between_take_and_refund_keeps_its_slot_until_its_own_expiry(
    make_budget: MakeBudget, clock: FakeClock
) -> None:
    budget, replica = make_budget(2), make_budget(2)
    _, hit = await budget.take_refundable("k")
    clock.advance(5)
    await replica.take("k")  # another call, on another replica, lands before the refund

    await budget.refund(hit)

    assert (await budget.peek("k")).remaining == 1
    clock.advance(56)  # past the refunded take's expiry, not past the other one's
    assert (await replica.peek("k")).remaining == 1
    clock.advance(4.5)
    assert (await replica.peek("k")).remaining == 2


async def an_older_take_is_not_given_back_in_place_of_this_one(
    make_budget: MakeBudget, clock: FakeClock
) -> None:
    budget = make_budget(2)
    await budget.take("k")
    clock.advance(10)
    _, hit = await budget.take_refundable("k")

    await budget.refund(hit)

    assert (await budget.peek("k")).remaining == 1
    clock.advance(
        50.5
    )  # the older take has expired: had it been refunded instead, this one would still count
    assert (await budget.peek("k")).remaining == 2


async def takes_at_the_same_instant_lose_exactly_one_slot_to_a_refund(
    make_budget: MakeBudget, clock: FakeClock
) -> None:
    budget = make_budget(3)
    _, hit = await budget.take_refundable("k")
    await budget.take("k")
    await budget.take("k")  # the clock has not moved: three identical stamps

    await budget.refund(hit)

    assert (await budget.peek("k")).remaining == 1


async def a_refund_after_half_a_window_frees_nothing(make_budget: MakeBudget, clock: FakeClock) -> None:
    budget = make_budget(5)
    _, hit = await budget.take_refundable("k")
    clock.advance(31)

    assert await budget.refund(hit) is False

    assert (await budget.peek("k")).remaining == 4


async def a_refund_never_frees_slots_it_did_not_take(make_budget: MakeBudget, clock: FakeClock) -> None:
    budget = make_budget(5)
    _, hit = await budget.take_refundable("k")
    await budget.refund(hit)
    await budget.take("k")

    forged = dataclasses.replace(hit, cost=2)  # asks for more than is there from that take on

    assert await budget.refund(forged) is False
    assert (await budget.peek("k")).remaining == 4


async def a_refund_of_several_slots_gives_all_back(make_budget: MakeBudget, clock: FakeClock) -> None:
    budget = make_budget(5)
    _, hit = await budget.take_refundable("k", cost=3)

    assert await budget.refund(hit) is True

    assert (await budget.peek("k")).remaining == 5


async def concurrent_takes_and_refunds_leave_exactly_the_unrefunded_takes(
    make_budget: MakeBudget, clock: FakeClock
) -> None:
    budget, replica = make_budget(5), make_budget(5)
    await replica.take("k")
    kept = 1

    async def take_and_give_back() -> None:
        try:
            _, hit = await budget.take_refundable("k")
        except BudgetExhausted:
            return
        await anyio.lowlevel.checkpoint()
        assert await budget.refund(hit) is True

    async def take_and_keep() -> None:
        nonlocal kept
        try:
            await replica.take("k")
        except BudgetExhausted:  # the window may be full of takes about to be given back
            return
        kept += 1

    async with anyio.create_task_group() as group:
        for n in range(60):
            group.start_soon(take_and_keep if n % 20 == 0 else take_and_give_back)

    assert (await budget.peek("k")).remaining == 5 - kept


CASES: list[Case] = [
    a_refund_gives_the_slot_back,
    a_second_refund_of_the_same_take_frees_nothing,
    a_take_between_take_and_refund_keeps_its_slot_until_its_own_expiry,
    an_older_take_is_not_given_back_in_place_of_this_one,
    takes_at_the_same_instant_lose_exactly_one_slot_to_a_refund,
    a_refund_after_half_a_window_frees_nothing,
    a_refund_never_frees_slots_it_did_not_take,
    a_refund_of_several_slots_gives_all_back,
    concurrent_takes_and_refunds_leave_exactly_the_unrefunded_takes,
]
CASE_IDS = [case.__name__ for case in CASES]
