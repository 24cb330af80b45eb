"""The servers compared in sections 2-4: ours, the bare MCPServer floor, FastMCP 4 and two Node servers.

Peers are optional and live outside the project's virtualenv, in git-ignored folders reused by later runs:

* FastMCP 4 in `benchmarks/.venv-peers`. pip would install it next to mcp 2.3.0 (it requires mcp>=2.3.0,<3),
  but it brings `rich`, and `MCPServer()` imports rich and builds a RichHandler whenever rich is importable
  (mcp/server/mcpserver/utilities/logging.py): installed in our venv it would slow our own start-up and
  the floor's, so it gets a venv of its own.
* The Node servers in `benchmarks/.node-peers` (npm install --prefix), run with `node <entry>`, telemetry
  and version checks off, dummy credentials aimed at a closed loopback port.

A smoke run never installs anything: what is missing is skipped with a note.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.clients import Unavailable
from benchmarks.harness import BENCH_DIR, LATEST_ERA, LEGACY_ERA, Run, base_env, closed_port, command
from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED

__all__ = ["NODE_PEERS", "NODE_PREFIX", "Candidate", "candidates", "ensure_node_peers"]

NODE_PREFIX = BENCH_DIR / ".node-peers"
PEERS_VENV = BENCH_DIR / ".venv-peers"
FASTMCP_SPECS = ("fastmcp==4.2.3", "httpx>=0.28,<0.29")  # the peer script uses plain httpx, as ours does
# package → pinned version (checked on npm when this suite was written)
NODE_PEERS = {"@circleci/mcp-server-circleci": "0.20.0", "@zereight/mcp-gitlab": "2.1.64"}


DESCRIPTIONS = {
    "ours": "mcp-ci-tools over stdio against the sandbox",
    "floor": "benchmarks/peers/floor_server.py, a bare MCPServer with one async tool that does nothing",
    "fastmcp": "benchmarks/peers/fastmcp_triggers.py, our 5 trigger tools written the obvious way in FastMCP 4, "
    "run from benchmarks/.venv-peers",
    "circleci": "@circleci/mcp-server-circleci",
    "gitlab": "@zereight/mcp-gitlab",
}


@dataclass(frozen=True)
class Candidate:
    key: str
    label: str
    argv: list[str]
    env: dict[str, str]
    call: tuple[str, dict[str, Any]]  # the tool call repeated in section 3
    call_note: str
    version: str
    calls_must_succeed: bool = True
    eras: tuple[str, ...] = (LEGACY_ERA, LATEST_ERA)
    tags: frozenset[str] = field(default_factory=frozenset)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def ours(run: Run) -> Candidate:
    sandbox = run.sandbox
    return Candidate(
        key="ours",
        label="ours",
        argv=run.ours_argv(),
        env=run.ours_env(),
        call=("get_build", {"project_id": sandbox.project, "build_id": sandbox.build}),
        call_note="get_build against the sandbox",
        version=_version("mcp-ci-tools"),
    )


def floor() -> Candidate:
    return Candidate(
        key="floor",
        label="floor",
        argv=[sys.executable, str(BENCH_DIR / "peers" / "floor_server.py")],
        env=base_env(),
        call=("noop", {}),
        call_note="noop",
        version=f"mcp {_version('mcp')}",
    )


def ensure_fastmcp(run: Run) -> tuple[Path, str]:
    """(python, fastmcp version) of the peers' virtualenv, created and filled once (full runs only)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".bench-installed"
    wanted = " ".join(FASTMCP_SPECS)
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        if run.smoke:
            raise Unavailable(
                "benchmarks/.venv-peers is not there (a smoke run does not install it; `make bench` does)"
            )
        command([sys.executable, "-m", "venv", "--clear", str(PEERS_VENV)], timeout_s=300, check=True)
        command(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *FASTMCP_SPECS],
            timeout_s=600,
            check=True,
        )
        stamp.write_text(wanted)
    shown = command(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('fastmcp'), m.version('mcp'))"],
        timeout_s=60,
    )
    if shown.returncode != 0:
        raise Unavailable(f"FastMCP in benchmarks/.venv-peers does not import: {shown.stderr.strip()[-200:]}")
    fastmcp_version, mcp_version = shown.stdout.split()
    return python, f"fastmcp {fastmcp_version} (mcp {mcp_version})"


def fastmcp(run: Run) -> Candidate:
    python, version = ensure_fastmcp(run)
    sandbox = run.sandbox
    env = {
        **base_env(),
        "INFRABOX_URL": sandbox.url,
        "INFRABOX_MCP_TOKEN": SANDBOX_TOKENS["trigger"].token,
        "FASTMCP_CHECK_FOR_UPDATES": "off",  # no network from the banner's version check
    }
    return Candidate(
        key="fastmcp",
        label="FastMCP",
        argv=[str(python), str(BENCH_DIR / "peers" / "fastmcp_triggers.py")],
        env=env,
        call=("abort_job", {"project_id": SEED.payments, "job_id": SEED.failed_test_job}),
        call_note="abort_job against the sandbox",
        version=version,
    )


def _installed(package: str) -> tuple[str, Path] | None:
    """(version, entry script) of an installed Node peer, from its package.json."""
    manifest = NODE_PREFIX / "node_modules" / package / "package.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    bins = data.get("bin")
    entry = bins if isinstance(bins, str) else next(iter((bins or {}).values()), None)
    if entry is None:
        return None
    return str(data.get("version")), manifest.parent / entry


def ensure_node_peers(run: Run) -> dict[str, tuple[str, Path]]:
    """The pinned Node peers, installed once into NODE_PREFIX (full runs only); `Unavailable` otherwise."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise Unavailable("node/npm not found")
    found = {package: _installed(package) for package in NODE_PEERS}
    missing = [p for p, got in found.items() if got is None or got[0] != NODE_PEERS[p]]
    if missing and run.smoke:
        raise Unavailable("Node peers not installed (a smoke run does not install them; `make bench` does)")
    if missing:
        specs = [f"{package}@{NODE_PEERS[package]}" for package in missing]
        command(
            [
                npm,
                "install",
                "--prefix",
                str(NODE_PREFIX),
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--no-update-notifier",
                "--loglevel=error",
                *specs,
            ],
            timeout_s=300,
            env={
                **os.environ,
                "NO_UPDATE_NOTIFIER": "1",
            },  # the installer needs the whole environment (CA certificates)
            check=True,
        )
        found = {package: _installed(package) for package in NODE_PEERS}
    peers = {package: got for package, got in found.items() if got is not None}
    if len(peers) != len(NODE_PEERS):
        raise Unavailable("npm install did not produce the Node peers")
    return peers


def node_peers(run: Run) -> list[Candidate]:
    peers = ensure_node_peers(run)
    node = shutil.which("node") or "node"
    dead = f"http://127.0.0.1:{closed_port()}"
    home = run.scratch / "node-home"
    home.mkdir(exist_ok=True)
    common = {**base_env(), "HOME": str(home), "NO_UPDATE_NOTIFIER": "1"}
    circleci_version, circleci = peers["@circleci/mcp-server-circleci"]
    gitlab_version, gitlab = peers["@zereight/mcp-gitlab"]
    node_version = command([node, "--version"], timeout_s=30).stdout
    return [
        Candidate(
            key="circleci",
            label="CircleCI (Node)",
            argv=[node, str(circleci)],
            env={**common, "CIRCLECI_TOKEN": "dummy", "CIRCLECI_BASE_URL": dead, "DISABLE_TELEMETRY": "true"},
            call=("list_followed_projects", {"params": {}}),
            call_note="list_followed_projects, refused by the closed port",
            version=f"{circleci_version}, node {node_version.strip()}",
            calls_must_succeed=False,
        ),
        Candidate(
            key="gitlab",
            label="GitLab (Node)",
            argv=[node, str(gitlab)],
            env={
                **common,
                "GITLAB_PERSONAL_ACCESS_TOKEN": "dummy",
                "GITLAB_API_URL": dead + "/api/v4",
                "GITLAB_DISABLE_VERSION_CHECK": "true",
            },
            call=("list_projects", {}),
            call_note="list_projects, refused by the closed port",
            version=f"{gitlab_version}, node {node_version.strip()}",
            calls_must_succeed=False,
        ),
    ]


def _why(error: BaseException) -> str:
    if isinstance(error, subprocess.TimeoutExpired):
        return f"no result after {error.timeout:.0f} s"
    if isinstance(error, subprocess.CalledProcessError):
        output = (error.stderr or error.stdout or "").strip().splitlines()
        return f"exit status {error.returncode}" + (f": {output[-1][:200]}" if output else "")
    return str(error)[:200]


def candidates(run: Run) -> list[Candidate]:
    """Ours and the floor always, then the peers that are available; each absence is noted once per run."""
    if "candidates" in run.cache:
        return list(run.cache["candidates"])
    found = [ours(run), floor()]
    try:
        found.append(fastmcp(run))
    except Unavailable as why:
        run.notes.append(f"FastMCP skipped: {why}.")
    except (subprocess.SubprocessError, OSError) as error:
        run.notes.append(
            f"FastMCP skipped: installing it into benchmarks/.venv-peers failed ({_why(error)})."
        )
    try:
        found.extend(node_peers(run))
    except Unavailable as why:
        run.notes.append(f"Node peers skipped: {why}.")
    except (subprocess.SubprocessError, OSError) as error:
        run.notes.append(f"Node peers skipped: npm install failed ({_why(error)}).")
    run.cache["candidates"] = found
    run.notes.append(
        "Servers: " + "; ".join(f"{c.label} = {DESCRIPTIONS[c.key]} ({c.version})" for c in found) + "."
    )
    return list(found)


def by_key(found: list[Candidate]) -> Mapping[str, Candidate]:
    return {candidate.key: candidate for candidate in found}
