"""Section 5: read calls over Streamable HTTP with 1, 8 and 32 concurrent clients.

One `mcp-ci-tools --transport streamable-http` process; each client is an SDK `Client` with its own
httpx2 connection pool and its own InfraBox token (so its own budgets), calling get_build back to back for a
fixed time. Throughput is given per time slice (median, p10-p90 over the slices) and overall; latency p50 and
p99 over all calls; any failed call is an error. For context: the CPU each process used during the level,
and the same load sent with plain httpx straight to the sandbox (InfraBox's own ceiling on this machine).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import Client

from benchmarks.clients import RawInfraBox, Unavailable, open_http, result_text, start_ours_http
from benchmarks.harness import Run, cpu_seconds
from benchmarks.stats import summarize
from benchmarks.table import Row, Section, Verdict, fmt_ms, fmt_rate

__all__ = ["measure"]

SLICES = 8
SCALE_TARGET = 2.0
WARMUP_CALLS = 3
MAX_CALLS_PER_CLIENT = 100_000  # a bound besides the clock

Call = Callable[[], Awaitable[Any]]


class Level:
    """What happened at one concurrency level."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.latencies_ms: list[float] = []
        self.done_at: list[float] = []
        self.errors: list[str] = []
        self.elapsed = 0.0
        self.cpu: dict[str, float] = {}

    @property
    def rate(self) -> float:
        return len(self.done_at) / self.elapsed if self.elapsed else 0.0


async def _loop(call: Call, level: Level, start: float, stop: float) -> None:
    for _ in range(MAX_CALLS_PER_CLIENT):
        if time.perf_counter() >= stop:
            return
        began = time.perf_counter()
        try:
            error = await call()
        except Exception as exc:  # every kind of failure is an error here, and the loop goes on
            error = f"{type(exc).__name__}: {exc}"
        finished = time.perf_counter()
        if error:
            level.errors.append(str(error)[:200])
        else:
            level.latencies_ms.append((finished - began) * 1000)
            level.done_at.append(finished - start)


async def _drive(calls: list[Call], seconds: float, pids: dict[str, int]) -> Level:
    """Run every client's call in a loop for `seconds`; note the CPU time each process used meanwhile."""
    level = Level(len(calls))
    for call in calls:
        for _ in range(WARMUP_CALLS):
            await call()
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    with anyio.fail_after(seconds + 120):  # a stuck call cannot hang the run
        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(_loop, call, level, start, start + seconds)
    level.elapsed = time.perf_counter() - start
    level.cpu = {name: (cpu_seconds(pid) - cpu_before[name]) / level.elapsed for name, pid in pids.items()}
    return level


def _slices(level: Level, seconds: float) -> list[float]:
    """Calls per second in each of SLICES equal slices of the measured time."""
    width = seconds / SLICES
    counts = [0] * SLICES
    for t in level.done_at:
        counts[min(int(t / width), SLICES - 1)] += 1
    return [count / width for count in counts]


def _get_build(client: Client, args: dict[str, Any]) -> Call:
    """One client's call: None on success, the error text of a failed result."""

    async def call() -> str | None:
        result = await client.call_tool("get_build", args)
        return result_text(result, "failed") if result.is_error else None

    return call


def _raw_get_build(raw: RawInfraBox, project_id: str, build_id: str) -> Call:
    async def call() -> None:
        await raw.get_build(project_id, build_id)

    return call


async def _ours(run: Run, mcp_url: str, pids: dict[str, int], clients: int) -> Level:
    sandbox = run.sandbox
    args = {"project_id": sandbox.project, "build_id": sandbox.build}
    async with AsyncExitStack() as stack:
        calls = [
            _get_build(await open_http(stack, mcp_url, token), args)
            for token in sandbox.client_tokens[:clients]
        ]
        return await _drive(calls, run.counts.http_seconds, pids)


async def _sandbox_alone(run: Run, pids: dict[str, int], clients: int) -> Level:
    sandbox = run.sandbox
    async with AsyncExitStack() as stack:
        calls = [
            _raw_get_build(await RawInfraBox.open(stack, sandbox.api, token), sandbox.project, sandbox.build)
            for token in sandbox.client_tokens[:clients]
        ]
        return await _drive(calls, run.counts.http_seconds, pids)


def _rows(section: Section, levels: list[Level], seconds: float, what: str, *, target: bool) -> None:
    one = levels[0]
    for level in levels:
        row = Row.of(
            f"{what} · {level.clients} client(s): throughput",
            summarize(_slices(level, seconds)),
            fmt_rate,
        )
        row.delta = f"{level.rate:,.0f}/s overall"
        if level is not one:
            row.vs = "1 client"
            row.ratio = f"{level.rate / one.rate:.2f}x" if one.rate else ""
            if target and level is levels[-1]:
                held = not level.errors and level.rate >= SCALE_TARGET * one.rate
                row.verdict = Verdict(
                    f"0 errors, ≥ {SCALE_TARGET:.0f}x 1 client",
                    held,
                    measured=f"{len(level.errors)} errors, {level.rate:,.0f}/s vs {one.rate:,.0f}/s = "
                    f"{level.rate / one.rate:.2f}x",
                )
        section.add(row)
        if level.latencies_ms:
            latency = summarize(level.latencies_ms)
            section.add(
                Row(
                    label=f"{what} · {level.clients} client(s): latency p50 (p99)",
                    median=fmt_ms(latency.median),
                    spread=f"p99 {fmt_ms(latency.p99)}",
                    n=str(latency.n),
                )
            )
        cpu = ", ".join(f"{name} {share:.0%}" for name, share in level.cpu.items())
        section.add(
            Row(
                label=f"{what} · {level.clients} client(s): errors",
                median=str(len(level.errors)),
                spread=f"CPU: {cpu}",
            )
        )
        if level.errors:
            section.note(f"{what}, {level.clients} clients, first error: {level.errors[0]}")


async def _measure(run: Run, section: Section) -> None:
    levels_wanted = run.counts.http_levels
    sandbox = run.sandbox
    server = start_ours_http(run)
    try:
        pids = {"clients": os.getpid(), "ours": server.proc.pid, "sandbox": sandbox.proc.pid}
        ours = [await _ours(run, server.mcp_url, pids, clients) for clients in levels_wanted]
    finally:
        server.stop()
    pids = {"clients": os.getpid(), "sandbox": sandbox.proc.pid}
    alone = [await _sandbox_alone(run, pids, clients) for clients in (levels_wanted[0], levels_wanted[-1])]
    seconds = run.counts.http_seconds
    _rows(section, ours, seconds, "ours", target=True)
    _rows(section, alone, seconds, "sandbox alone, raw httpx", target=False)
    section.note(
        f"Throughput: median and p10-p90 over {SLICES} slices of {seconds / SLICES:.2f} s each; Δ column: "
        "calls over the whole level ÷ its wall time; ratio: that overall rate ÷ the 1-client rate."
    )
    section.note(
        "Clients are SDK Clients in auto mode (2026-07-28, no sessions), all in the benchmark process; "
        "get_build makes two InfraBox requests. CPU is each process's user+system time over the wall time "
        "of the level (100% = one core of the 2)."
    )


def measure(run: Run) -> Section:
    section = Section(5, "Streamable HTTP: get_build with concurrent clients")
    try:
        anyio.run(_measure, run, section)
    except Unavailable as why:
        section.note(f"skipped: {why}.")
        section.add(
            Row(
                label="ours, 32 clients: throughput vs 1 client",
                verdict=Verdict("0 errors, ≥ 2x 1 client", None),
            )
        )
    return section
