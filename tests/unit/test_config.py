"""Settings from environment and flags; every problem names its variable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from mcp_ci_tools.config import ConfigError, Settings, load_settings
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


def test_host_in_the_audit_path_names_each_replicas_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "mcp-ci-tools-5f7c9-abcde")

    settings = load_settings([], {**BASE_ENV, "MCP_CI_AUDIT_LOG": "/var/lib/mcp-ci-tools/audit-{host}.jsonl"})

    assert settings.audit_log == Path("/var/lib/mcp-ci-tools/audit-mcp-ci-tools-5f7c9-abcde.jsonl")
    with pytest.raises(ConfigError) as refused:
        load_settings([], {**BASE_ENV, "MCP_CI_AUDIT_LOG": "/var/lib/audit-{pod}.jsonl"})
    assert refused.value.variable == "MCP_CI_AUDIT_LOG"
    assert "the only placeholder is {host}" in refused.value.problem


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
    assert settings.token is not None
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
        settings.max_sessions_per_token,
        settings.max_connections,
        settings.header_timeout,
        settings.session_idle_timeout,
        settings.shutdown_grace,
    ) == (
        4 * 1024 * 1024,
        1000,
        16,
        1000,
        10.0,
        600.0,
        10.0,
    )


@pytest.mark.parametrize(
    ("flags", "variable"),
    [
        (["--transport", "websocket"], "MCP_CI_TRANSPORT"),
        (["--transport", "http", "--port", "70000"], "MCP_CI_PORT"),
        (["--transport", "http", "--max-sessions-per-token", "0"], "MCP_CI_MAX_SESSIONS_PER_TOKEN"),
        (["--transport", "http", "--max-connections", "0"], "MCP_CI_MAX_CONNECTIONS"),
        (["--transport", "http", "--header-timeout", "0"], "MCP_CI_HEADER_TIMEOUT"),
        (["--transport", "http", "--header-timeout", "soon"], "MCP_CI_HEADER_TIMEOUT"),
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


# Today's interface: every field's variable and flag, with a value that differs from the default.
UUID = "5b0e8a0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
SETTINGS = [
    ("infrabox_url", "INFRABOX_URL", "--infrabox-url", "https://other.example", "https://other.example"),
    (
        "token",
        "INFRABOX_MCP_TOKEN",
        "--infrabox-mcp-token",
        "ib_mcp_" + "e" * 48,
        SecretStr("ib_mcp_" + "e" * 48),
    ),
    ("allow_trigger", "MCP_CI_ALLOW_TRIGGER", "--allow-trigger", None, True),
    ("trigger_per_minute", "MCP_CI_TRIGGER_PER_MINUTE", "--trigger-per-minute", "7", 7),
    ("read_per_minute", "MCP_CI_READ_PER_MINUTE", "--read-per-minute", "31", 31),
    ("log_per_minute", "MCP_CI_LOG_PER_MINUTE", "--log-per-minute", "11", 11),
    ("audit_log", "MCP_CI_AUDIT_LOG", "--audit-log", "/var/log/a.jsonl", Path("/var/log/a.jsonl")),
    ("timeout", "MCP_CI_TIMEOUT", "--timeout", "2.5", 2.5),
    ("transport", "MCP_CI_TRANSPORT", "--transport", "sse", "sse"),
    ("host", "MCP_CI_HOST", "--host", "0.0.0.0", "0.0.0.0"),
    ("port", "MCP_CI_PORT", "--port", "9000", 9000),
    ("workers", "MCP_CI_WORKERS", "--workers", "3", 3),
    ("allowed_hosts", "MCP_CI_ALLOWED_HOSTS", "--allowed-host", "a,b:*", ("a", "b:*")),
    ("allowed_origins", "MCP_CI_ALLOWED_ORIGINS", "--allowed-origin", "https://o", ("https://o",)),
    ("max_body_bytes", "MCP_CI_MAX_BODY_BYTES", "--max-body-bytes", "2048", 2048),
    ("max_sessions", "MCP_CI_MAX_SESSIONS", "--max-sessions", "5", 5),
    ("max_sessions_per_token", "MCP_CI_MAX_SESSIONS_PER_TOKEN", "--max-sessions-per-token", "2", 2),
    ("max_connections", "MCP_CI_MAX_CONNECTIONS", "--max-connections", "50", 50),
    ("header_timeout", "MCP_CI_HEADER_TIMEOUT", "--header-timeout", "2.5", 2.5),
    ("session_idle_timeout", "MCP_CI_SESSION_IDLE_TIMEOUT", "--session-idle-timeout", "60", 60.0),
    ("shutdown_grace", "MCP_CI_SHUTDOWN_GRACE", "--shutdown-grace", "0", 0.0),
    ("state_url", "MCP_CI_STATE_URL", "--state-url", "redis://redis:6379/0", "redis://redis:6379/0"),
    ("state_prefix", "MCP_CI_STATE_PREFIX", "--state-prefix", "p:", "p:"),
    ("state_timeout", "MCP_CI_STATE_TIMEOUT", "--state-timeout", "1", 1.0),
    ("permission_ttl", "MCP_CI_PERMISSION_TTL", "--permission-ttl", "60", 60.0),
    ("toolsets", "MCP_CI_TOOLSETS", "--toolsets", "read", ("read",)),
    ("projects", "MCP_CI_PROJECTS", "--projects", UUID.upper(), (UUID,)),
    ("max_restarts_per_build", "MCP_CI_MAX_RESTARTS_PER_BUILD", "--max-restarts-per-build", "0", 0),
    ("restart_window", "MCP_CI_RESTART_WINDOW", "--restart-window", "60", 60),
    ("dedupe_seconds", "MCP_CI_DEDUPE_SECONDS", "--dedupe-seconds", "0", 0.0),
    ("confirm", "MCP_CI_CONFIRM", "--confirm", "abort_job,rerun_job", ("abort_job", "rerun_job")),
    ("max_wait", "MCP_CI_MAX_WAIT", "--max-wait", "600", 600),
    ("task_ttl", "MCP_CI_TASK_TTL", "--task-ttl", "600", 600),
    (
        "metrics_token",
        "MCP_CI_METRICS_TOKEN",
        "--metrics-token",
        "scrape-0123456789abcdef",
        SecretStr("scrape-0123456789abcdef"),
    ),
    ("metrics_port", "MCP_CI_METRICS_PORT", "--metrics-port", "9100", 9100),
    ("metrics_host", "MCP_CI_METRICS_HOST", "--metrics-host", "0.0.0.0", "0.0.0.0"),
    (
        "request_state_key",
        "MCP_CI_REQUEST_STATE_KEY",
        "--request-state-key",
        "k" * 32,
        SecretStr("k" * 32),
    ),
]
# Over HTTP no token is needed, so every row but the token's can be set alone.
HTTP_ENV = {"INFRABOX_URL": "https://infrabox.example.com", "MCP_CI_TRANSPORT": "http", "HOME": "/home/agent"}
STDIO_ENV = {"INFRABOX_URL": "https://infrabox.example.com", "HOME": "/home/agent"}


def test_every_field_has_exactly_one_variable_and_one_flag() -> None:
    assert [row[0] for row in SETTINGS] == list(Settings.model_fields)
    assert len({row[1] for row in SETTINGS}) == len({row[2] for row in SETTINGS}) == len(SETTINGS)


@pytest.mark.parametrize(
    ("field", "variable", "flag", "raw", "expected"), SETTINGS, ids=[r[0] for r in SETTINGS]
)
def test_each_setting_is_read_from_its_variable_and_its_flag(
    field: str, variable: str, flag: str, raw: str | None, expected: object
) -> None:
    base = STDIO_ENV if field == "token" else HTTP_ENV
    if field == "metrics_port":  # stdio only: over HTTP /metrics is on the main port
        base = {**STDIO_ENV, "INFRABOX_MCP_TOKEN": TOKEN}
    if field == "workers":  # several only over Streamable HTTP, with budgets in Redis
        base = {**HTTP_ENV, "MCP_CI_TRANSPORT": "streamable-http", "MCP_CI_STATE_URL": "redis://redis:6379/0"}
    from_variable = load_settings([], {**base, variable: raw or "true"})
    from_flag = load_settings([flag] if raw is None else [flag, raw], base)

    assert getattr(from_variable, field) == getattr(from_flag, field) == expected
    assert Settings.model_fields[field].default != expected


@pytest.mark.parametrize(
    "argv",
    [
        ["--token", TOKEN],
        ["--allowed-hosts", "a"],
        ["--allowed-origins", "a"],
        ["--mcp-ci-token", TOKEN],
        ["--mcp-ci-infrabox-url", "https://x"],
    ],
)
def test_there_are_no_other_flags(argv: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(argv, HTTP_ENV)

    assert caught.value.variable == "command line"
    assert "unrecognized arguments" in str(caught.value)
    assert TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "env",
    [
        {"MCP_CI_TOKEN": TOKEN},
        {"TOKEN": TOKEN},
        {"MCP_CI_INFRABOX_MCP_TOKEN": TOKEN},
        {"infrabox_mcp_token": TOKEN},
    ],
)
def test_there_are_no_other_variables_and_names_are_upper_case(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {**STDIO_ENV, **env})

    assert str(caught.value) == "INFRABOX_MCP_TOKEN: is required (set it or pass --infrabox-mcp-token)"


def test_a_lower_case_variable_is_not_read() -> None:
    assert load_settings([], {**BASE_ENV, "mcp_ci_timeout": "5"}).timeout == 30.0


def test_empty_or_blank_variables_count_as_unset_and_values_are_stripped() -> None:
    settings = load_settings(
        [], {**BASE_ENV, "MCP_CI_TIMEOUT": "  ", "MCP_CI_PORT": "", "MCP_CI_TRIGGER_PER_MINUTE": " 4 "}
    )

    assert (settings.timeout, settings.port, settings.trigger_per_minute) == (30.0, 8000, 4)
    with pytest.raises(ConfigError, match=r"^INFRABOX_URL: is required \(set it or pass --infrabox-url\)$"):
        load_settings([], {**BASE_ENV, "INFRABOX_URL": " \t"})


def test_a_flag_replaces_the_variable_it_overrides() -> None:
    env = {**HTTP_ENV, "MCP_CI_ALLOWED_HOSTS": "from-env", "MCP_CI_TIMEOUT": "9"}

    settings = load_settings(["--allowed-host", "a", "--allowed-host", "b,c", "--timeout", "3"], env)

    assert settings.allowed_hosts == ("a", "b", "c")
    assert settings.timeout == 3.0


@pytest.mark.parametrize(
    ("flag", "variable", "expected"), [("--no-allow-trigger", "true", False), ("--allow-trigger", "no", True)]
)
def test_a_bool_flag_wins_over_its_variable(flag: str, variable: str, expected: bool) -> None:
    settings = load_settings([flag], {**BASE_ENV, "MCP_CI_ALLOW_TRIGGER": variable})

    assert settings.allow_trigger is expected


@pytest.mark.parametrize("raw", ["on", "off", "y", "t", "2"])
def test_bools_accept_only_the_documented_spellings(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {**BASE_ENV, "MCP_CI_ALLOW_TRIGGER": raw})

    assert str(caught.value) == f"MCP_CI_ALLOW_TRIGGER: expected one of 1/true/yes or 0/false/no, got {raw!r}"


def test_flag_values_are_taken_literally() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(["--state-url", "null"], BASE_ENV)

    assert str(caught.value).endswith("(got 'null')")
    assert load_settings(["--host", "null"], BASE_ENV).host == "null"


def test_a_redis_password_is_masked_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {**BASE_ENV, "MCP_CI_STATE_URL": "redis://:hunter2@redis:port/0"})

    assert str(caught.value) == (
        "MCP_CI_STATE_URL: has an invalid port (got 'redis://:[MASKED:url-password]@redis:port/0')"
    )


def test_load_settings_reads_only_the_environment_and_arguments_it_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MCP_CI_TRIGGER_PER_MINUTE", "7")
    monkeypatch.setenv("MCP_CI_TRANSPORT", "websocket")
    monkeypatch.setenv("INFRABOX_URL", "https://from-os-environ.example")
    monkeypatch.setattr(sys, "argv", ["mcp-ci-tools", "--frobnicate", "--port", "1"])

    settings = load_settings([], BASE_ENV)

    assert (settings.trigger_per_minute, settings.transport, settings.port) == (5, "stdio", 8000)
    assert settings.infrabox_url == "https://infrabox.example.com"


def test_settings_built_directly_take_only_their_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MCP_CI_TIMEOUT", "9")
    monkeypatch.setenv("MCP_CI_TOKEN", TOKEN)
    monkeypatch.setenv("INFRABOX_MCP_TOKEN", TOKEN)
    monkeypatch.setattr(sys, "argv", ["mcp-ci-tools", "--port", "1"])

    settings = Settings(infrabox_url="https://ib", audit_log=Path("/a"), transport="http")

    assert (settings.timeout, settings.token, settings.port) == (30.0, None, 8000)
    assert Settings(
        infrabox_url="https://ib", audit_log=Path("/a"), infrabox_mcp_token=SecretStr(TOKEN)
    ).token_fingerprint == fingerprint(TOKEN)


def _help(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """--help by flag: each flag's entry as one line (a wide terminal keeps argparse from wrapping it)."""
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit) as exited:
        load_settings(["--help"], {"HOME": "/home/agent"})
    out, err = capsys.readouterr()

    assert exited.value.code == 0
    assert err == ""
    entries: dict[str, str] = {}
    for line in out.split("\noptions:\n")[1].split("\nmore:\n")[0].splitlines():
        if line.startswith("  -"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line.strip()
        else:
            entries[flag] += " " + line.strip()
    return entries


def test_help_shows_each_flag_with_its_variable_and_default(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = _help(capsys, monkeypatch)

    assert set(lines) == {"-h", *(row[2] for row in SETTINGS)}
    for field, variable, flag, _, _ in SETTINGS:
        line = lines[flag]
        assert line.endswith(f"[env: {variable}]"), line
        description = Settings.model_fields[field].description
        assert description is not None and description in line
        default = Settings.model_fields[field].default
        if field == "infrabox_url":
            assert "(required)" in line
        elif field == "audit_log":
            assert "(default: /home/agent/.local/state/mcp-ci-tools/audit.jsonl)" in line
        elif default is not None:
            assert f"(default: {default})" in line, line
    assert "--allow-trigger, --no-allow-trigger" in lines["--allow-trigger"]


def test_help_also_names_the_sandbox_the_version_the_log_level_and_the_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")
    with pytest.raises(SystemExit):
        load_settings(["--help"], {"HOME": "/home/agent"})
    more = capsys.readouterr().out.split("\nmore:\n")[1]

    for entry in (
        "--sandbox",
        "-V, --version",
        "MCP_CI_LOG_LEVEL",
        "mcp-ci-tools sandbox",
        "mcp-ci-tools demo",
    ):
        assert f"\n  {entry} " in "\n" + more, entry


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"MCP_CI_TRANSPORT": "streamable-http"}, "needs budgets shared through Redis: set MCP_CI_STATE_URL"),
        ({"MCP_CI_TRANSPORT": "sse", "MCP_CI_STATE_URL": "redis://r:6379/0"}, "an SSE session lives in one"),
        ({"MCP_CI_TRANSPORT": "http", "MCP_CI_STATE_URL": "redis://r:6379/0"}, "not http"),
        ({"MCP_CI_STATE_URL": "redis://r:6379/0", "INFRABOX_MCP_TOKEN": TOKEN}, "stdio is one client's pipe"),
        (
            {
                "MCP_CI_TRANSPORT": "streamable-http",
                "MCP_CI_STATE_URL": "redis://r:6379/0",
                "MCP_CI_AUDIT_LOG": "-",
            },
            "one standard output",
        ),
    ],
)
def test_several_workers_are_refused_where_they_could_not_share_one_exact_budget(
    environ: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings([], {**STDIO_ENV, **environ, "MCP_CI_WORKERS": "2"})

    assert refused.value.variable == "MCP_CI_WORKERS"
    assert problem in refused.value.problem


@pytest.mark.parametrize("key", ["k" * 31, "k" * 31 + " ", "ключ" * 10])
def test_a_request_state_key_too_short_or_not_printable_ascii_is_refused_without_being_shown(
    key: str,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings([], {**HTTP_ENV, "MCP_CI_REQUEST_STATE_KEY": key})

    assert str(caught.value).startswith("MCP_CI_REQUEST_STATE_KEY: must be at least 32 printable ASCII")
    assert key.strip() not in str(caught.value)
