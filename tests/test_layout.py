"""The package's shape holds: no import cycle, small modules, few at the top, layers that own their state, private
names kept private, and the phase notebooks named in one place (tools/import_graph.py draws the picture)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runbook"
sys.path.insert(0, str(ROOT / "tools"))

import import_graph  # noqa: E402

MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
# processes the runbook starts may be given an environment: the CLI's and the lab's children, and a forked kernel
# (run/kernelpool.py sets JPY_PARENT_PID in the child it forks, before ipykernel reads it)
MAY_SET_A_CHILDS_ENVIRONMENT = {"runbook/cli.py", "runbook/ui/lab.py", "runbook/run/kernelpool.py"}


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_import_cycle():
    assert import_graph.build().cycles() == []


def test_no_module_is_over_500_lines():
    big = {_rel(p): n for p in MODULES if (n := len(p.read_text().splitlines())) > 500}
    assert big == {}


def test_at_most_12_modules_at_the_top_level():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 12, top


def test_library_code_does_not_write_the_process_environment():
    writes = re.compile(r"os\.environ\[[^\]]+\]\s*=(?!=)|os\.environ\.(update|setdefault|pop)\(|os\.putenv\(|"
                        r"os\.unsetenv\(|del os\.environ\[")
    found = [f"{_rel(p)}:{n}" for p in MODULES if _rel(p) not in MAY_SET_A_CHILDS_ENVIRONMENT
             for n, line in enumerate(p.read_text().splitlines(), 1) if writes.search(line)]
    assert found == []


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in MODULES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("runbook"):
                found += [f"{_rel(path)}: {node.module}.{a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


def test_the_phase_notebooks_are_named_in_the_registry_only():
    names = re.compile(r"0[1-4]_[a-z_]+\.ipynb")
    found = [f"{_rel(p)}:{n}" for p in MODULES if _rel(p) != "runbook/phases/registry.py"
             for n, line in enumerate(p.read_text().splitlines(), 1) if names.search(line)]
    assert found == []
