"""Every httpx transport failure becomes one of our errors (httpx's `test_httpcore_all_exceptions_mapped`).

A new httpx version that adds a TransportError subclass fails here until it is placed; a write is retried
only when the request certainly never left (ConnectError, ConnectTimeout, PoolTimeout).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from mcp_ci_tools.client import (
    InfraBoxClient,
    InfraBoxError,
    InfraBoxUnreachable,
    OutcomeUnknown,
    UpstreamBroken,
)
from tests.conftest import BUILD_ID, INFRABOX_URL, JOB_ID, PROJECT_ID, TOKEN, FakeClock

pytestmark = pytest.mark.anyio

P, B, J = uuid.UUID(PROJECT_ID), uuid.UUID(BUILD_ID), uuid.UUID(JOB_ID)
CERTAINLY_NOT_SENT = {httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout}


def _transport_errors() -> list[type[httpx.TransportError]]:
    found: list[type[httpx.TransportError]] = []
    pending: list[type[httpx.TransportError]] = [httpx.TransportError]
    while pending:
        error_type = pending.pop()
        if error_type.__module__.startswith("httpx") and error_type not in found:
            found.append(error_type)
        pending += error_type.__subclasses__()
    return sorted(found, key=lambda t: t.__name__)


TRANSPORT_ERRORS = _transport_errors()


def _failing_client(error_type: type[httpx.TransportError]) -> tuple[InfraBoxClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise error_type("boom", request=request)

    async def sleep(_: float) -> None:
        pass

    client = InfraBoxClient(
        INFRABOX_URL, TOKEN, transport=httpx.MockTransport(handler), sleep=sleep, clock=FakeClock()
    )
    return client, seen


def test_the_walk_finds_httpx_s_whole_tree() -> None:
    names = {t.__name__ for t in TRANSPORT_ERRORS}

    assert {"ReadTimeout", "WriteError", "RemoteProtocolError", "ProxyError", "UnsupportedProtocol"} <= names
    assert set(TRANSPORT_ERRORS) >= CERTAINLY_NOT_SENT


@pytest.mark.parametrize("error_type", TRANSPORT_ERRORS, ids=lambda t: t.__name__)
async def test_every_transport_error_maps_for_a_write(error_type: type[httpx.TransportError]) -> None:
    client, seen = _failing_client(error_type)

    with pytest.raises(InfraBoxError) as caught:
        await client.restart_job(P, J, request_id="r-w")

    not_sent = error_type in CERTAINLY_NOT_SENT
    assert type(caught.value) is (InfraBoxUnreachable if not_sent else OutcomeUnknown)
    assert isinstance(caught.value.__cause__, error_type)
    assert caught.value.request_id == "r-w"
    assert len(seen) == (3 if not_sent else 1)


@pytest.mark.parametrize("error_type", TRANSPORT_ERRORS, ids=lambda t: t.__name__)
async def test_every_transport_error_maps_for_a_read(error_type: type[httpx.TransportError]) -> None:
    client, seen = _failing_client(error_type)

    with pytest.raises(InfraBoxError) as caught:
        await client.get_build(P, B, request_id="r-r")

    not_sent = error_type in CERTAINLY_NOT_SENT
    assert type(caught.value) is (InfraBoxUnreachable if not_sent else UpstreamBroken)
    assert isinstance(caught.value.__cause__, error_type)
    assert caught.value.request_id == "r-r"
    assert len(seen) == 3


async def test_only_the_certainly_not_sent_errors_are_retried_for_writes() -> None:
    retried = set()
    for error_type in TRANSPORT_ERRORS:
        client, seen = _failing_client(error_type)
        with pytest.raises(InfraBoxError):
            await client.abort_build(P, B, request_id="r")
        if len(seen) > 1:
            retried.add(error_type)

    assert retried == CERTAINLY_NOT_SENT
