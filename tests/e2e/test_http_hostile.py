"""HTTP callers who misbehave on purpose, against a real uvicorn on loopback with the sandbox as InfraBox.

Credentials in the URL, several credentials at once, made-up tokens that hold sessions, silent half-open
connections, malformed bodies: each is refused with a status and a message that says what to do, costs
other callers nothing, and leaves at most one log line without the token.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from mcp_ci_tools.sandbox import SandboxHandle
from tests.e2e.test_http import ALICE, BOB, INIT, MCP_HEADERS, access_log, http_settings, sandbox, serving

pytestmark = pytest.mark.anyio
__all__ = ["sandbox"]  # the fixture, imported for pytest

MADE_UP = "ib_mcp_" + "f00d" * 12  # the right form, unknown to InfraBox (the sandbox answers 401)
LEGACY = {**MCP_HEADERS}  # no MCP-Protocol-Version header: a 2025-11-25 client opening a stateful session


def bearer(token: str) -> dict[str, str]:
    return {**LEGACY, "authorization": f"Bearer {token}"}


def server_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """What the server logged (the test's own HTTP client logs its URLs, query strings included)."""
    return [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore", "mcp.client"))]


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in server_lines(caplog))


# 1. Credentials in the query string -------------------------------------------------------------------


@pytest.mark.parametrize("with_header", [True, False], ids=["with a valid header", "without a header"])
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("POST", "/mcp?access_token={t}"),
        ("POST", "/mcp?TOKEN={t}"),
        ("GET", "/sse?Api_Key={t}"),
        ("POST", "/messages/?session_id=0&key=x"),
        ("GET", "/healthz?auth=1"),
        ("GET", "/readyz?Authorization=Bearer%20{t}"),
        ("GET", "/healthz?q=ib%5Fmcp%5F{h}"),  # a token under any name, percent-encoded
        ("GET", "/{t}?token=1"),  # and a token in the path is not logged either
    ],
)
async def test_a_credential_in_the_query_string_is_refused_on_every_path_and_never_logged(
    method: str,
    target: str,
    with_header: bool,
    sandbox: SandboxHandle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = target.format(t=ALICE, h=ALICE.removeprefix("ib_mcp_"))
    headers = bearer(ALICE) if with_header else LEGACY
    with caplog.at_level(logging.DEBUG), serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.request(method, url, headers=headers, json=INIT if method == "POST" else None)

    assert answer.status_code == 400
    assert "send the token as an 'Authorization: Bearer ib_mcp_...' header" in answer.text
    assert answer.text.count("\n") == 1 and ALICE[7:20] not in answer.text
    assert ALICE[7:20] not in server_log(caplog)
    assert any("a credential in the query string (not logged)" in r.getMessage() for r in caplog.records)
    assert access_log(tmp_path) == []


async def test_an_ordinary_query_string_still_works(sandbox: SandboxHandle, tmp_path: Path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.get("/healthz?probe=lb")

    assert answer.status_code == 200


# 2. Several credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", f"Bearer {ALICE}"), ("authorization", f"Bearer {BOB}")],
        [("authorization", f"Bearer {ALICE}"), ("Authorization", f"Bearer {ALICE}")],
        [("authorization", f"Bearer {ALICE}, Bearer {BOB}")],
        [("authorization", f"Bearer {ALICE} Bearer {BOB}")],
        [("authorization", f"Bearer {ALICE}{BOB}")],
    ],
    ids=["two headers", "the same token twice", "comma-joined", "space-joined", "glued"],
)
async def test_several_credentials_are_refused_instead_of_picking_one(
    headers: list[tuple[str, str]], sandbox: SandboxHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.post("/mcp", json=INIT, headers=[*LEGACY.items(), *headers])

    assert answer.status_code == 400
    assert "Send exactly one credential" in answer.text
    assert ALICE[7:20] not in server_log(caplog) and BOB[7:20] not in server_log(caplog)
    assert access_log(tmp_path) == []


# 4. Sessions per token, and the sessions of rejected tokens ----------------------------------------


async def _open_session(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/mcp", json=INIT, headers=bearer(token))


async def test_a_token_at_its_session_cap_is_refused_and_other_tokens_are_not(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with serving(http_settings(sandbox, tmp_path, max_sessions_per_token=2)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            first, second = [await _open_session(http, ALICE) for _ in range(2)]
            third = await _open_session(http, ALICE)
            async with http.stream("GET", "/sse", headers=bearer(ALICE)) as sse:
                sse_status, sse_text = sse.status_code, (await sse.aread()).decode()
            other = await _open_session(http, BOB)
            closed = await http.delete(
                "/mcp", headers={**bearer(ALICE), "mcp-session-id": first.headers["mcp-session-id"]}
            )
            again = await _open_session(http, ALICE)

    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429
    assert "already has 2 MCP sessions open" in third.text
    assert "MCP_CI_MAX_SESSIONS_PER_TOKEN=2" in third.text and "DELETE /mcp" in third.text
    assert third.headers["retry-after"] == "30"
    assert (sse_status, "already has 2" in sse_text) == (429, True)  # SSE streams count with sessions
    assert other.status_code == 200 and "mcp-session-id" in other.headers
    assert closed.status_code == 200
    assert again.status_code == 200


@asynccontextmanager
async def _event_stream(
    http: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> AsyncIterator[httpx.Response]:
    async with http.stream("GET", url, headers={**headers, "accept": "text/event-stream"}) as response:
        assert response.status_code == 200, response.status_code
        yield response


async def _ended(response: httpx.Response, within_s: float) -> bool:
    with anyio.move_on_after(within_s):
        async for _ in response.aiter_bytes():
            pass
        return True
    return False


def _call(request_id: int, name: str) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": name, "arguments": {}},
    }


async def test_the_sessions_of_a_token_infrabox_rejects_are_closed_and_it_is_refused(
    sandbox: SandboxHandle, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO), serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            opened = await _open_session(http, MADE_UP)
            session = {**bearer(MADE_UP), "mcp-session-id": opened.headers["mcp-session-id"]}
            ready = {"jsonrpc": "2.0", "method": "notifications/initialized"}
            assert (await http.post("/mcp", json=ready, headers=session)).status_code == 202
            alice = await _open_session(http, ALICE)
            async with (
                _event_stream(http, "/mcp", session) as standalone,
                _event_stream(http, "/sse", bearer(MADE_UP)) as sse,
            ):
                answer = await http.post("/mcp", json=_call(2, "list_projects"), headers=session)
                streamable_ended = await _ended(standalone, within_s=5)
                sse_ended = await _ended(sse, within_s=5)
            refused = await _open_session(http, MADE_UP)
            reused = await http.post("/mcp", json=_call(3, "whoami"), headers=session)
            alice_session = {**bearer(ALICE), "mcp-session-id": alice.headers["mcp-session-id"]}
            assert (await http.post("/mcp", json=ready, headers=alice_session)).status_code == 202
            alice_call = await http.post("/mcp", json=_call(2, "list_projects"), headers=alice_session)

    assert "InfraBox rejected your token (sha256:" in answer.text  # the call that found out gets its answer
    assert "valid token of your own" in answer.text  # the caller must act: their header is at fault
    assert "INFRABOX_MCP_TOKEN" not in answer.text and "operator" not in answer.text
    assert streamable_ended and sse_ended
    for later in (refused, reused):
        assert later.status_code == 401
        assert later.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert "InfraBox rejected this token (sha256:" in later.text
        assert "Create a new MCP token in the InfraBox UI" in later.text
    assert alice_call.status_code == 200 and '"isError":false' in alice_call.text.replace(" ", "")
    assert any("closed its 2 session(s) and stream(s)" in r.getMessage() for r in caplog.records)
    assert MADE_UP[7:20] not in server_log(caplog)


# 5. Half-open connections --------------------------------------------------------------------------


def _half_open(base: str, count: int) -> list[socket.socket]:
    host, port = base.removeprefix("http://").split(":")
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)))
        sock.sendall(b"GET /healthz HT")  # half a request line, then silence
        sockets.append(sock)
    return sockets


def _closed_by_server(sock: socket.socket, within_s: float) -> bool:
    sock.settimeout(within_s)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


async def test_with_1100_half_open_connections_healthz_still_answers(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    settings = http_settings(sandbox, tmp_path, header_timeout=2.0)  # MCP_CI_MAX_CONNECTIONS: default 1000
    with serving(settings) as base:
        sockets = _half_open(base, 1100)
        try:
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                health = await http.get("/healthz")  # before: no answer at all
            dropped = sum(_closed_by_server(sock, 0.01) for sock in sockets[:100])
        finally:
            for sock in sockets:
                sock.close()

    assert health.status_code == 200
    assert dropped >= 99  # the oldest idle connections made room (one may still be closing)


async def test_a_connection_that_does_not_finish_its_request_head_is_dropped_after_the_header_timeout(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    with serving(http_settings(sandbox, tmp_path, header_timeout=2.0, max_connections=50)) as base:
        started = time.monotonic()
        sockets = _half_open(base, 200)
        try:
            newest = sockets[-20:]
            still_open_early = [not _closed_by_server(sock, 0.01) for sock in newest]
            early_s = time.monotonic() - started
            async with httpx.AsyncClient(base_url=base, timeout=5) as http:
                health = await http.get("/healthz")
            closed_later = [_closed_by_server(sock, 4.0) for sock in newest]
            evicted = [_closed_by_server(sock, 0.5) for sock in sockets[:100]]
        finally:
            for sock in sockets:
                sock.close()

    assert health.status_code == 200
    # Within the cap and the timeout: kept (on a machine too slow to look within the timeout, unknowable).
    assert early_s >= 2.0 or all(still_open_early)
    assert all(closed_later)  # then dropped by the header timeout
    assert all(evicted)  # beyond the cap: the oldest idle ones went first, at once


# 6. Malformed bodies -------------------------------------------------------------------------------

HUGE_ID = b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}'
MALFORMED = [
    ("invalid JSON", b'{"jsonrpc":"2.0",', "application/json", 400),
    ("not UTF-8", b"\xff\xfe\x00{", "application/json", 400),
    ("JSON, not JSON-RPC", b'{"hello":"world"}', "application/json", 400),
    ("a batch", b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', "application/json", 400),
    ("wrong content type", json.dumps(INIT).encode(), "text/plain", 415),
    ("empty body", b"", "application/json", 400),
    ("a huge numeric id", HUGE_ID, "application/json", 400),
    (
        "a long string id",
        b'{"jsonrpc":"2.0","id":"' + b"x" * 5000 + b'","method":"ping"}',
        "application/json",
        400,
    ),
    ("a boolean id", b'{"jsonrpc":"2.0","id":true,"method":"ping"}', "application/json", 400),
    (
        "deeply nested",
        b'{"jsonrpc":"2.0","id":1,"method":"ping","params":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "application/json",
        400,
    ),
]


async def _sse_message_url(lines: AsyncIterator[str]) -> str:
    async for line in lines:
        if line.startswith("data: /messages/"):
            return line.removeprefix("data: ")
    raise AssertionError("no endpoint event")


@pytest.mark.parametrize(("case", "body", "content_type", "status"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_a_malformed_body_is_a_4xx_on_every_transport_logged_as_one_line(
    case: str,
    body: bytes,
    content_type: str,
    status: int,
    sandbox: SandboxHandle,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = {**bearer(ALICE), "content-type": content_type}
    with caplog.at_level(logging.INFO), serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            caplog.clear()
            on_mcp = await http.post("/mcp", content=body, headers=headers)
            mcp_lines = server_lines(caplog)
            async with http.stream("GET", "/sse", headers=bearer(ALICE)) as stream:
                lines = stream.aiter_lines()  # kept referenced: a dropped iterator would close the stream
                url = await _sse_message_url(lines)
                caplog.clear()
                on_sse = await http.post(url, content=body, headers=headers)
                sse_lines = server_lines(caplog)
                ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
                still_served = await http.post(url, json=ping, headers=bearer(ALICE))

    for answer in (on_mcp, on_sse):
        assert answer.status_code == status, (answer.status_code, answer.text[:200])
        assert answer.json()["error"]["message"].startswith("Malformed request: ")
    for logged in (mcp_lines, sse_lines):
        assert len(logged) == 1, [r.getMessage() for r in logged]
        [line] = logged
        assert line.exc_info is None and "Traceback" not in line.getMessage()
        assert line.getMessage().startswith("refused POST /") and ALICE[7:20] not in line.getMessage()
        assert len(line.getMessage()) < 300
    assert "Traceback" not in caplog.text
    assert still_served.status_code == 202
