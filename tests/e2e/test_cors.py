"""CORS, header by header, for every HTTP endpoint: preflights before authentication, headers on every answer.

The server runs on a real uvicorn (loopback), the sandbox stands in for InfraBox; requests are what a
browser sends for a page on another origin.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from mcp_ci_tools.cors import ALLOWED_REQUEST_HEADERS, OriginAllowList
from mcp_ci_tools.sandbox import SANDBOX_TOKENS, start_in_thread
from tests.e2e.test_http import INIT, MCP_HEADERS, http_settings, serving

ALICE = SANDBOX_TOKENS["trigger"].token
PAGE = "http://127.0.0.1:5173"  # a dev server on another loopback port: allowed without configuration
CHAT = "https://chat.example.com"  # allowed by --allowed-origin
EVIL = "https://evil.example"
ENDPOINTS = ["/mcp", "/sse", "/messages/", "/healthz", "/readyz"]
EXPOSED = "Mcp-Session-Id, Mcp-Protocol-Version, WWW-Authenticate, Retry-After"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the module: these requests change nothing a later one could see."""
    tmp_path = tmp_path_factory.mktemp("cors")
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as sandbox:
        settings = http_settings(sandbox, tmp_path, allowed_origins=(CHAT,), max_body_bytes=4096)
        with serving(settings) as url:
            yield url


def preflight(
    base: str, path: str, origin: str, method: str = "POST", headers: str | None = None
) -> httpx.Response:
    request_headers = {"Origin": origin, "Access-Control-Request-Method": method}
    request_headers["Access-Control-Request-Headers"] = (
        headers
        if headers is not None
        else "authorization, content-type, mcp-protocol-version, mcp-session-id"
    )
    return httpx.options(base + path, headers=request_headers)


def cors_headers(response: httpx.Response) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.startswith("access-control-")}


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("origin", [PAGE, CHAT])
def test_a_preflight_from_an_allowed_origin_is_answered_before_the_token_check(
    base: str, path: str, origin: str
) -> None:
    response = preflight(base, path, origin)

    assert response.status_code == 204
    assert response.content == b""
    assert cors_headers(response) == {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": "GET, POST, DELETE, OPTIONS",
        "access-control-allow-headers": ", ".join(ALLOWED_REQUEST_HEADERS),
        "access-control-max-age": "600",
    }
    assert response.headers["vary"] == "Origin"


def test_the_allowed_request_headers_cover_both_protocol_eras(base: str) -> None:
    allowed = preflight(base, "/mcp", PAGE).headers["access-control-allow-headers"].split(", ")

    assert {"authorization", "content-type", "accept", "last-event-id"} <= set(allowed)
    assert {"mcp-protocol-version", "mcp-session-id", "mcp-method", "mcp-name"} <= set(allowed)


def test_a_preflight_for_a_parameter_header_allows_it(base: str) -> None:
    response = preflight(base, "/mcp", PAGE, headers="authorization, mcp-param-project")

    assert response.status_code == 204
    assert response.headers["access-control-allow-headers"].endswith(", mcp-param-project")


@pytest.mark.parametrize("path", ENDPOINTS)
def test_a_preflight_from_another_origin_gets_403_and_no_cors_header(base: str, path: str) -> None:
    response = preflight(base, path, EVIL)

    assert response.status_code == 403
    assert cors_headers(response) == {}
    assert "--allowed-origin" in response.text


@pytest.mark.parametrize(
    ("origin", "why"),
    [
        ("http://127.0.0.1:5173.evil.example", "a port pattern matches digits only"),
        ("http://127.0.0.1.evil.example:80", "a host is not a prefix"),
        ("http://127.0.0.1:", "a port pattern needs a port"),
        (CHAT + "/", "an origin has no path"),
        ("null", "sandboxed frames send null"),
    ],
)
def test_origins_that_only_look_allowed_are_refused(base: str, origin: str, why: str) -> None:
    assert preflight(base, "/mcp", origin).status_code == 403, why


def test_a_preflight_for_a_method_or_header_not_served_is_refused(base: str) -> None:
    put = preflight(base, "/mcp", PAGE, method="PUT")
    cookie = preflight(base, "/mcp", PAGE, headers="authorization, x-forwarded-user")

    assert put.status_code == cookie.status_code == 403
    assert cors_headers(put) == cors_headers(cookie) == {}
    assert "'PUT'" in put.text and "x-forwarded-user" in cookie.text


def test_a_401_is_readable_by_the_page_with_its_www_authenticate(base: str) -> None:
    response = httpx.post(base + "/mcp", json=INIT, headers={**MCP_HEADERS, "Origin": PAGE})

    assert response.status_code == 401
    assert cors_headers(response) == {
        "access-control-allow-origin": PAGE,
        "access-control-expose-headers": EXPOSED,
    }
    assert "Origin" in response.headers["vary"]
    assert "www-authenticate" in response.headers


def test_a_new_session_exposes_its_session_id_to_the_page(base: str) -> None:
    headers = {**MCP_HEADERS, "Origin": CHAT, "Authorization": f"Bearer {ALICE}"}
    response = httpx.post(base + "/mcp", json=INIT, headers=headers)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == CHAT
    assert "Mcp-Session-Id" in response.headers["access-control-expose-headers"].split(", ")
    assert response.headers["mcp-session-id"]


def test_an_oversized_body_gets_a_413_the_page_can_read(base: str) -> None:
    headers = {**MCP_HEADERS, "Origin": PAGE, "Authorization": f"Bearer {ALICE}"}
    response = httpx.post(base + "/mcp", content=b"{" + b" " * 8192 + b"}", headers=headers)

    assert response.status_code == 413
    assert response.headers["access-control-allow-origin"] == PAGE


def test_health_answers_carry_cors_headers(base: str) -> None:
    response = httpx.get(base + "/healthz", headers={"Origin": PAGE})

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PAGE


def test_a_request_from_another_origin_gets_the_origin_check_403_and_no_cors_header(base: str) -> None:
    headers = {**MCP_HEADERS, "Origin": EVIL, "Authorization": f"Bearer {ALICE}"}
    response = httpx.post(base + "/mcp", json=INIT, headers=headers)

    assert response.status_code == 403
    assert cors_headers(response) == {}


def test_a_request_without_origin_gets_no_cors_header(base: str) -> None:
    response = httpx.post(base + "/mcp", json=INIT, headers=MCP_HEADERS)

    assert response.status_code == 401
    assert cors_headers(response) == {}


def test_an_options_request_without_a_preflight_method_is_not_a_preflight(base: str) -> None:
    response = httpx.options(base + "/mcp", headers={"Origin": PAGE})

    assert response.status_code != 204
    assert response.headers["access-control-allow-origin"] == PAGE  # an actual request of an allowed origin


def test_the_allow_list_matches_as_the_transport_security_does() -> None:
    origins = OriginAllowList(["http://127.0.0.1:*", "https://chat.example.com"])

    assert "http://127.0.0.1:5173" in origins
    assert "https://chat.example.com" in origins
    assert "https://chat.example.com:443" not in origins
    assert "http://127.0.0.1:5173/" not in origins
    assert "http://127.0.0.1:٣" not in origins  # isdecimal() is True for Arabic-Indic digits; still refused
