"""`mcp-ci-tools demo`: its command line, and that its work directory goes away unless `--keep` is given.

The session itself runs in CI (`make demo`); here `_run` is replaced by one that leaves an audit log where
the real one does, so the tests see what a user finds on disk afterwards.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TextIO

import pytest

from mcp_ci_tools import demo


@pytest.fixture
def workdirs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    seen: list[Path] = []

    async def run(out: TextIO, workdir: Path, errlog: TextIO) -> None:
        seen.append(workdir)
        (workdir / "audit.jsonl").write_text('{"event":"attempt"}\n')

    monkeypatch.setattr(demo, "_run", run)
    return seen


def test_help_exits_0_and_names_keep(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--help"]) == 0
    assert "--keep" in capsys.readouterr().out


def test_an_unknown_argument_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--bogus"]) == 2
    assert "usage: mcp-ci-tools demo" in capsys.readouterr().err


def test_without_keep_the_work_directory_is_removed_and_the_user_told(
    workdirs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main([]) == 0

    out = capsys.readouterr().out
    assert not workdirs[0].exists()
    assert f"Removed the work directory {workdirs[0]}" in out and "--keep" in out


def test_with_keep_the_audit_log_stays_where_the_transcript_says(
    workdirs: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert demo.main(["--keep"]) == 0

    kept = re.search(r"Kept (\S+):", capsys.readouterr().out)
    assert kept is not None and Path(kept.group(1)) == workdirs[0]
    assert (workdirs[0] / "audit.jsonl").read_text() == '{"event":"attempt"}\n'
    shutil.rmtree(workdirs[0])
