"""Who may use the HTTP transports, decided before the SDK sees a request (ASGI middleware).

In this order, on every request:

1. A credential in the query string is refused (400), on every path, with or without a header: URLs end
   up in proxy and access logs. Its value is never echoed or logged.
2. More than one `Authorization` header, or one holding several credentials, is refused (400): picking one
   of them would let a caller be taken for somebody else.
3. A request to an MCP path without a usable bearer token gets a 401 (400 for a malformed header) that says
   what was wrong and what is expected, with RFC 6750 semantics; the credential is never echoed.
4. A token InfraBox answered 401 for (`policy.RejectedTokens`, shared by every replica) is refused (401)
   until its record expires, and its sessions here are closed.
5. A POST body to `/mcp` or `/messages/` must be one JSON-RPC message (JSON, the JSON content type, a sane
   id); anything else is a 4xx and one log line, never a traceback, never the body.
6. A request that opens a session (a 2025-era Streamable HTTP POST without `Mcp-Session-Id`, an SSE GET)
   is refused (429) while the token has `max_per_token` sessions and streams open.

The SDK's auth middleware, inside this one, still checks the token's form and binds sessions to it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, unquote_plus

import anyio
import mcp_types
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.timestamps import rfc3339
from mcp_ci_tools.domain.tokens import TOKEN_PREFIX, is_token, token_hash
from mcp_ci_tools.http_sessions import TokenSessions
from mcp_ci_tools.policy import RejectedTokens

__all__ = ["CREDENTIAL_PARAMETERS", "CallerGuard"]

log = logging.getLogger("mcp_ci_tools.http")

CREDENTIAL_PARAMETERS = frozenset({"access_token", "token", "auth", "authorization", "api_key", "key"})
_MAX_ID_CHARS = 256
_MAX_INT_ID = 2**63
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +(\S+) *")


def _plain(
    status: int, text: str, headers: Mapping[str, str] | None = None
) -> Callable[[Send], Awaitable[None]]:
    body = (text + "\n").encode()
    raw = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return respond


def _jsonrpc_error(status: int, code: int, text: str) -> Callable[[Send], Awaitable[None]]:
    body = json.dumps({"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": text}}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    return respond


def _credential_in_query(raw: bytes) -> bool:
    if not raw:
        return False
    text = raw.decode("latin-1")
    if TOKEN_PREFIX in unquote_plus(text).lower():
        return True
    return any(
        name.strip().lower() in CREDENTIAL_PARAMETERS for name, _ in parse_qsl(text, keep_blank_values=True)
    )


def _authorization(scope: Scope) -> tuple[bool, str | None]:
    """Whether the request names several credentials, and its bearer token if it names exactly one."""
    values = [value.decode("latin-1") for name, value in scope["headers"] if name.lower() == b"authorization"]
    if len(values) > 1:
        return True, None
    if not values:
        return False, None
    value = values[0].lower()
    if "," in value or value.count("bearer") > 1 or value.count(TOKEN_PREFIX) > 1:
        return True, None
    match = _BEARER.fullmatch(values[0].strip())
    return False, match.group(1) if match else None


_EXPECTED = "send your InfraBox MCP token as 'Authorization: Bearer ib_mcp_<48 hex digits>'"


def _unauthenticated_reason(scope: Scope) -> str:
    values = [value.decode("latin-1") for name, value in scope["headers"] if name.lower() == b"authorization"]
    if not values:
        return "no credentials"
    scheme = values[0].strip().split(" ", 1)[0]
    if scheme.lower() != "bearer":
        return "not a Bearer credential"
    return "a malformed Bearer credential" if _BEARER.fullmatch(values[0].strip()) is None else "not a token"


def _unauthenticated(scope: Scope) -> Callable[[Send], Awaitable[None]]:
    """The 401 (or 400) for a request without a usable bearer token, with RFC 6750 semantics: no error code
    when no bearer credentials were sent, `invalid_request` for a malformed header, `invalid_token` for a
    token of the wrong form. It names what was wrong and what is expected; it never echoes the credential."""
    reason = _unauthenticated_reason(scope)
    if reason == "no credentials":
        status, code, text = 401, None, f"No credentials: {_EXPECTED}. Tokens in the URL are refused."
    elif reason == "not a Bearer credential":
        status, code, text = 401, None, f"This server takes Bearer tokens only: {_EXPECTED}."
    elif reason == "a malformed Bearer credential":
        status, code = 400, "invalid_request"
        text = (
            f"The Authorization header is malformed (one space, then the token, nothing else): {_EXPECTED}."
        )
    else:
        status, code = 401, "invalid_token"
        text = (
            "The bearer token is not an InfraBox MCP token (ib_mcp_ followed by 48 lowercase hex digits): "
            "check that the whole token was copied, or create one in the InfraBox UI."
        )
    challenge = 'Bearer realm="mcp-ci-tools"' + (
        f', error="{code}", error_description="{text}"' if code else ""
    )
    body = json.dumps({"error": code, "error_description": text} if code else {"error_description": text})
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode("latin-1")),
    ]

    async def respond(send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body.encode()})

    return respond


class _BadBody(Exception):
    def __init__(self, status: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.reason = reason


def _check_message(headers: Mapping[bytes, bytes], body: bytes) -> None:
    """Raise `_BadBody` unless `body` is one JSON-RPC message the SDK can take as it is."""
    content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    if content_type != b"application/json":
        raise _BadBody(415, -32600, "the Content-Type must be application/json")
    if not body.strip():
        raise _BadBody(400, -32600, "the body is empty")
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):  # also a number too long to convert, nesting too deep
        raise _BadBody(400, -32700, "the body is not valid JSON") from None
    if not isinstance(message, dict):
        raise _BadBody(400, -32600, "the body is not one JSON-RPC message object (batches are not supported)")
    ident = message.get("id")
    if isinstance(ident, bool) or not (
        ident is None
        or (isinstance(ident, int) and abs(ident) < _MAX_INT_ID)
        or (isinstance(ident, str) and len(ident) <= _MAX_ID_CHARS)
    ):
        raise _BadBody(400, -32600, "the id must be a string of at most 256 characters or a 64-bit integer")
    try:
        mcp_types.jsonrpc_message_adapter.validate_python(message, by_name=False)
    except ValidationError:
        raise _BadBody(
            400, -32600, "the body is not a JSON-RPC 2.0 request, notification or response"
        ) from None


class _TooLarge(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise anyio.EndOfStream
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


class CallerGuard:
    """ASGI middleware: query-string credentials, several credentials, rejected tokens, malformed bodies and
    the per-token session cap (see the module docstring), in front of the SDK's apps."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        rejected: RejectedTokens,
        sessions: StreamableHTTPSessionManager | None,
        max_per_token: int,
        max_body_bytes: int,
        idle_timeout_s: float,
        mcp_path: str = "/mcp",
        sse_path: str = "/sse",
        message_path: str = "/messages/",
        close_delay_s: float = 1.0,
    ) -> None:
        self.app = app
        self.max_per_token = max_per_token
        self._rejected = rejected
        self._max_body_bytes = max_body_bytes
        self._idle_timeout_s = idle_timeout_s
        self._mcp_path, self._sse_path, self._message_path = mcp_path, sse_path, message_path
        self.sessions = TokenSessions(sessions, rejected, close_delay_s=close_delay_s)

    # -- the request path ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = mask(f"{scope['method']} {scope['path'][:200]}")  # a path may hold anything, a token too
        if _credential_in_query(scope.get("query_string", b"")):
            log.warning("refused %s: a credential in the query string (not logged)", where)
            await _plain(
                400,
                "Credentials are not accepted in the URL, where proxies and access logs keep them: remove the "
                "query parameter and send the token as an 'Authorization: Bearer ib_mcp_...' header.",
            )(send)
            return
        several, token = _authorization(scope)
        if several:
            log.warning("refused %s: several credentials in the Authorization header(s) (not logged)", where)
            await _plain(
                400,
                "Send exactly one credential: one 'Authorization: Bearer ib_mcp_...' header with one token "
                "(this request had several).",
            )(send)
            return
        mcp_paths = (self._mcp_path, self._sse_path, self._message_path.rstrip("/"), self._message_path)
        if scope["path"] not in mcp_paths:
            await self.app(scope, receive, send)
            return
        if token is None or not is_token(token):
            log.info("refused %s: %s", where, _unauthenticated_reason(scope))
            await _unauthenticated(scope)(send)
            return
        key = token_hash(token)
        if not await self._not_rejected(key, where, send):
            return
        if scope["method"] == "POST" and scope["path"] != self._sse_path:
            checked = await self._checked_body(scope, receive, send, where, key)
            if checked is None:
                return
            receive = checked
        if self._opens_session(scope):
            await self._open(scope, receive, send, key, where)
        else:
            await self.app(scope, receive, send)

    async def _not_rejected(self, key: str, where: str, send: Send) -> bool:
        until = await self._rejected.until(key)
        if until is None:
            return True
        await self.sessions.close(key)  # opened here before another replica learned of the rejection
        log.info("refused %s: InfraBox rejected token sha256:%s", where, key[:12])
        await _plain(
            401,
            f"InfraBox rejected this token (sha256:{key[:12]}) as unknown or revoked, so its sessions were "
            f"closed and its requests are refused until {rfc3339(until)}. Create a new MCP token in the "
            "InfraBox UI (or ask the project's admin) and connect with it.",
            {"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )(send)
        return False

    async def _checked_body(
        self, scope: Scope, receive: Receive, send: Send, where: str, key: str
    ) -> Receive | None:
        headers = dict(scope["headers"])
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        try:
            if declared > self._max_body_bytes:
                raise _TooLarge
            body = await _read_body(receive, self._max_body_bytes)
            _check_message(headers, body)
        except _TooLarge:
            log.warning("refused %s of sha256:%s: body over %d bytes", where, key[:12], self._max_body_bytes)
            await _plain(413, f"Request body too large: at most {self._max_body_bytes} bytes.")(send)
            return None
        except anyio.EndOfStream:  # the client went away mid-body
            return None
        except _BadBody as bad:
            log.warning("refused %s of sha256:%s: %s", where, key[:12], bad.reason)
            await _jsonrpc_error(
                bad.status,
                bad.code,
                f"Malformed request: {bad.reason}. Send one JSON-RPC 2.0 message as JSON.",
            )(send)
            return None
        return _replay(body, receive)

    def _opens_session(self, scope: Scope) -> bool:
        if scope["path"] == self._sse_path:
            return bool(scope["method"] == "GET")
        if scope["path"] != self._mcp_path or scope["method"] != "POST" or self.sessions.streamable is None:
            return False
        headers = dict(scope["headers"])
        if b"mcp-session-id" in headers:
            return False
        version = headers.get(b"mcp-protocol-version")  # 2026-07-28 requests are stateless: no session
        return version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS

    async def _open(self, scope: Scope, receive: Receive, send: Send, key: str, where: str) -> None:
        open_now = self.sessions.count(key)
        if open_now >= self.max_per_token:
            log.warning(
                "refused %s of sha256:%s: %d sessions open, the most per token", where, key[:12], open_now
            )
            await _plain(
                429,
                f"This token already has {open_now} MCP sessions open on this server, the most one token may "
                f"have (MCP_CI_MAX_SESSIONS_PER_TOKEN={self.max_per_token}). Close sessions you no longer use "
                "(Streamable HTTP: DELETE /mcp with their Mcp-Session-Id; SSE: close the stream), or wait until "
                f"idle ones are closed ({self._idle_timeout_s:.0f} s without a request), then retry.",
                {"Retry-After": "30"},
            )(send)
            return
        if scope["path"] == self._sse_path:
            await self.sessions.serve_stream(self.app, scope, receive, send, key)
        else:
            await self.sessions.serve_opening(self.app, scope, receive, send, key)
