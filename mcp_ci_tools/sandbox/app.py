"""The sandbox application: `create_app` for ASGI use, `serve` to run it, `start_in_thread` to embed it.

Nothing here writes to stdout: an MCP stdio server may run the sandbox inside its own process, where stdout
is the protocol channel. uvicorn's own logging goes through the `logging` module (stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool

from mcp_ci_tools.sandbox import auth, db, routes
from mcp_ci_tools.sandbox.scheduler import Scheduler
from mcp_ci_tools.sandbox.seed import populate

__all__ = ["DEFAULT_DB_PATH", "SandboxHandle", "bind", "create_app", "serve", "start_in_thread"]

DEFAULT_DB_PATH = os.path.join(tempfile.gettempdir(), "mcp-ci-tools-sandbox.sqlite3")


def _prepare(db_path: str, now: float, with_seed: bool) -> None:
    with closing(db.connect(db_path)) as conn:
        db.init_schema(conn)
        if with_seed and db.is_empty(conn):
            populate(conn, now)


def create_app(
    db_path: str | os.PathLike[str],
    *,
    clock: Callable[[], float] = time.time,
    job_duration_s: float = 2.0,
    tick_interval_s: float = 0.5,
    seed: bool = True,
    run_scheduler: bool = True,
    archived_logs: bool = False,
    rate_limits: Mapping[str, int] = auth.BUCKET_LIMITS,
) -> Starlette:
    """A local InfraBox `/api/v1/mcp` server over the SQLite file `db_path`.

    Its lifespan creates the schema, seeds the demo data into an empty database (if `seed`) and, if
    `run_scheduler`, steps the scheduler once at start-up and then every `tick_interval_s`. The scheduler
    is `app.state.scheduler`: tests pass `run_scheduler=False` and call its `step()` themselves.
    `archived_logs=True` answers `""` for the log of a finished job, as upstream #621 does.
    """
    path = os.fspath(db_path)
    lock = threading.Lock()
    scheduler = Scheduler(path, clock=clock, job_duration_s=job_duration_s, lock=lock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(_prepare, path, clock(), seed)
        loop = None
        if run_scheduler:
            await run_in_threadpool(scheduler.step)  # catch up at once with what happened while stopped
            loop = asyncio.create_task(scheduler.run_forever(tick_interval_s))
        try:
            yield
        finally:
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop

    app = Starlette(
        routes=routes.ROUTES,
        exception_handlers=dict(routes.exception_handlers),
        lifespan=lifespan,
    )
    app.state.sandbox = routes.SandboxState(
        db_path=path,
        clock=clock,
        lock=lock,
        limiter=auth.RateLimiter(rate_limits),
        archived_logs=archived_logs,
    )
    app.state.scheduler = scheduler
    return app


def serve(
    host: str = "127.0.0.1",
    port: int = 8123,
    db_path: str | os.PathLike[str] = DEFAULT_DB_PATH,
    job_duration_s: float = 2.0,
    *,
    sock: socket.socket | None = None,
) -> None:
    """Run the sandbox until interrupted (blocking), on `sock` if given (bound by the caller, so it can
    say which port a `port=0` got). Logs go to stderr; no access log."""
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = uvicorn.Config(
        create_app(db_path, job_duration_s=job_duration_s),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        ws="none",
    )
    uvicorn.Server(config).run(sockets=None if sock is None else [sock])


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on `host:port` (0: a free port), or `OSError` (e.g. the port is in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # so asyncio sets TCP_NODELAY
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class SandboxHandle:
    """A sandbox serving from a daemon thread; `url` is its base URL (the API is under `/api/v1/mcp`)."""

    url: str
    _server: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def api_url(self) -> str:
        return self.url + routes.API_PREFIX

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def start_in_thread(
    db_path: str | os.PathLike[str] = DEFAULT_DB_PATH,
    host: str = "127.0.0.1",
    port: int = 0,
    job_duration_s: float = 2.0,
    *,
    tick_interval_s: float = 0.5,
    startup_timeout_s: float = 10.0,
    rate_limits: Mapping[str, int] = auth.BUCKET_LIMITS,
) -> SandboxHandle:
    """Serve the sandbox from a daemon thread and return once it accepts connections.

    `port=0` picks a free port; the handle's `url` names the real one. `rate_limits` are the calls per minute
    of each of InfraBox's buckets (upstream's by default). uvicorn logs through `logging` and
    does not configure it, so the embedding process decides where logs go (never stdout by default).
    """
    app = create_app(
        db_path, job_duration_s=job_duration_s, tick_interval_s=tick_interval_s, rate_limits=rate_limits
    )
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mcp-ci-tools-sandbox", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the sandbox did not start on {host}:{port}")
        time.sleep(0.01)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    url_host = f"[{host}]" if ":" in host else host
    return SandboxHandle(url=f"http://{url_host}:{bound_port}", _server=server, _thread=thread)
