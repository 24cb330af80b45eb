"""Section 3: resident memory (VmRSS from /proc) after `initialize` + `tools/list`, and after tool calls.

Each server is spawned and spoken to with raw JSON-RPC (2025-11-25 handshake). RSS is read, after a short
settle, three times: idle; after the first WARMUP calls (one-time costs: connection pools, lazily built
validators); after N more calls (growth that would be a leak). The calls are sequential and real: ours and
FastMCP call the sandbox, the floor's tool does nothing, the Node servers' calls are refused by a closed port
(their dummy credentials point there).
"""

from __future__ import annotations

import time

from benchmarks.candidates import Candidate, candidates
from benchmarks.harness import BenchError, PipeServer, Run, rss_mib
from benchmarks.stats import Summary, summarize
from benchmarks.table import Row, Section, Verdict, fmt_mib

__all__ = ["measure"]

VS_FLOOR = 1.15
SETTLE_S = 0.5
GROWTH_NOISE_MIB = 2.0  # what counts as "no growth": see the note written with the rows
WARMUP = 10


def _one(run: Run, candidate: Candidate, calls: int) -> tuple[float, float, float]:
    """RSS in MiB of one fresh process: idle, after WARMUP calls, after `calls` more."""
    tool, arguments = candidate.call
    with PipeServer(run, candidate.argv, candidate.env, name=f"{candidate.key}-rss") as server:

        def call(times: int) -> float:
            for _ in range(times):
                answer = server.call(tool, arguments)
                failed = "error" in answer or answer.get("result", {}).get("isError")
                if failed and candidate.calls_must_succeed:
                    raise BenchError(f"{candidate.key}: {tool} failed: {str(answer)[:300]}")
            time.sleep(SETTLE_S)
            return rss_mib(server.pid)

        server.handshake()
        server.request("tools/list")
        idle = call(0)
        return idle, call(WARMUP), call(calls)


def measure(run: Run) -> Section:
    counts = run.counts
    section = Section(3, f"Resident memory (VmRSS, MiB): idle, and after {counts.rss_calls} calls")
    found = candidates(run)
    idle: dict[str, list[float]] = {c.key: [] for c in found}
    warm: dict[str, list[float]] = {c.key: [] for c in found}
    after: dict[str, list[float]] = {c.key: [] for c in found}
    for _ in range(counts.rss_runs):  # interleaved: one process of each server per round
        for candidate in found:
            readings = _one(run, candidate, counts.rss_calls)
            for store, value in zip((idle, warm, after), readings, strict=True):
                store[candidate.key].append(value)

    def deltas(first: dict[str, list[float]], then: dict[str, list[float]], key: str) -> Summary:
        return summarize([b - a for a, b in zip(first[key], then[key], strict=True)])

    floor_idle = summarize(idle["floor"])
    first_calls = {c.key: deltas(idle, warm, c.key) for c in found}
    growth = {c.key: deltas(warm, after, c.key) for c in found}
    for candidate in found:
        key = candidate.key
        resting = summarize(idle[key])
        verdict = None
        if key == "ours":
            ratio = resting.median / floor_idle.median
            verdict = Verdict(
                f"≤ {VS_FLOOR}x floor",
                ratio <= VS_FLOOR,
                measured=f"{fmt_mib(resting.median)}, {ratio:.2f}x floor",
            )
        section.add(
            Row.of(
                f"{candidate.label} · idle after initialize + tools/list",
                resting,
                fmt_mib,
                spread="min-max",
                ref=None if key == "floor" else floor_idle,
                vs="floor",
                verdict=verdict,
            )
        )
    for what, table in (
        (f"growth over the first {WARMUP} calls", first_calls),
        (f"growth over the next {counts.rss_calls} calls", growth),
    ):
        for candidate in found:
            key = candidate.key
            verdict = None
            if key == "ours" and table is growth:
                verdict = Verdict(f"≤ {GROWTH_NOISE_MIB:.0f} MiB", growth[key].median <= GROWTH_NOISE_MIB)
            row = Row.of(
                f"{candidate.label} · {what}",
                table[key],
                fmt_mib,
                spread="min-max",
                verdict=verdict,
            )
            if key != "floor":
                difference = table[key].median - table["floor"].median
                row.vs = "floor"
                row.delta = ("+" if difference >= 0 else "-") + fmt_mib(abs(difference))
            section.add(row)
    section.note("Calls: " + "; ".join(f"{c.label}: {c.call_note}" for c in found) + ".")
    section.note(
        f"Medians over {counts.rss_runs} processes per server (min-max shown). 'No growth beyond noise' is "
        f"read as: median growth ≤ {GROWTH_NOISE_MIB:.0f} MiB over the {counts.rss_calls} calls after the "
        f"first {WARMUP} (those pay one-time costs such as the InfraBox connection pool, shown separately)."
    )
    return section
