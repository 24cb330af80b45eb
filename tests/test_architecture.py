"""No import crosses an arrow that must never exist (shared/architecture.json's `never` list, copied here)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "mcp_ci_tools"

PARTS = {
    "Entry": [
        "mcp_ci_tools/server.py",
        "mcp_ci_tools/__main__.py",
        "mcp_ci_tools/http_app.py",
        "mcp_ci_tools/demo.py",
    ],
    "Tools": ["mcp_ci_tools/tools/"],
    "Policy": ["mcp_ci_tools/policy.py", "mcp_ci_tools/state.py"],
    "Client": ["mcp_ci_tools/client/"],
    "Audit": ["mcp_ci_tools/audit.py"],
    "Config": ["mcp_ci_tools/config.py"],
    "Sandbox": ["mcp_ci_tools/sandbox/"],
}
NEVER = [
    ("Client", "Tools", "the client knows no MCP"),
    ("Policy", "Client", "policy decides before any request; it sends nothing"),
    ("Sandbox", "Tools", "the sandbox is the server side; it must not share the client's code paths"),
    ("Sandbox", "Client", "the sandbox must not share the client's code paths"),
    ("Tools", "Sandbox", "tools never know whether InfraBox is real"),
    ("Audit", "Tools", "the audit is a sink"),
]
# Beyond the drawing: lower layers import no MCP and read no configuration.
NO_MCP = ["Client", "Policy", "Audit", "Config", "Sandbox"]


def _part_of(relative: str) -> str | None:
    for part, prefixes in PARTS.items():
        if any(relative == p or (p.endswith("/") and relative.startswith(p)) for p in prefixes):
            return part
    return None


def _module_path(module: str) -> str:
    path = module.replace(".", "/")
    return path + "/" if (PACKAGE.parent / path).is_dir() else path + ".py"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _edges() -> set[tuple[str, str, str, str]]:
    edges = set()
    for path in PACKAGE.rglob("*.py"):
        source = _part_of(str(path.relative_to(PACKAGE.parent)))
        for module in _imports(path):
            if module.startswith("mcp_ci_tools"):
                target = _part_of(_module_path(module))
                if source and target and source != target:
                    edges.add((source, target, str(path.relative_to(PACKAGE.parent)), module))
            elif module == "mcp" or module.startswith("mcp."):
                edges.add((source or "?", "MCP", str(path.relative_to(PACKAGE.parent)), module))
    return edges


def test_no_forbidden_arrow_exists() -> None:
    forbidden = {(a, b): why for a, b, why in NEVER}
    crossings = [
        f"{file} imports {module}: {source} → {target} ({forbidden[(source, target)]})"
        for source, target, file, module in _edges()
        if (source, target) in forbidden
    ]
    assert not crossings, "\n".join(crossings)


def test_lower_layers_import_no_mcp() -> None:
    offenders = [
        f"{file} imports {module}"
        for source, target, file, module in _edges()
        if target == "MCP" and source in NO_MCP
    ]
    assert not offenders, "\n".join(offenders)


def test_only_the_entry_reads_configuration() -> None:
    readers = {source for source, target, _, _ in _edges() if target == "Config"}
    assert readers <= {"Entry"}
