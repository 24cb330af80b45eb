"""`mcp-ci-tools` in this process: what a configuration error or --help leaves behind."""

from __future__ import annotations

import gc

import pytest

from mcp_ci_tools.__main__ import main


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("INFRABOX_URL", "INFRABOX_MCP_TOKEN", "MCP_CI_TRANSPORT"):
        monkeypatch.delenv(name, raising=False)


def test_a_configuration_error_exits_2_with_one_line_and_leaves_garbage_collection_on(
    no_settings: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--infrabox-url", "not a url"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mcp-ci-tools: configuration error: ")
    assert captured.err.count("\n") == 1
    assert gc.isenabled()


def test_help_leaves_garbage_collection_on(no_settings: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as leaving:
        main(["--help"])

    assert leaving.value.code == 0
    assert "INFRABOX_URL" in capsys.readouterr().out
    assert gc.isenabled()


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_prints_the_version_and_exits_0(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mcp_ci_tools import __version__

    assert main([flag]) == 0
    assert capsys.readouterr().out == f"mcp-ci-tools {__version__}\n"


@pytest.mark.parametrize("command", ["sandbox", "demo"])
def test_every_command_answers_help_with_exit_0_and_its_defaults(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main([command, "--help"])
    except SystemExit as leaving:  # argparse's way of finishing --help
        status = int(leaving.code or 0)

    out = capsys.readouterr().out
    assert status == 0
    assert out.startswith(f"usage: mcp-ci-tools {command}")
    assert "(default: " in out
