"""Resources and completions over Streamable HTTP: each caller reads with their own token, is audited as
themselves, and is offered only what their token may see."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import MCPError
from mcp.types import ResourceTemplateReference, TextResourceContents

from mcp_ci_tools.sandbox import SEED, SandboxHandle, start_in_thread
from tests.e2e.test_http import ALICE, CAROL, audit, connect, fingerprint, http_settings, serving

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[SandboxHandle]:
    with start_in_thread(tmp_path / "sandbox.sqlite3", job_duration_s=0, tick_interval_s=0.05) as handle:
        yield handle


TEMPLATE = ResourceTemplateReference(uri="infrabox://projects/{project_id}/jobs/{job_id}/console")


async def test_each_http_caller_reads_resources_and_completions_with_their_own_token(
    sandbox: SandboxHandle, tmp_path: Path
) -> None:
    console = f"infrabox://projects/{SEED.payments}/jobs/{SEED.failed_test_job}/console"
    other = f"infrabox://projects/{SEED.frontend}/jobs/{SEED.frontend_e2e_job}/console"
    with serving(http_settings(sandbox, tmp_path)) as base:
        async with (
            connect(base, "streamable-http", ALICE) as alice,
            connect(base, "streamable-http", CAROL) as carol,
        ):
            alice_offered = await alice.complete(TEMPLATE, {"name": "project_id", "value": ""})
            carol_offered = await carol.complete(TEMPLATE, {"name": "project_id", "value": ""})
            [read] = (await carol.read_resource(console)).contents
            with pytest.raises(MCPError) as refused:
                await carol.read_resource(other)

    assert set(alice_offered.completion.values) == {SEED.payments, SEED.frontend}
    assert carol_offered.completion.values == [SEED.payments]
    assert isinstance(read, TextResourceContents) and read.text.startswith("# Untrusted CI output")
    assert f"Project {SEED.frontend} is not enabled for this token ({fingerprint(CAROL)})" in (
        refused.value.error.message
    )
    consoles = [r for r in audit(tmp_path) if r["tool"] == "resource:console"]
    assert [(r["token"], r["outcome"]) for r in consoles] == [
        (fingerprint(CAROL), "success"),
        (fingerprint(CAROL), "error"),
    ]
