"""Section 2: cold start, spawn → first response (`initialize` / `server/discover`) → first `tools/list`.

Raw JSON-RPC over pipes (no client library in the timing), both protocol eras: 2025-11-25 opens with the
`initialize` handshake, 2026-07-28 with `server/discover` and a `_meta` envelope on every request. Servers and
eras are interleaved run by run after one untimed warm-up round (page cache, .pyc files). Then `-X importtime`
splits our start-up imports by package, next to the floor's.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from pathlib import Path

from benchmarks.candidates import Candidate, candidates
from benchmarks.harness import LATEST_ERA, LEGACY_ERA, BenchError, PipeServer, Run
from benchmarks.stats import Summary, summarize
from benchmarks.table import Row, Section, Verdict, fmt_ms

__all__ = ["measure"]

VS_FLOOR = 1.10
VS_FASTMCP = 0.65
ERA_TOLERANCE = 0.05
FIRST = {LEGACY_ERA: "initialize", LATEST_ERA: "server/discover"}


def spawn_to_list(run: Run, candidate: Candidate, era: str) -> tuple[float, float] | str:
    """(s to the first response, s to the tools/list response), or the error the server answered with."""
    with PipeServer(run, candidate.argv, candidate.env, name=candidate.key, era=era) as server:
        first = server.handshake()
        first_s = server.elapsed()
        if "error" in first:
            error = first["error"]
            return f"answers {FIRST[era]} with {error.get('code')} {error.get('message', '')!r}"
        listed, _ = server.request("tools/list")
        list_s = server.elapsed()
        if "error" in listed or not listed.get("result", {}).get("tools"):
            raise BenchError(f"{candidate.key}: tools/list failed in {era}: {str(listed)[:300]}")
        return first_s, list_s


def _imports(run: Run, argv: list[str], env: dict[str, str], name: str) -> dict[str, float]:
    """Self import time (ms) by top-level package over a whole start-up (spawn, initialize, tools/list)."""
    with PipeServer(run, argv, {**env, "PYTHONPROFILEIMPORTTIME": "1"}, name=name) as server:
        server.handshake()
        server.request("tools/list")
        log: Path = server.log
    totals: dict[str, float] = defaultdict(float)
    pattern = re.compile(r"^import time:\s+(\d+)\s+\|\s+\d+\s+\|\s+(\S.*)$")
    for line in log.read_text(errors="replace").splitlines():
        match = pattern.match(line)
        if match:
            top = match.group(2).strip().split(".")[0]
            key = "(stdlib)" if top in sys.stdlib_module_names or top.startswith("_") else top
            totals[key] += int(match.group(1)) / 1000
    if not totals:
        raise BenchError(f"no -X importtime output from {name}")
    return dict(totals)


def _import_rows(run: Run, section: Section, found: dict[str, Candidate]) -> None:
    runs: dict[str, list[dict[str, float]]] = {"ours": [], "floor": []}
    for _ in range(run.counts.import_runs):  # interleaved, like the cold starts
        for key, candidate in (("ours", found["ours"]), ("floor", found["floor"])):
            runs[key].append(_imports(run, candidate.argv, candidate.env, f"{key}-importtime"))

    def summary(key: str, package: str | None = None) -> Summary:
        if package is None:
            return summarize([sum(one.values()) for one in runs[key]])
        return summarize([one.get(package, 0.0) for one in runs[key]])

    section.add(
        Row.of(
            "ours · imports, all packages (-X importtime)",
            summary("ours"),
            fmt_ms,
            ref=summary("floor"),
            vs="floor",
        )
    )
    packages = {package for one in runs["ours"] for package in one}
    for package in sorted(packages, key=lambda p: summary("ours", p).median, reverse=True)[:10]:
        section.add(
            Row.of(
                f"  ours · imports of {package}",
                summary("ours", package),
                fmt_ms,
                ref=summary("floor", package),
                vs="floor",
            )
        )
    section.note(
        "Import rows: self time per top-level package over a whole start-up (spawn, handshake, tools/list), ours "
        "vs the floor; Δ is what ours imports beyond the bare SDK. -X importtime slows imports, and a garbage "
        "collection is charged to whichever module is importing when it runs (tens of ms), so single packages "
        "can move between runs and servers; the total is the steady figure."
    )


def measure(run: Run) -> Section:
    section = Section(2, "Cold start: spawn → first response → first tools/list (ms, raw JSON-RPC)")
    found = {c.key: c for c in candidates(run)}
    unsupported: dict[tuple[str, str], str] = {}
    samples: dict[tuple[str, str], tuple[list[float], list[float]]] = {
        (key, era): ([], []) for key, c in found.items() for era in c.eras
    }
    warmup = 0 if run.smoke else 1  # a first round warms the page cache and .pyc files and is not kept
    for round_no in range(1 - warmup, run.counts.cold_runs + 1):
        for (key, era), (firsts, lists) in samples.items():
            if (key, era) in unsupported:
                continue
            result = spawn_to_list(run, found[key], era)
            if isinstance(result, str):
                unsupported[key, era] = result
            elif round_no > 0:
                firsts.append(result[0] * 1000)
                lists.append(result[1] * 1000)

    summaries = {
        pair: (summarize(firsts), summarize(lists))
        for pair, (firsts, lists) in samples.items()
        if pair not in unsupported
    }
    for era in (LEGACY_ERA, LATEST_ERA):
        floor = summaries[("floor", era)]
        for key, candidate in found.items():
            if (key, era) in unsupported:
                section.note(f"{candidate.label} in {era}: {unsupported[key, era]} (speaks 2025-11-25 only).")
                continue
            first, listed = summaries[(key, era)]
            ref = None if key == "floor" else floor
            section.add(
                Row.of(
                    f"{era} · {candidate.label} → {FIRST[era]}", first, fmt_ms, ref=ref and ref[0], vs="floor"
                )
            )
            verdict = None
            if key == "ours":
                ratio = listed.median / floor[1].median
                verdict = Verdict(f"≤ {VS_FLOOR}x floor", ratio <= VS_FLOOR, measured=f"{ratio:.2f}x floor")
            section.add(
                Row.of(
                    f"{era} · {candidate.label} → tools/list",
                    listed,
                    fmt_ms,
                    ref=ref and ref[1],
                    vs="floor",
                    verdict=verdict,
                )
            )
        if ("fastmcp", era) in summaries:
            ours_list, fast_list = summaries[("ours", era)][1], summaries[("fastmcp", era)][1]
            section.add(
                Row.of(
                    f"{era} · ours → tools/list, vs FastMCP",
                    ours_list,
                    fmt_ms,
                    ref=fast_list,
                    vs="FastMCP",
                    verdict=Verdict(
                        f"≤ {VS_FASTMCP}x FastMCP", ours_list.median <= VS_FASTMCP * fast_list.median
                    ),
                )
            )
        else:
            section.add(
                Row(
                    f"{era} · ours → tools/list, vs FastMCP",
                    verdict=Verdict(f"≤ {VS_FASTMCP}x FastMCP", None),
                )
            )
    legacy, latest = summaries[("ours", LEGACY_ERA)][1], summaries[("ours", LATEST_ERA)][1]
    section.add(
        Row.of(
            f"{LATEST_ERA} vs {LEGACY_ERA} · ours → tools/list",
            latest,
            fmt_ms,
            ref=legacy,
            vs=LEGACY_ERA,
            verdict=Verdict(
                f"within ±{ERA_TOLERANCE:.0%}", abs(latest.median / legacy.median - 1) <= ERA_TOLERANCE
            ),
        )
    )
    _import_rows(run, section, found)
    return section
