"""`mcp-ci-tools` / `python -m mcp_ci_tools`.

mcp-ci-tools [flags]            MCP over stdio against INFRABOX_URL
mcp-ci-tools --sandbox [flags]  MCP over stdio against a sandbox started in this process
mcp-ci-tools sandbox [...]      serve the InfraBox sandbox on loopback
mcp-ci-tools demo [--keep]      play a scripted agent session against the sandbox
mcp-ci-tools audit verify|show|stats [FILE…]   check the audit trail, list or count its calls
mcp-ci-tools --version          print the version
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from types import FrameType

from mcp_ci_tools.config import ConfigError, Settings, load_settings

__all__ = ["main"]

log = logging.getLogger("mcp_ci_tools")


def _configure_logging() -> None:
    # Before MCPServer exists: its own basicConfig then does nothing, and stdout stays the protocol's alone.
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("MCP_CI_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)


class _EmbeddedSandbox:
    """A fresh sandbox on a free loopback port, in a temporary directory removed by `close()`."""

    def __init__(self) -> None:
        from mcp_ci_tools.sandbox import start_in_thread

        self.directory = tempfile.mkdtemp(prefix="mcp-ci-tools-sandbox-")
        try:
            self._handle = start_in_thread(
                os.path.join(self.directory, "sandbox.sqlite3"), job_duration_s=2.0
            )
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise

    def environment(self, environ: dict[str, str], *, http: bool) -> dict[str, str]:
        """`environ` pointed at the sandbox; over stdio with its trigger token, over HTTP with none (callers
        send theirs)."""
        from mcp_ci_tools.sandbox import SANDBOX_TOKENS

        log.info("sandbox InfraBox at %s (data in %s, removed at exit)", self._handle.url, self.directory)
        for token in SANDBOX_TOKENS.values():
            log.info("sandbox token %-15s %s  %s", token.role, token.token, token.description)
        pointed = {
            **environ,
            "INFRABOX_URL": self._handle.url,
            "MCP_CI_ALLOW_TRIGGER": "true",
            "MCP_CI_AUDIT_LOG": environ.get("MCP_CI_AUDIT_LOG")
            or os.path.join(self.directory, "audit.jsonl"),
        }
        if http:
            pointed.pop("INFRABOX_MCP_TOKEN", None)
            log.info("HTTP callers send one of these tokens as 'Authorization: Bearer <token>'")
        else:
            pointed["INFRABOX_MCP_TOKEN"] = SANDBOX_TOKENS["trigger"].token
        return pointed

    def close(self, timeout_s: float = 10.0) -> None:
        # Stopped first: a sandbox still running could write its database's journal into the directory
        # while it is being removed, and the directory would stay.
        self._handle.stop(timeout_s)
        shutil.rmtree(self.directory, ignore_errors=True)


def _transport_asked(args: Sequence[str], environ: Mapping[str, str]) -> str:
    """The transport the flags or the environment ask for (validated later, by load_settings)."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--transport")
    known, _ = parser.parse_known_args(list(args))
    return str(known.transport or environ.get("MCP_CI_TRANSPORT") or "stdio").strip()


def _cannot_listen(settings: Settings, error: OSError, *, metrics: bool = False) -> int:
    """Exit status 2, with the line naming the port (in use) or host (any other failure) variable."""
    prefix, host, port = (
        ("MCP_CI_METRICS", settings.metrics_host, settings.metrics_port)
        if metrics
        else ("MCP_CI", settings.host, settings.port)
    )
    variable = f"{prefix}_PORT" if error.errno == errno.EADDRINUSE else f"{prefix}_HOST"
    print(
        f"mcp-ci-tools: configuration error: {variable}: cannot listen on {host}:{port}: {error.strerror or error}",
        file=sys.stderr,
    )
    return 2


def _serve_workers(settings: Settings, args: list[str], environ: dict[str, str]) -> int:
    from mcp_ci_tools.http_app import listen
    from mcp_ci_tools.http_workers import run_workers

    try:  # held (bound, not listening) while the workers run: the port stays ours, and 0 picks one for all
        held = listen(settings.host, settings.port, reuse_port=True, backlog=0)
    except OSError as error:
        return _cannot_listen(settings, error)
    with held:
        return run_workers(
            args,
            environ,
            workers=settings.workers,
            port=held.getsockname()[1],
            drain_s=settings.shutdown_grace,
        )


def _serve_http(settings: Settings, *, worker: str | None = None, metrics_dir: str | None = None) -> int:
    import anyio

    from mcp_ci_tools.domain.masking import mask
    from mcp_ci_tools.http_app import build_http_app, listen, serve_http
    from mcp_ci_tools.inflight import InFlight
    from mcp_ci_tools.observe import Metrics
    from mcp_ci_tools.server import audit_log_usable, build_server
    from mcp_ci_tools.state import open_state

    inflight = InFlight()
    metrics = Metrics(shared_dir=metrics_dir)
    state = open_state(
        settings.state_url,
        prefix=settings.state_prefix,
        timeout=settings.state_timeout,
        on_error=metrics.state_store_error,
    )
    server = build_server(settings, inflight=inflight, state=state, metrics=metrics)

    async def ready() -> bool:
        # Not ready while trigger tools would refuse: Redis not answering, or the audit file not writable.
        return await state.ready() and await anyio.to_thread.run_sync(audit_log_usable, settings.audit_log)

    app = build_http_app(server, settings, readiness=ready)
    try:
        sock = listen(settings.host, settings.port, reuse_port=worker is not None)
    except OSError as error:
        return _cannot_listen(settings, error)
    port = sock.getsockname()[1]
    _start_up_done()
    if settings.state_url:
        log.info("budgets, learned permissions and guards are shared through %s", mask(settings.state_url))
    paths = {"streamable-http": "/mcp", "sse": "/sse", "http": "/mcp and /sse"}[settings.transport]
    log.info(
        "%sserving MCP over %s at http://%s:%d (%s, /metrics %s) for %s; callers authenticate with their own "
        "token (trigger %s, audit log %s)",
        "" if worker is None else f"worker {worker} (pid {os.getpid()}): ",
        settings.transport,
        settings.host,
        port,
        paths,
        "open" if settings.metrics_token is None else "with its token",
        settings.infrabox_url,
        "decided by InfraBox per token" if settings.allow_trigger else "off for everyone",
        settings.audit_log,
    )
    with sock:
        serve_http(app, settings, inflight=inflight, sock=sock)
    log.info("stopped; audit log %s is complete", settings.audit_log)
    return 0


def _start_up_done() -> None:
    # Start-up only creates long-lived objects (models, schemas, tools): collecting them would be wasted work.
    gc.freeze()
    gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["--version"], ["-V"]):
        from mcp_ci_tools import __version__

        print(f"mcp-ci-tools {__version__}")
        return 0
    if args[:1] == ["sandbox"]:
        from mcp_ci_tools.sandbox.__main__ import main as sandbox_main

        return sandbox_main(args[1:])
    if args[:1] == ["demo"]:
        from mcp_ci_tools.demo import main as demo_main

        return demo_main(args[1:])
    if args[:1] == ["audit"]:
        from mcp_ci_tools.audit_cli import main as audit_main

        return audit_main(args[1:])
    gc.disable()  # until start-up is done: see _start_up_done
    try:
        return _serve(args)
    finally:
        gc.enable()  # on every way out, a configuration error or --help included


def _serve(args: list[str]) -> int:
    environ = dict(os.environ)
    if "--sandbox" not in args:
        return _serve_with(args, environ)
    args.remove("--sandbox")
    if "-h" in args or "--help" in args:
        return _serve_with(args, environ)  # help only: no sandbox to start (or to leave behind)
    _configure_logging()
    sandbox = _EmbeddedSandbox()

    def remove_and_die(signum: int, frame: FrameType | None) -> None:
        # Over stdio a thread blocks reading stdin, so unwinding would hang: clean up, then die as usual.
        # (The HTTP transports install their own handler for the drain; then the finally below cleans up.)
        sandbox.close(timeout_s=2.0)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, remove_and_die)
    try:
        return _serve_with(
            args, sandbox.environment(environ, http=_transport_asked(args, environ) != "stdio")
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
        sandbox.close()


def _serve_with(args: list[str], environ: dict[str, str]) -> int:
    try:
        settings = load_settings(args, environ)
    except ConfigError as error:
        print(f"mcp-ci-tools: configuration error: {error}", file=sys.stderr)
        return 2
    _configure_logging()
    from mcp_ci_tools.observe import start_tracing
    from mcp_ci_tools.server import repair_audit_log  # late: --help and config errors stay fast

    tracing = start_tracing(environ)
    try:
        repair_audit_log(settings.audit_log)
        if settings.transport != "stdio":
            from mcp_ci_tools.http_workers import METRICS_DIR_VARIABLE, worker_of

            worker = worker_of(environ)
            if settings.workers > 1 and worker is None:
                return _serve_workers(settings, args, environ)
            metrics_dir = environ.get(METRICS_DIR_VARIABLE) if worker is not None else None
            return _serve_http(settings, worker=worker, metrics_dir=metrics_dir)
        return _serve_stdio(settings)
    finally:
        if tracing is not None:
            tracing.shutdown()  # flushes the spans not yet exported


def _serve_stdio(settings: Settings) -> int:
    from mcp_ci_tools.observe import Metrics, MetricsServer, serve_metrics
    from mcp_ci_tools.server import build_server

    metrics = Metrics()
    server = build_server(settings, metrics=metrics)
    exporter: MetricsServer | None = None
    if settings.metrics_port is not None:
        token = None if settings.metrics_token is None else settings.metrics_token.get_secret_value()
        try:
            exporter = serve_metrics(metrics, settings.metrics_host, settings.metrics_port, token=token)
        except OSError as error:
            return _cannot_listen(settings, error, metrics=True)
        log.info("metrics at http://%s:%d/metrics", settings.metrics_host, exporter.port)
    _start_up_done()
    log.info(
        "serving MCP over stdio for %s with token %s (trigger %s, audit log %s)",
        settings.infrabox_url,
        settings.token_fingerprint,
        "allowed" if settings.allow_trigger else "not allowed",
        settings.audit_log,
    )
    try:
        server.run()
    finally:
        if exporter is not None:
            exporter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
