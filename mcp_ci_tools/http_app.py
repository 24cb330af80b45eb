"""The HTTP transports: Streamable HTTP at /mcp, SSE at /sse, both at once, /healthz, /readyz, /metrics,
graceful shutdown.

Every MCP request must carry the caller's own InfraBox token (`Authorization: Bearer ib_mcp_...`); the SDK's
auth middleware answers 401 otherwise, before any MCP handling, and binds each session to the token that
opened it. Host and Origin are always checked against an explicit allow-list; browsers on an allowed
origin get CORS (`cors.py`), preflights answered before the token check. /metrics is outside the MCP auth:
open, or behind its own bearer token (`MCP_CI_METRICS_TOKEN`).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import uvicorn
from mcp.server import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from mcp_ci_tools.config import Settings
from mcp_ci_tools.cors import Cors, OriginAllowList
from mcp_ci_tools.http_conn import guarded_protocol
from mcp_ci_tools.http_guard import CallerGuard
from mcp_ci_tools.http_sessions import TokenSessions
from mcp_ci_tools.inflight import InFlight
from mcp_ci_tools.observe import CONTENT_TYPE, bearer_matches
from mcp_ci_tools.server import metrics_of, rejected_tokens

__all__ = [
    "LOOPBACK_HOSTS",
    "LOOPBACK_ORIGINS",
    "METRICS_PATH",
    "Gate",
    "build_http_app",
    "http_stack",
    "listen",
    "security_settings",
    "serve_http",
    "uvicorn_config",
]

log = logging.getLogger("mcp_ci_tools.http")

LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*")
MCP_PATH, SSE_PATH, MESSAGE_PATH = "/mcp", "/sse", "/messages/"
METRICS_PATH = "/metrics"
# Answered while draining too: probes and the last scrape must still see the replica.
_NEVER_DRAINED = ("/healthz", METRICS_PATH)
_KEEP_ALIVE_S = 5.0  # an idle kept-alive connection is closed after this (uvicorn's default, made explicit)
_MAX_HEAD_BYTES = 16 * 1024  # a request line and headers larger than this get 400 (h11's default, explicit)
# uvicorn answers 503 to new requests beyond limit_concurrency connections or tasks. Idle connections are
# dropped at MCP_CI_MAX_CONNECTIONS first (http_conn), so this is only reached when every connection is busy.
_CONCURRENCY_HEADROOM = 100


def security_settings(settings: Settings) -> TransportSecuritySettings:
    """Always explicit: the SDK protects Host/Origin by itself only when bound to a loopback host."""
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, *settings.allowed_hosts],
        allowed_origins=[*LOOPBACK_ORIGINS, *settings.allowed_origins],
    )


class Gate:
    """ASGI middleware: counts requests in flight, caps open SSE streams, and refuses new work while draining."""

    def __init__(self, app: ASGIApp, *, max_streams: int) -> None:
        self.app = app
        self.max_streams = max_streams
        self.draining = False
        self.requests = 0
        self.streams = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _NEVER_DRAINED:
            await self.app(scope, receive, send)
            return
        if self.draining:
            await PlainTextResponse(
                "shutting down", 503, headers={"Connection": "close", "Retry-After": "1"}
            )(scope, receive, send)
            return
        stream = scope["method"] == "GET" and scope["path"] in (SSE_PATH, MCP_PATH)
        if stream and scope["path"] == SSE_PATH and self.streams >= self.max_streams:
            await PlainTextResponse("too many sessions", 503)(scope, receive, send)
            return
        if stream:
            self.streams += 1
        else:
            self.requests += 1
        try:
            await self.app(scope, receive, send)
        finally:
            if stream:
                self.streams -= 1
            else:
                self.requests -= 1


def build_http_app(
    server: MCPServer, settings: Settings, *, readiness: Callable[[], Awaitable[bool]] | None = None
) -> Starlette:
    """The Starlette app for `settings.transport` (streamable-http, sse or http = both)."""

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        ready = readiness is None or await readiness()
        return JSONResponse({"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503)

    metrics = metrics_of(server)
    metrics_token = None if settings.metrics_token is None else settings.metrics_token.get_secret_value()

    async def metrics_page(request: Request) -> Response:
        if not bearer_matches(request.headers.get("authorization"), metrics_token):
            return PlainTextResponse(
                "metrics require 'Authorization: Bearer <MCP_CI_METRICS_TOKEN>'",
                401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        return Response(metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(readyz)
    server.custom_route(METRICS_PATH, methods=["GET"])(metrics_page)
    security = security_settings(settings)
    sse_options: dict[str, Any] = {
        "sse_path": SSE_PATH,
        "message_path": MESSAGE_PATH,
        "max_request_body_size": settings.max_body_bytes,
        "transport_security": security,
        "host": settings.host,
    }
    if settings.transport == "sse":
        return _guarded(server.sse_app(**sse_options), server, settings, streamable=False)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=False,  # answers stream as SSE events, so progress notifications get through
        # Several workers share the port and a client's next connection may reach another one: no sessions.
        stateless_http=settings.workers > 1,
        max_request_body_size=settings.max_body_bytes,
        session_idle_timeout=settings.session_idle_timeout,
        max_sessions=settings.max_sessions,
        transport_security=security,
        host=settings.host,
    )
    if settings.transport == "http":
        # Same auth middleware wraps the whole app, so the SSE routes are protected like /mcp.
        sse = server.sse_app(**sse_options)
        app.router.routes.extend(
            route
            for route in sse.routes
            if isinstance(route, Route | Mount) and route.path in (SSE_PATH, MESSAGE_PATH.rstrip("/"))
        )
    return _guarded(app, server, settings, streamable=True)


def _guarded(app: Starlette, server: MCPServer, settings: Settings, *, streamable: bool) -> Starlette:
    guards: list[TokenSessions] = []

    def guard(inner: ASGIApp, **options: Any) -> CallerGuard:
        made = CallerGuard(inner, **options)
        guards.append(made.sessions)  # Starlette builds the middleware at the first request
        return made

    metrics_of(server).track_sessions(lambda: sum(sessions.total() for sessions in guards[-1:]))
    # Outermost of the app's middleware: before the SDK's authentication reads the Authorization header.
    app.add_middleware(
        guard,  # type: ignore[arg-type]  # any callable(app, **options) is a middleware factory
        rejected=rejected_tokens(server),
        sessions=server.session_manager if streamable else None,
        max_per_token=settings.max_sessions_per_token,
        max_body_bytes=settings.max_body_bytes,
        idle_timeout_s=settings.session_idle_timeout,
        mcp_path=MCP_PATH,
        sse_path=SSE_PATH,
        message_path=MESSAGE_PATH,
    )
    return app


def http_stack(app: Starlette, settings: Settings) -> tuple[ASGIApp, Gate]:
    """What uvicorn serves, and its gate: CORS outermost (so every answer, a refusal by the gate or the
    guard included, carries it), then the gate (draining, stream cap), then `app`."""
    gate = Gate(app, max_streams=settings.max_sessions)
    origins = OriginAllowList(security_settings(settings).allowed_origins or ())
    return Cors(gate, origins=origins), gate


class _DrainingServer(uvicorn.Server):
    """uvicorn, but SIGTERM first drains: stop accepting, let in-flight calls finish, then shut down.

    uvicorn's own shutdown closes every event stream at once (sse-starlette reacts to it), which would cut
    off calls in flight, so the waiting happens before it starts. A second signal stops at once.
    """

    def __init__(self, config: uvicorn.Config, *, gate: Gate, inflight: InFlight, grace: float) -> None:
        super().__init__(config)
        self._gate = gate
        self._inflight = inflight
        self._grace = grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def serve(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None:
            self.should_exit = True
            self.force_exit = self._draining and sig == signal.SIGINT
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        log.info("signal received: no new requests; waiting up to %.0f s for calls in flight", self._grace)
        for listener in getattr(self, "servers", []):
            listener.close()
        self._gate.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._grace
        while (self._inflight.count or self._gate.requests) and loop.time() < deadline:  # noqa: ASYNC110 - two counters, no event to wait on
            await asyncio.sleep(0.05)
        if self._inflight.count:
            log.warning("shutdown grace over with %d call(s) still in flight", self._inflight.count)
        await asyncio.sleep(0.2)  # let the last results reach their event streams
        self.should_exit = True


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app`: connection limits, the request-head deadline, no access log."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,
        # Off: an access log line holds the URL with its query string, where a client may put its token.
        "access_log": False,
        "ws": "none",
        "lifespan": "on",
        "timeout_graceful_shutdown": 5,
        "http": guarded_protocol(
            header_timeout=settings.header_timeout, max_connections=settings.max_connections
        ),
        "timeout_keep_alive": min(_KEEP_ALIVE_S, settings.header_timeout),
        "limit_concurrency": settings.max_connections + _CONCURRENCY_HEADROOM,
        "h11_max_incomplete_event_size": _MAX_HEAD_BYTES,
    }
    return uvicorn.Config(app, **{**options, **overrides})


def listen(host: str, port: int, *, reuse_port: bool = False, backlog: int = 2048) -> socket.socket:
    """A listening socket on `host:port` (0: a free port), bound before anything says it is serving, so a
    port in use is an `OSError` here rather than a uvicorn traceback after "serving…".

    `reuse_port`: several processes listen on the same port (`SO_REUSEPORT`) and the kernel spreads new
    connections across them (`backlog` 0: bound only, to hold the port, receiving no connections).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only on connections whose socket says TCP,
    # and without that every response after the first on a kept-alive connection waited ~40 ms for the
    # client's delayed ACK (uvicorn writes the head and the body separately).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), port))
        if backlog:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def serve_http(
    app: Starlette, settings: Settings, *, inflight: InFlight, sock: socket.socket | None = None
) -> None:
    """Serve `app` with uvicorn until SIGTERM/SIGINT, draining first (blocking); on `sock` if given."""
    served, gate = http_stack(app, settings)
    config = uvicorn_config(served, settings)
    server = _DrainingServer(config, gate=gate, inflight=inflight, grace=settings.shutdown_grace)
    server.run(sockets=None if sock is None else [sock])
