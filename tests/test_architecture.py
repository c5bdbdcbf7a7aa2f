"""The floors of the house, checked from the code's own imports (every import, inside functions too).

Data moves one way and imports follow it down (docs/architecture.md):

    ground -> lake -> warehouse & feature store -> training stages -> evaluation & serving -> face

A module may import its own floor or any floor below it, never one above, and no modules may
import each other in a circle. Serving never imports a training stage's runner: what a stage
writes and serving reads has a small module of its own (chorus states, the published model).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# installed name prefix -> folder in the checkout (pyproject.toml's package-dir)
PACKAGES = {"rgcd.transforms": "transforms", "rgcd.training": "training", "rgcd.embeddings": "embeddings",
            "rgcd": "rgcd"}

# (floor, module prefixes); the longest matching prefix decides
FLOORS: list[tuple[int, str, tuple[str, ...]]] = [
    (0, "ground", ("rgcd", "rgcd.config", "rgcd.errors", "rgcd.atomic", "rgcd.faults", "rgcd.memory",
                   "rgcd.terminal", "rgcd.workers")),
    (1, "lake", ("rgcd.transforms",)),
    (2, "warehouse & feature store", ("rgcd.warehouse", "rgcd.featurestore")),
    (3, "training stages", ("rgcd.training",)),
    (4, "evaluation & serving", ("rgcd.training.evaluation", "rgcd.training.report", "rgcd.training.results",
                                 "rgcd.training.full_method_fits", "rgcd.embeddings")),
    (5, "face", ("rgcd.cli", "rgcd.pipeline")),
]
# training stages' runners: what `rgcd reason/distill/transfer` run; serving must not import them
RUNNERS = ("rgcd.training.distill", "rgcd.training.stage2", "rgcd.training.reasoning.run")


def _modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            found.setdefault(name, path)
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an import names (a name inside a module resolves to the module)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    """Every project module `module` imports, at any depth of its code."""
    tree = ast.parse(MODULES[module].read_text())
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: up (level - 1) packages from this one
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        for n in names:
            target = _resolve(n)
            if target and target != module:
                out.add(target)
    return out


def floor_of(module: str) -> tuple[int, str]:
    best = max(((len(p), f, label) for f, label, prefixes in FLOORS for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} is on no floor: add it to FLOORS (and docs/architecture.md)"
    return best[1], best[2]


GRAPH = {m: imports_of(m) for m in MODULES}


def test_every_module_has_a_floor():
    for m in MODULES:
        floor_of(m)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_go_down(module):
    mine, label = floor_of(module)
    up = [f"{t} ({floor_of(t)[1]})" for t in sorted(GRAPH[module]) if floor_of(t)[0] > mine]
    assert not up, f"{module} ({label}) imports a higher floor: {', '.join(up)}"


def test_no_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in sorted(GRAPH):
        if m not in index:
            visit(m)
    assert not circles, "modules that import each other in a circle: " + "; ".join(map(str, circles))


def test_serving_never_imports_a_training_runner():
    serving = [m for m in MODULES if m.startswith("rgcd.embeddings")]
    bad = {m: sorted(t for t in GRAPH[m] if t.startswith(RUNNERS)) for m in serving}
    assert not {m: t for m, t in bad.items() if t}, bad


def test_the_checker_sees_imports_inside_functions():
    assert "rgcd.training.published_model" in GRAPH["rgcd.embeddings.rooms"]
