"""Resources (job console, build summary), their links from the tools, and completions, through the SDK client
with InfraBox mocked by respx: the same pipeline as the tools (ids, allow-list, budgets, audit, masking)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import MCPError
from mcp.types import PromptReference, ResourceTemplateReference

from tests.conftest import BUILD_ID, JOB_ID, NEW_ID, PROJECT_ID, TOKEN, ListSink

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
CONSOLE = f"infrabox://projects/{PROJECT_ID}/jobs/{JOB_ID}/console"
BUILD = f"infrabox://projects/{PROJECT_ID}/builds/{BUILD_ID}"
CONSOLE_TEMPLATE = "infrabox://projects/{project_id}/jobs/{job_id}/console"
BUILD_TEMPLATE = "infrabox://projects/{project_id}/builds/{build_id}"
OTHER_PROJECT = "00000000-0000-4000-8000-00000000beef"


def job(job_id: str = JOB_ID, name: str = "test", state: str = "failure") -> dict[str, Any]:
    return {
        "id": job_id,
        "name": name,
        "state": state,
        "build_id": BUILD_ID,
        "project_id": PROJECT_ID,
        "start_date": "2027-01-15T07:50:00+00:00",
        "end_date": "2027-01-15T07:52:30+00:00",
        "message": "3 tests failed",
    }


def build(build_id: str = BUILD_ID, number: int = 42, branch: str = "main") -> dict[str, Any]:
    return {
        "id": build_id,
        "build_number": number,
        "restart_counter": 1,
        "project_id": PROJECT_ID,
        "commit_id": "3f2a9c1",
        "branch": branch,
        "created_at": "2027-01-15T07:50:00+00:00",
        "finished_at": "2027-01-15T07:58:00+00:00",
        "status": "failure",
    }


def console_routes(infrabox, log: str, state: str = "running"):
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job(state=state))
    return infrabox.get(f"{P}/jobs/{JOB_ID}/log").respond(200, json=log)


async def test_the_templates_are_listed_with_their_mime_types(make_server, connect):
    client = await connect(make_server())

    templates = {t.uri_template: t for t in (await client.list_resource_templates()).resource_templates}

    assert set(templates) == {CONSOLE_TEMPLATE, BUILD_TEMPLATE}
    assert templates[CONSOLE_TEMPLATE].mime_type == "text/plain"
    assert templates[BUILD_TEMPLATE].mime_type == "application/json"


async def test_the_console_reads_masked_and_marked_untrusted(make_server, connect, infrabox, audit: ListSink):
    log = f"step 1\ncurl -H 'Authorization: Bearer {TOKEN}'\nFAILED test_refund\n"
    console_routes(infrabox, log)
    client = await connect(make_server())

    [content] = (await client.read_resource(CONSOLE)).contents

    text = content.text
    assert TOKEN[7:] not in text
    assert text.startswith("# Untrusted CI output")
    assert f"bytes [0, {len(log)}) of {len(log)}, 1 secret(s) masked." in text
    assert text.endswith("curl -H 'Authorization: Bearer [MASKED:infrabox-token]'\nFAILED test_refund\n")
    assert content.mime_type == "text/plain"
    [record] = audit.records
    assert (record["tool"], record["outcome"], record["job_id"]) == ("resource:console", "success", JOB_ID)


async def test_a_big_console_is_bounded_and_says_how_to_read_the_rest(make_server, connect, infrabox):
    log = "".join(f"line {i:06d} " + "x" * 88 + "\n" for i in range(3_000))  # 300 kB
    console_routes(infrabox, log)
    client = await connect(make_server())

    [content] = (await client.read_resource(CONSOLE)).contents

    header = content.text.split("\nline ", 1)[0]
    assert len(content.text.encode()) < 102_000
    assert content.text.endswith("line 002999 " + "x" * 88 + "\n")
    line = 101  # bytes of each line: the console shows the whole lines that fit in 100 kB
    start = len(log) - 100_000 // line * line
    before = -(-(start - 100_000) // line) * line  # the first line start at most 100 kB before
    assert f"bytes [{start}, {len(log)}) of {len(log)}" in header
    assert f"call get_job_log with byte_offset={before} to read the page before" in header


async def test_an_archived_console_says_so(make_server, connect, infrabox):
    console_routes(infrabox, "", state="failure")
    client = await connect(make_server())

    [content] = (await client.read_resource(CONSOLE)).contents

    assert "finished jobs' logs are archived" in content.text


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        (f"infrabox://projects/not-a-uuid/jobs/{JOB_ID}/console", "project_id must be a UUID"),
        (f"infrabox://projects/{OTHER_PROJECT}/jobs/{JOB_ID}/console", OTHER_PROJECT),
    ],
)
async def test_a_refused_console_read_sends_nothing_and_says_why(
    uri, says, make_server, connect, infrabox, audit: ListSink
):
    log = console_routes(infrabox, "x\n")
    client = await connect(make_server(projects=(PROJECT_ID,)))

    with pytest.raises(MCPError) as refused:
        await client.read_resource(uri)

    assert says in refused.value.error.message
    assert not log.called
    [record] = audit.records
    assert (record["tool"], record["decision"]) == ("resource:console", "denied")


async def test_the_console_read_takes_the_log_budget(make_server, connect, infrabox):
    log = console_routes(infrabox, "x\n")
    client = await connect(make_server(log_per_minute=1))

    await client.read_resource(CONSOLE)
    with pytest.raises(MCPError) as refused:
        await client.read_resource(CONSOLE)

    assert "get_job_log" in refused.value.error.message
    assert log.call_count == 1


async def test_the_build_summary_lists_jobs_with_their_console_uris(make_server, connect, infrabox, audit):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=[job(), job(NEW_ID, "lint", "finished")])
    client = await connect(make_server())

    [content] = (await client.read_resource(BUILD)).contents

    summary = json.loads(content.text)
    assert content.mime_type == "application/json"
    assert summary["build"]["id"] == BUILD_ID and summary["state_counts"] == {"failure": 1, "finished": 1}
    assert {j["job"]["name"]: j["console"] for j in summary["jobs"]} == {
        "test": CONSOLE,
        "lint": f"infrabox://projects/{PROJECT_ID}/jobs/{NEW_ID}/console",
    }
    assert summary["untrusted"].startswith("Untrusted CI output")
    assert audit.records[-1]["tool"] == "resource:build"


async def test_diagnose_build_links_each_problem_jobs_console(make_server, connect, infrabox):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(200, json=build())
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(200, json=[job(), job(NEW_ID, "lint", "finished")])
    infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/log$").respond(200, json="boom\n")
    infrabox.route(method="GET", path__regex=r".*/jobs/[^/]+/testruns$").respond(200, json=[])
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job())
    infrabox.get(f"{P}/builds").respond(200, json=[build()])  # other builds of the commit, for the verdict
    client = await connect(make_server())

    content = (
        await client.call_tool("diagnose_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})
    ).structured_content

    [problem] = content["problem_jobs"]
    assert problem["log_resource"] == CONSOLE
    [read] = (await client.read_resource(problem["log_resource"])).contents
    assert read.text.endswith("boom\n")


# completions --------------------------------------------------------------------------------------------

PROJECTS = [
    {"id": PROJECT_ID, "name": "payments-service", "type": "upload", "public": False},
    {"id": OTHER_PROJECT, "name": "web-frontend", "type": "upload", "public": False},
]


@pytest.mark.parametrize(
    ("typed", "offered"),
    [
        ("pay", [PROJECT_ID]),
        ("WEB", [OTHER_PROJECT]),
        ("5b0e", [PROJECT_ID]),
        ("", [PROJECT_ID, OTHER_PROJECT]),
    ],
)
async def test_project_id_completes_by_name_or_id_prefix(typed, offered, make_server, connect, infrabox):
    infrabox.get("/projects").respond(200, json=PROJECTS)
    client = await connect(make_server())

    result = await client.complete(
        ResourceTemplateReference(uri=CONSOLE_TEMPLATE), {"name": "project_id", "value": typed}
    )

    assert result.completion.values == offered


async def test_project_id_completion_offers_only_allowed_projects(make_server, connect, infrabox):
    infrabox.get("/projects").respond(200, json=PROJECTS)
    client = await connect(make_server(projects=(PROJECT_ID,)))

    result = await client.complete(
        PromptReference(name="triage_red_build"), {"name": "project_id", "value": ""}
    )

    assert result.completion.values == [PROJECT_ID]


async def test_build_id_completes_from_the_chosen_projects_recent_builds(make_server, connect, infrabox):
    infrabox.get(f"{P}/builds").respond(200, json=[build(NEW_ID, 43), build(BUILD_ID, 42)])
    client = await connect(make_server())

    everything = await client.complete(
        ResourceTemplateReference(uri=BUILD_TEMPLATE),
        {"name": "build_id", "value": ""},
        context_arguments={"project_id": PROJECT_ID},
    )
    by_number = await client.complete(
        PromptReference(name="triage_red_build"),
        {"name": "build_id", "value": "42"},
        context_arguments={"project_id": PROJECT_ID},
    )

    assert everything.completion.values == [NEW_ID, BUILD_ID]
    assert by_number.completion.values == [BUILD_ID]


async def test_branch_completes_from_recent_builds(make_server, connect, infrabox):
    infrabox.get(f"{P}/builds").respond(
        200, json=[build(NEW_ID, 43, "feature/x"), build(BUILD_ID, 42, "main"), build(JOB_ID, 41, "main")]
    )
    client = await connect(make_server())

    result = await client.complete(
        PromptReference(name="why_is_branch_red"),
        {"name": "branch", "value": ""},
        context_arguments={"project_id": PROJECT_ID},
    )

    assert result.completion.values == ["feature/x", "main"]


@pytest.mark.parametrize(
    "context",
    [None, {"project_id": "nope"}, {"project_id": OTHER_PROJECT}],
    ids=["none", "bad", "not-allowed"],
)
async def test_build_id_without_a_usable_project_offers_nothing_and_sends_nothing(
    context, make_server, connect, infrabox
):
    builds = infrabox.route(method="GET", path__regex=r".*/builds$").respond(200, json=[build()])
    client = await connect(make_server(projects=(PROJECT_ID,)))

    result = await client.complete(
        ResourceTemplateReference(uri=BUILD_TEMPLATE),
        {"name": "build_id", "value": ""},
        context_arguments=context,
    )

    assert result.completion.values == []
    assert not builds.called


async def test_a_failing_or_exhausted_completion_offers_nothing(make_server, connect, infrabox):
    route = infrabox.get("/projects").respond(
        403, json={"message": "access to this project is not permitted"}
    )
    client = await connect(make_server(read_per_minute=1))

    failed = await client.complete(
        ResourceTemplateReference(uri=CONSOLE_TEMPLATE), {"name": "project_id", "value": ""}
    )
    route.respond(200, json=PROJECTS)
    exhausted = await client.complete(
        ResourceTemplateReference(uri=CONSOLE_TEMPLATE), {"name": "project_id", "value": ""}
    )

    assert failed.completion.values == [] and exhausted.completion.values == []
    assert route.call_count == 1  # the second was refused by the read budget before anything was sent
