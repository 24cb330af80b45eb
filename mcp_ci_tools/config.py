"""Settings from the environment and command-line flags, validated once at start-up.

Each setting is declared once, as a field of `Settings`: pydantic-settings derives its environment
variable (`MCP_CI_<FIELD>`, or the field's alias) and its flag (`--<field-with-dashes>`). A flag wins over
the variable. Anything missing or invalid raises `ConfigError` naming the variable, which `__main__` turns
into one stderr line and exit 2.
"""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn, get_args
from urllib.parse import urlsplit, urlunsplit

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    CliSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

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
    "expand_audit_path",
    "load_settings",
]

Transport = Literal["stdio", "sse", "streamable-http", "http"]
TOOLSETS = ("read", "trigger")
TRIGGER_TOOLS = ("restart_build", "abort_build", "restart_job", "rerun_job", "abort_job")


_HOSTNAME = (
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
_HOST_NAME = rf"(?:{_HOSTNAME}|\[[0-9A-Fa-f:.]+\])"  # a DNS name or IPv4 address, or [IPv6]
_PORT = r"(?::(?:[0-9]{1,5}|\*))?"
_HOST = re.compile(_HOST_NAME + _PORT)
_ORIGIN = re.compile(r"https?://" + _HOST_NAME + _PORT)


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


_HOST_PLACEHOLDER = "{host}"
_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def expand_audit_path(template: str, host: str) -> Path:
    """`MCP_CI_AUDIT_LOG` with `{host}` replaced by `host` made safe for a file name (the pod's name in
    Kubernetes), so each replica writing to a shared volume has its own file (and hash chain)."""
    leftover = template.replace(_HOST_PLACEHOLDER, "")
    if "{" in leftover or "}" in leftover:
        raise ValueError("the only placeholder is {host} (the host name); remove any other { or }")
    return Path(template.replace(_HOST_PLACEHOLDER, _UNSAFE_IN_FILE_NAME.sub("_", host).strip(".") or "host"))


def _parse_bool(value: object) -> object:
    if not isinstance(value, str):
        return value
    spelled = value.strip().lower()
    if spelled in ("1", "true", "yes"):
        return True
    if spelled in ("0", "false", "no"):
        return False
    raise PydanticCustomError(
        "bool_spelling", "expected one of 1/true/yes or 0/false/no, got {got}", {"got": repr(value)}
    )


def _split_items(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple):
        return tuple(part.strip() for item in value for part in str(item).split(",") if part.strip())
    return value


_Bool = Annotated[bool, BeforeValidator(_parse_bool)]
# Comma-separated in a variable; a repeated flag arrives comma-joined. NoDecode: no JSON decoding first.
_Items = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_split_items)]


class Settings(BaseSettings):
    """The validated configuration of one server process."""

    model_config = SettingsConfigDict(
        frozen=True,
        extra="forbid",
        loc_by_alias=False,
        env_prefix="MCP_CI_",
        cli_prog_name="mcp-ci-tools",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_show_env_vars=True,
        cli_hide_none_type=True,
        # The flag is singular where the variable is plural; _Parser drops the plural flag.
        cli_shortcuts={"allowed-hosts": "allowed-host", "allowed-origins": "allowed-origin"},
    )

    # An alias stands for the MCP_CI_ name: the variable is INFRABOX_URL, the flag --infrabox-url.
    infrabox_url: str = Field(validation_alias="infrabox_url", description="InfraBox root URL")
    token: SecretStr | None = Field(
        None,
        validation_alias="infrabox_mcp_token",
        description="the ib_mcp_... token: required with stdio, refused with the HTTP transports (callers "
        "bring their own); prefer the variable: flags show in `ps`",
    )
    allow_trigger: _Bool = Field(False, description="whether the token has InfraBox's allow_trigger")
    trigger_per_minute: int = Field(5, ge=1, le=1000, description="trigger budget")
    read_per_minute: int = Field(
        30, ge=1, le=10_000, description="budget of each read bucket: projects, builds, jobs"
    )
    log_per_minute: int = Field(10, ge=1, le=10_000, description="budget of log reads")
    audit_log: Path = Field(
        description="audit JSONL file ({host} is replaced by the host name, so replicas sharing a volume "
        "write a file each); - writes the records to stdout (HTTP transports only)"
    )  # load_settings defaults it from the environment
    timeout: float = Field(30.0, gt=0, le=600, description="seconds per HTTP request")
    transport: Transport = Field("stdio", description="streamable-http serves /mcp, sse /sse, http both")
    host: str = Field("127.0.0.1", description="HTTP bind address")
    port: int = Field(8000, ge=0, le=65535, description="HTTP port")
    workers: int = Field(
        1,
        ge=1,
        le=64,
        description="streamable-http only: worker processes serving the port (SO_REUSEPORT); above 1 "
        "requires MCP_CI_STATE_URL (budgets are shared through Redis) and serves /mcp stateless",
    )
    allowed_hosts: _Items = Field(
        (),
        description="Host header to accept besides loopback, repeatable or comma-separated; name, "
        "name:port or name:*",
    )
    allowed_origins: _Items = Field(
        (), description="browser Origin to accept besides loopback; repeatable or comma-separated"
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="largest request body in bytes")
    max_sessions: int = Field(1000, ge=1, description="stateful HTTP sessions at most")
    max_sessions_per_token: int = Field(
        16, ge=1, description="HTTP sessions and SSE streams one token may have open at once"
    )
    max_connections: int = Field(
        1000, ge=1, le=100_000, description="open HTTP connections; beyond it the oldest idle one is dropped"
    )
    header_timeout: float = Field(
        10.0, gt=0, le=600, description="seconds a connection may take to send a request's headers"
    )
    session_idle_timeout: float = Field(
        600.0, gt=0, description="seconds before an idle HTTP session is closed"
    )
    shutdown_grace: float = Field(10.0, ge=0, description="seconds in-flight calls may finish after SIGTERM")
    state_url: str | None = Field(None, description="Redis URL shared by replicas; unset: in memory")
    state_prefix: str = Field("mcp-ci-tools:", min_length=1, max_length=100, description="Redis key prefix")
    state_timeout: float = Field(0.25, gt=0, le=30, description="seconds per Redis call")
    permission_ttl: float = Field(
        3600.0,
        gt=0,
        description="seconds a learned 'no trigger permission' is kept before asking InfraBox again",
    )
    toolsets: _Items = Field(TOOLSETS, description="toolsets to serve, comma-separated")
    projects: _Items = Field((), description="only these project UUIDs, comma-separated; unset: all")
    max_restarts_per_build: int = Field(
        3, ge=0, description="restart/rerun requests per build lineage in the window; 0 turns the guard off"
    )
    restart_window: int = Field(3600, ge=1, description="seconds of the restart-loop window")
    dedupe_seconds: float = Field(
        30.0, ge=0, description="seconds an identical trigger call is not sent again; 0 turns the guard off"
    )
    confirm: _Items = Field((), description="trigger tools that ask the user first (elicitation)")
    max_wait: int = Field(
        55,
        ge=1,
        le=1800,
        description="seconds wait_for_build waits at most in one call; raise it only for clients that allow "
        "calls that long (many cut a call at about 60 s)",
    )
    task_ttl: int = Field(
        3600,
        ge=60,
        le=86400,
        description="seconds a wait_for_build task (MCP Tasks) lives, its result included",
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="if set, /metrics requires 'Authorization: Bearer <this>'; unset: /metrics is open",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="stdio only: serve /metrics on this port (off by default; the HTTP transports serve "
        "/metrics on MCP_CI_PORT)",
    )
    metrics_host: str = Field("127.0.0.1", description="stdio only: bind address of --metrics-port")
    request_state_key: SecretStr | None = Field(
        None,
        description="the key sealing the state of an input-required round (a confirmation question) for "
        "the round that answers it; give replicas behind one load balancer the same one (at least 32 "
        "printable characters). Unset: a key of this process's own (--workers share one made at start)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Settings(...) takes only its arguments; load_settings reads the environment and flags it is given.
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _accept_field_names(cls, data: object) -> object:
        # Code and tests write Settings(token=...); the alias alone is offered as a variable and a flag.
        if isinstance(data, dict):
            return {_key(name) if name in cls.model_fields else name: value for name, value in data.items()}
        return data

    @field_validator("infrabox_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        text = value.strip()
        if any(character.isspace() for character in text):
            raise ValueError("must not contain spaces")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://infrabox.example.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry credentials, a query or a fragment")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError:
            raise ValueError("has an invalid port") from None
        path = parts.path.rstrip("/")
        for api in ("/api/v1/mcp", "/api/v1"):
            if path.lower().endswith(api):
                root = urlunsplit((parts.scheme, parts.netloc, path[: -len(api)], "", ""))
                raise ValueError(
                    f"is InfraBox's API path, not its root: use {root} (the server calls {root}/api/v1/mcp/...)"
                )
        return text.rstrip("/")

    @field_validator("allowed_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _all_match(
            value,
            _ORIGIN,
            "is not a browser origin: write scheme://host[:port] (or scheme://host:* for any port), with no "
            "path and no trailing slash, e.g. https://chat.example.com",
        )

    @field_validator("allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _all_match(
            value,
            _HOST,
            "is not a Host header value: write name, name:port or name:* (no scheme, no path), "
            "e.g. ci-tools.example.com",
        )

    @field_validator("audit_log")
    @classmethod
    def _expand_host(cls, value: Path) -> Path:
        return expand_audit_path(str(value), socket.gethostname())

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

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: SecretStr | None) -> SecretStr | None:
        return _printable_secret(value, at_least=16)

    @field_validator("request_state_key")
    @classmethod
    def _check_request_state_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _printable_secret(value, at_least=32)

    @property
    def token_fingerprint(self) -> str:
        if self.token is None:
            raise ValueError("no token configured: HTTP callers bring their own")
        return fingerprint(self.token.get_secret_value())


def _all_match(items: tuple[str, ...], form: re.Pattern[str], problem: str) -> tuple[str, ...]:
    """`items`, if each has the `form`; else the error names the first that does not, and the `problem`."""
    for item in items:
        if not form.fullmatch(item):
            raise PydanticCustomError("form", "{got} " + problem, {"got": repr(item[:80])})
    return items


def _key(name: str) -> str:
    """The key of field `name` in the sources and in validation: its alias, else its name."""
    alias = Settings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else name


class _Environment(EnvSettingsSource):
    """The variables of a given mapping, not os.environ; empty ones count as unset, values are stripped."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ  # the base __init__ calls _load_env_vars
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # pydantic-settings matches names in any case; today only the upper-case spelling counts.
        given = {name: value.strip() for name, value in self._environ.items() if name == name.upper()}
        return parse_env_vars({name: value for name, value in given.items() if value}, self.case_sensitive)


_EPILOG = """\
more:
  --sandbox             serve against a fresh sandbox InfraBox started in this
                        process (its URL and tokens are logged on stderr)
  -V, --version         print the version and exit
  MCP_CI_LOG_LEVEL      stderr log level: DEBUG, INFO (default), WARNING, ERROR

commands:
  mcp-ci-tools sandbox  serve the InfraBox sandbox on its own (--help for its flags)
  mcp-ci-tools demo     play a scripted agent session against the sandbox (--help)
  mcp-ci-tools audit    verify the audit trail's hash chain; show or count the calls
                        it records (audit verify|show|stats --help)
"""


class _Parser(argparse.ArgumentParser):
    """The root parser pydantic-settings fills in; problems raise ConfigError instead of exiting."""

    def __init__(self, defaults: Mapping[str, object]) -> None:
        super().__init__(
            prog=Settings.model_config.get("cli_prog_name"),
            description="MCP server for InfraBox builds and jobs. Every flag has an environment variable.",
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        self.defaults = defaults
        self.flag_of: dict[str, str] = {}

    def error(self, message: str) -> NoReturn:  # argparse would print usage and exit; we want one line
        raise ConfigError("command line", mask(message))  # it repeats unknown arguments: maybe a token

    def add_setting(self, *flags: str, **kwargs: Any) -> argparse.Action:
        """add_argument for pydantic-settings, minus the plural flag a shortcut replaces, plus defaults."""
        shortcuts = Settings.model_config.get("cli_shortcuts") or {}
        flags = tuple(flag for flag in flags if flag.removeprefix("--") not in shortcuts)
        if kwargs["dest"] in self.defaults:  # required by Settings, defaulted by load_settings
            kwargs["help"] = kwargs["help"].replace(
                "(required)", f"(default: {self.defaults[kwargs['dest']]})"
            )
        self.flag_of[kwargs["dest"]] = flags[0]
        return self.add_argument(*flags, **kwargs)


def _printable_secret(value: SecretStr | None, *, at_least: int) -> SecretStr | None:
    if value is not None:
        secret = value.get_secret_value()
        if len(secret) < at_least or not all(33 <= ord(character) <= 126 for character in secret):
            raise ValueError(f"must be at least {at_least} printable ASCII characters without spaces")
    return value


def _check_workers(values: Mapping[str, Any], transport: str, variable: Mapping[str, str]) -> None:
    """Several workers only where it is safe: Streamable HTTP (no process-bound SSE sessions) on Redis."""
    try:
        workers = int(str(values.get("workers", 1)).strip())
    except ValueError:
        return  # not a number: Settings' own validation names the variable
    if workers <= 1:
        return
    if transport != "streamable-http":
        raise ConfigError(
            variable["workers"],
            f"above 1 works only with --transport streamable-http, not {transport}: "
            + (
                "stdio is one client's pipe"
                if transport == "stdio"
                else "an SSE session lives in one process, and its next POST may reach another worker"
            ),
        )
    if str(values.get("audit_log", "")).strip() == "-":
        raise ConfigError(
            variable["workers"],
            f"above 1 cannot write the audit to one standard output ({variable['audit_log']}=-): the workers' "
            "chains would interleave; give a file (the workers share it, chained under its lock)",
        )
    if not values.get("state_url"):
        raise ConfigError(
            variable["workers"],
            f"above 1 needs budgets shared through Redis: set {variable['state_url']} (each worker would "
            "otherwise count its own budget)",
        )


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Build `Settings` from flags (first) and environment variables; raise `ConfigError` on any problem."""
    defaults = {"audit_log": default_audit_path(environ)}
    environment, parser = _Environment(environ), _Parser(defaults)
    try:
        cli = CliSettingsSource[argparse.ArgumentParser](
            Settings,
            cli_parse_args=list(argv),
            root_parser=parser,
            add_argument_method=_Parser.add_setting,
            _env_settings_source=environment,  # --help names the variables of the source that reads them
        )
        # pydantic-settings reads the flag value "null" as None; here it stays a value like any other.
        flags = {key: cli.cli_parse_none_str if value is None else value for key, value in cli().items()}
        given = {**environment(), **flags}
    except SettingsError as error:
        raise ConfigError("command line", mask(str(error))) from None
    name_of = {_key(name): name for name in Settings.model_fields}
    values: dict[str, Any] = {**defaults, **{name_of[key]: value for key, value in given.items()}}
    variable = {name_of[key]: names[0] for key, names in cli.env_var_names.items()}
    flag = {name_of[key]: name for key, name in parser.flag_of.items()}

    transport = values.get("transport", Settings.model_fields["transport"].default)
    if transport not in get_args(Transport):
        raise ConfigError(
            variable["transport"],
            f"unknown transport {mask(str(transport))[:40]!r}; choose from {', '.join(get_args(Transport))}",
        )
    required = [name for name, field in Settings.model_fields.items() if field.is_required()]
    for name in [*required, "token"] if transport == "stdio" else required:
        if name not in values:
            raise ConfigError(variable[name], f"is required (set it or pass {flag[name]})")
    if transport == "stdio" and str(values.get("audit_log", "")) == "-":
        raise ConfigError(
            variable["audit_log"],
            "'-' (standard output) works only with the HTTP transports: over stdio, stdout carries the MCP "
            "messages and nothing else; name a file instead",
        )
    if transport != "stdio" and "token" in values:
        raise ConfigError(
            variable["token"],
            f"must not be set with --transport {transport}: it is for stdio; HTTP callers send their own token",
        )
    if transport != "stdio" and "metrics_port" in values:
        raise ConfigError(
            variable["metrics_port"],
            f"is for stdio only: with --transport {transport}, /metrics is served on the HTTP port "
            f"({variable['port']}) beside /healthz",
        )
    _check_workers(values, transport, variable)
    if transport == "stdio" and "metrics_token" in values and "metrics_port" not in values:
        raise ConfigError(
            variable["metrics_token"],
            f"has no effect over stdio without {variable['metrics_port']} (nothing serves /metrics)",
        )
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0])
        annotation = Settings.model_fields[name].annotation
        # Never the token; nor twice what the message already shows.
        hidden = SecretStr in (annotation, *get_args(annotation)) or "got" in first.get("ctx", {})
        got = "" if hidden else f" (got {mask(str(values.get(name)))[:80]!r})"
        raise ConfigError(variable[name], first["msg"].removeprefix("Value error, ") + got) from None
