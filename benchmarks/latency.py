"""Section 1: per-call latency of get_build and restart_job, raw httpx vs our server in-memory, over stdio
and over Streamable HTTP; and one tool call with InfraBox stubbed in-process vs a bare MCPServer tool.

Modes are interleaved call by call (raw, in-memory, stdio, HTTP, raw, ...), so drift in the machine's speed
affects them alike. Each restart_job takes a job nobody restarted yet.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx

from benchmarks.clients import (
    RawInfraBox,
    Unavailable,
    call_ok,
    in_process_server,
    open_http,
    open_inmemory,
    open_stdio,
    start_ours_http,
    stub_job_args,
)
from benchmarks.harness import BENCH_DIR, LATEST_ERA, BenchError, PipeServer, Run, base_env
from benchmarks.stats import Summary, summarize
from benchmarks.table import Row, Section, Verdict, fmt_ms

__all__ = ["interleaved", "measure", "stub_transport"]

STDIO_OVERHEAD_MS = 1.5
STUB_RATIO = 1.3
STUB_TAIL = 3.0

Call = Callable[[], Awaitable[Any]]


async def interleaved(modes: dict[str, Callable[[], Call]], calls: int, warmup: int) -> dict[str, Summary]:
    """Round-robin over the modes; each mode's factory makes the next call (untimed), then it is timed."""
    samples: dict[str, list[float]] = {name: [] for name in modes}
    for i in range(warmup + calls):
        for name, make in modes.items():
            call = make()
            start = time.perf_counter()
            await call()
            elapsed = time.perf_counter() - start
            if i >= warmup:
                samples[name].append(elapsed * 1000)
    return {name: summarize(values) for name, values in samples.items()}


def stub_transport(bodies: dict[str, Any]) -> httpx.MockTransport:
    """InfraBox stubbed in-process with answers recorded from the sandbox (encoded once, not per call)."""
    encoded = {name: json.dumps(body).encode() for name, body in bodies.items()}
    headers = {"content-type": "application/json"}

    def answer(name: str) -> httpx.Response:
        if name not in encoded:
            return httpx.Response(404, content=b'{"message": "not stubbed"}', headers=headers)
        return httpx.Response(200, content=encoded[name], headers=headers)

    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/restart"):
            return answer("restart")
        if path.endswith("/jobs"):
            return answer("jobs")
        if "/builds/" in path:
            return answer("build")
        return answer("")

    return httpx.MockTransport(handle)


async def _measure(run: Run, section: Section) -> None:
    sandbox = run.sandbox
    counts = run.counts
    build_args = {"project_id": sandbox.project, "build_id": sandbox.build}

    async with AsyncExitStack() as stack:
        raw = await RawInfraBox.open(stack, sandbox.api, sandbox.token)
        inmem = await open_inmemory(stack, in_process_server(sandbox.url, run.scratch / "audit-inmem.jsonl"))
        stdio = await open_stdio(stack, run, run.ours_env())
        http = None
        try:
            server = start_ours_http(run)
            stack.callback(server.stop)
            http = await open_http(stack, server.mcp_url, sandbox.token)
        except Unavailable as why:
            section.note(f"Streamable HTTP rows skipped: {why}.")

        # The same server over stdio once more, spoken to with hand-written JSON-RPC: no client library.
        pipe = PipeServer(run, run.ours_argv(), run.ours_env(), name="ours-stdio-raw", era=LATEST_ERA)
        stack.callback(pipe.close)
        pipe.handshake()
        pipe.request("tools/list")

        sdk_clients = {"in-memory": inmem, "stdio": stdio}
        if http is not None:
            sdk_clients["HTTP"] = http

        def tool_call(client: Any, tool: str, args: Callable[[], dict[str, str]]) -> Callable[[], Call]:
            def make() -> Call:
                arguments = args()
                return lambda: call_ok(client, tool, arguments)

            return make

        reads: dict[str, Callable[[], Call]] = {
            "raw": lambda: lambda: raw.get_build(sandbox.project, sandbox.build)
        }
        reads |= {name: tool_call(c, "get_build", lambda: build_args) for name, c in sdk_clients.items()}
        reads["stdio-raw"] = _pipe_call(pipe, "get_build", lambda: build_args)
        get_build = await interleaved(reads, counts.latency_calls, counts.latency_warmup)

        recorded: dict[str, Any] = {}

        def raw_restart() -> Call:
            job = sandbox.fresh_job()

            async def call() -> None:
                recorded["restart"] = await raw.restart_job(sandbox.restart_project, job)

            return call

        def fresh_job_args() -> dict[str, str]:
            return {"project_id": sandbox.restart_project, "job_id": sandbox.fresh_job()}

        writes: dict[str, Callable[[], Call]] = {"raw": raw_restart}
        writes |= {name: tool_call(c, "restart_job", fresh_job_args) for name, c in sdk_clients.items()}
        writes["stdio-raw"] = _pipe_call(pipe, "restart_job", fresh_job_args)
        restart_job = await interleaved(writes, counts.latency_calls, counts.latency_warmup)
        recorded["build"], recorded["jobs"] = await raw.get_build(sandbox.project, sandbox.build)

    labels = {
        "raw": "raw httpx → sandbox",
        "in-memory": "ours, in-memory Client(server)",
        "stdio": "ours over stdio, SDK client",
        "stdio-raw": "ours over stdio, raw JSON-RPC",
        "HTTP": "ours over Streamable HTTP, SDK client",
    }
    for tool, results in (("get_build", get_build), ("restart_job", restart_job)):
        ref = results["raw"]
        for mode in ("raw", "in-memory", "stdio", "stdio-raw", "HTTP"):
            if mode not in results:
                continue
            summary = results[mode]
            verdict = None
            if mode.startswith("stdio"):
                overhead = summary.median - ref.median
                verdict = Verdict(
                    f"Δ ≤ {STDIO_OVERHEAD_MS} ms",
                    overhead <= STDIO_OVERHEAD_MS,
                    measured=f"Δ {overhead:+.2f} ms",
                )
            label = f"{tool} · {labels[mode]}"
            section.add(
                Row.of(
                    label,
                    summary,
                    fmt_ms,
                    ref=None if mode == "raw" else ref,
                    vs="raw",
                    verdict=verdict,
                )
            )

    await _stubbed(run, section, recorded)


def _pipe_call(pipe: PipeServer, tool: str, args: Callable[[], dict[str, str]]) -> Callable[[], Call]:
    """A call factory for a server spoken to with raw JSON-RPC over its pipes."""

    def make() -> Call:
        arguments = args()

        async def call() -> None:  # blocks on the pipe: nothing else runs meanwhile anyway
            answer = pipe.call(tool, arguments)
            if "error" in answer or answer["result"].get("isError"):
                raise BenchError(f"{tool} over raw stdio failed: {str(answer)[:300]}")

        return call

    return make


def _call_with(client: Any, tool: str, arguments: dict[str, str]) -> Call:
    return lambda: call_ok(client, tool, arguments)


async def _stubbed(run: Run, section: Section, bodies: dict[str, Any]) -> None:
    """A tool call with everything of ours (ids, budget, audit, InfraBox client, views) but the network."""
    from benchmarks.peers.floor_server import mcp as floor

    counts = run.counts
    stub = in_process_server(
        "http://infrabox.stub", run.scratch / "audit-stub.jsonl", transport=stub_transport(bodies)
    )
    sandbox = run.sandbox
    build_args = {"project_id": sandbox.project, "build_id": sandbox.build}
    async with AsyncExitStack() as stack:
        bare = await open_inmemory(stack, floor)
        ours = await open_inmemory(stack, stub)
        floor_argv = [sys.executable, str(BENCH_DIR / "peers" / "floor_server.py")]
        bare_pipe = PipeServer(run, floor_argv, base_env(), name="floor-stdio-raw", era=LATEST_ERA)
        stack.callback(bare_pipe.close)
        bare_pipe.handshake()
        bare_pipe.request("tools/list")
        modes: dict[str, Callable[[], Call]] = {
            "bare": lambda: lambda: call_ok(bare, "noop", {}),
            "bare-stdio": _pipe_call(bare_pipe, "noop", dict),
            "get_build": lambda: lambda: call_ok(ours, "get_build", build_args),
        }
        results = await interleaved(modes, counts.stub_calls, counts.latency_warmup)
        # The trigger budget is at most 1000 a minute: fewer restart_job calls, again interleaved with bare.
        trigger_calls = min(counts.stub_calls, 900)
        modes = {
            "bare": lambda: lambda: call_ok(bare, "noop", {}),
            "restart_job": lambda: _call_with(ours, "restart_job", stub_job_args(sandbox.restart_project)),
        }
        triggers = await interleaved(modes, trigger_calls, counts.latency_warmup)

    bare_summary = results["bare"]
    section.add(Row.of("noop · bare MCPServer tool, in-memory", bare_summary, fmt_ms))
    section.add(
        Row.of(
            "noop · bare MCPServer tool over stdio, raw JSON-RPC",
            results["bare-stdio"],
            fmt_ms,
            ref=bare_summary,
            vs="bare",
        )
    )
    for tool, summary in (("get_build", results["get_build"]), ("restart_job", triggers["restart_job"])):
        section.add(
            Row.of(
                f"{tool} · ours, InfraBox stubbed, in-memory",
                summary,
                fmt_ms,
                ref=bare_summary,
                vs="bare",
                verdict=Verdict(
                    f"≤ {STUB_RATIO}x bare",
                    summary.median <= STUB_RATIO * bare_summary.median,
                    measured=f"{fmt_ms(summary.median)} vs {fmt_ms(bare_summary.median)}, "
                    f"{summary.median / bare_summary.median:.2f}x",
                ),
            )
        )
        tail = Row(
            label=f"{tool} · ours, InfraBox stubbed: p99",
            median=fmt_ms(summary.p99),
            n=str(summary.n),
            vs="its median",
            ratio=f"{summary.p99 / summary.median:.2f}x",
            verdict=Verdict(
                f"p99 ≤ {STUB_TAIL}x median",
                summary.p99 <= STUB_TAIL * summary.median,
                measured=f"p99 {fmt_ms(summary.p99)}, {summary.p99 / summary.median:.2f}x median",
            ),
        )
        section.add(tail)
    section.note(
        "raw = the InfraBox requests the tool makes, with plain httpx: get_build = GET build and GET jobs "
        "concurrently; restart_job = POST restart. Every restart_job (raw or ours) takes a job nobody restarted."
    )
    section.note(
        "SDK clients negotiate 2026-07-28 (auto mode). Our audit log is a JSONL file on disk: reads write one "
        "record, restart_job two fsynced ones. Stubbed = everything of ours (ids, permission, budgets, audit, "
        "InfraBox client, views) with httpx.MockTransport answering recorded sandbox bodies."
    )


def measure(run: Run) -> Section:
    section = Section(1, "Per-call latency (ms)")
    anyio.run(_measure, run, section)
    if not section.rows:
        raise BenchError("no latency measured")
    return section
