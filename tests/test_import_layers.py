"""The package layers: no package of nnlight imports a package that imports it back (directly or through
others), and the model package sits below training, inference and exchange."""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "nnlight"


def _package_imports() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the files that import it (every import, also those inside functions)."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:
            continue  # nnlight/__init__.py and friends are the top, not a layer
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                target = name.split(".")
                if target[0] == "nnlight" and len(target) > 1 and target[1] != parts[0]:
                    graph[parts[0]][target[1]].append(str(path.relative_to(PACKAGE)))
    return graph


def _cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One import cycle between packages (as the path that closes it), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in graph.get(node, {}):
            if state.get(target) == 1:
                return [*stack[stack.index(target):], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for package in sorted(graph):
        if package not in state and (found := visit(package)):
            return found
    return None


def test_no_package_imports_a_package_that_imports_it_back() -> None:
    graph = _package_imports()
    cycle = _cycle(graph)
    steps = itertools.pairwise(cycle or [])
    detail = [f"{a} -> {b} ({', '.join(sorted(set(graph[a][b])))})" for a, b in steps]
    assert cycle is None, "import cycle: " + "; ".join(detail)


def test_the_model_package_is_below_training_inference_and_exchange() -> None:
    graph = _package_imports()
    assert not {"training", "inference", "exchange", "pipeline", "evaluation"} & set(graph["model"])
    assert "training" not in graph["inference"] and "training" not in graph["exchange"]
    for package in ("training", "inference", "exchange"):
        assert "model" in graph[package]


def test_the_walk_finds_a_planted_cycle() -> None:
    """The checker itself: a cycle of three packages is found, a chain is not."""
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": []}, "b": {"c": []}}) is None


def _module_imports() -> dict[str, dict[str, list[str]]]:
    """module -> imported nnlight module -> where (every import, also those inside functions); ``from p import x``
    imports the module ``p.x`` where that is a file, else the package ``p``."""
    graph: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                targets = [f"{node.module}.{a.name}" if (PACKAGE.parent / node.module.replace(".", "/") /
                                                         f"{a.name}.py").is_file() else node.module
                           for a in node.names]
            for target in targets:
                if target.startswith("nnlight.") and target != module:
                    graph[module][target].append(str(path.relative_to(PACKAGE)))
    return graph


def test_no_module_imports_a_module_that_imports_it_back() -> None:
    """Within a package too: two modules that need each other are one piece of logic split in the wrong place."""
    graph = _module_imports()
    packages = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").is_file()}
    files = {m: {t: w for t, w in targets.items() if t not in packages} for m, targets in graph.items()
             if m not in packages}  # a package's __init__ gathers its modules' names: not a layer of its own
    cycle = _cycle(files)
    assert cycle is None, "module import cycle: " + " -> ".join(cycle or [])
