"""Totality, by property: whatever InfraBox sends (body, headers, dates), a read or write through the public
`InfraBoxClient` ends in a result or an `InfraBoxError`, never anything else; timestamp parsing and
formatting never raise."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcp_ci_tools.client import InfraBoxClient, InfraBoxError, Job, WriteAnswer
from mcp_ci_tools.domain.timestamps import EARLIEST, LATEST, epoch_seconds, parse_timestamp, rfc3339
from tests.conftest import BUILD_ID, INFRABOX_URL, JOB_ID, PROJECT_ID, TOKEN
from tests.hostile_infrabox import Answer, HostileInfraBox, body

P, B, J = uuid.UUID(PROJECT_ID), uuid.UUID(BUILD_ID), uuid.UUID(JOB_ID)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = [
    "id",
    "name",
    "state",
    "build_id",
    "project_id",
    "start_date",
    "end_date",
    "message",
    "build_number",
    "restart_counter",
    "created_at",
    "status",
    "dependencies",
    "job-id",
    "on",
    "items",
    "total",
    "log",
    "new_job_id",
    "job_id",
    "new_job_ids",
    "jobs_restarted",
    "restart_counter",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from([BUILD_ID, JOB_ID, "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00", "+275760-09-13"]),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), children, max_size=6),
    ),
    max_leaves=30,
)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


raw_bodies = st.one_of(
    json_values.map(_dumps),
    st.binary(max_size=200),
    st.builds(lambda n: b"[" * n + b"]" * n, st.integers(0, 5000)),
    st.builds(
        lambda digits: b'{"id": "%s", "build_number": %s}' % (BUILD_ID.encode(), b"9" * digits),
        st.integers(1, 6000),
    ),
    st.sampled_from([b"<html>oops</html>", b"", b"null", b"1e400", b'"\\ud800"', b"NaN", b"[" * 100_000]),
)
statuses = st.sampled_from([200, 201, 204, 302, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504, 599])
header_text = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40),
    st.sampled_from(
        ["²", "9" * 5000, "Fri, 31 Dec 9999 23:59:59 GMT", "Mon, 01 Jan 0001 00:00:00 GMT", "-1", "0"]
    ),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Retry-After": header_text,
        "Content-Type": st.sampled_from(
            ["application/json", "text/html", "", "application/json; charset=latin-1"]
        ),
        "Content-Encoding": st.sampled_from(["identity", "gzip", "deflate", "br", "x-unknown", ""]),
    },
)

CALLS = {
    "get_build": lambda c: c.get_build(P, B, request_id="r"),
    "list_builds": lambda c: c.list_builds(P, request_id="r"),
    "list_jobs": lambda c: c.list_jobs(P, B, request_id="r"),
    "get_job": lambda c: c.get_job(P, J, request_id="r"),
    "get_job_log": lambda c: c.get_job_log(P, J, request_id="r"),
    "list_testruns": lambda c: c.list_testruns(P, J, request_id="r"),
    "list_projects": lambda c: c.list_projects(request_id="r"),
    "restart_build": lambda c: c.restart_build(P, B, request_id="r"),
    "abort_build": lambda c: c.abort_build(P, B, request_id="r"),
    "restart_job": lambda c: c.restart_job(P, J, request_id="r"),
    "rerun_job": lambda c: c.rerun_job(P, J, request_id="r"),
    "abort_job": lambda c: c.abort_job(P, J, request_id="r"),
}


def outcome(call: str, answer: Answer) -> object:
    """What `call` gives against `answer`: its result, or the InfraBoxError it raised (anything else fails)."""

    async def no_sleep(seconds: float) -> None:
        return None

    async def run() -> object:
        client = InfraBoxClient(INFRABOX_URL, TOKEN, transport=HostileInfraBox(answer), sleep=no_sleep)
        try:
            return await CALLS[call](client)
        except InfraBoxError as error:
            assert str(error), "an error the model reads must say something"
            return error
        finally:
            await client.aclose()

    return anyio.run(run)


@PROPERTY
@given(call=st.sampled_from(sorted(CALLS)), raw=raw_bodies, status=statuses, extra=headers)
def test_any_answer_is_a_result_or_an_infrabox_error(
    call: str, raw: bytes, status: int, extra: dict[str, str]
) -> None:
    result = outcome(call, body(raw, status, extra))

    assert isinstance(result, InfraBoxError) or 200 <= status < 300
    if isinstance(result, WriteAnswer):
        # A write's ids are canonical UUIDs or absent: nothing is invented, nothing odd is passed on.
        for _, created in result.created():
            assert str(uuid.UUID(created)) == created


@PROPERTY
@given(value=json_values)
def test_any_json_object_as_a_job_is_a_bounded_job_or_a_clear_error(value: Any) -> None:
    result = outcome("get_job", body(_dumps(value)))

    if not isinstance(result, InfraBoxError):
        assert isinstance(result, Job)
        dumped = json.dumps(result.model_dump(), ensure_ascii=False)
        dumped.encode("utf-8")  # every string is encodable: no lone surrogate survived decoding
        assert len(dumped) < 50_000


@PROPERTY
@given(header=header_text, status=st.sampled_from([429, 503]))
def test_any_retry_after_gives_a_wait_between_1_s_and_an_hour(header: str, status: int) -> None:
    result = outcome("get_build", body(b"{}", status, {"Retry-After": header}))

    assert isinstance(result, InfraBoxError)
    wait = getattr(result, "retry_after_s", None)
    assert wait is None or (isinstance(wait, int) and 1 <= wait <= 3600)


# Timestamps ----------------------------------------------------------------------------------------------

offsets = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60 - 59, 23 * 60 + 59))
any_datetime = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.one_of(st.none(), offsets)
)
date_text = st.one_of(
    st.text(max_size=80),
    any_datetime.map(datetime.isoformat),
    st.sampled_from(
        ["+275760-09-13", "-62135596800", "NaN", "0001-01-01T00:00:00", "9999-12-31T23:59:59-14:00"]
    ),
)


@PROPERTY
@given(value=st.one_of(date_text, st.none(), st.integers(), st.floats()))
def test_parse_timestamp_is_total_and_its_result_always_has_a_timestamp(value: object) -> None:
    parsed = parse_timestamp(value)

    if parsed is not None:
        assert parsed.tzinfo is not None
        assert EARLIEST <= parsed.timestamp() < LATEST
        assert epoch_seconds(value) == parsed.timestamp()


@PROPERTY
@given(moment=any_datetime)
def test_a_date_inside_the_calendar_window_round_trips(moment: datetime) -> None:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    seconds = (aware - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()

    parsed = parse_timestamp(moment.isoformat())

    if EARLIEST <= seconds < LATEST:
        assert parsed is not None and parsed.timestamp() == aware.timestamp()
    else:
        assert parsed is None


@PROPERTY
@given(seconds=st.floats(allow_nan=True, allow_infinity=True), milliseconds=st.booleans())
def test_rfc3339_is_total(seconds: float, milliseconds: bool) -> None:
    text = rfc3339(seconds, milliseconds=milliseconds)

    assert text.endswith("Z") and "1970" <= text[:4] <= "9998"
    if math.isfinite(seconds) and EARLIEST <= seconds < LATEST - 1:
        assert parse_timestamp(text) is not None


def test_the_dates_the_issue_named() -> None:
    assert [parse_timestamp(v) for v in ["0001-01-01T00:00:00", "+275760-09-13", "-1", "NaN"]] == [None] * 4
    assert parse_timestamp("2027-01-15T07:50:00") == datetime(2027, 1, 15, 7, 50, tzinfo=UTC)
