"""The shared connection pool: opened by the first request, closed by aclose(), usable again only by open()."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable

import httpx
import pytest
import respx

from mcp_ci_tools.client import InfraBoxClient
from tests.conftest import API, BUILD_ID, INFRABOX_URL, JOB_ID, PROJECT_ID, TOKEN

pytestmark = pytest.mark.anyio

P, B, J = uuid.UUID(PROJECT_ID), uuid.UUID(BUILD_ID), uuid.UUID(JOB_ID)
ABORT = f"{API}/projects/{PROJECT_ID}/jobs/{JOB_ID}/abort"
BUILD = f"{API}/projects/{PROJECT_ID}/builds/{BUILD_ID}"


@pytest.fixture
def infrabox():
    with respx.mock(assert_all_called=False) as router:
        router.delete(ABORT).respond(200, json={"message": "Successfully aborted job"})
        router.get(BUILD).respond(200, json={"id": BUILD_ID})
        yield router


async def test_a_write_after_aclose_raises_and_sends_nothing(infrabox: respx.MockRouter) -> None:
    client = InfraBoxClient(INFRABOX_URL, TOKEN)
    await client.abort_job(P, J, request_id="r")
    await client.aclose()

    with pytest.raises(RuntimeError, match=r"closed; call open\(\) first"):
        await client.abort_job(P, J, request_id="r")

    assert infrabox.routes[0].call_count == 1


async def test_a_read_after_aclose_raises_and_sends_nothing(infrabox: respx.MockRouter) -> None:
    client = InfraBoxClient(INFRABOX_URL, TOKEN)
    await client.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.get_build(P, B, request_id="r")

    assert not infrabox.routes[1].called


async def test_open_after_aclose_sends_again(infrabox: respx.MockRouter) -> None:
    client = InfraBoxClient(INFRABOX_URL, TOKEN)
    await client.abort_job(P, J, request_id="r")
    await client.aclose()

    await client.open()
    answer = await client.abort_job(P, J, request_id="r")

    assert answer.message == "Successfully aborted job"
    assert infrabox.routes[0].call_count == 2


async def test_open_on_an_open_client_changes_nothing(infrabox: respx.MockRouter) -> None:
    client = InfraBoxClient(INFRABOX_URL, TOKEN)
    await client.open()
    await client.abort_job(P, J, request_id="r")

    await client.open()
    await client.abort_job(P, J, request_id="r")

    assert infrabox.routes[0].call_count == 2


async def test_closing_twice_is_harmless(infrabox: respx.MockRouter) -> None:
    client = InfraBoxClient(INFRABOX_URL, TOKEN)
    await client.abort_job(P, J, request_id="r")

    await client.aclose()
    await client.aclose()

    with pytest.raises(RuntimeError, match="closed"):
        await client.abort_job(P, J, request_id="r")


async def test_token_views_share_the_pool_and_whether_it_is_closed(infrabox: respx.MockRouter) -> None:
    base = InfraBoxClient(INFRABOX_URL)
    view = base.with_token(TOKEN)
    other = base.with_token(TOKEN.replace("0", "1"))
    await view.abort_job(P, J, request_id="r")

    await base.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await view.abort_job(P, J, request_id="r")
    await other.open()
    await view.abort_job(P, J, request_id="r")

    assert infrabox.routes[0].call_count == 2


def test_httpx_and_tenacity_stay_unloaded_until_the_first_request() -> None:
    script = (
        "import anyio, sys\n"
        "from mcp_ci_tools.client import InfraBoxClient\n"
        f"client = InfraBoxClient({INFRABOX_URL!r}, {TOKEN!r})\n"
        "async def cycle():\n"
        "    await client.open()\n"
        "    await client.aclose()\n"
        "    await client.open()\n"
        "anyio.run(cycle)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'httpx', 'httpcore', 'tenacity', 'mcp'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"


async def test_a_client_built_over_a_transport_keeps_it_across_reopening() -> None:
    seen: list[httpx.Request] = []
    client = InfraBoxClient(
        INFRABOX_URL,
        TOKEN,
        transport=httpx.MockTransport(_recording(seen)),
    )
    await client.abort_job(P, J, request_id="r-1")
    await client.aclose()
    await client.open()

    await client.abort_job(P, J, request_id="r-2")

    assert [r.headers["x-request-id"] for r in seen] == ["r-1", "r-2"]


def _recording(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    """A transport handler that records each request and answers 200 {}."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return handle


async def test_a_cookie_infrabox_sets_for_one_token_is_never_sent_with_another_tokens_request() -> None:
    with respx.mock(assert_all_called=False) as router:
        build = router.get(BUILD)
        build.side_effect = [
            httpx.Response(200, json={"id": BUILD_ID}, headers={"Set-Cookie": "session=of-token-a; Path=/"}),
            httpx.Response(200, json={"id": BUILD_ID}),
        ]
        first = InfraBoxClient(INFRABOX_URL, TOKEN)
        other = first.with_token("ib_mcp_" + "f" * 48)
        await first.get_build(P, B, request_id="a")
        await other.get_build(P, B, request_id="b")

    assert [call.request.headers.get("cookie") for call in build.calls] == [None, None]
    assert build.calls[1].request.headers["authorization"] == "Bearer ib_mcp_" + "f" * 48


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "http://proxy.corp:3128"),
        ({"https_proxy": "http://proxy.corp:3128", "NO_PROXY": "infrabox.test"}, None),
        ({"ALL_PROXY": "socks5://proxy.corp:1080"}, "socks5://proxy.corp:1080"),
        ({"HTTP_PROXY": "http://proxy.corp:3128"}, None),  # for http:// only; InfraBox here is https
        ({}, None),
    ],
)
def test_requests_to_infrabox_take_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], expected: str | None
) -> None:
    from mcp_ci_tools.client._transport import _environment_proxy

    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert _environment_proxy(API + "/projects") == expected


def test_the_module_httpcore_asks_for_the_event_loop_is_installed() -> None:
    # httpcore imports sniffio several times a request; were it missing (anyio no longer brings it), each
    # of those imports would fail only after a search of sys.path.
    import importlib.util

    from httpcore._synchronization import current_async_library

    assert importlib.util.find_spec("sniffio") is not None
    with pytest.raises(Exception, match="unknown async library"):
        current_async_library()  # no event loop runs here: sniffio itself answers, and says so
