"""Section 6, continued: what one caller's stalled audit write does to other callers' reads.

One server in-process, InfraBox stubbed; a few readers (each its own in-memory `Client` on that server) call
get_build in a loop with a short pause, while another client's restart_job has its durable `attempt` write
blocked for a while, as a stalled disk would. Quiet windows (no trigger at all) and stalls alternate, so
the readers' latency during a stall is compared with the same reads without one, in the same run.

Every record goes to the one audit file, as deployed: the readers' records share the sink with the stalled
write. Two places for the stall, each its own server:

- `fsync`: in the attempt record's own `fsync(2)` (the sink's `sync` seam), where a slow or busy disk
  stalls: the sink syncs after releasing its locks, so the readers' records are not held up.
- `write`: inside the JSONL sink's `write(2)` (its `write` seam), the sink's lock and `flock` held meanwhile,
  as when the page cache is full and the kernel throttles writers: reads' records wait for that lock.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from benchmarks.clients import RawInfraBox, call_ok, in_process_server, open_inmemory, stub_job_args
from benchmarks.harness import BenchError, Run, filesystem
from benchmarks.latency import STUB_TAIL, stub_transport
from benchmarks.stats import Summary, summarize
from benchmarks.table import Row, Section, Verdict, fmt_ms
from mcp_ci_tools.audit import AuditSink, JsonlFileSink

__all__ = ["StalledSync", "StalledWrite", "measure_into"]

READERS = 3
READER_PAUSE_S = 0.01  # between a reader's calls: callers that think, and reads within the read budget
WARMUP_S = 0.2  # readers run before the first window
SETTLE_S = 0.2  # after a stall, before the next quiet window: reads queued behind it finish
STALL_RATIO = 1.5  # readers' median during a stall vs without
ATTEMPT = b'"event":"attempt"'  # only a trigger writes one, durably, before its request
RESTARTED = {"message": "Successfully restarted job", "jobs_restarted": 1}


class Stall:
    """Once armed, blocks the next trigger `attempt` write for `seconds` and records when it blocked."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.began: float | None = None
        self.ended: float | None = None
        self._armed = threading.Event()
        self._lock = threading.Lock()

    def arm(self) -> None:
        self.began = self.ended = None
        self._armed.set()

    def block_if_due(self, data: bytes) -> None:
        self._block(lambda: ATTEMPT in data)

    def block_if_armed(self) -> None:
        self._block(lambda: True)

    def _block(self, wanted: Callable[[], bool]) -> None:
        with self._lock:  # one stall per arming, whichever thread gets there first
            due = self._armed.is_set() and wanted()
            if due:
                self._armed.clear()
        if due:
            self.began = time.perf_counter()
            time.sleep(self.seconds)
            self.ended = time.perf_counter()


class StalledWrite:
    """`JsonlFileSink`'s `write(2)` seam, stalled by `stall`: the sink's locks are held meanwhile."""

    def __init__(self, stall: Stall) -> None:
        self.stall = stall

    def __call__(self, fd: int, data: bytes) -> int:
        self.stall.block_if_due(data)
        return os.write(fd, data)


class StalledSync:
    """`JsonlFileSink`'s `fsync(2)` seam, stalled by `stall`: the first record synced after arming is the
    trigger's attempt (reads' records are not synced)."""

    def __init__(self, stall: Stall) -> None:
        self.stall = stall

    def __call__(self, fd: int) -> None:
        self.stall.block_if_armed()
        os.fsync(fd)


@dataclass
class Windows:
    """Reads (start, end) in perf_counter seconds, and the quiet and stalled windows they fall in."""

    reads: list[tuple[float, float]] = field(default_factory=list)
    quiet: list[tuple[float, float]] = field(default_factory=list)
    stalls: list[tuple[float, float]] = field(default_factory=list)

    def quiet_reads(self) -> list[float]:
        """Milliseconds of every read wholly inside a quiet window."""
        return [_ms(r) for r in self.reads if any(a <= r[0] and r[1] <= b for a, b in self.quiet)]

    def stalled_reads(self) -> list[float]:
        """Milliseconds of every read that overlaps a stall."""
        return [_ms(r) for r in self.reads if any(r[0] < b and r[1] > a for a, b in self.stalls)]


def _ms(read: tuple[float, float]) -> float:
    return (read[1] - read[0]) * 1000


async def _reader(client: Client, args: dict[str, str], windows: Windows, stop: anyio.Event) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await call_ok(client, "get_build", args)
        windows.reads.append((start, time.perf_counter()))
        await anyio.sleep(READER_PAUSE_S)


async def _stalled_trigger(trigger: Client, stall: Stall, project: str) -> tuple[float, float]:
    stall.arm()
    await call_ok(trigger, "restart_job", stub_job_args(project))
    if stall.began is None or stall.ended is None:
        raise BenchError("the trigger's attempt record was written without the stall")
    return stall.began, stall.ended


async def _scenario(
    readers: Sequence[Client], trigger: Client, stall: Stall, rounds: int, args: dict[str, str], project: str
) -> Windows:
    """Readers loop throughout; quiet windows (as long as a stall) and stalled triggers alternate."""
    windows = Windows()
    stop = anyio.Event()
    async with anyio.create_task_group() as group:
        for client in readers:
            group.start_soon(_reader, client, args, windows, stop)
        await anyio.sleep(WARMUP_S)
        for _ in range(rounds):
            began = time.perf_counter()
            await anyio.sleep(stall.seconds)
            windows.quiet.append((began, time.perf_counter()))
            windows.stalls.append(await _stalled_trigger(trigger, stall, project))
            await anyio.sleep(SETTLE_S)
        stop.set()
    return windows


def _sink(variant: str, path: Path, stall: Stall) -> AuditSink:
    if variant == "write":
        return JsonlFileSink(path, write=StalledWrite(stall))
    return JsonlFileSink(path, sync=StalledSync(stall))


async def _measure_variant(
    run: Run, variant: str, bodies: dict[str, Any], stall_s: float, rounds: int
) -> tuple[Windows, Path]:
    sandbox = run.sandbox
    path = run.scratch / f"audit-stall-{variant}.jsonl"
    stall = Stall(stall_s)
    server = in_process_server(
        "http://infrabox.stub", path, transport=stub_transport(bodies), audit_sink=_sink(variant, path, stall)
    )
    args = {"project_id": sandbox.project, "build_id": sandbox.build}
    async with AsyncExitStack() as stack:
        readers = [await open_inmemory(stack, server) for _ in range(READERS)]
        trigger = await open_inmemory(stack, server)
        windows = await _scenario(readers, trigger, stall, rounds, args, sandbox.restart_project)
    _check_one_file(path, reads=len(windows.reads), triggers=rounds)
    return windows, path


def _check_one_file(path: Path, *, reads: int, triggers: int) -> None:
    """Every read and every trigger wrote its records to the one audit file."""
    tools = [json.loads(line).get("tool") for line in path.read_text().splitlines()]
    if tools.count("get_build") != reads or tools.count("restart_job") != 2 * triggers:
        raise BenchError(
            f"{path.name}: expected {reads} get_build and {2 * triggers} restart_job records, found "
            f"{tools.count('get_build')} and {tools.count('restart_job')}"
        )


async def _bodies(run: Run) -> dict[str, Any]:
    """get_build's two answers recorded from the sandbox, and a restart's."""
    sandbox = run.sandbox
    async with AsyncExitStack() as stack:
        raw = await RawInfraBox.open(stack, sandbox.api, sandbox.token)
        build, jobs = await raw.get_build(sandbox.project, sandbox.build)
    return {"build": build, "jobs": jobs, "restart": RESTARTED}


def _tail_row(label: str, stalled: Summary, quiet: Summary, *, target: bool) -> Row:
    ratio = stalled.p99 / quiet.p99
    return Row(
        label=label,
        median=fmt_ms(stalled.p99),
        n=str(stalled.n),
        vs="no stall p99",
        delta=("+" if stalled.p99 >= quiet.p99 else "-") + fmt_ms(abs(stalled.p99 - quiet.p99)),
        ratio=f"{ratio:.2f}x",
        verdict=Verdict(
            f"p99 ≤ {STUB_TAIL}x no stall",
            ratio <= STUB_TAIL,
            measured=f"p99 {fmt_ms(stalled.p99)} vs {fmt_ms(quiet.p99)}, {ratio:.2f}x",
        )
        if target
        else None,
    )


def _add_rows(section: Section, variant: str, windows: Windows, stall_s: float, fs: str) -> None:
    quiet_ms, stalled_ms = windows.quiet_reads(), windows.stalled_reads()
    if not quiet_ms or not stalled_ms:
        raise BenchError(f"{variant}: {len(quiet_ms)} quiet and {len(stalled_ms)} stalled reads")
    quiet, stalled = summarize(quiet_ms), summarize(stalled_ms)
    where = {
        "fsync": "in the attempt record's fsync (as a slow disk stalls)",
        "write": "inside the JSONL sink's write(2), its lock held (page cache full)",
    }[variant]
    callers = f"get_build, {READERS} other callers"
    target = variant == "fsync"  # where a slow disk stalls; a stalled write(2) is shown without a target
    section.add(Row.of(f"{callers} · no stall ({variant} server)", quiet, fmt_ms))
    ratio = stalled.median / quiet.median
    section.add(
        Row.of(
            f"{callers} · {stall_s * 1000:.0f} ms audit stall {where}, audit on {fs}",
            stalled,
            fmt_ms,
            ref=quiet,
            vs="no stall",
            verdict=Verdict(
                f"p50 ≤ {STALL_RATIO}x no stall",
                ratio <= STALL_RATIO,
                measured=f"{fmt_ms(stalled.median)} vs {fmt_ms(quiet.median)}, {ratio:.2f}x",
            )
            if target
            else None,
        )
    )
    section.add(_tail_row(f"  the same: p99 ({variant} server)", stalled, quiet, target=target))


async def measure_into(run: Run, section: Section) -> None:
    """The stalled-audit rows of section 6."""
    stall_s, rounds = (0.2, 1) if run.smoke else (1.0, 3)
    bodies = await _bodies(run)
    lines: list[str] = []
    for variant in ("fsync", "write"):
        windows, path = await _measure_variant(run, variant, bodies, stall_s, rounds)
        _add_rows(section, variant, windows, stall_s, filesystem(path.parent))
        lines.append(f"{variant}: {len(windows.reads)} get_build + {2 * rounds} restart_job records")
    section.note(
        f"Stalled audit: {READERS} readers (each its own in-memory Client on one server, InfraBox stubbed, "
        f"{READER_PAUSE_S * 1000:.0f} ms between a reader's calls) read throughout; {rounds} quiet window(s) "
        f"of {stall_s:.1f} s with no trigger alternate with {rounds} restart_job call(s) from another "
        f"client whose durable attempt write blocks {stall_s:.1f} s. 'During' = reads that overlap a stall. "
        "All records go to one audit file per server, as deployed (" + "; ".join(lines) + "): the "
        "readers' records share the sink with the stalled write. fsync rows: the stall is in the attempt "
        "record's own fsync, which the sink runs after releasing its locks; write rows: the stall is inside "
        "write(2) with the sink's lock held, so reads' records queue behind it (shown, no target). Targets: "
        f"a stall stalls only its own call: the other callers' median within {STALL_RATIO}x and p99 within "
        f"{STUB_TAIL}x of the same reads without a stall; a read that waits for the stalled write takes "
        "about the stall and misses both."
    )
