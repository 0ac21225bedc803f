"""The package's shape: no import cycle anywhere in src/ (function-level imports included),
private _infra modules that are pure utilities, and entry points that import no torch."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        if path.parent == SRC:  # the scripts train.py, eval.py, report.py
            continue
        found[module_name(path)] = path
    return found


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """The project's modules that ``path`` imports, anywhere in it (TYPE_CHECKING blocks
    aside: they never run)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in known else base)
    return {t for t in targets if t in known and t != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(path, name, known) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_there_is_no_import_cycle_in_src():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_function_level_imports_count(tmp_path, monkeypatch):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from oodlab.run import train\n")
    assert imported(path, "oodlab.x", {"oodlab.run", "oodlab.run.train"}) == {"oodlab.run.train"}


def test_infra_holds_only_pure_utilities():
    """_infra/ modules import nothing of oodlab outside _infra and the public errors, and
    change no process-wide state (that is oodlab.run.process's)."""
    graph = import_graph()
    for name in graph:
        if name.startswith("oodlab._infra"):
            outside = {m for m in graph[name] if not m.startswith("oodlab._infra")}
            assert outside <= {"oodlab.errors"}, (name, outside)
            text = modules()[name].read_text()
            for hack in (
                "gc.freeze",
                "mallopt",
                "os.environ[",
                "os.environ.setdefault",
                "filterwarnings",
            ):
                assert hack not in text, (name, hack)


def test_the_hydra_runtime_module_is_a_leaf():
    graph = import_graph()
    assert graph["oodlab.run.runtime"] == set()
