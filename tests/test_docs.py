"""Every code block of README.md and docs/*.md runs, and its printed output is checked.

The rules (docs/contributing.md, "Docs that cannot go stale"):

- ```python blocks run top to bottom in one namespace per document, in a
  temporary working directory. A block whose lines start with ``>>>`` is a
  doctest: each output is checked (ELLIPSIS and NORMALIZE_WHITESPACE on).
- ```bash blocks: each command that starts with ``softmax`` runs (through
  ``softmax.cli.main``, the entry point's function) in the same directory, in order with the python
  blocks, and must exit 0; ``pip install`` and ``pytest`` commands and
  comments are not run. Any other command makes the block unrunnable.
- ```console blocks are transcripts: ``$ softmax ...`` lines run, and the
  lines after each one are its expected output (stdout and stderr), checked
  like a doctest's; ``...`` matches anything (timings).
- ```text blocks and unmarked blocks are displayed, never run; one that
  holds a ``>>>`` or ``$ softmax`` line must say what it is instead.
- ``<!-- no-run: reason -->`` right before a block skips it; the reason is
  required. An unrunnable block without it fails the test.
- ``<!-- include: benchmarks/results/FILE.md -->`` ... ``<!-- end include -->``
  must hold an exact copy of that file (``python benchmarks/sync_docs.py``
  refreshes them). Blocks inside an include are not run.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import shlex
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import sync_docs  # noqa: E402  (benchmarks/ is not a package)

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\s]*)[^`]*$")
NO_RUN = re.compile(r"^<!--\s*no-run\b:?\s*(?P<reason>.*?)\s*-->\s*$")
RUN_LANGUAGES = {"python", "bash", "sh", "shell", "console"}
DISPLAY_LANGUAGES = {"", "text", "json", "math"}
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
# A command that a shell block may show without running it: installing the
# package (the suite runs on an installed package) and running this suite.
NOT_RUN = {"pip": "install", "pytest": None}
# A `softmax` command in a block that is not marked as shell (so it would never run).
COMMAND_LINE = re.compile(
    r"^\s*(\$\s+)?softmax\s+(fit|evaluate|predict|info|export|demo|apply|bandit)\b"
)


@dataclass
class Block:
    """A fenced code block of a document."""

    doc: str
    line: int  # 1-based line of the opening fence
    language: str
    source: str
    no_run: str | None = None  # the reason given, "" when the marker has none
    problems: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line} ({self.language or 'unmarked'} block)"


def parse_blocks(text: str, doc: str) -> list[Block]:
    """The fenced blocks of a Markdown document, outside include regions."""
    lines = text.splitlines()
    inside_include = set()
    for inc in sync_docs.find_includes(text, doc):
        inside_include.update(range(inc.start, inc.end + 1))
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        else:
            raise ValueError(f"{doc}:{i + 1}: code block never closed")
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = NO_RUN.match(lines[k].strip()) if k >= 0 else None
        if i not in inside_include:
            blocks.append(
                Block(
                    doc,
                    i + 1,
                    language,
                    "\n".join(body) + "\n",
                    no_run=marker["reason"] if marker else None,
                )
            )
        i = j + 1
    for block in blocks:
        block.problems = _problems(block)
    return blocks


def _problems(block: Block) -> list[str]:
    """Why the block can be neither run nor displayed as it is (empty when fine)."""
    if block.no_run is not None:
        return [] if block.no_run else ["<!-- no-run: ... --> needs a reason"]
    if block.language in DISPLAY_LANGUAGES:
        looks_like_code = [
            line
            for line in block.source.splitlines()
            if line.lstrip().startswith((">>> ", "$ softmax")) or COMMAND_LINE.match(line)
        ]
        if looks_like_code:
            return [
                f"shows code ({looks_like_code[0].strip()!r}) but is not marked python "
                "or console, so nothing checks it"
            ]
        return []
    if block.language not in RUN_LANGUAGES:
        return [f"language {block.language!r} cannot be run; add <!-- no-run: reason -->"]
    if block.language == "python":
        return []
    problems = []
    for _line, argv, _expected in shell_commands(block):
        if argv and not _runs(argv) and not _shown_only(argv):
            problems.append(
                f"command {shlex.join(argv)!r} is not run by the docs test; only `softmax ...` "
                "is (add <!-- no-run: reason --> if the block cannot run in CI)"
            )
    return problems


def _runs(argv: list[str]) -> bool:
    return argv[0] == "softmax"


def _shown_only(argv: list[str]) -> bool:
    if argv[0] not in NOT_RUN:
        return False
    sub = NOT_RUN[argv[0]]
    return sub is None or (len(argv) > 1 and argv[1] == sub)


def shell_commands(block: Block) -> list[tuple[int, list[str], str | None]]:
    """(line offset, argv, expected output or None) of each command of a shell block.

    ``&&`` chains are split into their commands; continuation lines are
    joined. In a console block the output lines follow each ``$`` line.
    """
    transcript = block.language == "console"
    commands: list[tuple[int, list[str], str | None]] = []
    lines = block.source.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        start = i
        if transcript:
            if not line.startswith("$ "):
                if line.strip():
                    raise ValueError(
                        f"{block.where}: output line {line!r} before any '$ ' command"
                    )
                i += 1
                continue
            line = line[2:]
        while line.rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line.rstrip()[:-1] + " " + lines[i].strip()
        i += 1
        expected = None
        if transcript:
            out = []
            while i < len(lines) and not lines[i].startswith("$ "):
                out.append(lines[i])
                i += 1
            expected = "\n".join(out).strip("\n") + "\n" if any(s.strip() for s in out) else ""
        for part in re.split(r"\s&&\s", line):
            argv = shlex.split(part, comments=True)
            if argv:
                commands.append((start, argv, expected))
    return commands


def run_softmax(args: list[str]) -> tuple[int, str]:
    """``softmax ARGS`` as the entry point runs it, in this process (no start-up cost).

    Returns the exit status and what it printed, stdout and stderr interleaved
    in the order written, as a terminal shows them.
    """
    from softmax.cli import main

    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        status = main(args)
    return status, output.getvalue()


class DocRunner:
    """Runs one document's blocks in one namespace and one working directory."""

    def __init__(self, doc: str, workdir: Path) -> None:
        self.doc = doc
        self.workdir = workdir
        self.namespace: dict = {"__name__": "__main__"}

    def run(self, block: Block) -> None:
        if block.no_run is not None or block.language in DISPLAY_LANGUAGES:
            return
        if block.problems:
            raise AssertionError(f"{block.where}: {'; '.join(block.problems)}")
        if block.language == "python":
            self._python(block)
        else:
            self._shell(block)

    def _python(self, block: Block) -> None:
        if any(line.lstrip().startswith(">>>") for line in block.source.splitlines()):
            source = textwrap.dedent(block.source)
            test = doctest.DocTestParser().get_doctest(
                source, self.namespace, block.where, self.doc, block.line
            )
            test.globs = self.namespace  # get_doctest copies; the document shares one
            report = io.StringIO()
            runner = doctest.DocTestRunner(optionflags=FLAGS)
            runner.run(test, out=report.write, clear_globs=False)
            if runner.failures:
                raise AssertionError(f"{block.where}: output differs\n{report.getvalue()}")
            return
        code = compile("\n" * block.line + block.source, f"{self.doc}", "exec")
        exec(code, self.namespace)

    def _shell(self, block: Block) -> None:
        checker = doctest.OutputChecker()
        for offset, argv, expected in shell_commands(block):
            if not _runs(argv):
                continue
            where = f"{self.doc}:{block.line + 1 + offset} `{shlex.join(argv)}`"
            status, output = run_softmax(argv[1:])
            if expected is None:
                assert status == 0, f"{where}: exit status {status}\n{output}"
                continue
            shows_error = "error:" in expected
            assert (status == 0) != shows_error, (
                f"{where}: exit status {status}, but the transcript "
                f"{'shows' if shows_error else 'does not show'} an error\n{output}"
            )
            if not checker.check_output(expected, output, FLAGS):
                diff = checker.output_difference(
                    doctest.Example(shlex.join(argv), expected), output, FLAGS
                )
                raise AssertionError(f"{where}: output differs\n{diff}")


def run_document(path: Path, workdir: Path) -> list[tuple[str, float]]:
    """Run every block of the document at ``path``; returns (block, seconds) timings."""
    blocks = parse_blocks(path.read_text(encoding="utf-8"), path.name)
    runner = DocRunner(path.name, workdir)
    timings = []
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for block in blocks:
            start = time.perf_counter()
            runner.run(block)
            timings.append((block.where, time.perf_counter() - start))
    finally:
        os.chdir(cwd)
    return timings


DOCUMENTS = sync_docs.documents(ROOT)


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_every_block_is_runnable_or_explained(path):
    blocks = parse_blocks(path.read_text(encoding="utf-8"), path.name)
    problems = [f"{b.where}: {p}" for b in blocks for p in b.problems]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_includes_are_exact_copies(path):
    stale = sync_docs.stale_includes(path, ROOT)
    assert not stale, (
        f"{path.name} quotes stale copies of {stale}: run `python benchmarks/sync_docs.py`"
    )


@pytest.mark.parametrize("path", DOCUMENTS, ids=[p.name for p in DOCUMENTS])
def test_document_runs(path, tmp_path, monkeypatch):
    from threadpoolctl import threadpool_limits

    # The figures a block draws go to files, never to a screen. One BLAS
    # thread: on a busy machine a second one makes the small products of the
    # examples many times slower (the examples' output does not depend on it).
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # A block that redraws a figure of the docs writes it under docs/figures/
    # relative to the repository root: here, into the temporary copy of that
    # folder, so the block runs without touching the repository.
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    with threadpool_limits(limits=1):
        run_document(path, tmp_path)


def test_derived_tables_are_current():
    stale = sync_docs.stale_derived(ROOT)
    assert not stale, (
        f"{sorted(stale)} differ from their JSON: run `python benchmarks/sync_docs.py`"
    )


# -- speed figures in prose come from a results file ----------------------------------

# A time or a speed ratio in running text: "0.74 s", "52.7 ms", "13x", "0.4-0.6x",
# "229 to 112 ms". Counts, percentages and shapes ("8,000 x 784") are not matched.
SPEED_FIGURE = re.compile(
    r"(?<![\w.,])(\d+(?:\.\d+)?)(?:\s?(?:-|to)\s?(\d+(?:\.\d+)?))?(?:\s?(?:ms|s)|x)(?![\w])"
)
# Figures typed into the docs before this check existed: each is a debt (a
# benchmark should write them), listed so that no new one can be added.
# Remove an entry when its figure leaves the text. The check matches numbers
# anywhere in the results files, so some entries are also held there by
# chance, which a rerun of a benchmark may undo: that is why an entry stays
# until its figure leaves the text.
TYPED_BEFORE_THE_CHECK = {
    ("dask.md", "229 to 112 ms"),
    ("performance.md", "0.29 s"),
    ("performance.md", "5.75 s"),
    ("performance.md", "0.29 ms"),
    ("performance.md", "0.565 s"),
    ("performance.md", "0.75 to 0.47 ms"),
    ("performance.md", "0.40x"),
    ("performance.md", "13.1 s"),
    ("solvers.md", "0.70 s"),
    # typed by hand in a table; it matched an unrelated number of the old
    # scale-0.2 fit_probe1000 results until they were rerun at full size
    ("solvers.md", "89 ms"),
    ("solvers.md", "18-135 s"),
    ("solvers.md", "0.023 s"),
    ("solvers.md", "0.148 s"),
    ("solvers.md", "0.057 s"),
    ("solvers.md", "0.293 s"),
    ("solvers.md", "0.049 s"),
    ("solvers.md", "1.989 s"),
    ("solvers.md", "0.236 s"),
    ("solvers.md", "0.281 s"),
    ("solvers.md", "0.045 s"),
    ("solvers.md", "0.170 s"),
    ("solvers.md", "0.025 s"),
    ("solvers.md", "52.7 ms"),
    ("solvers.md", "41.4 ms"),
    ("solvers.md", "354 ms"),
    ("solvers.md", "24.9 ms"),
    ("solvers.md", "0.62 to 0.50 s"),
    ("solvers.md", "8.0 ms"),
    ("solvers.md", "1.48x"),
}


def _results_text() -> str:
    folder = ROOT / "benchmarks" / "results"
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace")
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in {".md", ".json", ".txt"}
    )


def prose_speed_figures(text: str, doc: str) -> list[tuple[int, str, list[str]]]:
    """(line, figure, its numbers) of each speed figure outside code blocks and includes."""
    lines = text.splitlines()
    skip = set()
    for inc in sync_docs.find_includes(text, doc):
        skip.update(range(inc.start, inc.end + 1))
    for block in parse_blocks(text, doc):
        end = block.line + len(block.source.splitlines())
        skip.update(range(block.line - 1, end + 1))
    found = []
    for i, line in enumerate(lines):
        if i in skip or line.lstrip().startswith("<!--"):
            continue
        for m in SPEED_FIGURE.finditer(line):
            found.append((i + 1, m.group(0), [g for g in m.groups()[:2] if g]))
    return found


def _in_results(numbers: list[str], results: str) -> bool:
    return all(re.search(rf"(?<![\d.]){re.escape(n)}(?![\d])", results) for n in numbers)


def test_speed_figures_in_prose_come_from_results_files():
    """Every time or speed ratio in the text of README.md and docs/ appears in
    benchmarks/results/ (where a benchmark wrote it with its machine and load),
    except the listed debts; and every debt is still there (the list shrinks)."""
    results = _results_text()
    typed, seen = [], set()
    for path in DOCUMENTS:
        for line, figure, numbers in prose_speed_figures(path.read_text("utf-8"), path.name):
            seen.add((path.name, figure))
            if _in_results(numbers, results):
                continue
            if (path.name, figure) not in TYPED_BEFORE_THE_CHECK:
                typed.append(f"{path.name}:{line}: {figure!r}")
    assert not typed, (
        "speed figures typed by hand (no benchmarks/results file holds them); have a "
        "benchmark write them and include its results file:\n" + "\n".join(typed)
    )
    # a debt leaves the list when its figure leaves the text (not when some
    # results file happens to hold the same number)
    gone = sorted(TYPED_BEFORE_THE_CHECK - seen)
    assert not gone, f"no longer typed: remove from TYPED_BEFORE_THE_CHECK: {gone}"


def test_speed_figure_check_finds_typed_figures():
    text = textwrap.dedent(
        """
        The fit takes 0.74 s, 13x faster, and 1.06-1.11x a product (229 to 112 ms).

        ```python
        print("3.5 s")  # code is not prose
        ```
        Accuracy 98%, 8,000 x 784, 10 classes, 2 threads.
        """
    )
    found = [(figure, numbers) for _, figure, numbers in prose_speed_figures(text, "x.md")]
    assert found == [
        ("0.74 s", ["0.74"]),
        ("13x", ["13"]),
        ("1.06-1.11x", ["1.06", "1.11"]),
        ("229 to 112 ms", ["229", "112"]),
    ]
    assert _in_results(["0.74"], "| ours | 0.74 |") and not _in_results(["0.74"], "10.745")


# -- the runner itself: each rule catches what it is for --------------------------------


def _doc(tmp_path, text, name="doc.md"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_runner_checks_doctest_output(tmp_path):
    good = _doc(
        tmp_path,
        """
        ```python
        >>> x = 1 + 1
        >>> x
        2
        ```

        ```python
        print(x * 10)
        ```
        """,
    )
    run_document(good, tmp_path)
    stale = _doc(
        tmp_path,
        """
        ```python
        >>> 1 + 1
        3
        ```
        """,
    )
    with pytest.raises(AssertionError, match="output differs"):
        run_document(stale, tmp_path)


def test_runner_fails_on_an_exception(tmp_path):
    doc = _doc(
        tmp_path,
        """
        ```python
        raise RuntimeError("stale API")
        ```
        """,
    )
    with pytest.raises(RuntimeError, match="stale API"):
        run_document(doc, tmp_path)


def test_runner_runs_softmax_commands_and_checks_transcripts(tmp_path):
    doc = _doc(
        tmp_path,
        """
        ```bash
        pip install "softmax[cli]"   # not run
        softmax apply "1 2 3" --digits 2
        ```

        ```console
        $ softmax apply "1 2 3"
        0.090 0.245 0.665
        $ softmax apply "1 x"
        softmax apply: error: 'x' is not a number
        ```
        """,
    )
    run_document(doc, tmp_path)
    stale = _doc(
        tmp_path,
        """
        ```console
        $ softmax apply "1 2 3"
        0.100 0.245 0.665
        ```
        """,
    )
    with pytest.raises(AssertionError, match="output differs"):
        run_document(stale, tmp_path)
    failing = _doc(
        tmp_path,
        """
        ```bash
        softmax apply "1 two"
        ```
        """,
    )
    with pytest.raises(AssertionError, match="exit status 1"):
        run_document(failing, tmp_path)


def test_python_and_shell_blocks_share_the_directory(tmp_path):
    doc = _doc(
        tmp_path,
        """
        ```python
        import numpy as np
        np.savez("d.npz", X=np.array([[0.0], [1.0], [2.0], [3.0]]), y=np.array([0, 0, 1, 1]))
        ```

        ```bash
        softmax fit d.npz -o m.safetensors --quiet
        ```

        ```python
        >>> import softmax
        >>> softmax.load_model("m.safetensors").predict(np.array([[0.0], [3.0]]))
        array([0, 1])
        ```
        """,
    )
    run_document(doc, tmp_path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("```bash\npython benchmarks/bench_fit.py\n```\n", "not run by the docs test"),
        ("```bash\nsoftmax fit a.csv && rm -rf x\n```\n", "not run by the docs test"),
        ("```javascript\nlet x = 1;\n```\n", "cannot be run"),
        ("```\n>>> 1 + 1\n2\n```\n", "not marked python"),
        ("```text\n$ softmax demo\n```\n", "not marked python"),
        ("```\nsoftmax bandit --policy greedy\n```\n", "not marked python"),
        ("<!-- no-run -->\n```bash\npython x.py\n```\n", "needs a reason"),
    ],
    ids=[
        "other-command",
        "chained",
        "language",
        "bare-doctest",
        "text-transcript",
        "bare-command",
        "no-reason",
    ],
)
def test_unexplained_blocks_are_refused(text, problem):
    (block,) = parse_blocks(text, "doc.md")
    assert any(problem in p for p in block.problems), block.problems


def test_no_run_with_reason_skips_the_block(tmp_path):
    doc = _doc(
        tmp_path,
        """
        <!-- no-run: needs a GPU -->
        ```python
        raise RuntimeError("never run")
        ```

        Display only:

        ```
        functions -> losses -> solvers
        ```
        """,
    )
    (skipped, shown) = parse_blocks(doc.read_text(), "doc.md")
    assert skipped.no_run == "needs a GPU" and not skipped.problems and not shown.problems
    run_document(doc, tmp_path)


def test_includes_must_equal_their_file(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "t.md").write_text("| a | b |\n| 1 | 2 |\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Intro\n\n<!-- include: benchmarks/results/t.md -->\n| a | b |\n| 1 | 3 |\n"
        "<!-- end include -->\n\nOutro\n"
    )
    assert sync_docs.stale_includes(doc, tmp_path) == ["benchmarks/results/t.md"]
    doc.write_text(sync_docs.refresh(doc.read_text(), "doc.md", tmp_path))
    assert sync_docs.stale_includes(doc, tmp_path) == []
    assert doc.read_text().count("| 1 | 2 |") == 1 and doc.read_text().endswith("Outro\n")
    shown = "```text\n<!-- include: benchmarks/results/none.md -->\n```\n"
    assert sync_docs.find_includes(shown, "doc.md") == []  # a marker shown in a block
    with pytest.raises(ValueError, match="end include"):
        sync_docs.find_includes("<!-- include: benchmarks/results/t.md -->\nx\n", "doc.md")
    with pytest.raises(ValueError, match="does not exist"):
        sync_docs.included_text("benchmarks/results/none.md", tmp_path)
