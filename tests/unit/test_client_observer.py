"""The client's observer seam: every attempt seen by its path template and ids, with its status or failure,
the observer's headers sent (never over the client's own), on every token's view."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from mcp_ci_tools.client import Attempt, InfraBoxClient, InfraBoxUnreachable
from tests.conftest import BUILD_ID, INFRABOX_URL, JOB_ID, NEW_ID, PROJECT_ID, TOKEN, FakeClock

pytestmark = pytest.mark.anyio

P, B, J = uuid.UUID(PROJECT_ID), uuid.UUID(BUILD_ID), uuid.UUID(JOB_ID)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, str], int, int | None, str | None]] = []

    @contextmanager
    def attempt(self, attempt: Attempt) -> Iterator[None]:
        attempt.headers["traceparent"] = f"attempt-{attempt.number}"
        attempt.headers["Authorization"] = "Bearer stolen"  # must not replace the client's own
        failure = None
        try:
            yield
        except Exception as error:
            failure = type(error).__name__
            raise
        finally:
            target = attempt.target
            self.seen.append(
                (target.method, target.template, dict(target.ids), attempt.number, attempt.status, failure)
            )


def client_with(
    recorder: Recorder, *answers: httpx.Response | Exception
) -> tuple[InfraBoxClient, list[dict[str, str]]]:
    """A client with `recorder` whose transport plays `answers`; the headers of each request as sent."""
    queue, sent = list(answers), []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(dict(request.headers))  # the request object is reused by the retries
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def no_sleep(seconds: float) -> None:
        return None

    base = InfraBoxClient(
        INFRABOX_URL,
        transport=httpx.MockTransport(handler),
        sleep=no_sleep,
        clock=FakeClock(),
        observer=recorder,
    )
    return base.with_token(TOKEN), sent


async def test_each_attempt_is_seen_by_template_and_ids_and_sends_the_observers_headers() -> None:
    recorder = Recorder()
    client, sent = client_with(
        recorder,
        httpx.ConnectError("refused"),
        httpx.Response(503),
        httpx.Response(
            200, json={"id": BUILD_ID, "build_number": 1, "state": "finished", "project_id": PROJECT_ID}
        ),
    )

    await client.get_build(P, B, request_id="r-1")

    template = "/api/v1/mcp/projects/{project_id}/builds/{build_id}"
    ids = {"project_id": PROJECT_ID, "build_id": BUILD_ID}
    assert recorder.seen == [
        ("GET", template, ids, 1, None, "ConnectError"),
        ("GET", template, ids, 2, 503, "_RetryableStatus"),
        ("GET", template, ids, 3, 200, None),
    ]
    assert [headers["traceparent"] for headers in sent] == ["attempt-1", "attempt-2", "attempt-3"]
    assert {headers["authorization"] for headers in sent} == {f"Bearer {TOKEN}"}


async def test_a_write_is_seen_once_with_its_template() -> None:
    recorder = Recorder()
    client, _ = client_with(recorder, httpx.Response(200, json={"build_id": NEW_ID}))

    await client.restart_job(P, J, request_id="r-1")

    assert recorder.seen == [
        (
            "POST",
            "/api/v1/mcp/projects/{project_id}/jobs/{job_id}/restart",
            {"project_id": PROJECT_ID, "job_id": JOB_ID},
            1,
            200,
            None,
        )
    ]


async def test_a_failure_after_the_retries_is_seen_on_each_attempt() -> None:
    recorder = Recorder()
    client, _ = client_with(recorder, *[httpx.ConnectError("refused")] * 3)

    with pytest.raises(InfraBoxUnreachable):
        await client.list_projects(request_id="r-1")

    assert [(seen[1], seen[3], seen[4], seen[5]) for seen in recorder.seen] == [
        ("/api/v1/mcp/projects", n, None, "ConnectError") for n in (1, 2, 3)
    ]
