"""server.json, the entry for the MCP Registry, as the registry and an MCP client read it.

It is validated against the registry's published schema, vendored next to this file (server.schema.json:
a byte-for-byte copy of https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json, from
github.com/modelcontextprotocol/static, schemas/2025-12-11/server.schema.json at commit
a9ba437d9fbbe92076a24b20d56449ac7c7786ac; its SHA-256 is pinned below). Beyond the schema: the registry's
own publish-time rules that this entry touches (template variables in a package's transport URL, named
arguments, the PyPI ownership marker, the GitHub namespace), and what must agree with the package: its
version and name, and every variable, default and secret against the server's settings, so that a client
configured from this entry starts the server.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr

from mcp_ci_tools import __version__
from mcp_ci_tools.config import Settings, load_settings
from mcp_ci_tools.http_app import MCP_PATH
from tests.conftest import TOKEN
from tests.deploy.test_kubernetes import known_variables

ROOT = Path(__file__).parent.parent.parent
SERVER_JSON = ROOT / "server.json"
SCHEMA = Path(__file__).parent / "server.schema.json"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
SCHEMA_SHA256 = "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0"
# Values a user would enter where the entry leaves them to the user (required, no default).
USER_VALUES = {"INFRABOX_URL": "https://infrabox.example.com", "INFRABOX_MCP_TOKEN": TOKEN}


def entry() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SERVER_JSON.read_text())
    return loaded


def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_bytes())
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def variable_of(name: str) -> str:
    """The environment variable of the setting `name`."""
    alias = Settings.model_fields[name].validation_alias
    return (
        alias.upper()
        if isinstance(alias, str)
        else f"{Settings.model_config.get('env_prefix')}{name}".upper()
    )


def field_of(variable: str) -> str:
    (name,) = [name for name in Settings.model_fields if variable_of(name) == variable]
    return name


def arguments(package: dict[str, Any]) -> list[str]:
    """The command-line arguments a client passes: fixed values, else the defaults."""
    argv = []
    for argument in package.get("packageArguments", []):
        assert argument["type"] == "named"
        argv += [argument["name"], argument.get("value", argument.get("default", ""))]
    return argv


def started_with(package: dict[str, Any]) -> Settings:
    """The settings the server starts with when a client runs `package` as the entry describes it."""
    env = {}
    for variable in package.get("environmentVariables", []):
        if "default" in variable:
            env[variable["name"]] = variable["default"]
        elif variable.get("isRequired"):
            env[variable["name"]] = USER_VALUES[variable["name"]]
    return load_settings(arguments(package), env)


def test_the_vendored_schema_is_the_published_one() -> None:
    schema = json.loads(SCHEMA.read_bytes())

    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert schema["$id"] == SCHEMA_URL == entry()["$schema"]


def test_server_json_is_valid_against_the_registrys_schema() -> None:
    errors = [f"{list(error.absolute_path)}: {error.message}" for error in validator().iter_errors(entry())]

    assert errors == []


def test_the_schema_check_catches_what_the_registry_refuses() -> None:
    too_long = entry() | {"description": "x" * 101}
    bad_name = entry() | {"name": "mcp-ci-tools"}
    latest = entry()
    latest["packages"][0]["version"] = "latest"

    for broken in (too_long, bad_name, latest):
        assert list(validator().iter_errors(broken)), broken


def test_the_versions_are_the_packages() -> None:
    server = entry()

    assert server["version"] == __version__
    assert {package["version"] for package in server["packages"]} == {__version__}


def test_the_packages_are_this_pypi_project() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    for package in entry()["packages"]:
        assert (package["registryType"], package["identifier"]) == ("pypi", project["name"])
        assert (
            package.get("registryBaseUrl", "https://pypi.org") == "https://pypi.org"
        )  # the only one allowed


def test_the_name_is_in_the_namespace_of_the_repository_and_claimed_by_the_readme() -> None:
    server = entry()
    namespace, _, _ = server["name"].partition("/")
    owner = namespace.removeprefix("io.github.")

    assert namespace.startswith("io.github.")  # GitHub login of the publisher: io.github.<owner>
    assert server["repository"] == {"url": f"https://github.com/{owner}/mcp-ci-tools", "source": "github"}
    # PyPI ownership: the registry looks for this in the package description (the README)
    assert re.search(rf"mcp-name: {re.escape(server['name'])}(?=\s|-->|<)", (ROOT / "README.md").read_text())


def test_every_variable_named_is_a_setting_and_secrets_are_marked() -> None:
    secret_settings = {
        variable_of(name)
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    }
    for package in entry()["packages"]:
        variables = {v["name"]: v for v in package["environmentVariables"]}
        assert variables.keys() <= known_variables(), package["transport"]["type"]
        for name in variables.keys() & secret_settings:
            assert variables[name].get("isSecret") is True, name
        if "MCP_CI_STATE_URL" in variables:  # a Redis URL may carry its password
            assert variables["MCP_CI_STATE_URL"].get("isSecret") is True
        for header in package["transport"].get("headers", []):
            assert header["name"] != "Authorization" or header.get("isSecret") is True
    assert secret_settings == {"INFRABOX_MCP_TOKEN", "MCP_CI_METRICS_TOKEN", "MCP_CI_REQUEST_STATE_KEY"}


def test_required_variables_are_the_servers_required_settings() -> None:
    required = {variable_of(name) for name, field in Settings.model_fields.items() if field.is_required()}
    required -= {"MCP_CI_AUDIT_LOG"}  # load_settings gives it a default

    for package in entry()["packages"]:
        variables = {v["name"]: v for v in package["environmentVariables"]}
        marked = {name for name, v in variables.items() if v.get("isRequired")}
        token = {variable_of("token")} if package["transport"]["type"] == "stdio" else set()
        assert marked == required | token, package["transport"]["type"]


@pytest.mark.parametrize("transport", ["stdio", "streamable-http"])
def test_a_client_configured_from_the_entry_starts_the_server(transport: str) -> None:
    (package,) = [p for p in entry()["packages"] if p["transport"]["type"] == transport]

    settings = started_with(package)

    assert settings.transport == transport
    if transport != "stdio":  # over HTTP the server refuses a token of its own: it must not be offered
        assert variable_of("token") not in {v["name"] for v in package["environmentVariables"]}


def test_every_default_is_the_servers_default() -> None:
    for package in entry()["packages"]:
        for variable in package["environmentVariables"]:
            if "default" in variable:
                name = field_of(variable["name"])
                got = getattr(started_with(package), name)
                assert got == Settings.model_fields[name].default, variable["name"]
        for argument in package.get("packageArguments", []):
            if "default" in argument:
                name = argument["name"].removeprefix("--").replace("-", "_")
                assert argument["default"] == str(Settings.model_fields[name].default), argument["name"]


def test_the_http_package_url_is_where_the_server_serves_mcp() -> None:
    (package,) = [p for p in entry()["packages"] if p["transport"]["type"] == "streamable-http"]
    url = package["transport"]["url"]
    # The registry resolves {…} from the package's argument names and value hints, and variable names.
    available = {v["name"] for v in package["environmentVariables"]}
    for argument in package["packageArguments"]:
        available |= {argument["name"], argument.get("valueHint", "")} - {""}
    used = set(re.findall(r"\{([^{}]+)\}", url))
    settings = started_with(package)

    assert used and used <= available
    resolved = url.replace("{--port}", str(settings.port))
    assert resolved == f"http://localhost:{settings.port}{MCP_PATH}"


def test_named_arguments_follow_the_registrys_rules() -> None:
    for package in entry()["packages"]:
        for argument in package.get("packageArguments", []):
            name = argument["name"]
            assert name and not re.search(r"[<> $]", name), name
            for value in (argument.get("value", ""), argument.get("default", "")):
                assert not (value and value.startswith(name)), name
