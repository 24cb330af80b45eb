"""Section 1: per-call latency of get_build and restart_job, raw httpx vs our server in-memory, over stdio
(SDK client; raw JSON-RPC with the audit log on tmpfs and on the disk) and over Streamable HTTP; one tool
call with InfraBox stubbed in-process vs a bare MCPServer tool; and a trigger refused by the budget over
stdio vs the bare tool over stdio.

Modes are interleaved call by call (raw, in-memory, stdio, HTTP, raw, ...), so drift in the machine's speed
affects them alike. Each restart_job takes a job nobody restarted yet.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
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
from benchmarks.harness import BENCH_DIR, LATEST_ERA, BenchError, PipeServer, Run, base_env, filesystem
from benchmarks.stats import Summary, summarize
from benchmarks.table import Row, Section, Verdict, fmt_ms

__all__ = ["interleaved", "measure", "stub_transport"]

STDIO_OVERHEAD_MS = 1.5
STUB_RATIO = 1.3
# Issue 18: at most half of the per-call cost of the 2026-11-25 run (get_build 6.05x, restart_job 5.69x bare).
CPU_GOALS = {"get_build": 6.05 / 2, "restart_job": 5.69 / 2}
STUB_TAIL = 3.0
REFUSAL_RATIO = 1.3
BUDGET_REFUSAL = "Trigger budget used up"  # the start of the refusal's text (tools/_errors.py)

Call = Callable[[], Awaitable[Any]]


async def interleaved(
    modes: dict[str, Callable[[], Call]],
    calls: int,
    warmup: int,
    *,
    cpu: dict[str, Summary] | None = None,
) -> dict[str, Summary]:
    """Round-robin over the modes; each mode's factory makes the next call (untimed), then it is timed.

    With `cpu`, each call's CPU time in this process (every thread: the audit's worker thread too) is
    summarised there as well, in milliseconds.
    """
    samples: dict[str, list[float]] = {name: [] for name in modes}
    cpu_samples: dict[str, list[float]] = {name: [] for name in modes}
    for i in range(warmup + calls):
        for name, make in modes.items():
            call = make()
            cpu_start, start = time.process_time(), time.perf_counter()
            await call()
            elapsed, cpu_used = time.perf_counter() - start, time.process_time() - cpu_start
            if i >= warmup:
                samples[name].append(elapsed * 1000)
                cpu_samples[name].append(cpu_used * 1000)
    if cpu is not None:
        cpu.update({name: summarize(values) for name, values in cpu_samples.items()})
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

        # The same server over stdio twice more, spoken to with hand-written JSON-RPC (no client library):
        # its audit log on the disk, as deployed, and on tmpfs (the write without a real fsync).
        pipe = _open_pipe(run, run.ours_env(), "ours-stdio-raw")
        stack.callback(pipe.close)
        pipe_tmpfs = _open_pipe(run, run.ours_env(audit_log=run.fast_dir / "audit-stdio.jsonl"), "ours-tmpfs")
        stack.callback(pipe_tmpfs.close)

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
        reads["stdio-raw-tmpfs"] = _pipe_call(pipe_tmpfs, "get_build", lambda: build_args)
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
        writes["stdio-raw-tmpfs"] = _pipe_call(pipe_tmpfs, "restart_job", fresh_job_args)
        restart_job = await interleaved(writes, counts.latency_calls, counts.latency_warmup)
        recorded["build"], recorded["jobs"] = await raw.get_build(sandbox.project, sandbox.build)

    disk, tmpfs = filesystem(run.scratch), filesystem(run.fast_dir)
    labels = {
        "raw": "raw httpx → sandbox",
        "in-memory": "ours, in-memory Client(server)",
        "stdio": f"ours over stdio, SDK client, audit on {disk}",
        "stdio-raw-tmpfs": f"ours over stdio, raw JSON-RPC, audit on {tmpfs}",
        "stdio-raw": f"ours over stdio, raw JSON-RPC, audit on {disk} (as deployed)",
        "HTTP": "ours over Streamable HTTP, SDK client",
    }
    for tool, results in (("get_build", get_build), ("restart_job", restart_job)):
        ref = results["raw"]
        for mode in ("raw", "in-memory", "stdio", "stdio-raw-tmpfs", "stdio-raw", "HTTP"):
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

    section.note(
        f"stdio Δ: the raw JSON-RPC servers differ only in where the audit log is: {tmpfs} "
        f"({run.fast_dir.parent}) or {disk} ({run.scratch.parent}, as deployed); get_build writes one record "
        "(not fsynced), restart_job two fsynced ones, so the two rows of restart_job differ by the disk's "
        "fsyncs (section 6 has them in-process)."
    )
    await _stubbed(run, section, recorded)


def _open_pipe(run: Run, env: dict[str, str], name: str) -> PipeServer:
    """Our server over stdio for raw JSON-RPC, past its handshake and first tools/list."""
    pipe = PipeServer(run, run.ours_argv(), env, name=name, era=LATEST_ERA)
    try:
        pipe.handshake()
        pipe.request("tools/list")
    except BaseException:
        pipe.close()
        raise
    return pipe


def _pipe_call(
    pipe: PipeServer, tool: str, args: Callable[[], dict[str, str]], *, refusal: str | None = None
) -> Callable[[], Call]:
    """A call factory for a server spoken to with raw JSON-RPC over its pipes. With `refusal`, the call must
    be answered with a tool error (`isError`) whose text contains it; anything else stops the benchmark."""

    def make() -> Call:
        arguments = args()

        async def call() -> None:  # blocks on the pipe: nothing else runs meanwhile anyway
            answer = pipe.call(tool, arguments)
            if not _answered_as_expected(answer, refusal):
                expected = "success" if refusal is None else f"a tool error saying {refusal!r}"
                raise BenchError(f"{tool} over raw stdio: expected {expected}, got {str(answer)[:300]}")

        return call

    return make


def _answered_as_expected(answer: dict[str, Any], refusal: str | None) -> bool:
    if "error" in answer:
        return False
    result: dict[str, Any] = answer["result"]
    if refusal is None:
        return not result.get("isError")
    texts = [item.get("text", "") for item in result.get("content", []) if isinstance(item, dict)]
    return bool(result.get("isError")) and any(refusal in text for text in texts)


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
        cpu: dict[str, Summary] = {}
        results = await interleaved(modes, counts.stub_calls, counts.latency_warmup, cpu=cpu)
        # The trigger budget is at most 1000 a minute: fewer restart_job calls, again interleaved with bare.
        trigger_calls = min(counts.stub_calls, 900)
        modes = {
            "bare": lambda: lambda: call_ok(bare, "noop", {}),
            "restart_job": lambda: _call_with(ours, "restart_job", stub_job_args(sandbox.restart_project)),
        }
        trigger_cpu: dict[str, Summary] = {}
        triggers = await interleaved(modes, trigger_calls, counts.latency_warmup, cpu=trigger_cpu)
        refused_log = run.scratch / "audit-refused.jsonl"
        refusals = await _refused_vs_bare(run, stack, bare_pipe, refused_log)
    _check_refusals_audited(refused_log, refusals["refused"].n + counts.latency_warmup)

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
    section.add(Row.of("noop · bare MCPServer tool, in-memory, CPU per call (process)", cpu["bare"], fmt_ms))
    for tool, ours_cpu, bare_cpu in (
        ("get_build", cpu["get_build"], cpu["bare"]),
        ("restart_job", trigger_cpu["restart_job"], trigger_cpu["bare"]),
    ):
        section.add(_cpu_row(tool, ours_cpu, bare_cpu))
    _add_refusal_rows(run, section, refusals)
    section.note(
        "raw = the InfraBox requests the tool makes, with plain httpx: get_build = GET build and GET jobs "
        "concurrently; restart_job = POST restart. Every restart_job (raw or ours) takes a job nobody restarted."
    )
    section.note(
        "SDK clients negotiate 2026-07-28 (auto mode). Our audit log is a JSONL file on disk (on tmpfs where "
        "a row says so): reads write one record, restart_job two fsynced ones. Stubbed = everything of ours "
        "(ids, permission, budgets, audit, InfraBox client, views) with httpx.MockTransport answering "
        "recorded sandbox bodies."
    )


def _cpu_row(tool: str, ours: Summary, bare: Summary) -> Row:
    """CPU per call, this process (every thread), ours vs the bare tool measured in the same loop."""
    goal = CPU_GOALS[tool]
    ratio = ours.median / bare.median
    return Row.of(
        f"{tool} · ours, InfraBox stubbed, CPU per call (process)",
        ours,
        fmt_ms,
        ref=bare,
        vs="bare CPU",
        verdict=Verdict(
            f"≤ {goal:.2f}x bare (half of 2026-11-25's)",
            ratio <= goal,
            measured=f"{fmt_ms(ours.median)} vs {fmt_ms(bare.median)} CPU, {ratio:.2f}x",
        ),
    )


async def _refused_vs_bare(
    run: Run, stack: AsyncExitStack, bare_pipe: PipeServer, audit_log: Path
) -> dict[str, Summary]:
    """A trigger our server refuses before any InfraBox request, as a runaway agent meets it: the trigger
    budget used up. A server whose budget is one trigger a minute spends it on a real restart first; every
    later restart_job (a new job id each, so no duplicate guard answers it) is refused by the budget and
    audited (one `denied` record, on disk as deployed). Interleaved with the bare floor over stdio."""
    sandbox = run.sandbox
    env = run.ours_env(audit_log=audit_log) | {"MCP_CI_TRIGGER_PER_MINUTE": "1"}
    pipe = _open_pipe(run, env, "ours-refusing")
    stack.callback(pipe.close)
    spend = _pipe_call(
        pipe, "restart_job", lambda: {"project_id": sandbox.restart_project, "job_id": sandbox.fresh_job()}
    )
    await spend()()  # the one slot of the minute: every call below must be refused by the budget
    modes: dict[str, Callable[[], Call]] = {
        "bare-stdio": _pipe_call(bare_pipe, "noop", dict),
        "refused": _pipe_call(
            pipe, "restart_job", lambda: stub_job_args(sandbox.restart_project), refusal=BUDGET_REFUSAL
        ),
    }
    return await interleaved(modes, run.counts.latency_calls, run.counts.latency_warmup)


def _check_refusals_audited(audit_log: Path, refused: int) -> None:
    """The accepted call wrote its two records, and every refusal its `denied` one (the budget's reason)."""
    records = [json.loads(line) for line in audit_log.read_text().splitlines()]
    denied = [r for r in records if r.get("outcome") == "denied" and r.get("reason") == "rate_limited"]
    if len(denied) != refused or len(records) != refused + 2:
        raise BenchError(
            f"expected {refused} budget refusals audited after one accepted trigger, found {len(denied)} "
            f"of {len(records)} records"
        )


def _add_refusal_rows(run: Run, section: Section, results: dict[str, Summary]) -> None:
    bare, refused = results["bare-stdio"], results["refused"]
    section.add(
        Row.of(
            "noop · bare MCPServer tool over stdio, raw JSON-RPC (interleaved with refusals)", bare, fmt_ms
        )
    )
    ratio = refused.median / bare.median
    section.add(
        Row.of(
            f"restart_job refused by the trigger budget · ours over stdio, raw JSON-RPC, audit on "
            f"{filesystem(run.scratch)}",
            refused,
            fmt_ms,
            ref=bare,
            vs="bare stdio",
            verdict=Verdict(
                f"≤ {REFUSAL_RATIO}x bare",
                ratio <= REFUSAL_RATIO,
                measured=f"{fmt_ms(refused.median)} vs {fmt_ms(bare.median)}, {ratio:.2f}x",
            ),
        )
    )
    section.note(
        "Refused trigger: our server with a trigger budget of 1 a minute, spent on one real restart first; "
        "each timed restart_job (a new job id) is refused by the budget before any InfraBox request, with "
        f"its `denied` audit record written to the JSONL file on {filesystem(run.scratch)} (checked: one per "
        "refusal; a refusal's record has no fsync of its own, nothing having been sent). Its reference is the bare floor's noop over stdio in the same loop."
    )


def measure(run: Run) -> Section:
    section = Section(1, "Per-call latency (ms)")
    anyio.run(_measure, run, section)
    if not section.rows:
        raise BenchError("no latency measured")
    return section
