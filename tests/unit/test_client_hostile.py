"""A hostile InfraBox, answer by answer, through the public `InfraBoxClient`: each maps to a result or to a
clear `InfraBoxError`, and nothing is read past its bound (tests/hostile_infrabox.py serves the answers)."""

from __future__ import annotations

import gzip
import json
import time
import uuid
import zlib
from typing import Any

import pytest

from mcp_ci_tools.client import (
    InfraBoxClient,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    UpstreamBroken,
)
from tests.conftest import BUILD_ID, INFRABOX_URL, JOB_ID, PROJECT_ID, TOKEN
from tests.hostile_infrabox import (
    Answer,
    HostileInfraBox,
    body,
    deep,
    drip,
    endless,
    gzip_bomb,
    stall,
)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
P, B, J = uuid.UUID(PROJECT_ID), uuid.UUID(BUILD_ID), uuid.UUID(JOB_ID)
BUILD = {"id": BUILD_ID, "build_number": 42, "status": "failure", "branch": "main"}


def client_for(infrabox: HostileInfraBox, *, timeout: float = 30.0) -> tuple[InfraBoxClient, list[float]]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return InfraBoxClient(INFRABOX_URL, TOKEN, transport=infrabox, sleep=sleep, timeout=timeout), waits


def json_body(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
    return body(json.dumps(value).encode(), status, headers)


# Retry-After --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("²", 60),  # str.isdigit() is True for it and int() raises: not a number of seconds here
        ("٣", 60),  # an Arabic-Indic digit, the same trap
        ("9" * 5000, 3600),  # int() of 5000 digits raises ValueError; clamped to one hour
        ("120", 120),
        ("0", 1),
        ("-5", 60),
        ("1e9", 60),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 3600),  # far in the future: clamped
        ("Mon, 01 Jan 0001 00:00:00 GMT", 1),  # in the past: wait the least
        ("Mon, 32 Foo 2027 99:99:99 GMT", 60),
        ("x" * 10_000, 60),
    ],
)
async def test_a_hostile_retry_after_is_honoured_or_clamped_never_a_crash(header: str, expected: int) -> None:
    infrabox = HostileInfraBox(json_body({"message": "slow down"}, 429, {"Retry-After": header}))
    client, _ = client_for(infrabox)

    with pytest.raises(RateLimited) as raised:
        await client.get_build(P, B, request_id="r")

    assert raised.value.retry_after_s == expected


async def test_a_503_with_a_superscript_retry_after_is_not_retried_blindly() -> None:
    infrabox = HostileInfraBox(json_body({"message": "down"}, 503, {"Retry-After": "²"}))
    client, waits = client_for(infrabox)

    with pytest.raises(UpstreamBroken) as raised:
        await client.get_build(P, B, request_id="r")

    # Unreadable → the default 60 s, over the 10 s honoured in-call: the model is told to wait instead.
    assert (raised.value.retry_after_s, waits, len(infrabox.requests)) == (60, [], 1)


# Byte caps: endless answers -------------------------------------------------------------------------------


async def test_an_endless_build_answer_is_cut_at_1_mib_and_not_used() -> None:
    infrabox = HostileInfraBox(endless())
    client, _ = client_for(infrabox)

    with pytest.raises(UpstreamBroken) as raised:
        await client.get_build(P, B, request_id="r")

    assert str(raised.value) == (
        "InfraBox sent more than 1 MiB for the build; the answer was cut off and not used"
    )
    stream = infrabox.answers[0].stream
    assert stream is not None and stream.closed
    assert MiB < stream.served <= MiB + 2 * 64 * 1024
    assert len(infrabox.requests) == 1  # a cap is not a transient failure: not retried


async def test_an_endless_log_is_cut_at_64_mib() -> None:
    infrabox = HostileInfraBox(endless(b" " * MiB))
    client, _ = client_for(infrabox)

    with pytest.raises(UpstreamBroken, match="more than 64 MiB for the job log"):
        await client.get_job_log(P, J, request_id="r")

    stream = infrabox.answers[0].stream
    assert stream is not None and stream.closed and stream.served <= 65 * MiB


async def test_a_log_just_under_its_cap_is_read_whole() -> None:
    text = "x" * (8 * MiB)
    client, _ = client_for(HostileInfraBox(json_body(text)))

    log = await client.get_job_log(P, J, request_id="r")

    assert log.text == text


async def test_a_gzip_bomb_is_stopped_at_the_cap_on_the_decoded_bytes() -> None:
    infrabox = HostileInfraBox(gzip_bomb())
    client, _ = client_for(infrabox)

    with pytest.raises(UpstreamBroken, match="more than 1 MiB for the build"):
        await client.get_build(P, B, request_id="r")

    stream = infrabox.answers[0].stream
    assert stream is not None and stream.closed
    assert stream.served < 64 * 1024  # a few KiB on the wire stood for more than a MiB decoded


def _raw_deflate(data: bytes) -> bytes:
    compress = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compress.compress(data) + compress.flush()


@pytest.mark.parametrize(
    ("encoding", "compress"),
    [("gzip", gzip.compress), ("deflate", zlib.compress), ("deflate", _raw_deflate), ("identity", bytes)],
    ids=["gzip", "deflate-zlib", "deflate-raw", "identity"],
)
async def test_a_compressed_answer_within_the_cap_is_decoded(encoding: str, compress: Any) -> None:
    compressed = compress(json.dumps(BUILD).encode())
    client, _ = client_for(HostileInfraBox(body(compressed, headers={"Content-Encoding": encoding})))

    build = await client.get_build(P, B, request_id="r")

    assert (build.id, build.build_number) == (BUILD_ID, 42)


@pytest.mark.parametrize(
    ("encoding", "data", "problem"),
    [
        ("br", b"\x0b\x02\x80{}\x03", "an encoding this client does not read ('br')"),
        ("gzip", b"this is not gzip", "a compressed answer that does not decompress"),
        ("gzip, gzip", b"{}", "compressed more than once"),
        ("identity, deflate", b"\xff\xff\xff\xff", "a compressed answer that does not decompress"),
    ],
)
async def test_an_answer_that_cannot_be_decoded_is_a_clear_error(
    encoding: str, data: bytes, problem: str
) -> None:
    client, _ = client_for(HostileInfraBox(body(data, headers={"Content-Encoding": encoding})))

    with pytest.raises(UpstreamBroken) as raised:
        await client.get_build(P, B, request_id="r")

    assert problem in str(raised.value) and "cut off and not used" in str(raised.value)


async def test_an_endless_error_body_still_maps_by_its_status() -> None:
    infrabox = HostileInfraBox(endless(status=404))
    client, _ = client_for(infrabox)

    with pytest.raises(NotFound):
        await client.get_build(P, B, request_id="r")

    stream = infrabox.answers[0].stream
    assert stream is not None and stream.served <= 64 * 1024 + 64 * 1024


async def test_an_endless_answer_to_a_write_with_200_is_a_success_without_invented_ids() -> None:
    """The status proves the restart happened; its new id could not be read, so none is reported."""
    infrabox = HostileInfraBox(endless())
    client, _ = client_for(infrabox)

    answer = await client.restart_build(P, B, request_id="r")

    assert (answer.http_status, answer.new_build_id, answer.restart_counter) == (200, None, None)
    assert answer.answer_unread == "sent more than 1 MiB"
    assert answer.created() == []
    assert len(infrabox.requests) == 1


async def test_an_endless_answer_to_a_write_with_500_is_outcome_unknown_and_not_retried() -> None:
    infrabox = HostileInfraBox(endless(status=500))
    client, waits = client_for(infrabox)

    with pytest.raises(OutcomeUnknown) as raised:
        await client.rerun_job(P, J, request_id="r")

    assert (raised.value.status, raised.value.reason, len(infrabox.requests), waits) == (500, None, 1, [])


# The whole-response deadline ----------------------------------------------------------------------------


async def test_a_slow_drip_read_ends_at_the_deadline_and_maps_like_a_read_timeout() -> None:
    """Headers at once, then a byte every 0.5 s: httpx's per-read timeout never fires; the deadline does."""
    infrabox = HostileInfraBox(lambda request: drip(json.dumps(BUILD).encode(), every_s=0.5))
    client, waits = client_for(infrabox, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(UpstreamBroken) as raised:
        await client.get_build(P, B, request_id="r")
    elapsed = time.monotonic() - started

    assert str(raised.value) == "no usable answer from InfraBox (no complete answer within 0.3 s)"
    assert len(infrabox.requests) == 3 and len(waits) == 2  # retried like any read timeout
    assert elapsed < 3 * 0.3 + 1.0
    assert all(answer.stream is not None and answer.stream.closed for answer in infrabox.answers)


async def test_a_write_with_no_status_line_by_the_deadline_is_outcome_unknown_and_sent_once() -> None:
    infrabox = HostileInfraBox(stall(after_s=5.0))
    client, waits = client_for(infrabox, timeout=0.3)

    started = time.monotonic()
    with pytest.raises(OutcomeUnknown) as raised:
        await client.restart_job(P, J, request_id="r")

    assert time.monotonic() - started < 0.3 + 1.0
    assert str(raised.value) == "sent, but no answer came back (no complete answer within 0.3 s)"
    assert (len(infrabox.requests), waits) == (1, [])


async def test_a_write_whose_200_answer_drips_is_a_success_with_the_answer_unread() -> None:
    infrabox = HostileInfraBox(drip(b'{"message": "Successfully aborted job"}', every_s=0.5))
    client, _ = client_for(infrabox, timeout=0.3)

    answer = await client.abort_job(P, J, request_id="r")

    assert (answer.http_status, answer.message) == (200, None)
    assert answer.answer_unread == "sent no complete answer within 0.3 s"


# Decoding: nesting, numbers, text, types -----------------------------------------------------------------


async def test_json_nested_100k_deep_is_a_clear_error_not_a_recursion_error() -> None:
    client, _ = client_for(HostileInfraBox(deep(100_000)))

    with pytest.raises(UpstreamBroken) as raised:
        await client.list_builds(P, request_id="r")

    assert str(raised.value) == (
        "InfraBox answered 200 with JSON nested deeper than 32 levels for the build list"
    )


async def test_json_nested_40_deep_within_the_recursion_limit_is_refused_too() -> None:
    client, _ = client_for(HostileInfraBox(json_body({**BUILD, "extra": json.loads("[" * 40 + "]" * 40)})))

    with pytest.raises(UpstreamBroken, match="nested deeper than 32 levels"):
        await client.get_build(P, B, request_id="r")


@pytest.mark.parametrize(
    ("raw_number", "kept"),
    [("1e400", None), ("9" * 5000, None), ("NaN", None), ("-Infinity", None), ("42", 42), ('"42"', 42)],
)
async def test_huge_or_odd_numbers_become_null_not_a_crash(raw_number: str, kept: int | None) -> None:
    raw = f'{{"id": "{BUILD_ID}", "build_number": {raw_number}, "restart_counter": 4.5}}'.encode()
    client, _ = client_for(HostileInfraBox(body(raw)))

    build = await client.get_build(P, B, request_id="r")

    assert (build.build_number, build.restart_counter) == (kept, None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"<html><body>502 Bad Gateway</body></html>", "a body that is not JSON"),
        (b"", "an empty body"),
        (b"   \n", "an empty body"),
        (b'{"id": "\xff\xfe"}', "a body that is not UTF-8"),
        (b'{"id": ', "a body that is not JSON"),
    ],
)
async def test_a_body_that_is_not_json_is_a_clear_error(raw: bytes, problem: str) -> None:
    client, _ = client_for(HostileInfraBox(body(raw, headers={"Content-Type": "application/json"})))

    with pytest.raises(UpstreamBroken) as raised:
        await client.get_build(P, B, request_id="r")

    assert str(raised.value) == f"InfraBox answered 200 with {problem} for the build"


async def test_a_lying_content_type_does_not_matter_the_body_is_read_as_json() -> None:
    client, _ = client_for(HostileInfraBox(json_body(BUILD, headers={"Content-Type": "text/html"})))

    assert (await client.get_build(P, B, request_id="r")).id == BUILD_ID


@pytest.mark.parametrize(
    "value",
    [[BUILD], None, "a build", 42, {"id": None}, {"build_number": 1}, {"id": [BUILD_ID]}],
    ids=["list", "null", "string", "number", "null-id", "no-id", "list-id"],
)
async def test_a_build_of_the_wrong_shape_is_a_clear_error(value: Any) -> None:
    client, _ = client_for(HostileInfraBox(json_body(value)))

    with pytest.raises(UpstreamBroken, match="InfraBox sent a build in an unknown shape"):
        await client.get_build(P, B, request_id="r")


async def test_null_or_wrong_types_in_optional_fields_become_null() -> None:
    wrong = {
        "id": BUILD_ID,
        "build_number": "forty-two",
        "restart_counter": None,
        "branch": ["main"],
        "status": {"state": "failure"},
        "created_at": 1_700_000_000,
        "commit_id": True,
    }
    client, _ = client_for(HostileInfraBox(json_body(wrong)))

    build = await client.get_build(P, B, request_id="r")

    assert build.model_dump() == {
        "id": BUILD_ID,
        "build_number": None,
        "restart_counter": None,
        "project_id": None,
        "commit_id": None,
        "branch": None,
        "created_at": None,
        "finished_at": None,
        "status": None,
    }


async def test_huge_strings_are_cut_at_decode_time() -> None:
    job = {
        "id": "x" * 500_000,
        "name": "n" * 500_000,
        "message": "m" * 500_000,
        "build_id": "b" * 200,
        "state": "\ud800failure",  # a lone surrogate could never be encoded as UTF-8 later
        "dependencies": [{"job": "j" * 10_000, "job-id": "i" * 10_000, "on": ["finished"] * 100}] * 300,
    }
    client, _ = client_for(HostileInfraBox(json_body([job])))  # 7.5 MB: a list's cap is 16 MiB

    (got,) = (await client.list_jobs(P, B, request_id="r")).items

    assert (len(got.id), len(got.name or ""), len(got.message or ""), len(got.build_id or "")) == (
        100,
        1000,
        4000,
        100,
    )
    assert got.id.endswith("…") and got.state == "?failure"
    assert got.dependencies is not None and len(got.dependencies) == 200
    assert {len(d["job"]) for d in got.dependencies} == {1000} and {
        len(d["on"]) for d in got.dependencies
    } == {20}


async def test_a_list_of_entries_beyond_the_item_bound_keeps_the_first_and_says_how_many() -> None:
    builds = [{"id": f"{i:08d}-0000-4000-8000-000000000000"} for i in range(20_500)]
    client, _ = client_for(HostileInfraBox(json_body(builds)))

    page = await client.list_builds(P, request_id="r")

    assert (len(page.items), page.total, page.items[-1].id) == (
        20_000,
        20_500,
        "00019999-0000-4000-8000-000000000000",
    )


async def test_edge_dates_are_kept_as_bounded_text_for_the_tools_to_judge() -> None:
    job = {"id": JOB_ID, "start_date": "0001-01-01T00:00:00", "end_date": "+275760-09-13" + "9" * 1000}
    client, _ = client_for(HostileInfraBox(json_body(job)))

    got = await client.get_job(P, J, request_id="r")

    assert got.start_date == "0001-01-01T00:00:00" and got.end_date is not None and len(got.end_date) == 64


@pytest.mark.parametrize(
    ("value", "text", "total_bytes"),
    [
        ({"log": None, "total_bytes": None}, "", None),
        ({"log": "a\n", "total_bytes": "many"}, "a\n", None),
        (None, "", None),
    ],
)
async def test_a_log_with_nulls_or_wrong_types_is_read_leniently(
    value: Any, text: str, total_bytes: int | None
) -> None:
    client, _ = client_for(HostileInfraBox(json_body(value)))

    log = await client.get_job_log(P, J, request_id="r")

    assert (log.text, log.total_bytes) == (text, total_bytes)


async def test_counts_that_are_negative_or_absurd_are_not_reported() -> None:
    page_client, _ = client_for(HostileInfraBox(json_body({"items": [BUILD], "total": -5})))
    write_client, _ = client_for(
        HostileInfraBox(json_body({"build_id": "not-a-uuid", "restart_counter": 10**20}))
    )

    page = await page_client.list_builds(P, request_id="r")
    answer = await write_client.restart_build(P, B, request_id="r")

    assert (len(page.items), page.total) == (1, None)
    assert (answer.new_build_id, answer.restart_counter, answer.answer_unread) == (None, None, None)


async def test_a_restart_naming_thousands_of_new_jobs_reads_only_the_first_500_entries() -> None:
    ids = [str(uuid.UUID(int=i + 1)) for i in range(20_000)]
    client, _ = client_for(
        HostileInfraBox(json_body({"new_job_ids": ["not-a-uuid", *ids], "cloned_count": 20_000}))
    )

    answer = await client.restart_job(P, J, request_id="r")

    assert answer.new_job_ids == ids[:499] and answer.jobs_restarted == 20_000
