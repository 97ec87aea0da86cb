"""The package's import picture: modules, import levels, cycles, and arrows between folders.

Every ``import runbook…`` counts, at the top of a module or inside a function (an import deferred for speed is
still a dependency); only ``if TYPE_CHECKING:`` blocks do not. ``python tools/import_graph.py`` prints the
figures the layout issue asks for; ``tests/test_layout.py`` holds the package to them.
"""

from __future__ import annotations

import ast
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "runbook"


@dataclass(frozen=True)
class Graph:
    edges: dict[str, set[str]]  # module -> the runbook modules it imports

    def cycles(self) -> list[list[str]]:
        """The strongly connected components of more than one module (Tarjan), each sorted."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        out: list[list[str]] = []

        def visit(node: str) -> None:
            index[node] = low[node] = len(index)
            stack.append(node)
            on_stack.add(node)
            for nxt in self.edges.get(node, ()):
                if nxt not in index:
                    visit(nxt)
                    low[node] = min(low[node], low[nxt])
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        sys.setrecursionlimit(10_000)
        for node in sorted(self.edges):
            if node not in index:
                visit(node)
        return out

    def levels(self) -> int:
        """The longest import chain (modules in a cycle count once per chain)."""
        memo: dict[str, int] = {}

        def depth(node: str, seen: frozenset[str]) -> int:
            if node in memo:
                return memo[node]
            below = [depth(n, seen | {node}) for n in self.edges.get(node, ()) if n not in seen and n != node]
            memo[node] = 1 + max(below, default=0)
            return memo[node]

        return max((depth(n, frozenset()) for n in self.edges), default=0)

    def folder_arrows(self) -> Counter[tuple[str, str]]:
        """Imports from one folder of the package to another (the top level is ``runbook``)."""
        arrows: Counter[tuple[str, str]] = Counter()
        for src, targets in self.edges.items():
            for dst in targets:
                a, b = folder(src), folder(dst)
                if a != b:
                    arrows[(a, b)] += 1
        return arrows


def folder(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else "runbook"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {_owner(m, known) for m in found if m.startswith("runbook")} - {name, None}


def _owner(module: str, known: set[str]) -> str | None:
    while module and module not in known:
        module = module.rpartition(".")[0]
    return module or None


def build() -> Graph:
    paths = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
    names = {module_name(p): p for p in paths}
    known = set(names)
    # importing a package's module also runs the package's __init__: that edge is the language's, not a design
    # choice, so a package is not counted as depending on its own modules through it
    return Graph({n: {m for m in _imports(p, n, known) if not n.startswith(f"{m}.")} for n, p in names.items()})


def main() -> int:
    graph = build()
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    big = sorted(((len(p.read_text().splitlines()), module_name(p)) for p in PACKAGE.rglob("*.py")), reverse=True)
    print(f"modules: {len(graph.edges)}; at the top level: {len(top)} ({', '.join(top)})")
    print(f"import levels (longest chain): {graph.levels()}")
    cycles = graph.cycles()
    print(f"cycles: {len(cycles)}" + "".join(f"\n  {' <-> '.join(c)}" for c in cycles))
    print(f"largest modules: {', '.join(f'{m} {n}' for n, m in big[:5])}")
    arrows = graph.folder_arrows()
    print(f"arrows between folders: {sum(arrows.values())} imports, {len(arrows)} folder pairs")
    for (a, b), n in sorted(arrows.items()):
        print(f"  {a} -> {b}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
