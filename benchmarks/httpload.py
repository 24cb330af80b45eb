"""Section 5: read calls over Streamable HTTP with 1, 8 and 32 concurrent clients, on 1 and 2 workers.

`mcp-ci-tools --transport streamable-http`, once as one process and once with `--workers 2` (budgets shared
through a redis-server of the run's own; without one installed the 2-worker levels are skipped). Each
client is an SDK `Client` with its own httpx2 connection pool and its own InfraBox token (so its own
budgets), calling get_build back to back for a fixed time. Throughput is given per time slice (median,
p10-p90 over the slices) and overall; latency p50 and p99 over all calls; any failed call is an error. For
context: the CPU each process used during the level, and the same load sent with plain httpx straight to
the sandbox (InfraBox's own ceiling on this machine).

Our CPU per call: the CPU time of our process(es) over a level ÷ its calls, against the bare `MCPServer`
floor over Streamable HTTP with the same number of clients: its noop tool (the MCP call alone), and its
get_build (the same two InfraBox requests with plain httpx, no checks, audit or views: an MCP layer over
InfraBox at its least).
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
from mcp import Client

from benchmarks.clients import (
    RawInfraBox,
    Unavailable,
    open_http,
    result_text,
    start_floor_http,
    start_ours_http,
)
from benchmarks.harness import Run, cpu_seconds
from benchmarks.stats import summarize
from benchmarks.table import Row, Section, Verdict, fmt_ms, fmt_rate

__all__ = ["measure"]

SLICES = 8
SCALE_TARGET = 2.0  # 32 clients vs 1 client, one worker
WORKERS = 2
WORKERS_TARGET = 1.8  # 32 clients on WORKERS workers vs 1 client on one
CPU_CLIENTS = 8  # the level at which our CPU per call is compared with the floor's
CPU_TARGET = 1.5
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
        self.cpu_s: dict[str, float] = {}  # each process's (or process tree's) CPU seconds over the level

    @property
    def rate(self) -> float:
        return len(self.done_at) / self.elapsed if self.elapsed else 0.0

    @property
    def cpu(self) -> dict[str, float]:
        """Each process's CPU time as a share of one core over the level."""
        return {name: seconds / self.elapsed for name, seconds in self.cpu_s.items()} if self.elapsed else {}

    def cpu_ms_per_call(self, name: str) -> float:
        return self.cpu_s[name] * 1000 / len(self.done_at) if self.done_at else float("nan")


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


Pids = dict[str, list[int]]  # a name in the CPU column → the processes it adds up


def _cpu(pids: Pids) -> dict[str, float]:
    return {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}


async def _drive(calls: list[Call], seconds: float, pids: Pids) -> Level:
    """Run every client's call in a loop for `seconds`; note the CPU time each process used meanwhile."""
    level = Level(len(calls))
    for call in calls:
        for _ in range(WARMUP_CALLS):
            await call()
    cpu_before = _cpu(pids)
    start = time.perf_counter()
    with anyio.fail_after(seconds + 120):  # a stuck call cannot hang the run
        async with anyio.create_task_group() as group:
            for call in calls:
                group.start_soon(_loop, call, level, start, start + seconds)
    level.elapsed = time.perf_counter() - start
    level.cpu_s = {name: seconds - cpu_before[name] for name, seconds in _cpu(pids).items()}
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


def _noop(client: Client) -> Call:
    async def call() -> str | None:
        result = await client.call_tool("noop", {})
        return result_text(result, "failed") if result.is_error else None

    return call


def _raw_get_build(raw: RawInfraBox, project_id: str, build_id: str) -> Call:
    async def call() -> None:
        await raw.get_build(project_id, build_id)

    return call


async def _ours(run: Run, mcp_url: str, pids: Pids, clients: int) -> Level:
    sandbox = run.sandbox
    args = {"project_id": sandbox.project, "build_id": sandbox.build}
    async with AsyncExitStack() as stack:
        calls = [
            _get_build(await open_http(stack, mcp_url, token), args)
            for token in sandbox.client_tokens[:clients]
        ]
        return await _drive(calls, run.counts.http_seconds, pids)


async def _floor(run: Run, mcp_url: str, pids: Pids, clients: int, *, tool: str) -> Level:
    """The floor's `noop`, or its `get_build` (the same two InfraBox requests, nothing else)."""
    args = {"project_id": run.sandbox.project, "build_id": run.sandbox.build}
    async with AsyncExitStack() as stack:
        opened = [await open_http(stack, mcp_url, f"floor-{index}") for index in range(clients)]
        calls = [_noop(client) if tool == "noop" else _get_build(client, args) for client in opened]
        return await _drive(calls, run.counts.http_seconds, pids)


async def _sandbox_alone(run: Run, pids: Pids, clients: int) -> Level:
    sandbox = run.sandbox
    async with AsyncExitStack() as stack:
        calls = [
            _raw_get_build(await RawInfraBox.open(stack, sandbox.api, token), sandbox.project, sandbox.build)
            for token in sandbox.client_tokens[:clients]
        ]
        return await _drive(calls, run.counts.http_seconds, pids)


def _rows(
    section: Section, levels: list[Level], seconds: float, what: str, *, target: Verdict | None
) -> None:
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
            if level is levels[-1]:
                row.verdict = target
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


def _scaling(level: Level, one: Level, factor: float, versus: str) -> Verdict:
    held = not level.errors and level.rate >= factor * one.rate
    return Verdict(
        f"0 errors, ≥ {factor:g}x {versus}",
        held,
        measured=f"{len(level.errors)} errors, {level.rate:,.0f}/s vs {one.rate:,.0f}/s = {level.rate / one.rate:.2f}x",
    )


def _cpu_row(section: Section, ours: Level, floor: Level, floor_reads: Level) -> None:
    mine = ours.cpu_ms_per_call("ours")
    for versus, level, what in (
        ("floor noop", floor, "noop: one MCP call, no InfraBox request"),
        (
            "floor get_build",
            floor_reads,
            "get_build: the same two InfraBox GETs with plain httpx, nothing else",
        ),
    ):
        bare = level.cpu_ms_per_call("floor")
        ratio = mine / bare
        section.add(
            Row(
                label=f"CPU per call, our process (1 worker, get_build) vs {versus} · {ours.clients} clients",
                median=fmt_ms(mine),
                n=str(len(ours.done_at)),
                vs=versus,
                delta=f"floor {fmt_ms(bare)}",
                ratio=f"{ratio:.2f}x",
                verdict=Verdict(
                    f"≤ {CPU_TARGET}x {versus}", ratio <= CPU_TARGET, measured=f"{ratio:.2f}x {versus}"
                ),
            )
        )
        section.add(
            Row(
                label=f"floor (bare MCPServer, {what}) · {level.clients} clients: throughput",
                median=fmt_rate(level.rate),
                n=str(len(level.done_at)),
                spread=f"CPU: {', '.join(f'{name} {share:.0%}' for name, share in level.cpu.items())}",
            )
        )
        if level.errors:
            section.note(f"floor {versus}, first error: {level.errors[0]}")


async def _ours_levels(
    run: Run, levels: tuple[int, ...], *, workers: int, state_url: str | None
) -> list[Level]:
    server = start_ours_http(run, workers=workers, state_url=state_url)
    try:
        pids = {"clients": [os.getpid()], "ours": server.pids(), "sandbox": [run.sandbox.proc.pid]}
        return [await _ours(run, server.mcp_url, pids, clients) for clients in levels]
    finally:
        server.stop()


async def _measure(run: Run, section: Section) -> None:
    levels_wanted = run.counts.http_levels
    seconds = run.counts.http_seconds
    ours = await _ours_levels(run, levels_wanted, workers=1, state_url=None)
    state_url = run.redis_url()
    several = (
        await _ours_levels(run, levels_wanted, workers=WORKERS, state_url=state_url) if state_url else None
    )
    floor_server = start_floor_http(run)
    try:
        floor_pids = {"clients": [os.getpid()], "floor": floor_server.pids()}
        floor = await _floor(run, floor_server.mcp_url, floor_pids, CPU_CLIENTS, tool="noop")
        floor_reads = await _floor(run, floor_server.mcp_url, floor_pids, CPU_CLIENTS, tool="get_build")
    finally:
        floor_server.stop()
    pids = {"clients": [os.getpid()], "sandbox": [run.sandbox.proc.pid]}
    alone = [await _sandbox_alone(run, pids, clients) for clients in (levels_wanted[0], levels_wanted[-1])]

    _rows(
        section, ours, seconds, "ours, 1 worker", target=_scaling(ours[-1], ours[0], SCALE_TARGET, "1 client")
    )
    if several is not None:
        target = _scaling(several[-1], ours[0], WORKERS_TARGET, "1 client on 1 worker")
        _rows(section, several, seconds, f"ours, {WORKERS} workers", target=target)
    else:
        section.note(
            f"ours, {WORKERS} workers: skipped: redis-server is not installed (the workers share budgets there)."
        )
        section.add(
            Row(
                label=f"ours, {WORKERS} workers · {levels_wanted[-1]} client(s): throughput",
                verdict=Verdict(f"0 errors, ≥ {WORKERS_TARGET:g}x 1 client on 1 worker", None),
            )
        )
    by_clients = {level.clients: level for level in ours}
    _cpu_row(section, by_clients.get(CPU_CLIENTS, ours[-1]), floor, floor_reads)
    _rows(section, alone, seconds, "sandbox alone, raw httpx", target=None)
    section.note(
        f"Throughput: median and p10-p90 over {SLICES} slices of {seconds / SLICES:.2f} s each; Δ column: "
        "calls over the whole level ÷ its wall time; ratio: that overall rate ÷ the 1-client rate (for "
        f"{WORKERS} workers, the ratio column is to their own 1-client level, the target to 1 worker's)."
    )
    section.note(
        "Clients are SDK Clients in auto mode (2026-07-28, no sessions), all in the benchmark process; "
        "get_build makes two InfraBox requests. CPU is each process's user+system time over the wall time "
        f"of the level (100% = one core of the {os.cpu_count()}); with workers, `ours` adds up the parent "
        "and its workers. The clients, the sandbox and our workers share these cores: where they add up to "
        "all of them, the machine, not the server, is the ceiling."
    )
    section.note(
        f"{WORKERS} workers run with MCP_CI_STATE_URL on a local redis-server (every budget check is a Redis "
        "round trip) and serve /mcp stateless; 1 worker keeps its budgets in memory, as a single replica "
        "does by default."
    )


def measure(run: Run) -> Section:
    section = Section(5, "Streamable HTTP: get_build with concurrent clients")
    try:
        anyio.run(_measure, run, section)
    except Unavailable as why:
        section.note(f"skipped: {why}.")
        for label, text in (
            ("ours, 1 worker · 32 client(s): throughput", f"0 errors, ≥ {SCALE_TARGET:g}x 1 client"),
            (
                f"ours, {WORKERS} workers · 32 client(s): throughput",
                f"0 errors, ≥ {WORKERS_TARGET:g}x 1 client on 1 worker",
            ),
            ("CPU per call, our process (1 worker, get_build) vs floor noop", f"≤ {CPU_TARGET}x floor noop"),
            (
                "CPU per call, our process (1 worker, get_build) vs floor get_build",
                f"≤ {CPU_TARGET}x floor get_build",
            ),
        ):
            section.add(Row(label=label, verdict=Verdict(text, None)))
    return section
