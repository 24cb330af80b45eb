"""Settings from the environment and command-line flags, validated once at start-up.

Each setting has an environment variable and a flag; a flag wins over the variable. Anything missing or
invalid raises `ConfigError` naming the variable, which `__main__` turns into one stderr line and exit 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from mcp_ci_tools.domain.ids import is_uuid
from mcp_ci_tools.domain.masking import mask
from mcp_ci_tools.domain.tokens import TOKEN_FORM, fingerprint, is_token

__all__ = [
    "TOOLSETS",
    "TRIGGER_TOOLS",
    "ConfigError",
    "Settings",
    "Transport",
    "default_audit_path",
    "load_settings",
]

Transport = Literal["stdio", "sse", "streamable-http", "http"]
TOOLSETS = ("read", "trigger")
TRIGGER_TOOLS = ("restart_build", "abort_build", "restart_job", "rerun_job", "abort_job")


class ConfigError(Exception):
    """A setting is missing or invalid; `variable` names the environment variable to fix."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def default_audit_path(environ: Mapping[str, str]) -> Path:
    state_home = environ.get("XDG_STATE_HOME") or str(
        Path(environ.get("HOME") or Path.home()) / ".local/state"
    )
    return Path(state_home) / "mcp-ci-tools" / "audit.jsonl"


class Settings(BaseModel):
    """The validated configuration of one server process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    infrabox_url: str
    token: SecretStr | None = None  # stdio only: over HTTP every caller brings their own
    allow_trigger: bool = False
    trigger_per_minute: int = Field(default=5, ge=1, le=1000)
    read_per_minute: int = Field(default=30, ge=1, le=10_000)
    log_per_minute: int = Field(default=10, ge=1, le=10_000)
    audit_log: Path
    timeout: float = Field(default=30.0, gt=0, le=600)
    transport: Transport = "stdio"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_sessions: int = Field(default=1000, ge=1)
    session_idle_timeout: float = Field(default=600.0, gt=0)
    shutdown_grace: float = Field(default=10.0, ge=0)
    state_url: str | None = None
    state_prefix: str = Field(default="mcp-ci-tools:", min_length=1, max_length=100)
    state_timeout: float = Field(default=0.25, gt=0, le=30)
    permission_ttl: float = Field(default=3600.0, gt=0)
    toolsets: tuple[str, ...] = ("read", "trigger")
    projects: tuple[str, ...] = ()
    max_restarts_per_build: int = Field(default=3, ge=0)
    restart_window: int = Field(default=3600, ge=1)
    dedupe_seconds: float = Field(default=30.0, ge=0)
    confirm: tuple[str, ...] = ()

    @field_validator("infrabox_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://infrabox.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry credentials, a query or a fragment")
        return value.strip().rstrip("/")

    @field_validator("token")
    @classmethod
    def _check_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not is_token(value.get_secret_value()):
            raise ValueError(f"must be an InfraBox MCP token: {TOKEN_FORM}")
        return value

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        schemes = ("redis", "rediss", "redis+sentinel", "redis+cluster", "redis+unix")
        if parts.scheme not in schemes:
            raise ValueError(f"must be a Redis URL ({', '.join(s + '://' for s in schemes)})")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has an invalid port") from None
        if parts.scheme != "redis+unix" and not parts.hostname:
            raise ValueError("must name a host, e.g. redis://redis:6379/0")
        return value.strip()

    @field_validator("toolsets")
    @classmethod
    def _check_toolsets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(TOOLSETS))
        if unknown or not value:
            raise ValueError(
                f"unknown toolset {', '.join(unknown) or '(none given)'}; choose from {', '.join(TOOLSETS)}"
            )
        return value

    @field_validator("projects")
    @classmethod
    def _check_projects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [item for item in value if not is_uuid(item)]
        if bad:
            raise ValueError(f"not a project UUID: {bad[0][:40]!r}")
        return tuple(item.lower() for item in value)

    @field_validator("confirm")
    @classmethod
    def _check_confirm(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(TRIGGER_TOOLS))
        if unknown:
            raise ValueError(
                f"not a trigger tool: {', '.join(unknown)}; choose from {', '.join(TRIGGER_TOOLS)}"
            )
        return value

    @field_validator("allowed_hosts", "allowed_origins", "toolsets", "projects", "confirm", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            return tuple(part.strip() for item in value for part in str(item).split(",") if part.strip())
        return value

    @property
    def token_fingerprint(self) -> str:
        if self.token is None:
            raise ValueError("no token configured: HTTP callers bring their own")
        return fingerprint(self.token.get_secret_value())


@dataclass(frozen=True)
class _Option:
    field: str
    variable: str
    flag: str
    help: str
    kind: str = "str"  # str | bool | list


_OPTIONS = (
    _Option("infrabox_url", "INFRABOX_URL", "--infrabox-url", "InfraBox root URL (required)"),
    _Option(
        "token",
        "INFRABOX_MCP_TOKEN",
        "--infrabox-mcp-token",
        "the ib_mcp_... token (required; prefer the environment variable: flags show in `ps`)",
    ),
    _Option(
        "allow_trigger",
        "MCP_CI_ALLOW_TRIGGER",
        "--allow-trigger",
        "whether the token has InfraBox's allow_trigger (default false)",
        "bool",
    ),
    _Option(
        "trigger_per_minute",
        "MCP_CI_TRIGGER_PER_MINUTE",
        "--trigger-per-minute",
        "trigger budget (default 5)",
    ),
    _Option(
        "read_per_minute",
        "MCP_CI_READ_PER_MINUTE",
        "--read-per-minute",
        "budget of each read bucket: projects, builds, jobs (default 30)",
    ),
    _Option(
        "log_per_minute", "MCP_CI_LOG_PER_MINUTE", "--log-per-minute", "budget of log reads (default 10)"
    ),
    _Option("audit_log", "MCP_CI_AUDIT_LOG", "--audit-log", "audit JSONL file"),
    _Option("timeout", "MCP_CI_TIMEOUT", "--timeout", "seconds per HTTP request (default 30)"),
    _Option(
        "transport",
        "MCP_CI_TRANSPORT",
        "--transport",
        "stdio (default), streamable-http (/mcp), sse (/sse), or http (both)",
    ),
    _Option("host", "MCP_CI_HOST", "--host", "HTTP bind address (default 127.0.0.1)"),
    _Option("port", "MCP_CI_PORT", "--port", "HTTP port (default 8000)"),
    _Option(
        "allowed_hosts",
        "MCP_CI_ALLOWED_HOSTS",
        "--allowed-host",
        "Host header to accept besides loopback; repeatable or comma-separated; name, name:port or name:*",
        "list",
    ),
    _Option(
        "allowed_origins",
        "MCP_CI_ALLOWED_ORIGINS",
        "--allowed-origin",
        "browser Origin to accept besides loopback; repeatable or comma-separated",
        "list",
    ),
    _Option(
        "max_body_bytes", "MCP_CI_MAX_BODY_BYTES", "--max-body-bytes", "largest request body (default 4 MiB)"
    ),
    _Option(
        "max_sessions",
        "MCP_CI_MAX_SESSIONS",
        "--max-sessions",
        "stateful HTTP sessions at most (default 1000)",
    ),
    _Option(
        "session_idle_timeout",
        "MCP_CI_SESSION_IDLE_TIMEOUT",
        "--session-idle-timeout",
        "seconds before an idle HTTP session is closed (default 600)",
    ),
    _Option(
        "state_url", "MCP_CI_STATE_URL", "--state-url", "Redis URL shared by replicas (default: in memory)"
    ),
    _Option(
        "state_prefix", "MCP_CI_STATE_PREFIX", "--state-prefix", "Redis key prefix (default mcp-ci-tools:)"
    ),
    _Option(
        "state_timeout", "MCP_CI_STATE_TIMEOUT", "--state-timeout", "seconds per Redis call (default 0.25)"
    ),
    _Option(
        "permission_ttl",
        "MCP_CI_PERMISSION_TTL",
        "--permission-ttl",
        "seconds a learned 'no trigger permission' is kept before InfraBox is asked again (default 3600)",
    ),
    _Option(
        "toolsets", "MCP_CI_TOOLSETS", "--toolsets", "toolsets to serve: read,trigger (default both)", "list"
    ),
    _Option(
        "projects",
        "MCP_CI_PROJECTS",
        "--projects",
        "only these project UUIDs, comma-separated (default: all the token allows)",
        "list",
    ),
    _Option(
        "max_restarts_per_build",
        "MCP_CI_MAX_RESTARTS_PER_BUILD",
        "--max-restarts-per-build",
        "restart/rerun requests per build lineage in the window (default 3; 0 turns the guard off)",
    ),
    _Option(
        "restart_window",
        "MCP_CI_RESTART_WINDOW",
        "--restart-window",
        "seconds of the restart-loop window (default 3600)",
    ),
    _Option(
        "dedupe_seconds",
        "MCP_CI_DEDUPE_SECONDS",
        "--dedupe-seconds",
        "seconds an identical trigger call is not sent again (default 30; 0 turns the guard off)",
    ),
    _Option(
        "confirm",
        "MCP_CI_CONFIRM",
        "--confirm",
        "trigger tools that ask the user first (elicitation)",
        "list",
    ),
    _Option(
        "shutdown_grace",
        "MCP_CI_SHUTDOWN_GRACE",
        "--shutdown-grace",
        "seconds in-flight calls may finish after SIGTERM (default 10)",
    ),
)
_VARIABLE_OF = {option.field: option.variable for option in _OPTIONS}
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no"}


def _parse_bool(variable: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(variable, f"expected one of 1/true/yes or 0/false/no, got {raw!r}")


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print usage and exit; we want one line
        raise ConfigError("command line", message)


def _parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="mcp-ci-tools",
        description="MCP server for InfraBox builds and jobs. Every flag has an environment variable.",
    )
    for option in _OPTIONS:
        if option.kind == "bool":
            parser.add_argument(
                option.flag,
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{option.help} [{option.variable}]",
            )
        elif option.kind == "list":
            parser.add_argument(
                option.flag,
                dest=option.field,
                action="append",
                default=None,
                help=f"{option.help} [{option.variable}]",
            )
        else:
            parser.add_argument(
                option.flag, dest=option.field, default=None, help=f"{option.help} [{option.variable}]"
            )
    return parser


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build `Settings` from flags (first) and environment variables; raise `ConfigError` on any problem."""
    flags = vars(_parser().parse_args(list(argv)))
    values: dict[str, Any] = {}
    for option in _OPTIONS:
        flag_value = flags.get(option.field)
        if flag_value is not None:
            values[option.field] = flag_value
            continue
        raw = environ.get(option.variable)
        if raw is None or raw.strip() == "":
            continue
        values[option.field] = _parse_bool(option.variable, raw) if option.kind == "bool" else raw.strip()
    transport = values.get("transport", "stdio")
    if "infrabox_url" not in values:
        raise ConfigError("INFRABOX_URL", "is required (set it or pass --infrabox-url)")
    if transport == "stdio" and "token" not in values:
        raise ConfigError("INFRABOX_MCP_TOKEN", "is required (set it or pass --infrabox-mcp-token)")
    if transport != "stdio" and "token" in values:
        raise ConfigError(
            "INFRABOX_MCP_TOKEN",
            f"must not be set with --transport {transport}: it is for stdio; HTTP callers send their own token",
        )
    values.setdefault("audit_log", default_audit_path(environ))
    try:
        return Settings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "configuration"
        message = first["msg"].removeprefix("Value error, ")
        shown = "" if field == "token" else f" (got {mask(str(values.get(field)))[:80]!r})"
        raise ConfigError(_VARIABLE_OF.get(field, field), f"{message}{shown}") from None
