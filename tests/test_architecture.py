"""The shape of the package, read from its imports (``ast``, nothing is executed):

- no import circles between the modules of ``pipeline``;
- no module imports a private name (``_x``) of another module, nor a private module from
  outside its own package;
- the Skillbook (the learned artifact) depends on nothing that analyses: importing it loads
  neither DuckDB, polars nor pyarrow;
- test-only generators are not part of the library, and fault injection is one named seam.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(modules: dict[str, Path]) -> dict[str, list[tuple[str, str | None, int]]]:
    """module -> [(imported module, imported name or None, line)], every import anywhere in
    the file (top level, in functions, under TYPE_CHECKING)."""
    found: dict[str, list[tuple[str, str | None, int]]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: list[tuple[str, str | None, int]] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                edges += [(a.name, None, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, path.name == "__init__.py")
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in modules:
                        edges.append((sub, None, node.lineno))
                    else:
                        edges.append((target, alias.name, node.lineno))
        found[name] = [e for e in edges if e[0].split(".")[0] == "pipeline"]
    return found


def _owner(module: str, modules: dict[str, Path]) -> str:
    """The module that defines what ``module`` names: the longest known prefix."""
    while module not in modules and "." in module:
        module = module.rsplit(".", 1)[0]
    return module


def test_no_import_circles() -> None:
    modules = _modules()
    graph = {
        name: {_owner(target, modules) for target, _, _ in edges} - {name}
        for name, edges in _imports(modules).items()
    }
    # a package's face importing its own parts, and a part importing a sibling, is fine; a
    # part importing its own package's face is the circle this test is for
    circles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_no_private_names_across_modules() -> None:
    modules = _modules()
    offences = []
    for name, edges in _imports(modules).items():
        for target, imported, line in edges:
            owner = _owner(target, modules)
            if owner == name:
                continue
            if imported is not None and imported.startswith("_") and not imported.endswith("__"):
                offences.append(f"{modules[name]}:{line}: {imported} from {owner}")
            private = [p for p in target.split(".") if p.startswith("_") and p != "__init__"]
            if private:
                package = target[: target.index(private[0])].rstrip(".")
                if not (name == package or name.startswith(package + ".")):
                    offences.append(f"{modules[name]}:{line}: private module {target}")
    assert not offences, "\n".join(offences)


def test_the_skillbook_loads_without_the_analysis_stack() -> None:
    code = (
        "import sys\n"
        "import pipeline.skillbook\n"
        "heavy = sorted(m for m in ('duckdb', 'polars', 'pyarrow', 'numpy') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "", f"import pipeline.skillbook loads {done.stdout.strip()}"


def test_test_only_generators_are_not_in_the_library() -> None:
    assert not (PACKAGE / "synth.py").exists()
    # fault injection has one named seam, inside pipeline.fileio.atomic_write
    mentions = [
        str(path.relative_to(ROOT))
        for path in PACKAGE.rglob("*.py")
        if "COACH_TEST_KILL_AT" in path.read_text(encoding="utf-8")
        or "FAULT_ENV" in path.read_text(encoding="utf-8")
        or "kill_point" in path.read_text(encoding="utf-8")
    ]
    assert mentions == ["pipeline/fileio.py"], mentions
