"""What a write answer says InfraBox created, for every answer type."""

from __future__ import annotations

import uuid

import httpx
import pytest

from mcp_ci_tools.client import (
    BuildAborted,
    BuildRestarted,
    InfraBoxClient,
    JobAborted,
    JobRerun,
    JobRestarted,
    WriteAnswer,
)
from tests.conftest import INFRABOX_URL, JOB_ID, NEW_ID, PROJECT_ID, TOKEN

pytestmark = pytest.mark.anyio

OTHER_ID = "22222222-3333-4444-8555-666666666666"

CASES = [
    (BuildRestarted(200, new_build_id=NEW_ID, restart_counter=2, message=None), [("build", NEW_ID)]),
    (BuildRestarted(200, new_build_id=None, restart_counter=None, message="ok"), []),
    (BuildAborted(200, jobs_aborted=3, message=None), []),
    (
        JobRestarted(200, jobs_restarted=2, new_job_ids=[NEW_ID, OTHER_ID]),
        [("job", NEW_ID), ("job", OTHER_ID)],
    ),
    (JobRestarted(200, jobs_restarted=None), []),
    (JobRerun(200, new_job_id=NEW_ID, message=None), [("job", NEW_ID)]),
    (JobRerun(200, new_job_id=None, message=None), []),
    (JobAborted(200, message="Successfully aborted job"), []),
    (WriteAnswer(202), []),
]


@pytest.mark.parametrize(("answer", "created"), CASES, ids=lambda v: type(v).__name__)
def test_created_names_what_infrabox_created(answer: WriteAnswer, created: list[tuple[str, str]]) -> None:
    assert answer.created() == created


def test_every_answer_type_is_covered() -> None:
    assert {type(answer) for answer, _ in CASES} == {WriteAnswer, *WriteAnswer.__subclasses__()}


async def test_a_restarted_job_reports_its_clone_first() -> None:
    body = {"job_id": OTHER_ID, "new_job_ids": [NEW_ID], "cloned_count": 2}
    client = InfraBoxClient(
        INFRABOX_URL, TOKEN, transport=httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    )

    answer = await client.restart_job(uuid.UUID(PROJECT_ID), uuid.UUID(JOB_ID), request_id="r")

    assert answer.created() == [("job", OTHER_ID), ("job", NEW_ID)]
