"""CORS for chat front ends in the browser: preflights answered before authentication, headers on every answer.

A page on another origin (`http://127.0.0.1:5173`, `https://chat.example.com`) can reach `/mcp`, `/sse` and
`/messages/` only if the server answers the browser's preflight (`OPTIONS`, which never carries the token)
and marks every response, errors included, as readable by that origin. The allow-list is the same one the
transport security checks (`--allowed-origin` plus loopback, `scheme://host:*` matching any port), so an
origin is either allowed for everything or for nothing.

Starlette's `CORSMiddleware` answers a preflight with 200 and sends its `Access-Control-Allow-*` headers to
disallowed origins too; this answers 204, gives a disallowed origin no CORS header at all (its preflight
gets 403, its requests the 403 of the transport security) and never a wildcard: the credential travels in
a header, and only origins that may send it are named.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ALLOWED_METHODS", "ALLOWED_REQUEST_HEADERS", "EXPOSED_HEADERS", "Cors", "OriginAllowList"]

ALLOWED_METHODS = ("GET", "POST", "DELETE", "OPTIONS")
# What MCP clients send: both protocol eras (2025-11-25 sessions, 2026-07-28 per-request headers).
ALLOWED_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "last-event-id",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
)
_PARAM_HEADER_PREFIX = "mcp-param-"  # SEP-2243 mirrors of tool parameters, named per tool
EXPOSED_HEADERS = ("Mcp-Session-Id", "Mcp-Protocol-Version", "WWW-Authenticate", "Retry-After")
_MAX_AGE_S = 600


class OriginAllowList:
    """Browser origins, exact (`https://chat.example.com`) or any port (`http://127.0.0.1:*`).

    The allow-list of the SDK's transport security, matched a little more strictly: a port pattern matches
    a port (ASCII digits) only, where the SDK takes any suffix. So CORS never admits an origin the Origin
    check refuses.
    """

    def __init__(self, origins: Iterable[str]) -> None:
        self._exact: set[str] = set()
        self._any_port: list[str] = []
        for origin in origins:
            if origin.endswith(":*"):
                self._any_port.append(origin.removesuffix(":*") + ":")
            else:
                self._exact.add(origin)

    def __contains__(self, origin: object) -> bool:
        if not isinstance(origin, str):
            return False
        if origin in self._exact:
            return True
        return any(origin.startswith(base) and _is_port(origin[len(base) :]) for base in self._any_port)


def _is_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


class Cors:
    """ASGI middleware: answers preflights of allowed origins with 204, and adds CORS headers to every answer.

    Outermost in the stack, so answers made before the MCP app (401 of the token check, 429, 503 while
    draining) carry the headers too, and a preflight never reaches the token check.
    """

    def __init__(self, app: ASGIApp, *, origins: OriginAllowList) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:  # not a cross-origin browser request: nothing to add
            await self.app(scope, receive, send)
            return
        allowed = origin in self.origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, allowed, headers)(scope, receive, send)
            return
        if not allowed:  # the transport security answers 403; a disallowed origin learns nothing from us
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                response_headers = MutableHeaders(scope=message)
                response_headers["Access-Control-Allow-Origin"] = origin
                response_headers["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
                response_headers.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    def _preflight(origin: str, allowed: bool, headers: Headers) -> Response:
        if not allowed:
            return PlainTextResponse(
                f"origin {origin[:200]!r} is not allowed; the operator can allow it with --allowed-origin "
                "(MCP_CI_ALLOWED_ORIGINS)",
                403,
                headers={"Vary": "Origin"},
            )
        method = headers["access-control-request-method"].strip().upper()
        requested = [
            name.strip().lower() for name in headers.get("access-control-request-headers", "").split(",")
        ]
        refused = [
            name
            for name in requested
            if name and name not in ALLOWED_REQUEST_HEADERS and not name.startswith(_PARAM_HEADER_PREFIX)
        ]
        if method not in ALLOWED_METHODS or refused:
            what = f"method {method[:20]!r}" if method not in ALLOWED_METHODS else f"headers {refused[:5]}"
            return PlainTextResponse(
                f"CORS preflight refused: {what} not allowed; allowed methods: {', '.join(ALLOWED_METHODS)}; "
                f"allowed headers: {', '.join(ALLOWED_REQUEST_HEADERS)}, {_PARAM_HEADER_PREFIX}*",
                403,
                headers={"Vary": "Origin"},
            )
        allow_headers = [
            *ALLOWED_REQUEST_HEADERS,
            *(n for n in requested if n.startswith(_PARAM_HEADER_PREFIX)),
        ]
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                "Access-Control-Allow-Headers": ", ".join(allow_headers),
                "Access-Control-Max-Age": str(_MAX_AGE_S),
                "Vary": "Origin",
            },
        )
