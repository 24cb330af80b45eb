"""Every module says what it offers: `__all__` lists exactly the public names it defines (httpx's rule).

Internal names start with `_`; a public name defined in a module but missing from its `__all__`, or a name
in `__all__` that the module does not have, fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "mcp_ci_tools"


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


# A module's logger and its type variables are plumbing, not part of what it offers.
_PLUMBING = {"log"}


def _is_type_variable(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Name)
        and value.func.id in ("TypeVar", "ParamSpec")
    )


def _defined_public_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and not _is_type_variable(node.value):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_") and name not in _PLUMBING}


@pytest.mark.parametrize("module_name", _module_names())
def test_all_lists_exactly_the_public_names_a_module_defines(module_name: str) -> None:
    module = importlib.import_module(module_name)
    tree = ast.parse(Path(module.__file__ or "").read_text())
    defined = _defined_public_names(tree)
    exported = set(getattr(module, "__all__", ()))

    assert not (defined - exported), f"public but not in __all__: {sorted(defined - exported)}"
    missing = {name for name in exported if not hasattr(module, name)}
    assert not missing, f"in __all__ but not in the module: {sorted(missing)}"
