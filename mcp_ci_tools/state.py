"""Where policy keeps its state: budgets, learned refusals and guard records.

- `MemoryState`: in this process (stdio, one replica): the default.
- `RedisState`: in Redis, shared by every replica. Budgets use `limits`' moving window (one Lua script per
  hit, atomic across replicas); other records are plain keys with a TTL. Keys hold token fingerprints,
  never tokens, under one prefix. Every call is bounded by a timeout and never retried by the client (a
  retried budget script may already have counted); a failure raises `StateUnavailable`, after telling
  `on_error` which operation failed (for metrics; budget checks call `limits` directly and are not seen here,
  their failures refuse the call with the audit reason `state_unavailable`).

A store can lose its data (Redis restarted without persistence, a failover to an empty replica). Then
every budget it kept is gone, and InfraBox could receive more trigger requests in a minute than it
allows. `continuity()` notices: Redis holds an epoch key that never expires; a replica that has seen one
epoch and then finds it gone or replaced knows the data was lost, and records in the store itself until
when triggers must wait, so every replica (a freshly started one included) waits too. A store that is
empty when no replica has seen it yet (a first start) cannot be told apart from a reset: it counts as new.
"""

from __future__ import annotations

import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.timestamps import Clock

if TYPE_CHECKING:
    from limits.aio.storage import Storage
    from redis.asyncio import Redis, RedisCluster

__all__ = [
    "MemoryState",
    "RedisState",
    "State",
    "StateErrorObserver",
    "StateUnavailable",
    "memory_storage",
    "open_state",
]

log = logging.getLogger("mcp_ci_tools.state")

# Told the operation ("get", "set", "delete", "continuity", "ping", "start") whose Redis call failed.
StateErrorObserver = Callable[[str], None]


def _ignore(operation: str) -> None:
    return None


_SWEEP_EVERY_S = 1.0


def memory_storage(*, clock: Clock = time.monotonic) -> Storage:
    """`limits`' in-process storage, sweeping expired entries at most once a second.

    Its own sweep runs after every hit and hands each key to a worker thread, a thread hop per key per call.
    A moving window is counted from its entries' timestamps, so the sweep only frees memory: once a
    second frees it as well.
    """
    from limits.aio.storage import MemoryStorage

    class SweptEverySecond(MemoryStorage):
        _swept_at = -_SWEEP_EVERY_S

        # Overrides MemoryStorage's name-mangled `__schedule_expiry` (tests check that it still exists).
        async def _MemoryStorage__schedule_expiry(self) -> None:
            now = clock()
            if now - self._swept_at >= _SWEEP_EVERY_S:
                self._swept_at = now
                await super()._MemoryStorage__schedule_expiry()  # type: ignore[misc]

    return SweptEverySecond()


class StateUnavailable(Exception):
    """The shared state store did not answer (in time)."""


class State(ABC):
    """Key-value records with a TTL, plus the `limits` storage that budgets run on."""

    shared = False

    @property
    @abstractmethod
    def storage(self) -> Storage:
        """The `limits` storage for budgets."""

    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, ttl_s: float, *, only_if_absent: bool = False) -> bool:
        """Store `value` for `ttl_s` seconds; with `only_if_absent`, only if no live value exists (then True)."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    async def ready(self) -> bool:
        return True

    async def continuity(self, window_s: float) -> float | None:
        """If the store lost its data recently, until when (epoch seconds) to refuse what its budgets
        protect; else None. Memory cannot lose its data without the process that holds it."""
        return None

    @abstractmethod
    async def start(self) -> None:
        """Connect and warm up, so the first real call is as fast as later ones."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections."""


class MemoryState(State):
    def __init__(self, *, clock: Clock = time.time) -> None:
        self._storage: Storage | None = None
        self._clock = clock
        self._values: dict[str, tuple[str, float]] = {}

    @property
    def storage(self) -> Storage:
        if self._storage is None:  # limits loads with the first budget check, not at start-up
            self._storage = memory_storage()
        return self._storage

    def _live(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del self._values[key]
            return None
        return entry[0]

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, ttl_s: float, *, only_if_absent: bool = False) -> bool:
        if only_if_absent and self._live(key) is not None:
            return False
        self._values[key] = (value, self._clock() + ttl_s)
        return True

    async def delete(self, key: str) -> None:
        self._values.pop(key, None)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class RedisState(State):
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout: float,
        clock: Clock = time.time,
        on_error: StateErrorObserver = _ignore,
    ) -> None:
        from limits.aio.storage import RedisStorage
        from limits.aio.storage.redis.redispy import RedispyBridge
        from limits.storage import storage_from_string
        from redis.asyncio import Redis, RedisCluster
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.url = url
        self._prefix = prefix
        self._timeout = timeout
        self._clock = clock
        self._on_error = on_error
        self._epoch: str | None = None  # the store's epoch as this replica last saw it
        options: dict[str, Any] = {
            "implementation": "redispy",
            "key_prefix": prefix + "budget",
            "wrap_exceptions": True,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
        }
        storage = storage_from_string("async+" + url, **options)
        if not (isinstance(storage, RedisStorage) and isinstance(storage.bridge, RedispyBridge)):
            raise TypeError(f"{mask(url)} did not give a redis-py backed limits storage")
        connection: object = storage.bridge.get_connection()
        if not isinstance(connection, Redis | RedisCluster):
            raise TypeError(f"{mask(url)} did not give a redis-py connection")
        self._storage: Storage = storage
        self._redis: Redis | RedisCluster = connection

    @property
    def storage(self) -> Storage:
        return self._storage

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def _call(self, operation: Callable[[], Any], *, what: str) -> Any:
        from limits.errors import StorageError

        try:
            with anyio.fail_after(self._timeout * 4):
                return await operation()
        except (TimeoutError, OSError, StorageError, self._redis_errors()) as error:
            self._on_error(what)
            raise StateUnavailable(f"{mask(self.url)}: {type(error).__name__}") from error

    @staticmethod
    def _redis_errors() -> type[Exception]:
        from redis.exceptions import RedisError

        return RedisError

    async def get(self, key: str) -> str | None:
        value = await self._call(lambda: self._redis.get(self._key(key)), what="get")
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl_s: float, *, only_if_absent: bool = False) -> bool:
        milliseconds = max(1, int(ttl_s * 1000))
        done = await self._call(
            lambda: self._redis.set(self._key(key), value, px=milliseconds, nx=only_if_absent), what="set"
        )
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._call(lambda: self._redis.delete(self._key(key)), what="delete")

    async def continuity(self, window_s: float) -> float | None:
        epoch_key, until_key = self._key(_EPOCH), self._key(_RESET_UNTIL)
        epoch, until = (
            _text(value)
            for value in await self._call(lambda: self._redis.mget(epoch_key, until_key), what="continuity")
        )
        if epoch is None or epoch != self._epoch:
            lost = self._epoch is not None  # seen before, now gone or replaced: the data went with it
            self._epoch = await self._claim_epoch("continuity")
            if lost:
                until = await self._record_reset(window_s)
        if until is None:
            return None
        try:
            refused_until = float(until)
        except ValueError:  # not written by us: assume the worst, a reset just now
            refused_until = self._clock() + window_s
        return refused_until if refused_until > self._clock() else None

    async def _claim_epoch(self, what: str) -> str | None:
        key = self._key(_EPOCH)
        await self._call(lambda: self._redis.set(key, uuid.uuid4().hex, nx=True), what=what)
        return _text(await self._call(lambda: self._redis.get(key), what=what))

    async def _record_reset(self, window_s: float) -> str | None:
        key = self._key(_RESET_UNTIL)
        until = self._clock() + window_s
        milliseconds = max(1, int(window_s * 1000))
        # The first replica to notice sets it; the others read its value, so all wait until the same time.
        await self._call(
            lambda: self._redis.set(key, repr(until), px=milliseconds, nx=True), what="continuity"
        )
        log.warning(
            "state store %s lost its data (restarted empty or failed over): trigger calls are refused for %.0f s "
            "so that no budget can be exceeded; enable persistence (see deploy/)",
            mask(self.url),
            window_s,
        )
        return _text(await self._call(lambda: self._redis.get(key), what="continuity"))

    async def ready(self) -> bool:
        try:
            return bool(await self._call(lambda: self._redis.ping(), what="ping"))
        except StateUnavailable:
            return False

    async def start(self) -> None:
        from limits import RateLimitItemPerMinute
        from limits.aio.strategies import MovingWindowRateLimiter

        try:
            limiter = MovingWindowRateLimiter(self.storage)
            warmup = RateLimitItemPerMinute(1_000_000)
            await self._call(
                lambda: limiter.hit(warmup, "warmup", "replica"), what="start"
            )  # loads the scripts
            await self._call(lambda: limiter.get_window_stats(warmup, "warmup", "replica"), what="start")
            self._epoch = await self._claim_epoch("start")
            log.info("state store %s ready", mask(self.url))
        except StateUnavailable as error:
            log.warning(
                "state store %s is not answering (%s); trigger tools are refused and /readyz says not ready "
                "until it does",
                mask(self.url),
                error.__cause__.__class__.__name__ if error.__cause__ else error,
            )

    async def aclose(self) -> None:
        try:
            await self._redis.aclose()
        except Exception:
            log.debug("closing the state store connection failed", exc_info=True)


def open_state(
    url: str | None,
    *,
    prefix: str,
    timeout: float,
    clock: Clock = time.time,
    on_error: StateErrorObserver = _ignore,
) -> State:
    """The state store for `url` (None: in memory); `on_error` hears of each failed Redis operation."""
    if not url:
        return MemoryState(clock=clock)
    return RedisState(url, prefix=prefix, timeout=timeout, clock=clock, on_error=on_error)


_EPOCH = "epoch"
_RESET_UNTIL = "reset-until"


def _text(value: object) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)
