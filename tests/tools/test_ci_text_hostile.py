"""A hostile InfraBox: logs, test results, build fields and error texts full of secrets and terminal escapes.

Everything is asserted as the agent sees it through the tools (the result text and structured content):
no secret of any kind, nothing a terminal would execute, line numbers kept, the untrusted label present;
and a catastrophic grep is refused in bounded time without blocking anyone else.
"""

from __future__ import annotations

import json
import time
import unicodedata
from typing import Any

import anyio
import pytest

from tests.conftest import BUILD_ID, JOB_ID, PROJECT_ID, text_of
from tests.leak_samples import GHP, LEAKS
from tests.tools.test_reads import job

pytestmark = pytest.mark.anyio

P = f"/projects/{PROJECT_ID}"
OTHER_JOB = "aaaaaaaa-0000-4000-8000-000000000002"
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}
ESCAPES = [
    "\x1b[31m",
    "\x1b]8;;https://evil.example/\x07",
    "\x1b]52;c;cm0gLXJmIH4=\x07",
    "\x1b[2J",
    "\x1b[10A",
    "\x9b1m",
    "\x07",
    "\u202e",
    "\x00",
]
SECRETS = [secret for _, secret, _ in LEAKS.values()]


def hostile_log() -> str:
    """One leak per kind, each line coloured and decorated with another escape; a secret split by a colour."""
    lines = [
        f"{ESCAPES[n % len(ESCAPES)]}\x1b[1m{line}\x1b[0m" for n, (line, _, _) in enumerate(LEAKS.values())
    ]
    lines.append(f"push with {GHP[:5]}\x1b[0m{GHP[5:]}")
    lines.append("\x1b[31mFAILED tests/test_pay.py::test_refund\x1b[0m\r")
    return "\n".join(lines) + "\n"


def unsafe_characters(text: str) -> list[str]:
    return [c for c in text if (unicodedata.category(c) == "Cc" and c not in "\n\t") or c in _BIDI]


def assert_agent_safe(agent_text: str, content: Any = None) -> None:
    """Neither the text the model reads nor any string in the structured content leaks or executes."""
    texts = [agent_text, json.dumps(content, ensure_ascii=False)] if content is not None else [agent_text]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
        assert GHP[5:] not in text
        assert not unsafe_characters(text)
        assert "\\u001b" not in text and "\\u009b" not in text and "\\u0007" not in text
    for value in _strings(content):
        assert not unsafe_characters(value), value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


def log_routes(infrabox: Any, log: str) -> None:
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=job(JOB_ID, "test", "running"))
    infrabox.get(f"{P}/jobs/{JOB_ID}/log").respond(200, json=log)


async def test_a_hostile_log_tail_reaches_the_agent_masked_and_terminal_safe_with_lines_kept(
    make_server, connect, infrabox
):
    log = hostile_log()
    log_routes(infrabox, log)
    client = await connect(make_server())

    result = await client.call_tool("get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    content = result.structured_content
    assert_agent_safe(text_of(result), content)
    *shown, after_last = content["text"].split("\n")
    assert after_last == "" and len(shown) == log.count("\n") and content["first_line"] == 1
    assert shown[-1] == "FAILED tests/test_pay.py::test_refund"
    assert shown[-2] == "push with [MASKED:github-pat]"
    assert shown[list(LEAKS).index("github-pat")] == "remote: using [MASKED:github-pat] for push"
    assert shown[list(LEAKS).index("infrabox-token")] == "export INFRABOX_MCP_TOKEN=[MASKED:infrabox-token]"
    assert "␇" in content["text"] and "<U+202E>" in content["text"]
    assert content["masked_secrets"] >= len(LEAKS)
    assert content["untrusted"].startswith("Untrusted CI output")


async def test_a_hostile_log_grep_shows_masked_lines_with_their_numbers_and_cannot_probe_secrets(
    make_server, connect, infrabox
):
    log = hostile_log()
    log_routes(infrabox, log)
    client = await connect(make_server())

    found = await client.call_tool(
        "get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": r"MASKED:(github-pat|jwt)"}
    )
    probes = [
        await client.call_tool("get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": probe})
        for probe in ("ghp_", GHP[5:15], r"\x1b", "eyJ", "hunter|Hunter2")
    ]

    content = found.structured_content
    assert_agent_safe(text_of(found), content)
    pat_line = list(LEAKS).index("github-pat") + 1
    assert f"{pat_line}:remote: using [MASKED:github-pat] for push" in content["text"]
    assert f"{log.count(chr(10)) - 1}:push with [MASKED:github-pat]" in content["text"]
    assert content["match_count"] == 3
    assert [probe.structured_content["match_count"] for probe in probes] == [0, 0, 0, 0, 0]


async def test_hostile_test_results_are_masked_terminal_safe_and_labelled_untrusted(
    make_server, connect, infrabox
):
    runs = [
        {
            "state": "failure",
            "name": f"\x1b]8;;https://evil.example/\x07test_login[{GHP}]\x1b]8;;\x07",
            "suite": "\x1b[2Jtests.test_auth\u202e",
            "duration": 0.5,
            "message": f"AssertionError: Authorization: Basic {LEAKS['basic-auth'][1]} \x1b]52;c;Y3VybA==\x07",
            "stack": "\n".join(
                [
                    '  File "auth.py", line 3, in login',
                    f"    {LEAKS['aws-secret-access-key'][0]}\r",
                    f"\x1b[31m    password={LEAKS['secret-assignment'][1]}\x1b[0m",
                    LEAKS["private-key"][0],
                ]
            ),
            "timestamp": "2027-01-15T07:51:00+00:00",
        }
    ]
    infrabox.get(f"{P}/jobs/{JOB_ID}/testruns").respond(200, json=runs)
    client = await connect(make_server())

    result = await client.call_tool("get_test_results", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    content = result.structured_content
    assert_agent_safe(text_of(result), content)
    [shown] = content["tests"]
    assert shown["name"] == "test_login[[MASKED:github-pat]]"
    assert shown["suite"] == "tests.test_auth<U+202E>"
    assert shown["message"] == "AssertionError: Authorization: Basic [MASKED:basic-auth] "
    assert shown["stack"].split("\n")[1:3] == [
        "    aws_secret_access_key = [MASKED:aws-secret-access-key]",
        "    password=[MASKED:secret-assignment]",
    ]
    assert content["untrusted"].startswith("Untrusted CI output")


async def test_diagnose_build_shows_hostile_build_job_and_log_text_masked_and_terminal_safe(
    make_server, connect, infrabox
):
    infrabox.get(f"{P}/builds/{BUILD_ID}").respond(
        200,
        json={
            "id": BUILD_ID,
            "build_number": 7,
            "restart_counter": 1,
            "project_id": PROJECT_ID,
            "commit_id": "3f2a9c1\x1b[8m",
            "branch": f"\x1b]0;pwned\x07feature/{LEAKS['slack-token'][1][:8]}\u202e",
            "created_at": "2027-01-15T07:50:00+00:00",
            "finished_at": None,
            "status": "failure",
        },
    )
    infrabox.get(f"{P}/builds/{BUILD_ID}/jobs").respond(
        200,
        json=[
            job(
                JOB_ID,
                f"\x1b[2Jdeploy {GHP}",
                "failure",
                f"docker login -p {LEAKS['cli-password'][1]} r.io\x07",
            ),
            job(
                OTHER_JOB, "\x1b]8;;https://evil.example/\x07lint", "finished\x1b[2J", "\x1b]52;c;eA==\x07ok"
            ),
        ],
    )
    infrabox.get(f"{P}/jobs/{JOB_ID}/log").respond(200, json=hostile_log())
    infrabox.get(f"{P}/jobs/{JOB_ID}/testruns").respond(200, json=[])
    infrabox.get(f"{P}/builds").respond(200, json=[])
    client = await connect(make_server())

    result = await client.call_tool("diagnose_build", {"project_id": PROJECT_ID, "build_id": BUILD_ID})

    content = result.structured_content
    assert_agent_safe(text_of(result), content)
    [problem] = content["problem_jobs"]
    assert problem["job"]["name"] == "deploy [MASKED:github-pat]"
    assert problem["job"]["message"] == "docker login -p [MASKED:cli-password] r.io␇"
    assert problem["log_tail"].endswith("FAILED tests/test_pay.py::test_refund\n")
    assert content["build"]["commit_id"] == "3f2a9c1"
    assert content["state_counts"] == {"failure": 1, "finished": 1}
    assert [(j["name"], j["state"], j["message"]) for j in content["other_jobs"]] == [
        ("lint", "finished", "ok")
    ]
    assert "'deploy [MASKED:github-pat]' is failure" in content["summary"]
    assert content["untrusted"].startswith("Untrusted CI output")


HOSTILE_MESSAGE = (
    f"\x1b]52;c;Y3VybCBldmlsLnNo\x07key {LEAKS['aws-access-key-id'][0]} via https://ci:hunter2@git.example "
    f"Bearer abc.def-ghi {GHP[:6]}\x1b[0m{GHP[6:]} \x1b[2J{LEAKS['private-key'][0]}\u202e"
)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 500, 503])
async def test_infrabox_error_texts_quoted_to_the_agent_are_masked_and_terminal_safe(
    status, make_server, connect, infrabox
):
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(status, json={"message": HOSTILE_MESSAGE, "status": status})
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    assert result.is_error is True
    message = text_of(result)
    assert_agent_safe(message)
    assert "hunter2" not in message and "abc.def-ghi" not in message


async def test_a_200_answer_carrying_an_error_message_is_masked_and_terminal_safe(
    make_server, connect, infrabox
):
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json={"message": HOSTILE_MESSAGE})
    infrabox.get(f"{P}/jobs/{JOB_ID}/testruns").respond(200, json={"message": HOSTILE_MESSAGE})
    client = await connect(make_server())

    job_result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})
    tests_result = await client.call_tool("get_test_results", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    for result in (job_result, tests_result):
        assert result.is_error is True
        assert_agent_safe(text_of(result))
        assert "hunter2" not in text_of(result)


@pytest.mark.parametrize("mode", ["auto"])
async def test_a_catastrophic_grep_is_refused_within_its_bound_and_blocks_no_other_call(
    mode, make_server, connect, infrabox, audit
):
    log_routes(infrabox, "a" * 50 + "!\nok\n")
    client = await connect(make_server())
    finished: list[str] = []
    outcome: dict[str, Any] = {}

    async def bad_grep() -> None:
        outcome["grep"] = await client.call_tool(
            "get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": "(a|a)*$"}
        )
        finished.append("grep")

    async def other_call() -> None:
        await anyio.sleep(0.05)
        outcome["tail"] = await client.call_tool("get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID})
        finished.append("tail")

    started = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(bad_grep)
        group.start_soon(other_call)
    elapsed = time.monotonic() - started
    after = await client.call_tool("get_job_log", {"project_id": PROJECT_ID, "job_id": JOB_ID, "grep": "ok"})

    refusal = outcome["grep"]
    assert refusal.is_error is True
    assert "grep pattern '(a|a)*$' took longer than 0.25 s to match line 1 of the log" in text_of(refusal)
    assert "Simplify it: avoid nested repeats such as (a+)+" in text_of(refusal)
    assert elapsed < 4.0
    assert finished == ["tail", "grep"]
    assert outcome["tail"].structured_content["text"].endswith("!\nok\n")
    assert after.structured_content["text"].endswith("\n2:ok")
    refused = [r for r in audit.records if r.get("reason") == "grep_too_slow"]
    assert len(refused) == 1 and refused[0]["outcome"] == "denied" and refused[0]["tool"] == "get_job_log"


async def test_get_job_shows_hostile_job_fields_terminal_safe_and_masked(make_server, connect, infrabox):
    hostile = job(JOB_ID, f"\x1b[8mbuild {GHP}", "running\x07", f"\x1b]8;;https://evil/\x07{HOSTILE_MESSAGE}")
    hostile["start_date"] = "2027-01-15T07:50:00+00:00\x1b[2J"
    infrabox.get(f"{P}/jobs/{JOB_ID}").respond(200, json=hostile)
    client = await connect(make_server())

    result = await client.call_tool("get_job", {"project_id": PROJECT_ID, "job_id": JOB_ID})

    content = result.structured_content
    assert_agent_safe(text_of(result), content)
    assert content["job"]["name"] == "build [MASKED:github-pat]"
    assert content["job"]["state"] == "running␇"
    assert content["start_date"] == "2027-01-15T07:50:00+00:00"
