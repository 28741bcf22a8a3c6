"""The package's shape: installed under one namespace, and no import circle among its modules."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

PACKAGES = {"kerasflow.tasks": ROOT / "tasks", "kerasflow.flows": ROOT / "flows"}


def _modules() -> dict[str, Path]:
    """Every module of the project by its installed name: `kerasflow.tasks.config.schema` -> its file."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            found[".".join((package, *parts)).removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules `path` imports when it is imported (module level: imports inside functions run later,
    and `if TYPE_CHECKING:` blocks never)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module in modules:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names} & modules.keys()
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names} & modules.keys()
    return found


def test_no_module_imports_itself_through_others():
    modules = _modules()
    graph = {name: _imports(path, modules) for name, path in modules.items()}
    cycles, done = [], set()

    def visit(name: str, stack: list[str]) -> None:
        if name in stack:
            cycles.append(stack[stack.index(name):] + [name])
            return
        if name in done:
            return
        for imported in graph[name]:
            visit(imported, stack + [name])
        done.add(name)

    for name in graph:
        visit(name, [])
    assert cycles == []


def test_only_the_kerasflow_namespace_is_installed(tmp_path):
    """From a folder other than the checkout, `kerasflow.tasks` imports and no top-level `tasks` or `flows` does:
    another project's `tasks` package cannot collide with ours."""
    code = ("import importlib.util, kerasflow.tasks, kerasflow.flows; "
            "print(importlib.util.find_spec('tasks'), importlib.util.find_spec('flows'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "None"]
