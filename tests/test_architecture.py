"""The roads through the package, checked on its source (``ast``, nothing imported).

- no import cycle between the package's modules (imports inside functions
  count: a lazy import is still a dependency);
- solvers never reach above themselves (estimator, model files, file sources);
- no caller probes a backend with ``getattr`` / ``hasattr``: what a backend
  answers is declared in ``RowData.capabilities``;
- the residual math ``G = s (P - onehot)`` is written in one place.

The package facade ``softmax/__init__.py`` (lazy re-exports of the public
API, ``__version__``) is the root every module may read ``__version__``
from; it is left out of the graph.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "softmax"
ROOT = "softmax"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _in_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if _in_type_checking(node, parents):
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # "from pkg import mod" imports the module pkg.mod when there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]  # fmt: skip
        for t in targets:
            while t and t not in known:  # "softmax.x.y" of an attribute: its module
                t = t.rpartition(".")[0]
            if t and t != ROOT and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items() if name != ROOT}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_walker_sees_imports(graph):
    """The graph is not empty by mistake: known edges are found."""
    assert "softmax.solvers" in graph["softmax.regression"]
    assert "softmax.solvers._base" in graph["softmax.solvers.lbfgs"]
    assert "softmax.losses" in graph["softmax.linear_loss"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: Cycles that exist and have an owner, each with why it is left for now: none.
#: (The last, ``_native`` <-> ``functions``, went when the careful generic code
#: both dispatch layers fall back on moved below them, to ``softmax._generic``.)
KNOWN_CYCLES: set[tuple[str, ...]] = set()


def test_no_import_cycle(graph):
    assert {tuple(c) for c in _cycles(graph)} <= KNOWN_CYCLES


def test_the_function_family_builds_on_its_generic_code(graph):
    """The dispatch layers sit above the careful generic code, never below it."""
    assert "softmax._generic" in graph["softmax.functions"]
    assert "softmax._generic" in graph["softmax._native"]
    above = {"softmax.functions", "softmax._native"}
    assert not graph["softmax._generic"] & above
    assert "softmax.functions" not in graph["softmax._native"]


def test_solvers_do_not_reach_above_themselves(graph):
    above = {"softmax.streaming", "softmax.io", "softmax.regression", "softmax.cli"}
    offenders = {
        name: sorted(deps & above)
        for name, deps in graph.items()
        if name.startswith("softmax.solvers") and deps & above
    }
    assert offenders == {}


def test_backends_are_never_probed_for_capabilities():
    """Capabilities are declared (RowData.capabilities), never probed by name."""
    probed = {
        "feature_moments",
        "feature_covariance",
        "class_curvature",
        "subspace_curvature",
        "curvature_moments",
        "gradient_hessian_product",
        "hessian",
        "iter_minibatches",
        "checkpoint",
        "record_evaluations",
        "is_sparse",
        "feature_names",
        "capabilities",
        "X",
    }
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in probed
            ):
                found.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_the_residuals_are_written_once():
    """``G = s (P - onehot)``: onehot subtracted at the true class in losses.py only.

    The compiled pass (_numba_loss.py) computes it in registers and is tested
    against :func:`softmax.losses.multinomial_residuals_` (tests/test_numba_loss.py).
    """
    writers = []
    for path in SRC.rglob("*.py"):
        if path.name.startswith("_numba"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            # "x[...] -= 1": subtracting the one-hot vector at the true class
            if (
                isinstance(node, ast.AugAssign)
                and isinstance(node.op, ast.Sub)
                and isinstance(node.target, ast.Subscript)
                and isinstance(node.value, ast.Constant)
                and node.value.value == 1
            ):
                writers.append(str(path.relative_to(SRC)))
    assert writers == ["losses.py"]
