"""What every section needs: counts, the sandbox process, our server's command line, raw JSON-RPC over pipes.

Everything listens on 127.0.0.1 only. Every process started here is registered with the `Run` and killed in
its `close()` (sections also stop their own in `finally`); every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, db
from mcp_ci_tools.sandbox.seed import populate

__all__ = [
    "BENCH_DIR",
    "FULL",
    "LATEST_ERA",
    "LEGACY_ERA",
    "REPO",
    "SMOKE",
    "BenchError",
    "Counts",
    "PipeServer",
    "Run",
    "Sandbox",
    "closed_port",
    "command",
    "cpu_seconds",
    "filesystem",
    "free_port",
    "process_tree",
    "rss_mib",
    "tail",
]

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
LEGACY_ERA = "2025-11-25"
LATEST_ERA = "2026-07-28"
BENCH_PROJECT = "a1000000-0000-4000-8000-00000000b001"  # a project of restartable jobs, alice's


class BenchError(Exception):
    """A measurement could not be taken as designed (a call failed, a process did not start)."""


@dataclass(frozen=True)
class Counts:
    """How much each section measures; `SMOKE` only proves that everything runs."""

    latency_calls: int  # per mode and tool, after warm-up
    latency_warmup: int
    stub_calls: int  # stubbed vs bare in-process calls
    cold_runs: int  # spawns per server and era
    rss_runs: int  # processes per server
    rss_calls: int  # calls between the two RSS readings
    http_seconds: float  # per concurrency level
    http_levels: tuple[int, ...]
    audit_calls: int
    import_runs: int  # -X importtime runs
    smoke: bool = False


FULL = Counts(
    latency_calls=300,
    latency_warmup=20,
    stub_calls=2000,
    cold_runs=15,
    rss_runs=3,
    rss_calls=1000,
    http_seconds=8.0,
    http_levels=(1, 8, 32),
    audit_calls=300,
    import_runs=5,
)
SMOKE = Counts(
    latency_calls=5,
    latency_warmup=2,
    stub_calls=20,
    cold_runs=1,
    rss_runs=1,
    rss_calls=20,
    http_seconds=0.5,
    http_levels=(1, 8, 32),
    audit_calls=5,
    import_runs=1,
    smoke=True,
)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port nobody listens on (just released by us): peers' dummy credentials point here."""
    return free_port()


def rss_mib(pid: int) -> float:
    """VmRSS of a process in MiB, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def command(
    argv: Sequence[str], *, timeout_s: float, env: Mapping[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a command built by the benchmarks (an argv list, no shell) and capture its text output."""
    return subprocess.run(  # noqa: S603 - our own argv, no shell
        list(argv),
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout_s,
        env=None if env is None else dict(env),
        check=check,
    )


def filesystem(path: Path) -> str:
    """The file system type a path lives on, from /proc/mounts (longest matching mount point)."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    with open("/proc/mounts") as mounts:
        for line in mounts:
            parts = line.split()
            inside = len(parts) >= 3 and (
                resolved == parts[1] or resolved.startswith(parts[1].rstrip("/") + "/")
            )
            if inside and len(parts[1]) >= len(best):
                best, kind = parts[1], parts[2]
    return kind


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants now (e.g. a server and the worker processes it started)."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            tasks = os.listdir(f"/proc/{pids[index]}/task")
        except OSError:
            tasks = []
        for task in tasks:
            with contextlib.suppress(OSError), open(f"/proc/{pids[index]}/task/{task}/children") as children:
                pids.extend(int(child) for child in children.read().split())
        index += 1
    return pids


def bench_token(role: str) -> str:
    """A deterministic sandbox token made for the benchmarks (HTTP clients each get their own)."""
    return "ib_mcp_" + hashlib.sha256(f"mcp-ci-tools benchmark {role}".encode()).hexdigest()[:48]


def tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Run:
    """One benchmark run: its counts, a scratch directory, the sandbox, and every process it started."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self.smoke = counts.smoke
        self.scratch = Path(tempfile.mkdtemp(prefix="mcp-ci-bench-"))
        # The sandbox database lives on tmpfs when there is one, so the baseline (InfraBox itself) is fast
        # and steady and differences are ours. The audit log stays on disk (scratch), as deployed.
        shm = Path("/dev/shm")  # noqa: S108 - only as the parent of a private mkdtemp directory
        self.fast_dir = Path(tempfile.mkdtemp(prefix="mcp-ci-bench-", dir=shm if shm.is_dir() else None))
        self._procs: list[subprocess.Popen[bytes]] = []
        self._sandbox: Sandbox | None = None
        self.notes: list[str] = []  # about the whole run (e.g. a peer that is skipped everywhere)
        self.cache: dict[str, Any] = {}  # things sections share, e.g. the list of candidates

    @property
    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox.start(self)
        return self._sandbox

    def redis_url(self) -> str | None:
        """A redis-server of this run's own on a free loopback port (started at the first ask), or None
        when none is installed; nothing is saved to disk."""
        if "redis_url" not in self.cache:
            self.cache["redis_url"] = _start_redis(self) if shutil.which("redis-server") else None
        url: str | None = self.cache["redis_url"]
        return url

    def log_path(self, name: str) -> Path:
        return self.scratch / f"{name}-{uuid.uuid4().hex[:8]}.log"

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        stdin: int | None = subprocess.PIPE,
        stdout: int | None = subprocess.PIPE,
        stderr_path: Path | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process that `close()` will kill if nobody stopped it before."""
        stderr: IO[bytes] | int = subprocess.DEVNULL
        if stderr_path is not None:
            stderr = open(stderr_path, "wb")  # noqa: SIM115 - handed to the child, closed right after
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own argv, no shell
                list(argv), stdin=stdin, stdout=stdout, stderr=stderr, env=dict(env), cwd=cwd
            )
        finally:
            if not isinstance(stderr, int):
                stderr.close()
        self._procs.append(proc)
        return proc

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._procs:
            stop_process(proc)
        self._procs.clear()
        if self._sandbox is not None:
            self._sandbox.stop()
        shutil.rmtree(self.scratch, ignore_errors=True)
        shutil.rmtree(self.fast_dir, ignore_errors=True)

    # --- our server -------------------------------------------------------------------------------------

    def ours_argv(self) -> list[str]:
        """`mcp-ci-tools` as installed in this virtualenv (the console script), else `python -m`."""
        script = Path(sys.executable).with_name("mcp-ci-tools")
        return [str(script)] if script.exists() else [sys.executable, "-m", "mcp_ci_tools"]

    def ours_env(self, *, audit_log: Path | None = None, stdio: bool = True) -> dict[str, str]:
        """Environment for our server against the sandbox: trigger allowed, every budget lifted."""
        env = {
            **base_env(),
            "INFRABOX_URL": self.sandbox.url,
            "MCP_CI_ALLOW_TRIGGER": "true",
            "MCP_CI_TRIGGER_PER_MINUTE": "1000",
            "MCP_CI_READ_PER_MINUTE": "10000",
            "MCP_CI_LOG_PER_MINUTE": "10000",
            "MCP_CI_AUDIT_LOG": str(audit_log or self.scratch / f"audit-{uuid.uuid4().hex[:8]}.jsonl"),
        }
        if stdio:
            env["INFRABOX_MCP_TOKEN"] = SANDBOX_TOKENS["trigger"].token
        return env


def base_env() -> dict[str, str]:
    """A small, explicit environment for child processes (like the SDK's stdio allow-list)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {key: os.environ[key] for key in keep if key in os.environ}


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 3.0) -> None:
    """Close stdin, then terminate, then kill: whatever it takes, bounded in time."""
    if proc.poll() is None and proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.5)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace_s)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _start_redis(run: Run, timeout_s: float = 10.0) -> str:
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    log = run.log_path("redis")
    proc = run.spawn(
        argv, env=base_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr_path=log
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited with status {proc.returncode}: {tail(log, 2)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(16).startswith(b"+PONG"):
                return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer PING within {timeout_s:.0f} s")


# --- the sandbox --------------------------------------------------------------------------------------


@dataclass
class Sandbox:
    """The InfraBox sandbox in its own process (see `sandbox_server.py`), seeded for benchmarking.

    Besides the demo data: one project of `restartable` failed jobs (each in its own build, so each
    `restart_job` takes a fresh one) and `client_tokens` of alice's with trigger permission, one per
    concurrent HTTP client.
    """

    url: str
    proc: subprocess.Popen[bytes]
    restartable: list[str]
    client_tokens: list[str]
    log: Path
    _next_job: int = field(default=0, repr=False)

    RESTARTABLE = 3000
    CLIENT_TOKENS = 32

    @property
    def api(self) -> str:
        return self.url + "/api/v1/mcp"

    @property
    def token(self) -> str:
        return SANDBOX_TOKENS["trigger"].token

    @property
    def project(self) -> str:
        return SEED.payments

    @property
    def build(self) -> str:
        return SEED.failed_build

    @property
    def restart_project(self) -> str:
        return BENCH_PROJECT

    def fresh_job(self) -> str:
        """A failed job nobody restarted yet."""
        if self._next_job >= len(self.restartable):
            raise BenchError(f"all {len(self.restartable)} restartable jobs are used up")
        job = self.restartable[self._next_job]
        self._next_job += 1
        return job

    @classmethod
    def start(cls, run: Run) -> Sandbox:
        path = run.fast_dir / "sandbox.sqlite3"
        jobs, tokens = _seed(path, cls.RESTARTABLE, cls.CLIENT_TOKENS)
        log = run.log_path("sandbox")
        proc = run.spawn(
            [sys.executable, str(BENCH_DIR / "sandbox_server.py"), str(path)],
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stderr_path=log,
        )
        assert proc.stdout is not None
        line = _read_line(proc.stdout, deadline=time.monotonic() + 30)
        if not line.strip().isdigit():
            raise BenchError(f"the sandbox did not start: {line!r}\n{tail(log)}")
        url = f"http://127.0.0.1:{int(line)}"
        sandbox = cls(url=url, proc=proc, restartable=jobs, client_tokens=tokens, log=log)
        sandbox.wait_ready()
        return sandbox

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"the sandbox exited: {tail(self.log)}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(self.api + "/projects", headers=headers, timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise BenchError(f"the sandbox did not answer within {timeout_s:.0f} s")

    def stop(self) -> None:
        stop_process(self.proc)


def _seed(path: Path, restartable: int, client_tokens: int) -> tuple[list[str], list[str]]:
    """Create the sandbox database: the demo data plus the benchmark's project, jobs and tokens."""
    now = time.time()
    with closing(db.connect(str(path))) as conn:
        db.init_schema(conn)
        populate(conn, now)
        alice = conn.execute("SELECT id FROM \"user\" WHERE username = 'alice'").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        db.insert_project(conn, project_id=BENCH_PROJECT, name="bench-restart")
        db.add_collaborator(conn, user_id=alice, project_id=BENCH_PROJECT)
        jobs = []
        for number in range(1, restartable + 1):
            build = db.insert_build(conn, project_id=BENCH_PROJECT, build_number=number, created_at=now - 600)
            jobs.append(
                db.insert_job(
                    conn,
                    build_id=build,
                    project_id=BENCH_PROJECT,
                    name="test",
                    created_at=now - 600,
                    state="failure",
                    start_date=now - 590,
                    end_date=now - 500,
                    console="Job failed: exit code 1\n",
                )
            )
        tokens = [bench_token(f"client {i}") for i in range(client_tokens)]
        for i, token in enumerate(tokens):
            db.insert_token(
                conn, token=token, user_id=alice, name=f"bench client {i}", allow_trigger=True, created_at=now
            )
        conn.execute("COMMIT")
    return jobs, tokens


def _read_line(stream: IO[bytes], *, deadline: float) -> str:
    """One line from a child's stdout, or what arrived until the deadline."""
    fd = stream.fileno()
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


# --- raw JSON-RPC over pipes ----------------------------------------------------------------------------


def meta_2026() -> dict[str, Any]:
    """The `_meta` envelope every 2026-07-28 request carries (SDK note §6)."""
    return {
        "io.modelcontextprotocol/protocolVersion": LATEST_ERA,
        "io.modelcontextprotocol/clientInfo": {"name": "mcp-ci-tools-bench", "version": "0"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }


class PipeServer:
    """A stdio MCP server spoken to with hand-written JSON-RPC: nothing of a client library is timed.

    `started` is taken just before the spawn, so `elapsed()` is spawn → now.
    """

    def __init__(
        self, run: Run, argv: Sequence[str], env: Mapping[str, str], *, name: str, era: str = LEGACY_ERA
    ) -> None:
        self.name = name
        self.era = era
        self.log = run.log_path(name)
        self._buffer = b""
        self._next_id = 0
        self.started = time.perf_counter()
        self.proc = run.spawn(argv, env=env, stderr_path=self.log)
        self.pid = self.proc.pid

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def send(self, message: Mapping[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        self.proc.stdin.flush()

    def request(
        self, method: str, params: Mapping[str, Any] | None = None, *, timeout_s: float = 60.0
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its response (other messages are skipped): (message, raw line)."""
        self._next_id += 1
        request_id = self._next_id
        body: dict[str, Any] = dict(params or {})
        if self.era == LATEST_ERA:
            body["_meta"] = {**meta_2026(), **body.get("_meta", {})}
        self.send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": body})
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._read_line(deadline)
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours to judge here; stdout hygiene is tested elsewhere
            if isinstance(message, dict) and message.get("id") == request_id:
                return message, line

    def handshake(self) -> dict[str, Any]:
        """The era's first exchange: `initialize` (+ `initialized`) or `server/discover`."""
        if self.era == LATEST_ERA:
            message, _ = self.request("server/discover")
            return message
        message, _ = self.request(
            "initialize",
            {
                "protocolVersion": LEGACY_ERA,
                "capabilities": {},
                "clientInfo": {"name": "mcp-ci-tools-bench", "version": "0"},
            },
        )
        if "result" in message:
            self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return message

    def call(self, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        message, _ = self.request("tools/call", {"name": tool, "arguments": dict(arguments)})
        return message

    def _read_line(self, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.name}: no answer in time\n{tail(self.log)}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise BenchError(f"{self.name}: exited (status {self.proc.poll()})\n{tail(self.log)}")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def close(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> PipeServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
