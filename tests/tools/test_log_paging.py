"""get_job_log's byte_offset pages through the SDK client, InfraBox mocked with respx: stable byte ranges that
reassemble the masked log exactly, refusals that change nothing, and the log budget taken per page."""

from __future__ import annotations

from typing import Any

import pytest
from mcp.types import ResourceLink

from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.terminal import terminal_safe
from tests.conftest import JOB_ID, PROJECT_ID, TOKEN, ListSink, text_of

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
ARGS = {"project_id": PROJECT_ID, "job_id": JOB_ID}
PASSWORD = "s3cr3t-Pa55word-value"
KEY_LINES = [f"MIIEpAIBAAKCAQEA{i:02d}" + "k" * 48 for i in range(40)]
LOG = (
    "".join(f"[{i:03d}] building module {i} with DB_PASSWORD={PASSWORD} and {TOKEN}\n" for i in range(60))
    + "-----BEGIN RSA PRIVATE KEY-----\n"
    + "\n".join(KEY_LINES)
    + "\n-----END RSA PRIVATE KEY-----\n"
    + "z" * 1_900
    + f" api_key={PASSWORD}{PASSWORD} \x1b[31mFAILED\x1b[0m\n"
    + "é→ü done\n"
)
SECRETS = [PASSWORD, TOKEN[7:], KEY_LINES[7], PASSWORD[:8]]


def job_body(state: str = "running") -> dict[str, Any]:
    return {"id": JOB_ID, "name": "test", "state": state, "build_id": None, "project_id": PROJECT_ID}


def routes(infrabox, body: Any = LOG, state: str = "running"):
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job_body(state))
    return infrabox.get(f"{P}/jobs/{JOB_ID}/log").respond(200, json=body)


async def read_pages(client, max_bytes: int) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        result = await client.call_tool(
            "get_job_log", {**ARGS, "byte_offset": offset, "max_bytes": max_bytes}
        )
        assert not result.is_error, text_of(result)
        pages.append(result.structured_content)
        offset = pages[-1]["next_offset"]
    return pages


@pytest.mark.parametrize("max_bytes", [1_000, 2_500, 100_000])
async def test_pages_reassemble_the_masked_log_byte_exact(max_bytes, make_server, connect, infrabox):
    routes(infrabox)
    client = await connect(make_server(log_per_minute=100, read_per_minute=100))

    pages = await read_pages(client, max_bytes)

    total = len(LOG.encode())
    assert "".join(p["text"] for p in pages) == mask(terminal_safe(LOG))
    assert pages[0]["byte_start"] == 0
    assert [p["byte_start"] for p in pages[1:]] == [p["byte_end"] for p in pages[:-1]]
    assert pages[-1]["byte_end"] == total and pages[-1]["next_offset"] is None
    assert pages[0]["prev_offset"] is None
    for page in pages:
        assert page["mode"] == "page" and page["total_bytes"] == total
        assert page["returned_bytes"] == len(page["text"].encode()) <= max_bytes
        assert not any(secret in page["text"] for secret in SECRETS)
        assert page["truncated"] == (len(pages) > 1)
        assert page["untrusted"].startswith("Untrusted CI output")
    if len(pages) > 1:
        assert pages[0]["next_step"] == f"call get_job_log with byte_offset={pages[0]['byte_end']} to read on"
        assert pages[1]["prev_offset"] is not None and pages[1]["prev_offset"] < pages[1]["byte_start"]


async def test_a_secret_split_by_a_page_edge_is_masked_on_both_pages(make_server, connect, infrabox):
    head = "x" * 970 + " password="
    log = f"{head}{PASSWORD * 3} end\nsecond line\n"  # a 1000-byte page would end inside the value
    routes(infrabox, log)
    client = await connect(make_server(log_per_minute=100, read_per_minute=100))

    pages = await read_pages(client, 1_000)

    assert len(pages) >= 2
    assert pages[0]["byte_end"] <= len(head) - len(" password=")  # the edge moved before the secret
    assert not any(PASSWORD[:6] in p["text"] for p in pages)
    assert "".join(p["text"] for p in pages) == mask(log)


async def test_a_page_edge_inside_a_private_key_masks_the_key_on_the_next_page(
    make_server, connect, infrabox
):
    routes(infrabox)
    client = await connect(make_server(log_per_minute=100, read_per_minute=100))
    key_start = LOG.index("-----BEGIN")

    pages = await read_pages(client, 1_000)

    inside = [p for p in pages if key_start < p["byte_start"] < LOG.index("-----END")]
    assert inside, "some page should start inside the key's body"
    assert all(p["text"].startswith("[MASKED:private-key]") for p in inside)


async def test_the_tail_says_its_byte_range_and_where_to_read_back(make_server, connect, infrabox):
    routes(infrabox)
    client = await connect(make_server(log_per_minute=100, read_per_minute=100))

    tail = (
        await client.call_tool("get_job_log", {**ARGS, "tail_lines": 2, "max_bytes": 3_000})
    ).structured_content
    before = (
        await client.call_tool(
            "get_job_log", {**ARGS, "byte_offset": tail["prev_offset"], "max_bytes": 3_000}
        )
    ).structured_content

    total = len(LOG.encode())
    last_two = "".join(mask(terminal_safe(LOG)).splitlines(keepends=True)[-2:])
    assert tail["mode"] == "tail" and tail["text"] == last_two
    assert (tail["byte_end"], tail["next_offset"]) == (total, None)
    assert tail["byte_start"] == total - len(LOG.splitlines(keepends=True)[-2].encode()) - len(
        "é→ü done\n".encode()
    )
    assert (
        tail["next_step"]
        == f"call get_job_log with byte_offset={tail['prev_offset']} to read the part before"
    )
    assert before["byte_end"] == tail["byte_start"]  # reading on from prev_offset meets the tail exactly


async def test_grep_results_give_the_total_but_no_byte_range(make_server, connect, infrabox):
    routes(infrabox)
    client = await connect(make_server())

    found = (await client.call_tool("get_job_log", {**ARGS, "grep": "FAILED"})).structured_content

    assert found["total_bytes"] == len(LOG.encode())
    assert (found["byte_start"], found["byte_end"], found["next_offset"], found["prev_offset"]) == (None,) * 4


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"byte_offset": -1}, "byte_offset: must be 0 or more (a byte offset into the log), got -1."),
        (
            {"byte_offset": 0, "grep": "FAILED"},
            "byte_offset: cannot be combined with grep (grep searches the whole log); call with one of them.",
        ),
    ],
)
async def test_bad_offset_arguments_are_refused_before_anything_is_sent(
    extra, expected, make_server, connect, infrabox, audit: ListSink
):
    log = routes(infrabox)
    client = await connect(make_server())

    result = await client.call_tool("get_job_log", {**ARGS, **extra})

    assert result.is_error
    assert expected in text_of(result) and "Nothing was sent to InfraBox" in text_of(result)
    assert not log.called
    [record] = audit.records
    assert (record["decision"], record["reason"]) == ("denied", "invalid_input")


async def test_an_offset_beyond_the_end_is_refused_with_the_range_to_use(
    make_server, connect, infrabox, audit: ListSink
):
    routes(infrabox, "short log\n")
    client = await connect(make_server())

    result = await client.call_tool("get_job_log", {**ARGS, "byte_offset": 11})

    assert result.is_error
    assert text_of(result) == (
        "Error executing tool get_job_log: byte_offset 11 is outside the log: InfraBox has its bytes 0 to 10 "
        "now. Nothing was changed. Use get_job_log with a byte_offset from 0 to 10 (next_offset and "
        "prev_offset of a result), or without it for the end."
    )
    [record] = audit.records
    assert (record["decision"], record["outcome"], record["reason"]) == (
        "allowed",
        "denied",
        "offset_out_of_range",
    )


async def test_an_offset_inside_a_secret_moves_back_to_its_line_and_says_so(make_server, connect, infrabox):
    routes(infrabox)
    client = await connect(make_server())
    inside = LOG.encode().index(PASSWORD.encode()) + 5

    page = (await client.call_tool("get_job_log", {**ARGS, "byte_offset": inside})).structured_content

    assert page["byte_start"] == 0 and page["first_line"] == 1
    assert f"byte_offset {inside} was moved back to 0, the start of its line" in page["note"]
    assert PASSWORD not in page["text"]


async def test_small_pages_are_raised_to_the_minimum_and_tail_lines_is_unused(make_server, connect, infrabox):
    routes(infrabox)
    client = await connect(make_server())

    page = (
        await client.call_tool("get_job_log", {**ARGS, "byte_offset": 0, "max_bytes": 10, "tail_lines": 1})
    ).structured_content

    assert 900 < page["byte_end"] - page["byte_start"] <= 1_000  # raw bytes; masked tokens are shorter
    assert page["returned_bytes"] <= 1_000
    assert page["text"].count("\n") > 1  # whole lines, not the one tail line
    assert "clamped to 1/1000" in page["note"]


async def test_every_page_takes_a_log_read_slot(make_server, connect, infrabox):
    log = routes(infrabox)
    client = await connect(make_server(log_per_minute=2))

    first = await client.call_tool("get_job_log", {**ARGS, "byte_offset": 0, "max_bytes": 1_000})
    second = await client.call_tool(
        "get_job_log", {**ARGS, "byte_offset": first.structured_content["next_offset"], "max_bytes": 1_000}
    )
    third = await client.call_tool(
        "get_job_log", {**ARGS, "byte_offset": second.structured_content["next_offset"], "max_bytes": 1_000}
    )

    assert not first.is_error and not second.is_error
    assert third.is_error and "get_job_log" in text_of(third)
    assert log.call_count == 2


async def test_offsets_count_from_the_log_start_when_infrabox_sends_only_its_end(
    make_server, connect, infrabox
):
    body = {"log": "last part\n", "total_bytes": 5_010, "offset": 5_000, "length": 10, "truncated": True}
    routes(infrabox, body)
    client = await connect(make_server())

    page = (await client.call_tool("get_job_log", {**ARGS, "byte_offset": 5_000})).structured_content
    early = await client.call_tool("get_job_log", {**ARGS, "byte_offset": 10})

    assert (page["byte_start"], page["byte_end"], page["total_bytes"], page["text"]) == (
        5_000,
        5_010,
        5_010,
        "last part\n",
    )
    assert page["prev_offset"] is None and page["truncated"]
    assert early.is_error and "InfraBox has its bytes 5000 to 5010 now" in text_of(early)


async def test_an_archived_log_stays_reported_as_archived(make_server, connect, infrabox):
    routes(infrabox, "", state="failure")
    client = await connect(make_server())

    page = (await client.call_tool("get_job_log", {**ARGS, "byte_offset": 0})).structured_content

    assert page["archived"] and page["text"] == ""
    assert (page["byte_start"], page["byte_end"], page["next_offset"], page["prev_offset"]) == (
        0,
        0,
        None,
        None,
    )
    assert "archived" in page["note"]


async def test_the_result_links_the_console_resource(make_server, connect, infrabox):
    routes(infrabox)
    client = await connect(make_server())

    result = await client.call_tool("get_job_log", {**ARGS, "byte_offset": 0})

    uri = f"infrabox://projects/{PROJECT_ID}/jobs/{JOB_ID}/console"
    links = [item for item in result.content if isinstance(item, ResourceLink)]
    assert [str(link.uri) for link in links] == [uri]
    assert result.structured_content["log_resource"] == uri
