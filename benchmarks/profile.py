"""Where the time goes, split into ours vs the SDK vs libraries (needs pyinstrument, the `bench` extra).

    python -m benchmarks.profile startup [--tree]          start-up, ours vs the floor, fresh processes
    python -m benchmarks.profile call [--tool get_build|restart_job] [--calls N] [--tree]
                                                           in-memory calls with InfraBox stubbed

Time is attributed to the package whose code runs, except that work in pydantic, the standard library and the
import machinery counts for its caller (see PLUMBING); their own module bodies are shown on their own lines. `--tree` also prints
pyinstrument's call tree. Used to explain the misses in RESULTS.md; prints nothing into the repository.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import sysconfig
import time
from collections import defaultdict
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from benchmarks.clients import call_ok, in_process_server, open_inmemory, stub_job_args
from benchmarks.harness import BENCH_DIR, FULL, BenchError, Run, base_env, command
from benchmarks.latency import stub_transport

if TYPE_CHECKING:
    from pyinstrument.frame import Frame

GROUPS = (  # (path fragment, group); first match wins
    ("/mcp_ci_tools/", "ours: mcp_ci_tools"),
    ("/site-packages/mcp/", "SDK: mcp"),
    ("/site-packages/mcp_types/", "SDK: mcp_types"),
    ("/site-packages/pydantic", "pydantic"),
    ("/site-packages/jsonschema", "jsonschema"),
    ("/site-packages/referencing", "jsonschema"),
    ("/site-packages/rpds", "jsonschema"),
    ("/site-packages/httpx", "httpx/httpx2"),
    ("/site-packages/httpcore", "httpx/httpx2"),
    ("/site-packages/h11", "httpx/httpx2"),
    ("/site-packages/anyio", "anyio"),
    ("/site-packages/limits", "limits"),
    ("/site-packages/tenacity", "tenacity"),
    ("/site-packages/starlette", "starlette/uvicorn"),
    ("/site-packages/uvicorn", "starlette/uvicorn"),
    ("/site-packages/sse_starlette", "starlette/uvicorn"),
    ("/site-packages/opentelemetry", "opentelemetry"),
    ("/benchmarks/", "benchmark harness"),
    ("<frozen importlib", "import machinery"),
)
STDLIB = sysconfig.get_paths()["stdlib"]


def group_of(path: str | None) -> str:
    if not path:
        return "(no file)"
    for fragment, group in GROUPS:
        if fragment in path:
            return group
    if path.startswith(STDLIB):
        return "stdlib"
    if "/site-packages/" in path:
        return "other: " + path.split("/site-packages/", 1)[1].split("/", 1)[0]
    return "other"


# Work done by these on someone's behalf counts for the caller: pydantic building mcp_types' models is the
# SDK's cost, building our tool schemas is ours; an import counts for the module being imported.
PLUMBING = {
    "pydantic",
    "stdlib",
    "import machinery",
    "other",
    "(no file)",
    "other: typing_extensions.py",
    "other: typing_inspection",
    "other: annotated_types",
}


def split(frame: dict[str, Any]) -> dict[str, float]:
    """Self time (s) per owner over a frame tree: each frame's package, or its caller's for PLUMBING."""
    totals: dict[str, float] = defaultdict(float)
    stack = [(frame, "(unattributed)")]
    while stack:
        node, parent_group = stack.pop()
        children = node["children"]
        identifier = node["identifier"].split("\x00")
        # pyinstrument's synthetic frames ("[self]", "[await]") have no file: they belong to their parent
        own = group_of(identifier[1]) if len(identifier) > 1 else "(no file)"
        if own in PLUMBING and identifier[0] == "<module>" and own not in ("import machinery", "(no file)"):
            group = (
                f"{own} (module imports)"  # importing pydantic or the stdlib is shared, not the importer's
            )
        elif own in PLUMBING:
            group = parent_group
        else:
            group = own
        totals[group] += node["time"] - sum(c["time"] for c in children)
        stack.extend((child, group) for child in children)
    return dict(totals)


def _frame_dict(frame: Frame) -> dict[str, Any]:
    return {
        "identifier": frame.identifier,
        "time": frame.time,
        "children": [_frame_dict(child) for child in frame.children],
    }


def _print_split(title: str, columns: dict[str, dict[str, float]], unit: float, unit_name: str) -> None:
    groups = sorted(
        {g for c in columns.values() for g in c}, key=lambda g: -max(c.get(g, 0) for c in columns.values())
    )
    width = max(len(group) for group in [*groups, "total"])
    print(f"\n{title} ({unit_name})")
    print(f"  {'':{width}}" + "".join(f"{name:>14}" for name in columns))
    for group in groups:
        print(f"  {group:{width}}" + "".join(f"{c.get(group, 0.0) / unit:14.2f}" for c in columns.values()))
    print(f"  {'total':{width}}" + "".join(f"{sum(c.values()) / unit:14.2f}" for c in columns.values()))


def startup(tree: bool, runs: int) -> None:
    """Fresh interpreters (after one warm-up each), median split over `runs` start-ups."""
    from pyinstrument.session import Session

    columns: dict[str, dict[str, float]] = {}
    with Run(FULL) as run:
        env = run.ours_env()
        for who in ("ours", "floor"):
            samples: list[dict[str, float]] = []
            session: dict[str, Any] = {}
            for i in range(runs + 1):
                done = command(
                    [sys.executable, str(BENCH_DIR / "profile_child.py"), who],
                    timeout_s=120,
                    env={**env, **base_env(), "PYTHONPATH": str(BENCH_DIR.parent)},
                    check=True,
                )
                root = Session.from_json(json.loads(done.stdout)).root_frame()
                if root is None:
                    raise BenchError(f"{who}: pyinstrument recorded nothing")
                session = _frame_dict(root)
                if i > 0:
                    samples.append(split(session))
            groups = {g for s in samples for g in s}
            columns[who] = {g: sorted(s.get(g, 0.0) for s in samples)[len(samples) // 2] for g in groups}
            if tree:
                print(f"\n--- {who}: last start-up, frames over 2% ---")
                _print_tree(session, session["time"])
    _print_split("Start-up: imports, settings, build_server, initialize + tools/list", columns, 1e-3, "ms")


def _print_tree(node: dict[str, Any], total: float, depth: int = 0) -> None:
    if node["time"] < 0.02 * total or depth > 40:
        return
    identifier: str = node["identifier"]
    function, path, *_ = [*identifier.split("\x00"), "", ""]
    print(f"{'  ' * min(depth, 20)}{node['time'] * 1000:8.1f} ms  {function}  {Path(path).name}")
    for child in sorted(node["children"], key=lambda c: -c["time"]):
        _print_tree(child, total, depth + 1)


async def _calls(tool: str, calls: int, tree: bool) -> None:
    from pyinstrument import Profiler

    from benchmarks.peers.floor_server import mcp as floor

    with Run(FULL) as run:
        sandbox = run.sandbox
        import httpx

        headers = {"Authorization": f"Bearer {sandbox.token}"}
        base = f"{sandbox.api}/projects/{sandbox.project}/builds/{sandbox.build}"
        async with httpx.AsyncClient(headers=headers) as http:
            build, jobs = (await http.get(base)).json(), (await http.get(base + "/jobs")).json()
        bodies = {
            "build": build,
            "jobs": jobs,
            "restart": {"message": "Successfully restarted job", "jobs_restarted": 1},
        }
        server = in_process_server(
            "http://infrabox.stub", run.scratch / "audit.jsonl", transport=stub_transport(bodies)
        )

        def args() -> dict[str, str]:
            if tool == "get_build":
                return {"project_id": sandbox.project, "build_id": sandbox.build}
            return stub_job_args(sandbox.restart_project)

        columns: dict[str, dict[str, float]] = {}
        async with AsyncExitStack() as stack:
            ours = await open_inmemory(stack, server)
            bare = await open_inmemory(stack, floor)
            for name, client, tool_name, make_args in (
                ("ours", ours, tool, args),
                ("bare noop", bare, "noop", dict),
            ):
                for _ in range(50):
                    await call_ok(client, tool_name, make_args())
                arguments = [make_args() for _ in range(calls)]
                profiler = Profiler(interval=0.0001, async_mode="disabled")
                started = time.perf_counter()
                profiler.start()
                for one in arguments:
                    await call_ok(client, tool_name, one)
                recorded = profiler.stop()
                wall = time.perf_counter() - started
                root = recorded.root_frame()
                if root is None:
                    raise BenchError(f"{name}: pyinstrument recorded nothing")
                columns[name] = {g: t / calls for g, t in split(_frame_dict(root)).items()}
                print(f"{name}: {wall / calls * 1000:.3f} ms per call under the profiler ({calls} calls)")
                if tree:
                    print(profiler.output_text(unicode=True, color=False, show_all=False))
    _print_split(f"{tool} in-memory, InfraBox stubbed, per call", columns, 1e-3, "ms per call")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("what", choices=["startup", "call"])
    parser.add_argument("--tool", default="get_build", choices=["get_build", "restart_job"])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5, help="start-ups per server (startup)")
    parser.add_argument("--tree", action="store_true", help="also print pyinstrument's call tree")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    if args.what == "startup":
        startup(args.tree, args.runs)
    else:
        anyio.run(_calls, args.tool, min(args.calls, 900), args.tree)


if __name__ == "__main__":
    main()
