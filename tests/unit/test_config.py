"""Settings from environment and flags; every problem names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mcp_ci_tools.config import ConfigError, load_settings
from mcp_ci_tools.domain.tokens import fingerprint
from tests.conftest import TOKEN

BASE_ENV = {
    "INFRABOX_URL": "https://infrabox.example.com/",
    "INFRABOX_MCP_TOKEN": TOKEN,
    "HOME": "/home/agent",
}


def test_defaults_follow_the_issue() -> None:
    settings = load_settings([], BASE_ENV)

    assert settings.infrabox_url == "https://infrabox.example.com"
    assert settings.allow_trigger is False
    assert settings.trigger_per_minute == 5
    assert settings.timeout == 30.0
    assert settings.audit_log == Path("/home/agent/.local/state/mcp-ci-tools/audit.jsonl")


def test_xdg_state_home_sets_the_default_audit_path() -> None:
    settings = load_settings([], {**BASE_ENV, "XDG_STATE_HOME": "/var/state"})

    assert settings.audit_log == Path("/var/state/mcp-ci-tools/audit.jsonl")


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", True), ("true", True), ("YES", True), ("0", False), ("no", False)]
)
def test_allow_trigger_accepts_the_documented_spellings(raw: str, expected: bool) -> None:
    assert load_settings([], {**BASE_ENV, "MCP_CI_ALLOW_TRIGGER": raw}).allow_trigger is expected


def test_every_setting_has_a_flag_and_flags_win_over_the_environment(tmp_path: Path) -> None:
    env = {**BASE_ENV, "MCP_CI_ALLOW_TRIGGER": "true", "MCP_CI_TRIGGER_PER_MINUTE": "3"}
    settings = load_settings(
        [
            "--infrabox-url",
            "http://localhost:8123",
            "--infrabox-mcp-token",
            "ib_mcp_" + "f" * 48,
            "--no-allow-trigger",
            "--trigger-per-minute",
            "2",
            "--audit-log",
            str(tmp_path / "a.jsonl"),
            "--timeout",
            "2.5",
        ],
        env,
    )

    assert settings.infrabox_url == "http://localhost:8123"
    assert settings.token.get_secret_value() == "ib_mcp_" + "f" * 48
    assert (settings.allow_trigger, settings.trigger_per_minute, settings.timeout) == (False, 2, 2.5)
    assert settings.audit_log == tmp_path / "a.jsonl"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"INFRABOX_URL": None}, "INFRABOX_URL"),
        ({"INFRABOX_MCP_TOKEN": None}, "INFRABOX_MCP_TOKEN"),
        ({"INFRABOX_URL": "ftp://x"}, "INFRABOX_URL"),
        ({"INFRABOX_URL": "https://user:pw@x"}, "INFRABOX_URL"),
        ({"INFRABOX_MCP_TOKEN": "ghp_notours"}, "INFRABOX_MCP_TOKEN"),
        ({"INFRABOX_MCP_TOKEN": "ib_mcp_" + "A" * 48}, "INFRABOX_MCP_TOKEN"),
        ({"MCP_CI_ALLOW_TRIGGER": "maybe"}, "MCP_CI_ALLOW_TRIGGER"),
        ({"MCP_CI_TRIGGER_PER_MINUTE": "0"}, "MCP_CI_TRIGGER_PER_MINUTE"),
        ({"MCP_CI_TRIGGER_PER_MINUTE": "five"}, "MCP_CI_TRIGGER_PER_MINUTE"),
        ({"MCP_CI_TIMEOUT": "-1"}, "MCP_CI_TIMEOUT"),
    ],
)
def test_missing_or_invalid_settings_name_their_variable(env: dict[str, str | None], variable: str) -> None:
    merged = {**BASE_ENV, **env}
    environ = {key: value for key, value in merged.items() if value is not None}

    with pytest.raises(ConfigError) as caught:
        load_settings([], environ)

    assert caught.value.variable == variable
    assert str(caught.value).startswith(variable)


def test_a_malformed_token_is_not_echoed_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {**BASE_ENV, "INFRABOX_MCP_TOKEN": "ib_mcp_secretbutmalformed"})

    assert "secretbutmalformed" not in str(caught.value)


def test_the_token_is_not_in_the_settings_repr() -> None:
    settings = load_settings([], BASE_ENV)

    assert TOKEN not in repr(settings)
    assert TOKEN not in str(settings.model_dump())


def test_fingerprint_is_the_sha256_prefix_of_the_whole_token() -> None:
    import hashlib

    assert fingerprint(TOKEN) == "sha256:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:12]
    assert load_settings([], BASE_ENV).token_fingerprint == fingerprint(TOKEN)


def test_an_unknown_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unrecognized arguments"):
        load_settings(["--frobnicate"], BASE_ENV)


def test_http_transports_need_no_token_and_refuse_one() -> None:
    env = {"INFRABOX_URL": "https://infrabox.example.com", "HOME": "/h"}

    settings = load_settings(["--transport", "streamable-http", "--port", "9000"], env)

    assert (settings.transport, settings.port, settings.host, settings.token) == (
        "streamable-http",
        9000,
        "127.0.0.1",
        None,
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(["--transport", "sse"], {**env, "INFRABOX_MCP_TOKEN": TOKEN})
    assert caught.value.variable == "INFRABOX_MCP_TOKEN"
    assert "HTTP callers send their own token" in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_allowed_hosts_and_origins_are_repeatable_and_comma_separated() -> None:
    env = {"INFRABOX_URL": "https://ib", "MCP_CI_ALLOWED_ORIGINS": "https://a.example, https://b.example"}

    settings = load_settings(
        [
            "--transport",
            "http",
            "--allowed-host",
            "ci.internal,ci.internal:*",
            "--allowed-host",
            "proxy:8443",
        ],
        env,
    )

    assert settings.allowed_hosts == ("ci.internal", "ci.internal:*", "proxy:8443")
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert (
        settings.max_body_bytes,
        settings.max_sessions,
        settings.session_idle_timeout,
        settings.shutdown_grace,
    ) == (
        4 * 1024 * 1024,
        1000,
        600.0,
        10.0,
    )


@pytest.mark.parametrize(
    ("flags", "variable"),
    [
        (["--transport", "websocket"], "MCP_CI_TRANSPORT"),
        (["--transport", "http", "--port", "70000"], "MCP_CI_PORT"),
    ],
)
def test_bad_transport_settings_name_their_variable(flags: list[str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(flags, {"INFRABOX_URL": "https://ib"})

    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MCP_CI_PROJECTS": "not-a-uuid"}, "MCP_CI_PROJECTS"),
        ({"MCP_CI_TOOLSETS": "read,admin"}, "MCP_CI_TOOLSETS"),
        ({"MCP_CI_CONFIRM": "abort_job,delete_everything"}, "MCP_CI_CONFIRM"),
        ({"MCP_CI_MAX_RESTARTS_PER_BUILD": "-1"}, "MCP_CI_MAX_RESTARTS_PER_BUILD"),
        ({"MCP_CI_DEDUPE_SECONDS": "-5"}, "MCP_CI_DEDUPE_SECONDS"),
        ({"MCP_CI_RESTART_WINDOW": "0"}, "MCP_CI_RESTART_WINDOW"),
    ],
)
def test_malformed_guard_settings_name_their_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {**BASE_ENV, **env})

    assert caught.value.variable == variable


def test_guard_settings_have_the_documented_defaults() -> None:
    settings = load_settings([], BASE_ENV)

    assert settings.toolsets == ("read", "trigger")
    assert settings.projects == ()
    assert (settings.max_restarts_per_build, settings.restart_window, settings.dedupe_seconds) == (
        3,
        3600,
        30.0,
    )
    assert settings.confirm == ()
