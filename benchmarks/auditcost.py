"""Section 6: what the audit log costs a trigger call.

restart_job through our whole pipeline in-process with InfraBox stubbed (so the network does not drown the
difference), three servers alike but for the audit sink, calls interleaved: the JSONL file on disk with
its two fsynced records per call (as deployed), the same file on tmpfs (the write without a real fsync),
and a sink that keeps nothing. Then, in `auditstall.py`, what one caller's stalled audit write does to
other callers' reads.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio

from benchmarks import auditstall
from benchmarks.clients import NullSink, call_ok, in_process_server, open_inmemory, stub_job_args
from benchmarks.harness import BenchError, Run, filesystem
from benchmarks.latency import interleaved, stub_transport
from benchmarks.table import Row, Section, fmt_ms

__all__ = ["measure"]

RESTARTED = {"message": "Successfully restarted job", "jobs_restarted": 1}


async def _measure(run: Run, section: Section) -> None:
    sandbox = run.sandbox
    disk_log = run.scratch / "audit-disk.jsonl"
    tmpfs_log = run.fast_dir / "audit-tmpfs.jsonl"
    servers = {
        "disk": in_process_server(
            "http://infrabox.stub", disk_log, transport=stub_transport({"restart": RESTARTED})
        ),
        "tmpfs": in_process_server(
            "http://infrabox.stub", tmpfs_log, transport=stub_transport({"restart": RESTARTED})
        ),
        "null": in_process_server(
            "http://infrabox.stub",
            run.scratch / "unused.jsonl",
            transport=stub_transport({"restart": RESTARTED}),
            audit_sink=NullSink(),
        ),
    }
    async with AsyncExitStack() as stack:
        clients = {name: await open_inmemory(stack, server) for name, server in servers.items()}

        def maker(client: Any) -> Callable[[], Callable[[], Awaitable[Any]]]:
            def make() -> Callable[[], Awaitable[Any]]:
                arguments = stub_job_args(sandbox.restart_project)  # a new job each call (see stub_job_args)
                return lambda: call_ok(client, "restart_job", arguments)

            return make

        results = await interleaved(
            {name: maker(client) for name, client in clients.items()},
            min(run.counts.audit_calls, 900),  # the trigger budget allows at most 1000 a minute
            run.counts.latency_warmup,
        )
    null = results["null"]
    section.add(Row.of("restart_job, audit to a null sink", null, fmt_ms))
    section.add(
        Row.of(
            f"restart_job, JSONL audit on {filesystem(run.fast_dir)} (write, fsync is cheap)",
            results["tmpfs"],
            fmt_ms,
            ref=null,
            vs="null sink",
        )
    )
    section.add(
        Row.of(
            f"restart_job, JSONL audit on {filesystem(run.scratch)} (fsynced, as deployed)",
            results["disk"],
            fmt_ms,
            ref=null,
            vs="null sink",
        )
    )
    lines = len(disk_log.read_text().splitlines())
    calls = results["disk"].n + run.counts.latency_warmup
    if lines != 2 * calls:  # anything else means a call took a shortcut (refused, deduplicated)
        raise BenchError(f"expected {2 * calls} audit records for {calls} calls, found {lines}")
    section.note(
        f"InfraBox stubbed in-process; each call writes an attempt and a result record, both fsynced "
        f"({lines} lines written to the disk log, warm-up included)."
    )
    await auditstall.measure_into(run, section)


def measure(run: Run) -> Section:
    section = Section(6, "Audit cost per trigger call, and a stalled audit write (ms)")
    anyio.run(_measure, run, section)
    return section
