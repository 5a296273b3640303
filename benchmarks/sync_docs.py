"""Refresh the benchmark figures copied into README.md and docs/*.md.

A document quotes a results file between two markers::

    <!-- include: benchmarks/results/fit_summary.md -->
    ... an exact copy of that file ...
    <!-- end include -->

Run ``python benchmarks/sync_docs.py`` after a benchmark has rewritten a
results file: the short tables made from the benchmarks' JSON results
(``DERIVED``, below) are rendered again, then every copy is replaced by its
file's current content. ``--check`` changes nothing and exits 1 when a
table or a copy is stale (what ``tests/test_docs.py`` asserts).

Usage::

    python benchmarks/sync_docs.py            # rewrite stale copies
    python benchmarks/sync_docs.py --check    # list them, exit 1 if any
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

INCLUDE = re.compile(r"^<!--\s*include:\s*(?P<path>\S+)\s*-->\s*$")
END_INCLUDE = re.compile(r"^<!--\s*end include\s*-->\s*$")
FENCE = re.compile(r"^(`{3,}|~{3,})")


@dataclass
class Include:
    """One ``<!-- include: PATH -->`` region of a document.

    Attributes
    ----------
    path : str
        The included file, relative to the repository root.
    start : int
        Index (0-based) of the opening marker line.
    end : int
        Index of the closing marker line.
    body : str
        The lines between the markers, joined with newlines.
    """

    path: str
    start: int
    end: int
    body: str


def documents(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md, in a fixed order."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def find_includes(text: str, where: str = "document") -> list[Include]:
    """Every include region of ``text`` (markers inside code blocks are text, not markers).

    Raises
    ------
    ValueError
        For an opening marker without its end marker, a stray end marker,
        or nested includes.
    """
    lines = text.splitlines()
    found: list[Include] = []
    start = None
    path = ""
    fence = ""
    for i, line in enumerate(lines):
        stripped = line.strip()
        if start is None:
            # Outside an include, skip code blocks: a document may show the markers.
            if fence:
                if stripped.startswith(fence) and set(stripped) == {fence[0]}:
                    fence = ""
                continue
            opened = FENCE.match(stripped)
            if opened:
                fence = opened[1]
                continue
        opening = INCLUDE.match(stripped)
        if opening:
            if start is not None:
                raise ValueError(
                    f"{where}:{i + 1}: include inside the include opened at line {start + 1}"
                )
            start, path = i, opening["path"]
        elif END_INCLUDE.match(stripped):
            if start is None:
                raise ValueError(f"{where}:{i + 1}: '<!-- end include -->' without an include")
            found.append(Include(path, start, i, "\n".join(lines[start + 1 : i])))
            start = None
    if start is not None:
        raise ValueError(f"{where}:{start + 1}: include of {path} has no '<!-- end include -->'")
    return found


def included_text(path: str, root: Path = ROOT) -> str:
    """The content an include of ``path`` must hold: the file, without its final newline.

    Raises
    ------
    ValueError
        When the file is not under ``benchmarks/results/`` or does not exist.
    """
    if not path.startswith("benchmarks/results/") or ".." in Path(path).parts:
        raise ValueError(f"includes quote benchmarks/results/ files only, not {path}")
    file = root / path
    if not file.is_file():
        raise ValueError(f"included file {path} does not exist")
    return file.read_text(encoding="utf-8").rstrip("\n")


def refresh(text: str, where: str = "document", root: Path = ROOT) -> str:
    """``text`` with every include region replaced by its file's current content."""
    lines = text.splitlines()
    out: list[str] = []
    previous = 0
    for inc in find_includes(text, where):
        out.extend(lines[previous : inc.start + 1])
        out.extend(included_text(inc.path, root).splitlines())
        previous = inc.end
    out.extend(lines[previous:])
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def stale_includes(doc: Path, root: Path = ROOT) -> list[str]:
    """Paths whose copy in ``doc`` differs from the file (empty when all are current)."""
    text = doc.read_text(encoding="utf-8")
    return [
        inc.path
        for inc in find_includes(text, doc.name)
        if inc.body != included_text(inc.path, root)
    ]


# --------------------------------------------------------------------------- #
# Short tables for the docs, rendered from a benchmark's JSON results          #
# --------------------------------------------------------------------------- #

_FIT_PEERS = {
    "softmax-f32": "`SoftmaxRegression`, float32",
    "softmax-f64": "`SoftmaxRegression`, float64",
    "torch-f32": "PyTorch L-BFGS, float32",
    "sklearn-f64": "scikit-learn `LogisticRegression`, float64",
    "sklearn-f32": "scikit-learn `LogisticRegression`, float32",
    "intelex-f32": "scikit-learn-intelex, float32",
    "torch-wolfe-f32": "PyTorch L-BFGS with line search, float32",
}


def _figure(x: float) -> str:
    """Three significant figures, as the benchmark tables print them."""
    return f"{x:.3g}" if x < 100 else f"{x:.0f}"


def render_fit_summary(run: dict) -> str:
    """The README's speed table: time to a relative gap of 1e-6 on one dataset.

    Parameters
    ----------
    run : dict
        A ``bench_fit.py`` JSON result with one dataset.

    Returns
    -------
    markdown : str
    """
    (dataset,) = run["datasets"]
    rows = {s["peer"]: s for s in run["summary"] if s["dataset"] == dataset["name"]}
    ours = rows["softmax-f32"]["time_1e-06"]
    machine = run["machine"]
    n, p = dataset["shape"]
    load = "/".join(f"{x:.1f}" for x in run["load_before"][:1] + run["load_after"][:1])
    lines = [
        f"Time to a relative objective gap of 1e-6, {dataset['description']} ({n:,} x {p}, "
        f"{dataset['n_classes']} classes, C = {dataset['C']:g}); medians of "
        f"{rows['softmax-f32']['runs']} runs interleaved in one process, every library on "
        f"{run['threads']} thread; {machine['CPU']}, {machine['logical cores']} logical cores, "
        f"load average {load} before/after (`{run['command'].split(' --out')[0]}`, "
        f"{run['date']} UTC):",
        "",
        "| fit | seconds to 1e-6 | passes over X | ratio to softmax float32 |",
        "| --- | ---: | ---: | ---: |",
    ]
    never = []
    for peer, label in _FIT_PEERS.items():
        row = rows.get(peer)
        if row is None:
            continue
        seconds = row["time_1e-06"]
        if seconds is None:
            never.append((label, row["best_gap"]))
            continue
        figure = _figure(seconds)
        if peer == "softmax-f32":
            figure, ratio = f"**{figure}**", "1"
        else:
            ratio = f"{seconds / ours:.1f}x"
        lines.append(f"| {label} | {figure} | {row['evals_1e-06']} | {ratio} |")
    for label, gap in never:
        exponent = math.floor(math.log10(gap))
        lines.append(
            f"| {label} | never (stops at a gap of {gap / 10**exponent:.1f}e{exponent}) | | |"
        )
    return "\n".join(lines) + "\n"


#: results file -> (the JSON it is rendered from, the renderer)
DERIVED: dict[str, tuple[str, Callable[[dict], str]]] = {
    "benchmarks/results/fit_mnist_summary.md": ("benchmarks/results/fit.json", render_fit_summary),
}


def stale_derived(root: Path = ROOT) -> dict[str, str]:
    """Derived tables whose file differs from a fresh rendering: path -> new content."""
    stale = {}
    for target, (source, render) in DERIVED.items():
        fresh = render(json.loads((root / source).read_text(encoding="utf-8")))
        path = root / target
        if not path.is_file() or path.read_text(encoding="utf-8") != fresh:
            stale[target] = fresh
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale copies, change nothing")
    args = parser.parse_args(argv)
    stale = 0
    for target, fresh in stale_derived().items():
        stale += 1
        if args.check:
            print(f"{target}: stale (render it again from {DERIVED[target][0]})")
        else:
            (ROOT / target).write_text(fresh, encoding="utf-8")
            print(f"{target}: rendered")
    for doc in documents():
        text = doc.read_text(encoding="utf-8")
        new = refresh(text, doc.name)
        if new == text:
            continue
        stale += 1
        rel = doc.relative_to(ROOT)
        if args.check:
            print(f"{rel}: stale copies of {', '.join(stale_includes(doc))}")
        else:
            doc.write_text(new, encoding="utf-8")
            print(f"{rel}: refreshed")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
