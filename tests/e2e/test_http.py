"""Streamable HTTP and SSE against a real uvicorn on loopback, the sandbox as InfraBox, many callers."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server import MCPServer

from mcp_ci_tools.config import Settings
from mcp_ci_tools.http_app import build_http_app, http_stack, uvicorn_config
from mcp_ci_tools.sandbox import SANDBOX_TOKENS, SEED, SandboxHandle, start_in_thread
from mcp_ci_tools.sandbox import db as sandbox_db
from mcp_ci_tools.server import build_server
from tests.conftest import text_of

pytestmark = pytest.mark.anyio

ALICE = SANDBOX_TOKENS["trigger"].token  # may trigger: payments-service, web-frontend
CAROL = SANDBOX_TOKENS["single_project"].token  # may trigger: payments-service only
BOB = SANDBOX_TOKENS["read_only"].token  # no trigger permission at InfraBox
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "probe", "version": "0"},
    },
}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


@contextmanager
def serving(settings: Settings, server: MCPServer | None = None) -> Iterator[str]:
    """Our HTTP app (of `server`, else one built from `settings`) on a free loopback port, in a thread, served
    as production serves it; yields its base URL."""
    mcp = server if server is not None else build_server(settings)
    app, _ = http_stack(build_http_app(mcp, settings), settings)
    config = uvicorn_config(app, settings, port=0, lifespan="auto", timeout_graceful_shutdown=1)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(10)


def http_settings(sandbox: SandboxHandle, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "infrabox_url": sandbox.url,
        "transport": "http",
        "allow_trigger": True,
        "audit_log": tmp_path / "audit.jsonl",
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def connect(base: str, transport: str, token: str, mode: str = "auto") -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"}
    if transport == "streamable-http":
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(streamable_http_client(base + "/mcp", http_client=http), mode=mode) as client,
        ):
            yield client
    else:
        async with Client(sse_client(base + "/sse", headers=headers, timeout=30), mode=mode) as client:
            yield client


def access_log(tmp_path: Path) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(tmp_path / "sandbox.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM mcp_access_log ORDER BY id")]


def token_id(token: str) -> str:
    return token[len("ib_mcp_") :][:16]


def audit(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]


def fingerprint(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:12]


# Every tool, both transports, both eras ----------------------------------------------------------------

TOOL_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_projects", {}),
    ("list_builds", {"project_id": SEED.payments, "status": "failure"}),
    ("get_build", {"project_id": SEED.payments, "build_id": SEED.failed_build}),
    ("get_job", {"project_id": SEED.payments, "job_id": SEED.failed_test_job}),
    ("get_job_log", {"project_id": SEED.payments, "job_id": SEED.failed_test_job, "tail_lines": 20}),
    ("get_test_results", {"project_id": SEED.payments, "job_id": SEED.failed_test_job}),
    ("diagnose_build", {"project_id": SEED.payments, "build_id": SEED.failed_build}),
    ("whoami", {}),
    ("wait_for_build", {"project_id": SEED.payments, "build_id": SEED.green_build, "timeout_s": 5}),
    ("rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}),
    ("restart_job", {"project_id": SEED.payments, "job_id": SEED.failed_test_job}),
    ("restart_build", {"project_id": SEED.payments, "build_id": SEED.failed_build}),
    ("abort_build", {"project_id": SEED.payments, "build_id": SEED.running_build}),
    ("abort_job", {"project_id": SEED.frontend, "job_id": SEED.frontend_e2e_job}),
]


@pytest.mark.parametrize("transport", ["streamable-http", "sse"])
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_tool_works_over_both_transports_and_eras(transport, mode, sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with connect(base, transport, ALICE, mode) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            results = {name: await client.call_tool(name, args) for name, args in TOOL_CALLS}

    assert names == {name for name, _ in TOOL_CALLS}
    failed = {name: text_of(r) for name, r in results.items() if r.is_error}
    assert failed == {}
    assert results["whoami"].structured_content["token_fingerprint"] == fingerprint(ALICE)
    assert results["restart_job"].structured_content["jobs_restarted"] == 2
    assert {row["token_id"] for row in access_log(tmp_path)} == {token_id(ALICE)}


# Callers are kept apart ---------------------------------------------------------------------------------


async def test_two_callers_have_separate_budgets_permissions_and_audit(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path, trigger_per_minute=2, dedupe_seconds=0)) as base:
        async with (
            connect(base, "streamable-http", ALICE) as alice,
            connect(base, "streamable-http", CAROL) as carol,
            connect(base, "sse", BOB) as bob,
        ):
            abort = {"project_id": SEED.payments, "job_id": SEED.running_test_job}
            alice_calls = [await alice.call_tool("abort_job", abort) for _ in range(3)]
            carol_call = await carol.call_tool("abort_job", abort)
            bob_first = await bob.call_tool("abort_job", abort)
            bob_again = await bob.call_tool("abort_job", abort)
            carol_after_bob = await carol.call_tool("abort_job", abort)
            alice_who = (await alice.call_tool("whoami", {})).structured_content
            bob_who = (await bob.call_tool("whoami", {})).structured_content

    assert [r.is_error for r in alice_calls] == [False, False, True]
    assert "Trigger budget used up" in text_of(alice_calls[2])
    assert carol_call.is_error is False and carol_after_bob.is_error is False
    assert "does not have trigger permission" in text_of(bob_first)
    assert "answered earlier" in text_of(bob_again)
    assert alice_who["trigger_permission"]["allowed"] is True
    assert bob_who["trigger_permission"]["allowed"] is False
    assert alice_who["trigger_budget"]["remaining"] == 0
    records = audit(tmp_path)
    by_token = {fp: [r for r in records if r["token"] == fp] for fp in map(fingerprint, (ALICE, CAROL, BOB))}
    assert sum(r["event"] == "attempt" for r in by_token[fingerprint(ALICE)]) == 2
    assert sum(r["event"] == "attempt" for r in by_token[fingerprint(CAROL)]) == 2
    assert [r.get("reason") for r in by_token[fingerprint(BOB)] if r["tool"] == "abort_job"] == [
        None,
        "no_trigger_permission",
        "trigger_not_allowed",
    ]
    sent = [(row["token_id"], row["status"]) for row in access_log(tmp_path) if row["status"] != "attempt"]
    assert sent.count((token_id(ALICE), "success")) == 2
    assert sent.count((token_id(CAROL), "success")) == 2
    assert sent.count((token_id(BOB), "forbidden")) == 1


async def test_read_budgets_are_per_caller(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path, read_per_minute=2)) as base:
        async with (
            connect(base, "streamable-http", ALICE) as alice,
            connect(base, "streamable-http", CAROL) as carol,
        ):
            alice_calls = [await alice.call_tool("list_projects", {}) for _ in range(3)]
            carol_call = await carol.call_tool("list_projects", {})

    assert [r.is_error for r in alice_calls] == [False, False, True]
    assert "Read budget 'list_projects' used up" in text_of(alice_calls[2])
    assert carol_call.is_error is False


async def test_with_trigger_off_the_server_is_read_only_for_everyone(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path, allow_trigger=False)) as base:
        async with connect(base, "streamable-http", ALICE) as alice:
            refused = await alice.call_tool(
                "rerun_job", {"project_id": SEED.payments, "job_id": SEED.unstable_test_job}
            )
            read = await alice.call_tool("list_projects", {})

    assert refused.is_error and "no trigger permission" in text_of(refused)
    assert read.is_error is False
    assert all(row["method"] == "GET" for row in access_log(tmp_path))


async def test_a_streamable_session_cannot_be_used_with_another_token(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            opened = await http.post(
                "/mcp", json=INIT, headers={**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
            )
            session = opened.headers["mcp-session-id"]
            call = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "list_projects", "arguments": {}},
            }
            hijack = await http.post(
                "/mcp",
                json=call,
                headers={
                    **MCP_HEADERS,
                    "authorization": f"Bearer {BOB}",
                    "mcp-session-id": session,
                    "mcp-protocol-version": "2025-11-25",
                },
            )

    assert opened.status_code == 200
    assert hijack.status_code == 404
    assert access_log(tmp_path) == []


async def test_an_sse_message_url_cannot_be_used_with_another_token(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path, transport="sse")) as base:
        async with (
            httpx.AsyncClient(base_url=base, timeout=10) as http,
            http.stream("GET", "/sse", headers={"authorization": f"Bearer {ALICE}"}) as stream,
        ):
            endpoint = None
            lines = stream.aiter_lines()  # kept referenced: a dropped iterator would close the stream
            async for line in lines:
                if line.startswith("data: /messages/"):
                    endpoint = line.removeprefix("data: ")
                    break
            assert endpoint
            hijack = await http.post(endpoint, json=INIT, headers={"authorization": f"Bearer {BOB}"})
            owner = await http.post(endpoint, json=INIT, headers={"authorization": f"Bearer {ALICE}"})

    assert hijack.status_code == 404
    assert owner.status_code == 202


# Authentication and transport security -------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Basic YWxpY2U6cHc=", "Bearer not-an-infrabox-token", f"Token {ALICE}", f"Bearer {ALICE.upper()}"],
    ids=["none", "basic", "foreign-bearer", "other-scheme", "malformed"],
)
@pytest.mark.parametrize("path", ["/mcp", "/sse"])
async def test_requests_without_a_valid_token_get_401_and_nothing_reaches_infrabox(
    authorization, path, sandbox, tmp_path
) -> None:
    headers = dict(MCP_HEADERS)
    if authorization:
        headers["authorization"] = authorization
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = (
                await http.post(path, json=INIT, headers=headers)
                if path == "/mcp"
                else await http.get(path, headers=headers)
            )

    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert access_log(tmp_path) == []


@pytest.mark.parametrize(
    ("authorization", "status", "challenge", "says"),
    [
        (None, 401, 'Bearer realm="mcp-ci-tools"', "No credentials: send your InfraBox MCP token as"),
        ("Basic YWxpY2U6cHc=", 401, 'Bearer realm="mcp-ci-tools"', "This server takes Bearer tokens only"),
        ("Bearer", 400, 'Bearer realm="mcp-ci-tools", error="invalid_request"', "header is malformed"),
        (f"Bearer {ALICE} extra", 400, 'Bearer realm="mcp-ci-tools", error="invalid_request"', "malformed"),
        (
            "Bearer not-a-token",
            401,
            'Bearer realm="mcp-ci-tools", error="invalid_token"',
            "not an InfraBox MCP",
        ),
        (
            f"Bearer {ALICE.upper()}",
            401,
            'Bearer realm="mcp-ci-tools", error="invalid_token"',
            "48 lowercase",
        ),
    ],
    ids=["none", "basic", "bearer-alone", "bearer-extra", "wrong-form", "upper-case"],
)
async def test_a_refusal_says_what_was_wrong_with_rfc_6750_semantics(
    authorization, status, challenge, says, sandbox, tmp_path
) -> None:
    headers = dict(MCP_HEADERS)
    if authorization:
        headers["authorization"] = authorization
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.post("/mcp", json=INIT, headers=headers)
            discovery = await http.get("/.well-known/oauth-protected-resource")

    assert answer.status_code == status
    assert answer.headers["www-authenticate"].startswith(challenge)
    assert (
        "resource_metadata" not in answer.headers["www-authenticate"]
    )  # no OAuth metadata that does not exist
    assert discovery.status_code == 404
    body = answer.json()
    assert says in body["error_description"]
    if "invalid_token" not in challenge:  # the caller is told what to send
        assert "'Authorization: Bearer ib_mcp_<48 hex digits>'" in body["error_description"]
    assert ("error" in body) == ("error=" in challenge)  # no error code when no bearer credentials came
    assert ALICE not in answer.text and ALICE.upper() not in answer.text  # never echoed


async def test_a_token_in_the_query_string_is_never_accepted(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.post(f"/mcp?access_token={ALICE}", json=INIT, headers=MCP_HEADERS)

    # Refused before authentication, with or without a header (tests/e2e/test_http_hostile.py).
    assert answer.status_code == 400
    assert "Authorization: Bearer" in answer.text and ALICE not in answer.text


async def test_the_bearer_scheme_name_is_case_insensitive(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.post(
                "/mcp", json=INIT, headers={**MCP_HEADERS, "authorization": f"bearer {ALICE}"}
            )

    assert answer.status_code == 200


async def test_healthz_needs_no_token(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with httpx.AsyncClient() as http:
            answer = await http.get(base + "/healthz")

    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"host": "evil.example"}, 421),
        ({"origin": "http://evil.example"}, 403),
        ({"host": "ci-tools.internal"}, 200),
        ({"host": "ci-tools.internal:8443"}, 200),
        ({"host": "other.internal:9000"}, 200),
        ({"origin": "https://dash.example.com"}, 200),
    ],
)
async def test_host_and_origin_are_checked_against_the_allow_lists(
    headers, status, sandbox, tmp_path
) -> None:
    settings = http_settings(
        sandbox,
        tmp_path,
        allowed_hosts=["ci-tools.internal", "ci-tools.internal:8443,other.internal:*"],
        allowed_origins=["https://dash.example.com"],
    )
    with serving(settings) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            answer = await http.post(
                "/mcp", json=INIT, headers={**MCP_HEADERS, "authorization": f"Bearer {ALICE}", **headers}
            )

    assert answer.status_code == status


async def test_a_body_over_the_limit_is_refused_and_the_server_keeps_serving(sandbox, tmp_path) -> None:
    with serving(http_settings(sandbox, tmp_path, max_body_bytes=4096)) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            headers = {**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
            big = await http.post("/mcp", content=b'{"pad":"' + b"x" * 10_000 + b'"}', headers=headers)
            after = await http.post("/mcp", json=INIT, headers=headers)

    assert big.status_code == 413
    assert after.status_code == 200


# Load ------------------------------------------------------------------------------------------------------


def _fifty_callers(tmp_path: Path) -> list[str]:
    tokens = []
    with closing(sqlite3.connect(tmp_path / "sandbox.sqlite3")) as conn:
        for n in range(50):
            token = "ib_mcp_" + hashlib.sha256(f"caller-{n}".encode()).hexdigest()[:48]
            user_id = f"f0000000-0000-4000-8000-{n:012d}"
            sandbox_db.insert_user(
                conn, user_id=user_id, username=f"user{n}", name=f"User {n}", email=f"u{n}@x"
            )
            sandbox_db.add_collaborator(conn, user_id=user_id, project_id=SEED.payments)
            sandbox_db.insert_token(conn, token=token, user_id=user_id, created_at=time.time())
            tokens.append(token)
        conn.commit()
    return tokens


async def test_fifty_concurrent_callers_with_their_own_tokens_read_without_error(sandbox, tmp_path) -> None:
    tokens = _fifty_callers(tmp_path)
    errors: list[str] = []
    with serving(http_settings(sandbox, tmp_path)) as base:

        async def reader(token: str) -> None:
            async with connect(base, "streamable-http", token) as client:
                for name, args in TOOL_CALLS[:3]:
                    result = await client.call_tool(name, args)
                    if result.is_error:
                        errors.append(text_of(result))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for token in tokens:
                    group.start_soon(reader, token)

    assert errors == []
    seen = {row["token_id"] for row in access_log(tmp_path)}
    assert seen == {token_id(token) for token in tokens}
