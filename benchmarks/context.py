"""Section 4: context cost, the `tools` array of `tools/list` as sent on the wire (compact JSON, UTF-8).

≈ tokens is bytes / 4. Ours is listed in both eras and must be the same; peers in the era they speak.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.candidates import Candidate, candidates
from benchmarks.harness import LATEST_ERA, LEGACY_ERA, BenchError, PipeServer, Run
from benchmarks.table import Row, Section, Verdict, fmt_bytes

__all__ = ["measure", "wire_bytes"]

ALL_LIMIT = 16_000
TRIGGER_LIMIT = 5_000
TRIGGER_TOOLS = ("restart_build", "abort_build", "restart_job", "rerun_job", "abort_job")


def wire_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _tools(run: Run, candidate: Candidate, era: str) -> list[dict[str, Any]] | None:
    with PipeServer(run, candidate.argv, candidate.env, name=f"{candidate.key}-list", era=era) as server:
        if "error" in server.handshake():
            return None
        listed, _ = server.request("tools/list")
    tools = listed.get("result", {}).get("tools")
    if not isinstance(tools, list):
        raise BenchError(f"{candidate.key}: no tools in tools/list: {str(listed)[:300]}")
    return tools


def _row(label: str, size: int, *, n: int, verdict: Verdict | None = None, ref: int | None = None) -> Row:
    row = Row(
        label=label, median=fmt_bytes(size), spread=f"≈ {size / 4:,.0f} tokens", n=str(n), verdict=verdict
    )
    if ref:
        row.vs = "ours"
        row.ratio = f"{size / ref:.2f}x"
    return row


def measure(run: Run) -> Section:
    section = Section(4, "Context cost of tools/list (bytes of the tools array, compact JSON)")
    found = candidates(run)
    ours = found[0]
    legacy = _tools(run, ours, LEGACY_ERA)
    latest = _tools(run, ours, LATEST_ERA)
    if legacy is None or latest is None:
        raise BenchError("our server refused a handshake")
    if wire_bytes(legacy) != wire_bytes(latest):
        section.note(
            f"ours: tools/list differs between eras ({wire_bytes(legacy)} B in {LEGACY_ERA}, "
            f"{wire_bytes(latest)} B in {LATEST_ERA}); rows use {LEGACY_ERA}."
        )
    total = wire_bytes(legacy)
    names = [tool["name"] for tool in legacy]
    section.add(
        _row(
            f"ours · all {len(legacy)} tools",
            total,
            n=len(legacy),
            verdict=Verdict(f"≤ {ALL_LIMIT:,} B", total <= ALL_LIMIT),
        )
    )
    triggers = [tool for tool in legacy if tool["name"] in TRIGGER_TOOLS]
    trigger_bytes = wire_bytes(triggers)
    section.add(
        _row(
            "ours · the 5 trigger tools",
            trigger_bytes,
            n=len(triggers),
            verdict=Verdict(f"≤ {TRIGGER_LIMIT:,} B", trigger_bytes <= TRIGGER_LIMIT),
        )
    )
    if sorted(t["name"] for t in triggers) != sorted(TRIGGER_TOOLS):
        section.note(f"ours lists these trigger tools: {sorted(t['name'] for t in triggers)}")
    for tool in sorted(legacy, key=wire_bytes, reverse=True):
        section.add(_row(f"  ours · {tool['name']}", wire_bytes(tool), n=1))
    for candidate in found[1:]:
        tools = _tools(run, candidate, LEGACY_ERA)
        if tools is None:
            section.note(f"{candidate.label}: refused the {LEGACY_ERA} handshake")
            continue
        size = wire_bytes(tools)
        ref = trigger_bytes if candidate.key == "fastmcp" else total
        per_tool = size / len(tools)
        row = _row(f"{candidate.label} · all {len(tools)} tools", size, n=len(tools), ref=ref)
        row.vs = "ours, 5 triggers" if candidate.key == "fastmcp" else f"ours, {len(names)}"
        row.delta = f"{per_tool:,.0f} B/tool"
        section.add(row)
    section.note(
        "Bytes are exact and the same on every run (n is the number of tools). For peers, Δ shows bytes per "
        "tool; FastMCP's five tools are compared with our five trigger tools."
    )
    return section
