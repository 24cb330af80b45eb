"""InfraBoxClient alone: status codes → the error tree, both body shapes, what is retried."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest

from mcp_ci_tools.client import (
    Forbidden,
    InfraBoxClient,
    InfraBoxError,
    InfraBoxUnreachable,
    NotFound,
    NotPossibleNow,
    OutcomeUnknown,
    RateLimited,
    TokenRejected,
    UpstreamBroken,
)
from tests.conftest import BUILD_ID, INFRABOX_URL, JOB_ID, NEW_ID, PROJECT_ID, TOKEN, FakeClock

pytestmark = pytest.mark.anyio

P, B, J = uuid.UUID(PROJECT_ID), uuid.UUID(BUILD_ID), uuid.UUID(JOB_ID)


def client_answering(*responses: httpx.Response | Exception, sleeps: list[float] | None = None):
    """A client whose transport plays `responses` in order and records the requests it got."""
    queue = list(responses)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    async def sleep(seconds: float) -> None:
        (sleeps if sleeps is not None else []).append(seconds)

    client = InfraBoxClient(
        INFRABOX_URL, TOKEN, transport=httpx.MockTransport(handler), sleep=sleep, clock=FakeClock()
    )
    return client, seen


async def test_restart_build_posts_to_the_contract_path() -> None:
    client, seen = client_answering(httpx.Response(200, json={"build_id": NEW_ID, "restart_counter": 3}))

    answer = await client.restart_build(P, B, request_id="r-1")

    assert (answer.new_build_id, answer.restart_counter, answer.http_status) == (NEW_ID, 3, 200)
    [request] = seen
    assert (request.method, str(request.url)) == (
        "POST",
        f"{INFRABOX_URL}/api/v1/mcp/projects/{PROJECT_ID}/builds/{BUILD_ID}/restart",
    )
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-request-id"] == "r-1"


async def test_a_base_url_with_a_path_prefix_is_kept() -> None:
    seen: list[httpx.Request] = []
    client = InfraBoxClient(
        "https://ci.example/infrabox/",
        TOKEN,
        transport=httpx.MockTransport(_recording(seen)),
    )

    await client.abort_job(P, J, request_id="r")

    assert seen[0].url.path == f"/infrabox/api/v1/mcp/projects/{PROJECT_ID}/jobs/{JOB_ID}/abort"


async def test_abort_build_reads_the_count() -> None:
    client, _ = client_answering(httpx.Response(200, json={"message": "Aborted all jobs", "jobs_aborted": 7}))

    answer = await client.abort_build(P, B, request_id="r")

    assert (answer.jobs_aborted, answer.message) == (7, "Aborted all jobs")


async def test_fields_of_the_wrong_type_are_ignored_not_trusted() -> None:
    client, _ = client_answering(httpx.Response(200, json={"build_id": "../../etc", "restart_counter": "2"}))

    answer = await client.restart_build(P, B, request_id="r")

    assert (answer.new_build_id, answer.restart_counter) == (None, None)


@pytest.mark.parametrize(
    ("status", "body", "error_type", "attributes"),
    [
        (
            401,
            {"message": "MCP token has been revoked"},
            TokenRejected,
            {"reason": "MCP token has been revoked"},
        ),
        (
            403,
            {"message": "this MCP token does not have trigger permission"},
            Forbidden,
            {"kind": "no_trigger_permission"},
        ),
        (
            403,
            {"message": "access to this project is not permitted for the current MCP token"},
            Forbidden,
            {"kind": "project_not_enabled"},
        ),
        (404, {"message": "The requested URL was not found on the server."}, NotFound, {"reason": None}),
        (400, {"message": "job has already been restarted", "status": 400}, NotPossibleNow, {}),
        (409, {"message": "conflict"}, NotPossibleNow, {"reason": "conflict"}),
        (422, {"message": "unprocessable"}, NotPossibleNow, {}),
        (429, {"message": "rate limit exceeded, please slow down"}, RateLimited, {"retry_after_s": 60}),
        (500, {"message": "Internal Server Error"}, OutcomeUnknown, {"status": 500}),
        (504, {}, OutcomeUnknown, {"reason": None}),
        (302, {}, UpstreamBroken, {"status": 302}),
        (405, {"message": "The method is not allowed for the requested URL."}, UpstreamBroken, {}),
    ],
)
async def test_each_status_maps_to_one_error(status, body, error_type, attributes) -> None:
    client, seen = client_answering(httpx.Response(status, json=body))

    with pytest.raises(InfraBoxError) as caught:
        await client.restart_job(P, J, request_id="r-9")

    assert type(caught.value) is error_type
    assert caught.value.request_id == "r-9"
    for name, value in attributes.items():
        assert getattr(caught.value, name) == value
    assert len(seen) == 1


async def test_retry_after_as_an_http_date_is_converted_to_seconds() -> None:
    clock = FakeClock()
    when = format_datetime(datetime.fromtimestamp(clock.now + 42, UTC), usegmt=True)
    client = InfraBoxClient(
        INFRABOX_URL,
        TOKEN,
        transport=httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": when})),
        clock=clock,
    )

    with pytest.raises(RateLimited) as caught:
        await client.rerun_job(P, J, request_id="r")

    assert caught.value.retry_after_s == 42


async def test_a_token_echoed_by_infrabox_is_masked_in_the_reason() -> None:
    client, _ = client_answering(httpx.Response(401, json={"message": f"bad token {TOKEN}"}))

    with pytest.raises(TokenRejected) as caught:
        await client.abort_job(P, J, request_id="r")

    assert TOKEN not in str(caught.value.reason)
    assert "[MASKED:infrabox-token]" in str(caught.value.reason)


async def test_a_huge_reason_is_shortened() -> None:
    client, _ = client_answering(httpx.Response(400, json={"message": "x" * 100_000}))

    with pytest.raises(NotPossibleNow) as caught:
        await client.rerun_job(P, J, request_id="r")

    assert len(caught.value.reason or "") <= 300


async def test_connect_errors_are_retried_three_times_with_jittered_backoff() -> None:
    sleeps: list[float] = []
    client, seen = client_answering(httpx.ConnectError("refused"), sleeps=sleeps)

    with pytest.raises(InfraBoxUnreachable):
        await client.restart_build(P, B, request_id="r")

    assert len(seen) == 3
    assert len(sleeps) == 2
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 1.5


async def test_a_pool_timeout_is_retried_and_can_succeed() -> None:
    client, seen = client_answering(
        httpx.PoolTimeout("busy"), httpx.Response(200, json={"message": "Successfully aborted job"})
    )

    answer = await client.abort_job(P, J, request_id="r")

    assert answer.message == "Successfully aborted job"
    assert len(seen) == 2


@pytest.mark.parametrize(
    "error",
    [
        httpx.ReadTimeout("slow"),
        httpx.WriteTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
async def test_a_write_that_may_have_been_sent_is_never_retried(error: Exception) -> None:
    client, seen = client_answering(error)

    with pytest.raises(OutcomeUnknown):
        await client.restart_job(P, J, request_id="r")

    assert len(seen) == 1


async def test_the_http_client_is_recreated_after_close() -> None:
    client, seen = client_answering(httpx.Response(200, json={}))
    await client.abort_job(P, J, request_id="r")
    await client.aclose()
    await client.open()

    await client.abort_job(P, J, request_id="r")

    assert len(seen) == 2


def _recording(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    """A transport handler that records each request and answers 200 {}."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    return handle
