"""What may be sent to InfraBox, decided before anything is sent.

- `parse_id`: only a canonical UUID may ever reach a URL path.
- `TriggerPermission`: the operator's declared `allow_trigger`, plus a refusal learned from InfraBox's 403.
- `Budget`: at most N requests in any sliding 60 s window, per caller key (a `limits` moving window);
  a slot taken for a call that is then not sent can be given back (`refund`).
- `RejectedTokens`: tokens InfraBox answered 401 for, refused by every replica for a while.

Everything is kept per caller key: the full SHA-256 of the token (`domain.tokens.token_hash`), never the
token, and never the 48-bit fingerprint, which a crafted token could share with another caller.

Every refusal is a `PolicyDenied` whose `reason` is the audit code.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from mcp_ci_tools.domain.ids import is_uuid
from mcp_ci_tools.domain.masking import describe_value
from mcp_ci_tools.domain.timestamps import Clock
from mcp_ci_tools.state import MemoryState, State, StateUnavailable, memory_storage

if TYPE_CHECKING:  # limits loads with the first budget check, not at start-up
    from limits.aio.storage import Storage

__all__ = [
    "REJECTED_TOKEN_TTL_S",
    "WINDOW_SECONDS",
    "Budget",
    "BudgetExhausted",
    "BudgetHit",
    "BudgetState",
    "InvalidArgument",
    "InvalidId",
    "PolicyDenied",
    "ReadBudgets",
    "RejectedTokens",
    "StateContinuity",
    "StateReset",
    "StateStoreUnavailable",
    "ToolsetDisabled",
    "TriggerNotAllowed",
    "TriggerPermission",
    "parse_id",
]

T = TypeVar("T")
log = logging.getLogger("mcp_ci_tools.policy")

WINDOW_SECONDS = 60


class PolicyDenied(Exception):
    """A call refused locally; nothing was sent to InfraBox."""

    reason = "denied"


class InvalidId(PolicyDenied):
    """An id argument that is not a UUID."""

    reason = "invalid_input"

    def __init__(self, argument: str, value: object) -> None:
        super().__init__(f"{argument} is not a UUID")
        self.argument = argument
        self.shown_value = describe_value(value)


class InvalidArgument(PolicyDenied):
    """Any other argument that cannot be used as given (e.g. a regular expression that does not compile)."""

    reason = "invalid_input"

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument}: {problem}")
        self.argument = argument
        self.problem = problem


class ToolsetDisabled(PolicyDenied):
    """The tool's toolset is not served (`MCP_CI_TOOLSETS`)."""

    reason = "toolset_disabled"

    def __init__(self, toolset: str) -> None:
        super().__init__(f"toolset {toolset} is not enabled")
        self.toolset = toolset


class TriggerNotAllowed(PolicyDenied):
    """The token has no trigger permission: declared by the operator, or learned from InfraBox's 403."""

    reason = "trigger_not_allowed"

    def __init__(self, *, learned: bool, recheck_at: float | None = None) -> None:
        super().__init__("trigger permission refused" + (" by InfraBox" if learned else " by configuration"))
        self.learned = learned
        self.recheck_at = recheck_at


class BudgetExhausted(PolicyDenied):
    """No slot left in the sliding window of `budget` (the trigger budget or a read bucket)."""

    reason = "rate_limited"

    def __init__(self, budget: str, state: BudgetState) -> None:
        super().__init__(f"{budget} budget exhausted; next slot in {state.seconds_until_next_slot} s")
        self.budget = budget
        self.state = state

    @property
    def retry_after_s(self) -> int:
        return self.state.seconds_until_next_slot


def parse_id(argument: str, value: object) -> uuid.UUID:
    """The UUID in `value`, or `InvalidId`. Only the 8-4-4-4-12 hex form is accepted (no braces, urn: or bare hex)."""
    if not is_uuid(value):
        raise InvalidId(argument, value)
    return uuid.UUID(value)


class StateStoreUnavailable(PolicyDenied):
    """The shared state store did not answer, so nothing that depends on it may be sent (fail closed)."""

    reason = "state_unavailable"


class StateReset(PolicyDenied):
    """The shared state store lost its data recently; triggers wait one full budget window (fail closed)."""

    reason = "state_reset"

    def __init__(self, until: float) -> None:
        super().__init__("the state store lost its data")
        self.until = until


class StateContinuity:
    """Refuses what the budgets protect while the state store is recovering from a loss of its data.

    For one full window after a reset nobody can know how many requests were sent in it, so none is sent.
    """

    def __init__(self, state: State, *, window_s: float) -> None:
        self._state = state
        self._window_s = window_s

    async def check(self) -> None:
        try:
            until = await self._state.continuity(self._window_s)
        except StateUnavailable as error:
            raise StateStoreUnavailable(str(error)) from error
        if until is not None:
            raise StateReset(until)


class TriggerPermission:
    """Whether trigger calls may be sent for a token: the operator's declaration, then InfraBox's word.

    A 403 "no trigger permission" is remembered per caller key for `ttl_s` (shared by every replica
    when the state is in Redis), so later trigger calls of that token are refused without a request until
    then; other tokens are not affected. After the TTL InfraBox is asked again, so a later grant takes effect.
    """

    def __init__(
        self, declared: bool, *, state: State | None = None, ttl_s: float = 3600, clock: Clock = time.time
    ) -> None:
        self.declared = declared
        self.ttl_s = ttl_s
        self._state = state or MemoryState(clock=clock)
        self._clock = clock

    async def check(self, key: str) -> None:
        if not self.declared:
            raise TriggerNotAllowed(learned=False)
        refused = await self.refused_at(key)
        if refused is not None:
            raise TriggerNotAllowed(learned=True, recheck_at=refused + self.ttl_s)

    async def learn_refusal(self, key: str) -> None:
        try:
            await self._state.set(
                f"trigger-refused:{key}", repr(self._clock()), self.ttl_s, only_if_absent=True
            )
        except StateUnavailable:
            log.warning(
                "could not record the trigger refusal of sha256:%s: state store unavailable", key[:12]
            )

    async def refused_at(self, key: str) -> float | None:
        """When InfraBox refused this token's trigger call (within the TTL), or None."""
        try:
            value = await self._state.get(f"trigger-refused:{key}")
        except StateUnavailable as error:
            raise StateStoreUnavailable(str(error)) from error
        return None if value is None else float(value)


REJECTED_TOKEN_TTL_S = 300.0


class RejectedTokens:
    """Tokens InfraBox answered 401 for, by caller key, for `ttl_s` seconds (in the state store, so every
    replica refuses them). The HTTP layer subscribes to close the sessions of a token as soon as it is
    rejected here, and refuses its requests until `until()` passes, so sessions opened with made-up tokens
    (the server can check only the form) do not stay open and crowd out real callers.
    """

    def __init__(
        self, state: State, *, ttl_s: float = REJECTED_TOKEN_TTL_S, clock: Clock = time.time
    ) -> None:
        self.ttl_s = ttl_s
        self._state = state
        self._clock = clock
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        """Call `listener(key)` whenever a token is rejected in this process."""
        self._listeners.append(listener)

    async def remember(self, key: str) -> None:
        until = self._clock() + self.ttl_s
        try:
            await self._state.set(f"token-rejected:{key}", repr(until), self.ttl_s)
        except StateUnavailable:
            log.warning(
                "could not record that InfraBox rejected sha256:%s: state store unavailable", key[:12]
            )
        for listener in self._listeners:
            listener(key)

    async def until(self, key: str) -> float | None:
        """Until when the token of `key` is refused, or None. Fails open: InfraBox checks the token anyway."""
        try:
            value = await self._state.get(f"token-rejected:{key}")
        except StateUnavailable:
            return None
        return None if value is None else float(value)


@dataclass(frozen=True)
class BudgetState:
    """A budget as an agent needs it: how many requests are left and when the next slot frees."""

    limit: int
    remaining: int
    window_seconds: int
    seconds_until_next_slot: int


@dataclass
class BudgetHit:
    """The slots one admitted `take_refundable` consumed, as `Budget.refund` needs them (given back once).

    `not_before`: no entry of this take is stamped earlier, on the budget's clock (the one `limits` stamps
    with); `taken_at`: `time.monotonic()` when the take returned.
    """

    key: str
    cost: int
    not_before: float
    taken_at: float
    refunded: bool = field(default=False, init=False)


# How far below the measured start of a take its entries' stamps may lie: covers the float stamps' rounding.
# A lower bound only costs precision (see `Budget.refund`), never correctness.
_STAMP_SLACK_S = 0.001

# Gives back ARGV[2] entries of a `limits` moving window (a list of float stamps, newest first): the oldest
# ones stamped at or after ARGV[1]. Returns how many it removed (0 if fewer qualify: then it removes none).
_REFUND_SCRIPT = """
local not_before = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local stamps = {}
for _, entry in ipairs(redis.call('lrange', KEYS[1], 0, -1)) do
    local stamp = tonumber(entry)
    if stamp and stamp >= not_before then
        stamps[#stamps + 1] = entry
    end
end
if #stamps < cost then
    return 0
end
table.sort(stamps, function(a, b) return tonumber(a) < tonumber(b) end)
for i = 1, cost do
    redis.call('lrem', KEYS[1], -1, stamps[i])
end
return cost
"""


class Budget:
    """At most `limit` requests in any sliding window of `window_s` seconds (default 60), per key.

    `take` checks and consumes in one atomic step (never test-then-hit), so the limit holds under concurrency,
    across replicas too when the storage is Redis. A storage failure raises `StateStoreUnavailable`.
    `refund` gives back what a `take_refundable` took, for a call that was then not sent.
    """

    def __init__(
        self,
        name: str,
        limit: int,
        *,
        window_s: int = WINDOW_SECONDS,
        storage: Storage | Callable[[], Storage] | None = None,
        clock: Clock = time.time,
        timeout: float | None = None,
    ) -> None:
        self.name = name
        self.limit = limit
        self.window_s = window_s
        self._storage = storage
        self._clock = clock
        self._timeout = timeout
        self._limiter_and_item: tuple[Any, Any] | None = None

    def _setup(self) -> tuple[Any, Any]:
        if self._limiter_and_item is None:  # limits loads with the first budget check, not at start-up
            from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
            from limits.aio.strategies import MovingWindowRateLimiter

            item = (
                RateLimitItemPerMinute(self.limit)
                if self.window_s == WINDOW_SECONDS
                else RateLimitItemPerSecond(self.limit, self.window_s)
            )
            storage = self._storage() if callable(self._storage) else self._storage
            if storage is None:
                storage = memory_storage()
            self._limiter_and_item = (MovingWindowRateLimiter(storage), item)
        return self._limiter_and_item

    @property
    def _limiter(self) -> Any:
        return self._setup()[0]

    @property
    def _item(self) -> Any:
        return self._setup()[1]

    async def _guarded(self, operation: Callable[[], Awaitable[T]]) -> T:
        from limits.errors import StorageError

        try:
            if self._timeout is None:
                return await operation()
            with anyio.fail_after(self._timeout):
                return await operation()
        except (StorageError, TimeoutError, OSError) as error:
            raise StateStoreUnavailable(f"{self.name} budget: {type(error).__name__}") from error

    async def take(self, key: str, cost: int = 1) -> BudgetState:
        """Consume `cost` slots for `key` and return what is left, or raise `BudgetExhausted`."""
        state, _ = await self.take_refundable(key, cost)
        return state

    async def take_refundable(self, key: str, cost: int = 1) -> tuple[BudgetState, BudgetHit]:
        """`take`, plus what `refund` needs to give these slots back."""
        wall, started = self._clock(), time.monotonic()
        admitted = await self.consume(key, cost)
        wall_after, done = self._clock(), time.monotonic()
        state = await self.peek(key)
        if not admitted:
            raise BudgetExhausted(self.name, state)
        # `limits` stamped the entries between the two readings of the clock; if the wall clock stepped back
        # meanwhile, still no earlier than the second reading minus the time that really passed.
        not_before = min(wall, wall_after - (done - started)) - _STAMP_SLACK_S
        return state, BudgetHit(key=key, cost=cost, not_before=not_before, taken_at=done)

    async def refund(self, hit: BudgetHit) -> bool:
        """Give back the slots `hit` took (the call was not sent); say whether they were given back.

        `limits` keeps a window as anonymous timestamps, so this call's own entries cannot be named. The
        refund removes, in one atomic step, the `cost` *oldest* entries stamped at or after `hit.not_before`.
        This call's own entries are among those candidates (they are stamped no earlier, and still live), so
        every entry removed is stamped no later than this call's: the window then holds as many entries as after
        an exact refund, each expiring no earlier. It never frees more than was taken, and never lets a slot
        come free earlier than an exact refund would, whatever other calls (on any replica) took meanwhile.

        A hit is given back at most once. Refused (False, nothing freed) once half a window has passed since
        the take, by the wall clock or the monotonic one: the entries must still be live on every replica's
        clock (skew under half a window), or one could have been trimmed and a newer call's entry be taken for
        it. False too if the entries are not all found, or on a storage without refund support.
        """
        if hit.refunded:  # the entries are anonymous: a second refund would free another call's slot
            return False
        half_window = self.window_s / 2
        if time.monotonic() - hit.taken_at > half_window or self._clock() - hit.not_before > half_window:
            log.warning("%s budget: a refund came too late; the slot stays spent", self.name)
            return False
        storage_key = self._item.key_for(self.name, hit.key)
        storage = self._limiter.storage
        hit.refunded = True  # before the await: two concurrent refunds of one hit must not both remove
        return await self._guarded(lambda: _refund_entries(storage, storage_key, hit.not_before, hit.cost))

    async def consume(self, key: str, cost: int = 1) -> bool:
        """Consume `cost` slots for `key` if they are free (one atomic step); say whether they were."""
        return await self._guarded(lambda: self._limiter.hit(self._item, self.name, key, cost=cost))

    async def has_room(self, key: str, cost: int = 1) -> bool:
        return await self._guarded(lambda: self._limiter.test(self._item, self.name, key, cost=cost))

    async def take_up_to(self, key: str, wanted: int) -> int:
        """Consume as many slots as are free, up to `wanted`; return how many were taken."""
        taken = 0
        while taken < wanted and await self.consume(key):
            taken += 1
        return taken

    async def peek(self, key: str) -> BudgetState:
        reset_time, remaining = await self._guarded(
            lambda: self._limiter.get_window_stats(self._item, self.name, key)
        )
        wait = 0 if remaining > 0 else max(1, math.ceil(reset_time - self._clock()))
        return BudgetState(
            limit=self.limit,
            remaining=remaining,
            window_seconds=self.window_s,
            seconds_until_next_slot=wait,
        )


async def _refund_entries(storage: Storage, key: str, not_before: float, cost: int) -> bool:
    """Remove the `cost` oldest moving-window entries of `key` stamped at or after `not_before`, atomically."""
    from limits.aio.storage import MemoryStorage, RedisStorage
    from limits.aio.storage.redis.redispy import RedispyBridge
    from limits.errors import StorageError

    if isinstance(storage, MemoryStorage):
        async with storage.locks[key]:  # the lock `acquire_entry` holds; no await while the list changes
            events = storage.events.get(key, [])  # newest first
            found = sorted(
                (i for i, e in enumerate(events) if e.atime >= not_before), key=lambda i: events[i].atime
            )
            if len(found) < cost:
                return False
            for index in sorted(found[:cost], reverse=True):
                del events[index]
            return True
    if isinstance(storage, RedisStorage) and isinstance(storage.bridge, RedispyBridge):
        from redis.exceptions import RedisError

        bridge = storage.bridge
        try:
            script = bridge.get_connection().register_script(_REFUND_SCRIPT.encode())
            removed = await script([bridge.prefixed_key(key)], [repr(not_before), cost])
        except RedisError as error:
            raise StorageError(error) from error
        return int(removed) == cost
    log.warning("budgets on %s cannot give slots back; the slot stays spent", type(storage).__name__)
    return False


class ReadBudgets:
    """One `Budget` per InfraBox read bucket; a call reserves every slot it needs before anything is sent.

    When the shared store does not answer, reads go on against `fallback` (this process's own budgets of
    the same size): reads change nothing, so serving them beats refusing them.
    """

    def __init__(
        self, budgets: Mapping[str, Budget], *, fallback: Mapping[str, Budget] | None = None
    ) -> None:
        self.buckets = dict(budgets)
        self.fallback = dict(fallback) if fallback is not None else None

    async def _with_fallback(self, operation: Callable[[Mapping[str, Budget]], Awaitable[T]]) -> T:
        try:
            return await operation(self.buckets)
        except StateStoreUnavailable:
            if self.fallback is None:
                raise
            log.warning("state store unavailable: read budgets fall back to this process")
            return await operation(self.fallback)

    async def reserve(self, key: str, needs: Mapping[str, int]) -> None:
        """Take `needs` (bucket → requests) from every bucket, or raise `BudgetExhausted` for the first short one.

        All buckets are checked before any is consumed, so a refused call normally takes nothing; a
        concurrent call can still win the race between check and take, and then the slots already taken
        stay spent (never more requests than the budget, at worst fewer).
        """

        async def reserve_in(buckets: Mapping[str, Budget]) -> None:
            if len(needs) > 1:  # check every bucket first, so a refused call normally takes nothing
                for bucket, cost in needs.items():
                    if not await buckets[bucket].has_room(key, cost):
                        raise BudgetExhausted(bucket, await buckets[bucket].peek(key))
            for bucket, cost in needs.items():
                # A refused hit consumes nothing; only then is the state read, for the wait it reports.
                if not await buckets[bucket].consume(key, cost):
                    raise BudgetExhausted(bucket, await buckets[bucket].peek(key))

        await self._with_fallback(reserve_in)

    async def take_up_to(self, key: str, bucket: str, wanted: int) -> int:
        return await self._with_fallback(lambda buckets: buckets[bucket].take_up_to(key, wanted))

    async def states(self, key: str) -> dict[str, BudgetState]:
        async def states_in(buckets: Mapping[str, Budget]) -> dict[str, BudgetState]:
            return {bucket: await budget.peek(key) for bucket, budget in buckets.items()}

        return await self._with_fallback(states_in)
