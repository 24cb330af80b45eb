"""`python -m benchmarks [--smoke] [--only SECTION ...] [--results PATH | --no-results]`

Runs the benchmark sections against the InfraBox sandbox on loopback and prints one table: medians with
their spread, ratios to the reference of each row, and PASS/MISS for each target (reported, never asserted).
A full run of every section writes benchmarks/RESULTS.md; `--smoke` runs everything with tiny counts as a
CI smoke test (no npm or FastMCP install, no results file) and fails only if something does not run.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import auditcost, coldstart, context, httpload, latency, memory
from benchmarks.harness import BENCH_DIR, FULL, REPO, SMOKE, Run, command, filesystem
from benchmarks.table import Section, render_markdown, render_text

SECTIONS: dict[str, Callable[[Run], Section]] = {
    "latency": latency.measure,
    "coldstart": coldstart.measure,
    "memory": memory.measure,
    "context": context.measure,
    "http": httpload.measure,
    "audit": auditcost.measure,
}
RESULTS = BENCH_DIR / "RESULTS.md"


def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    cpu, virtual = "?", False
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name") and cpu == "?":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and " hypervisor" in line:
                virtual = True
    with open("/proc/meminfo") as info:
        total_kib = int(next(line for line in info if line.startswith("MemTotal")).split()[1])
    node = shutil.which("node")
    node_version = command([node, "--version"], timeout_s=30).stdout.strip() if node else "not found"

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical cores" + (", virtual machine" if virtual else "")),
        ("RAM", f"{total_kib / 1024 / 1024:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        (
            "packages",
            f"mcp {version('mcp')}, mcp-types {version('mcp-types')}, mcp-ci-tools {version('mcp-ci-tools')}, "
            f"httpx {version('httpx')}, httpx2 {version('httpx2')}, pydantic {version('pydantic')}, "
            f"starlette {version('starlette')}, uvicorn {version('uvicorn')}",
        ),
        ("node", node_version),
    ]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[1])
    parser.add_argument("--smoke", action="store_true", help="tiny counts, no installs: CI smoke test")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SECTIONS),
        metavar="SECTION",
        help=f"run only this section (repeatable): {', '.join(SECTIONS)}",
    )
    written = parser.add_mutually_exclusive_group()
    written.add_argument(
        "--results", type=Path, help="write the results here (default: RESULTS.md on full runs)"
    )
    written.add_argument("--no-results", action="store_true", help="write no results file")
    return parser.parse_args(argv)


def _results_path(args: argparse.Namespace) -> Path | None:
    if args.no_results:
        return None
    results: Path | None = args.results  # its option has type=Path
    if results is not None:
        return results
    # only a complete full run replaces the committed results
    return None if args.smoke or args.only else RESULTS


def _verdicts(sections: list[Section]) -> list[str]:
    lines = []
    for section in sections:
        for row in section.rows:
            if row.verdict is not None:
                measured = row.verdict.measured or ", ".join(part for part in (row.median, row.ratio) if part)
                lines.append(
                    f"- **{row.verdict.word}** ({section.number}) {row.label.strip()}: {row.verdict.text} "
                    f"(measured: {measured or 'n/a'})"
                )
    return lines


def _write(path: Path, sections: list[Section], run: Run, command_line: str, seconds: float) -> None:
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m benchmarks` (see `benchmarks/__main__.py`); do not edit by hand.",
        "",
        f"- command: `{command_line}` ({'smoke counts' if run.smoke else 'full counts'})",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, wall time {seconds:.0f} s",
        *[f"- {name}: {value}" for name, value in machine()],
        "- sandbox: `benchmarks/sandbox_server.py` (its own process; scheduler off, job duration 0; rate limits "
        "lifted); our budgets lifted (trigger 1000/min, reads 10000/min)",
        f"- file systems: sandbox database on {filesystem(run.fast_dir)}, our audit logs on "
        f"{filesystem(run.scratch)}",
        "",
        "Every timing is a median over many runs; spread is p10-p90 unless marked min-max. Δ and ratio compare "
        "medians with the row named under *vs*, measured in the same run (interleaved where possible).",
        "",
        "## Table",
        "",
        render_markdown(sections),
        "",
        "## Targets",
        "",
        *_verdicts(sections),
    ]
    if run.notes:
        lines += ["", "## Run notes", "", *[f"- {note}" for note in run.notes]]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    # Before any MCPServer exists (its basicConfig is then a no-op): in-process servers stay quiet.
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    os.chdir(REPO)
    command_line = shlex.join(["python", "-m", "benchmarks", *(sys.argv[1:] if argv is None else argv)])
    chosen = args.only or list(SECTIONS)
    run = Run(SMOKE if args.smoke else FULL)
    sections: list[Section] = []
    failed: list[str] = []
    started = time.monotonic()
    try:
        for name in chosen:
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                section = SECTIONS[name](run)
            except Exception as error:  # a section that cannot run is reported; the others still run
                failed.append(f"{name}: {type(error).__name__}: {error}")
                print(f"[bench] {name} FAILED: {error}", file=sys.stderr, flush=True)
                continue
            section.seconds = time.monotonic() - began
            sections.append(section)
    finally:
        run.close()
    seconds = time.monotonic() - started
    print()
    print(render_text(sections))
    for note in run.notes:
        print(f"note: {note}")
    for failure in failed:
        print(f"FAILED {failure}")
    print(f"\n{len(sections)} section(s) in {seconds:.0f} s; targets are reported, never asserted.")
    path = _results_path(args)
    if path is not None and not failed:
        _write(path, sections, run, command_line, seconds)
        print(f"results written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
