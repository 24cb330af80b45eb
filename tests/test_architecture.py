"""Every module belongs to one part, and imports follow the allowed arrows only.

The parts and arrows are declared once, here (after shared/architecture.json, which the product may not
read). Data flows one way: entry → tools → policy/guards/state → client, with the audit, configuration and
the config-free domain helpers (ids, tokens, masking, timestamps, states, actions, log text) below; the
sandbox shares no code with anything. An arrow that is not listed is forbidden, and a module that belongs
to no part fails, so a new module must be placed before it can import anything.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "mcp_ci_tools"

# part: the modules that make it up ("x.*" is the package x and everything in it)
PARTS: dict[str, tuple[str, ...]] = {
    "Entry": (
        "mcp_ci_tools.__main__",
        "mcp_ci_tools.server",
        "mcp_ci_tools.http_app",
        "mcp_ci_tools.cors",
        "mcp_ci_tools.http_guard",
        "mcp_ci_tools.http_conn",
        "mcp_ci_tools.http_sessions",
        "mcp_ci_tools.http_workers",
        "mcp_ci_tools.publish",
        "mcp_ci_tools.inflight",
        "mcp_ci_tools.demo",
        "mcp_ci_tools.audit_cli",
    ),
    "Tools": ("mcp_ci_tools.tools.*",),
    "Policy": ("mcp_ci_tools.policy", "mcp_ci_tools.guards", "mcp_ci_tools.state"),
    "Client": ("mcp_ci_tools.client.*",),
    "Audit": ("mcp_ci_tools.audit.*",),
    "Config": ("mcp_ci_tools.config",),
    "Domain": ("mcp_ci_tools.domain.*", "mcp_ci_tools"),  # the package itself holds only the version
    "Sandbox": ("mcp_ci_tools.sandbox.*",),
    "Observe": ("mcp_ci_tools.observe.*",),
}
# part: the other parts it may import (imports within a part are always allowed)
ALLOWED: dict[str, frozenset[str]] = {
    "Entry": frozenset({"Tools", "Policy", "Client", "Audit", "Config", "Domain", "Sandbox", "Observe"}),
    "Tools": frozenset({"Policy", "Client", "Audit", "Domain"}),
    "Policy": frozenset({"Domain"}),
    "Client": frozenset({"Domain"}),
    "Audit": frozenset({"Domain"}),
    "Config": frozenset({"Domain"}),
    "Domain": frozenset(),
    "Sandbox": frozenset(),
    # Metrics and traces: fed through seams (audit observers, the client's RequestObserver), importing neither.
    "Observe": frozenset({"Audit", "Domain"}),
}
# Only these parts speak MCP (import the `mcp` SDK).
SPEAKS_MCP = frozenset({"Entry", "Tools"})
# Only these entry modules start the sandbox (`--sandbox`, `sandbox`, `demo`); the server never does.
STARTS_SANDBOX = frozenset({"mcp_ci_tools.__main__", "mcp_ci_tools.demo"})


def _covers(name: str, module: str) -> bool:
    if name.endswith(".*"):
        package = name.removesuffix(".*")
        return module == package or module.startswith(package + ".")
    return module == name


def part_of(module: str) -> str | None:
    """The part `module` belongs to, or None."""
    return next((part for part, names in PARTS.items() if any(_covers(name, module) for name in names)), None)


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_imports(root: Path) -> dict[str, set[str]]:
    """Each module under the package `root` → the modules it imports, lazy imports inside functions included."""
    modules = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, is_package, node.module, node.level)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    imported.add(submodule if submodule in modules else base)
        found[name] = imported
    return found


def _absolute(module: str, is_package: bool, target: str | None, level: int) -> str:
    if level == 0:
        return target or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (level - 1)]
    return ".".join([*anchor, target] if target else anchor)


def _is_tool_resource(module: str) -> bool:
    """`mcp_ci_tools.tools.builds` and the like: one module per resource, not the shared `_` modules."""
    parts = module.split(".")
    return len(parts) == 3 and parts[1] == "tools" and not parts[2].startswith("_")


def violations(imports: Mapping[str, set[str]]) -> list[str]:
    """Every rule the import graph breaks, one line each."""
    problems: list[str] = []
    for module, targets in sorted(imports.items()):
        source = part_of(module)
        if source is None:
            problems.append(f"{module} belongs to no part: add it to PARTS")
            continue
        for target in sorted(targets):
            if target == "mcp" or target.startswith("mcp."):
                if source not in SPEAKS_MCP:
                    problems.append(f"{module} imports {target}: {source} must not speak MCP")
                continue
            if not (target == "mcp_ci_tools" or target.startswith("mcp_ci_tools.")):
                continue
            goal = part_of(target)
            if goal is None:
                problems.append(f"{module} imports {target}, which belongs to no part")
            elif goal != source and goal not in ALLOWED[source]:
                problems.append(f"{module} imports {target}: {source} → {goal} is not an allowed arrow")
            elif goal == "Sandbox" and source == "Entry" and module not in STARTS_SANDBOX:
                problems.append(f"{module} imports {target}: only {sorted(STARTS_SANDBOX)} start the sandbox")
            # The tools package registers every tool module; nothing else in it may import one.
            elif (
                source == "Tools"
                and _is_tool_resource(target)
                and module not in (target, "mcp_ci_tools.tools")
            ):
                problems.append(
                    f"{module} imports {target}: tool modules import shared tools._* modules, "
                    "never a tool module"
                )
    return problems


def test_every_module_is_in_one_part_and_every_import_follows_an_allowed_arrow() -> None:
    problems = violations(module_imports(PACKAGE))
    assert not problems, "\n".join(problems)


def test_every_declared_module_exists() -> None:
    modules = set(module_imports(PACKAGE))
    missing = [
        name
        for names in PARTS.values()
        for name in names
        if not any(_covers(name, module) for module in modules)
    ]
    assert not missing, f"declared in PARTS but not in the package: {missing}"


# --- the test of the test: each rule can fail ------------------------------------------------------


@pytest.mark.parametrize(
    ("imports", "expected"),
    [
        (
            {"mcp_ci_tools.guards": {"mcp_ci_tools.client"}},
            "mcp_ci_tools.guards imports mcp_ci_tools.client: Policy → Client is not an allowed arrow",
        ),
        (
            {"mcp_ci_tools.domain.masking": {"mcp_ci_tools.policy"}},
            "Domain → Policy is not an allowed arrow",
        ),
        ({"mcp_ci_tools.client._client": {"mcp_ci_tools.tools"}}, "Client → Tools is not an allowed arrow"),
        ({"mcp_ci_tools.tools.builds": {"mcp_ci_tools.config"}}, "Tools → Config is not an allowed arrow"),
        (
            {"mcp_ci_tools.sandbox.db": {"mcp_ci_tools.domain.ids"}},
            "Sandbox → Domain is not an allowed arrow",
        ),
        ({"mcp_ci_tools.tools.wait": {"mcp_ci_tools.tools.diagnosis"}}, "never a tool module"),
        ({"mcp_ci_tools.tools._read": {"mcp_ci_tools.tools.builds"}}, "never a tool module"),
        ({"mcp_ci_tools.server": {"mcp_ci_tools.sandbox"}}, "start the sandbox"),
        ({"mcp_ci_tools.audit": {"mcp.server"}}, "Audit must not speak MCP"),
        (
            {"mcp_ci_tools.observe.metrics": {"mcp_ci_tools.client"}},
            "Observe → Client is not an allowed arrow",
        ),
        ({"mcp_ci_tools.observe.tracing": {"mcp.server"}}, "Observe must not speak MCP"),
        ({"mcp_ci_tools.newthing": set()}, "mcp_ci_tools.newthing belongs to no part"),
    ],
)
def test_a_forbidden_import_is_reported(imports: dict[str, set[str]], expected: str) -> None:
    problems = violations(imports)

    assert len(problems) == 1
    assert expected in problems[0]


def test_allowed_imports_are_not_reported() -> None:
    assert not violations(
        {
            "mcp_ci_tools.tools.builds": {"mcp_ci_tools.tools._views", "mcp_ci_tools.client", "mcp.server"},
            "mcp_ci_tools.tools": {"mcp_ci_tools.tools.builds", "mcp_ci_tools.tools.jobs"},
            "mcp_ci_tools.policy": {"mcp_ci_tools.domain.ids", "mcp_ci_tools.state", "anyio"},
            "mcp_ci_tools.__main__": {"mcp_ci_tools.sandbox", "mcp_ci_tools.config"},
        }
    )


def test_a_forbidden_import_in_a_real_file_is_found(tmp_path: Path) -> None:
    root = tmp_path / "mcp_ci_tools"
    (root / "client").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "client" / "__init__.py").write_text("class InfraBoxClient: ...\n")
    (root / "guards.py").write_text(
        "def later():\n    from .client import InfraBoxClient\n    return InfraBoxClient\n"
    )

    assert module_imports(root)["mcp_ci_tools.guards"] == {"mcp_ci_tools.client"}
    assert violations(module_imports(root)) == [
        "mcp_ci_tools.guards imports mcp_ci_tools.client: Policy → Client is not an allowed arrow"
    ]
