"""Several worker processes serving one HTTP port (`MCP_CI_WORKERS` above 1).

The parent holds the port (bound, not listening, so a port in use is a configuration error before anything
starts) and starts the workers: fresh processes of this same command, not forks, so none inherits the
parent's threads or connections. Each worker is a whole server listening on the port with `SO_REUSEPORT`
(the kernel spreads new connections across them), with its own event loop and InfraBox connection pool;
budgets, guards and learned permissions are shared through `MCP_CI_STATE_URL`, and the audit records of
all workers go to the same file, chained under its lock. Metrics go to prometheus_client's per-process
files in a directory the parent makes (`PROMETHEUS_MULTIPROC_DIR`) and removes when the workers are gone,
so `/metrics` on any worker shows the whole replica. Unless `MCP_CI_REQUEST_STATE_KEY` is set, the parent
makes one for its workers, so an input-required round (a confirmation question) sealed by one worker is
opened by whichever worker the answer reaches.

SIGTERM or SIGINT reaches every worker, each drains as a single server does, and the parent exits 0 once
all have stopped. A worker that exits on its own stops the others and the parent exits 1: the replica's
supervisor (Kubernetes, systemd) restarts it whole rather than leaving it half its size.
"""

from __future__ import annotations

import logging
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from types import FrameType

__all__ = [
    "METRICS_DIR_VARIABLE",
    "REQUEST_STATE_KEY_VARIABLE",
    "WORKER_VARIABLE",
    "run_workers",
    "worker_of",
]

log = logging.getLogger("mcp_ci_tools.http")

WORKER_VARIABLE = "MCP_CI_WORKER"  # "i/N", set by the parent for worker i of N
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client reads it when it is imported
REQUEST_STATE_KEY_VARIABLE = "MCP_CI_REQUEST_STATE_KEY"
_POLL_S = 0.2
_STOP_GRACE_S = 60.0  # beyond each worker's own drain: then it is killed


def worker_of(environ: Mapping[str, str]) -> str | None:
    """ "i/N" when this process is a worker started by `run_workers`, else None."""
    return environ.get(WORKER_VARIABLE) or None


def run_workers(
    argv: Sequence[str], environ: Mapping[str, str], *, workers: int, port: int, drain_s: float
) -> int:
    """Run `workers` copies of `mcp-ci-tools argv` on `port` until SIGTERM/SIGINT; the exit status."""
    with tempfile.TemporaryDirectory(prefix="mcp-ci-tools-metrics-") as metrics_dir:
        base = {**environ, "MCP_CI_PORT": str(port), METRICS_DIR_VARIABLE: metrics_dir}
        # A confirmation asked by one worker may be answered on a connection another worker accepted.
        base.setdefault(REQUEST_STATE_KEY_VARIABLE, secrets.token_urlsafe(32))
        return _run(base, argv, workers=workers, port=port, drain_s=drain_s)


def _run(base: dict[str, str], argv: Sequence[str], *, workers: int, port: int, drain_s: float) -> int:
    command = [sys.executable, "-m", "mcp_ci_tools", *argv]
    stop_deadline: float | None = None  # set once the workers are told to stop

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_deadline
        if stop_deadline is None:
            stop_deadline = time.monotonic() + drain_s + _STOP_GRACE_S
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    children: list[subprocess.Popen[bytes]] = []
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(1, workers + 1):
            env = base | {WORKER_VARIABLE: f"{index}/{workers}"}
            # our own interpreter and module, with the arguments this process was started with
            children.append(subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL))  # noqa: S603
        log.info(
            "started %d workers on port %d (pids %s); budgets are shared through MCP_CI_STATE_URL",
            workers,
            port,
            ", ".join(str(child.pid) for child in children),
        )
        status = 0
        while any(child.poll() is None for child in children):
            exited = [child for child in children if child.returncode is not None]
            if exited and stop_deadline is None:
                first = exited[0]
                log.error(
                    "worker pid %d exited with status %d; stopping the other workers (the replica's "
                    "supervisor should restart it whole)",
                    first.pid,
                    first.returncode,
                )
                status = 1
                stop(signal.SIGTERM, None)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                _kill_stragglers(children, drain_s + _STOP_GRACE_S)
            time.sleep(_POLL_S)
        if stop_deadline is None:  # every worker ended by itself at once
            status = 1
        return status
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def _kill_stragglers(children: Sequence[subprocess.Popen[bytes]], grace_s: float) -> None:
    for child in children:
        if child.poll() is None:
            log.error("worker pid %d did not stop within %.0f s; killed", child.pid, grace_s)
            child.kill()
            child.wait()
