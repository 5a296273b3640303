"""``softmax fit DATA --target COLUMN -o MODEL``: train and save a model."""

from __future__ import annotations

import argparse
from typing import Any

from softmax.cli._args import Command, add_data_arguments

# Files larger than this are streamed from disk block by block (when the
# streaming backend is installed) instead of being read into memory at once.
DEFAULT_MEMORY_BUDGET_MB = 1024.0


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """SoftmaxRegression's hyper-parameters as options (demo has its own, fewer)."""
    group = parser.add_argument_group("model options (see SoftmaxRegression)")
    group.add_argument(
        "--C",
        type=float,
        default=None,
        help="inverse regularisation (default 1); inf: no penalty (maximum likelihood)",
    )
    group.add_argument(
        "--l1-ratio",
        type=float,
        default=0.0,
        help="elastic-net mixing: 0 = L2 (default), 1 = L1",
    )
    group.add_argument(
        "--l1-type",
        choices=["elementwise", "grouped"],
        default="elementwise",
        help="what the l1-ratio share sums: |W_kj| (default), or grouped: the group lasso "
        "across classes (a feature leaves every class at once)",
    )
    group.add_argument(
        "--solver",
        default="auto",
        help="auto (default), lbfgs, newton-cg, newton-cholesky, proximal, proximal-newton or sgd",
    )
    group.add_argument("--max-iter", type=int, default=1000, help="iteration limit (1000)")
    group.add_argument("--tol", type=float, default=1e-7, help="solver tolerance (1e-7)")
    group.add_argument(
        "--no-intercept", action="store_true", help="fit without intercepts (fit_intercept=False)"
    )
    group.add_argument(
        "--class-weight",
        choices=("balanced",),
        help="'balanced' weighs classes inversely to their frequency",
    )
    group.add_argument("--random-state", type=int, help="seed for the stochastic solver")
    group.add_argument(
        "--reference-class",
        metavar="LABEL",
        help="fix this class's coefficients at zero (the baseline-category form of "
        "statsmodels' MNLogit): the other classes' coefficients are log-odds against it",
    )
    group.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        metavar="EPS",
        help="train against (1 - EPS) one-hot + EPS / n_classes targets, 0 <= EPS < 1 "
        "(PyTorch's label smoothing; default 0)",
    )


COMMAND = Command(
    description="Train a softmax regression on DATA and save it as one "
    "safetensors model file. A progress bar shows the objective while it fits.",
    epilog="example: softmax fit train.csv --target species -o model.safetensors "
    "(add --cv 5 to choose C by 5-fold cross-validation)",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, target_help="the column holding the labels (CSV/Parquet)")
    parser.add_argument(
        "-o",
        "--output",
        metavar="MODEL",
        required=True,
        help="model file to write; its name must end in .safetensors",
    )
    add_model_options(parser)
    from softmax.cli._cv import add_cv_options

    add_cv_options(parser)
    stream = parser.add_argument_group("large files")
    stream.add_argument(
        "--stream",
        action="store_true",
        help="read the file block by block instead of all at once (CSV, Parquet, NPZ)",
    )
    stream.add_argument(
        "--block-rows", type=int, default=65536, help="rows per block when streaming (65536)"
    )
    stream.add_argument(
        "--memory-budget",
        type=float,
        default=DEFAULT_MEMORY_BUDGET_MB,
        metavar="MB",
        help="stream files larger than this many megabytes (default 1024)",
    )
    stream.add_argument(
        "--checkpoint",
        metavar="DIR",
        help="keep the fit's progress in folder DIR (implies --stream): a fit stopped by "
        "Ctrl-C or a crash, run again with the same DIR, resumes where it stopped and ends "
        "with the model an uninterrupted fit gives",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    stats = parser.add_argument_group("statistics")
    stats.add_argument(
        "--summary",
        action="store_true",
        help="print the coefficients with standard errors, z values, p-values and "
        "likelihood statistics (softmax.inference; use --C inf for maximum likelihood)",
    )
    from softmax.cli._summary import add_cov_type_option

    add_cov_type_option(stats)


def reference_label(text: str | None, y: Any) -> Any:
    """The ``--reference-class`` label as the labels' own type.

    Command-line text is matched against the distinct labels of ``y`` by
    their text; without labels at hand (a file streamed block by block), an
    integer or a number is read as one.
    """
    if text is None:
        return None
    if y is not None:
        import numpy as np

        from softmax.cli._common import CLIError

        labels = np.unique(np.asarray(y))
        for label in labels.tolist():
            if str(label) == text or (isinstance(label, float) and f"{label:g}" == text):
                return label
        shown = ", ".join(str(c) for c in labels.tolist()[:12])
        raise CLIError(f"--reference-class {text!r} is not one of the classes: {shown}")
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def estimator_from_args(args: argparse.Namespace, y: Any = None) -> Any:
    """A SoftmaxRegression configured from the model options (``y``: the labels, if known)."""
    from softmax.regression import SoftmaxRegression

    return SoftmaxRegression(
        C=1.0 if args.C is None else args.C,
        l1_ratio=args.l1_ratio,
        solver=args.solver,
        max_iter=args.max_iter,
        tol=args.tol,
        fit_intercept=not args.no_intercept,
        class_weight=args.class_weight,
        random_state=args.random_state,
        reference_class=reference_label(getattr(args, "reference_class", None), y),
        label_smoothing=args.label_smoothing,
        l1_type=getattr(args, "l1_type", "elementwise"),
    )


# Formats softmax.streaming.FileSource reads block by block (LIBSVM is not one).
_STREAMABLE = {".csv", ".tsv", ".parquet", ".pq", ".npz"}


def _should_stream(args: argparse.Namespace) -> bool:
    """Whether to stream DATA: asked with ``--stream``, or above ``--memory-budget``.

    A file over the budget falls back to streaming and says so on stderr
    (one line), so that a user who did not ask for it knows why the fit
    passes over the file once per iteration.
    """
    import os
    import sys

    from softmax.cli._common import CLIError

    if args.stream or args.checkpoint is not None:
        return True
    if not os.path.isfile(args.data) or args.memory_budget is None:
        return False
    size = os.path.getsize(args.data)
    if size <= args.memory_budget * 1024 * 1024:
        return False
    over = (
        f"{args.data} ({size / 2**20:.3g} MB) is larger than --memory-budget "
        f"{args.memory_budget:g} MB"
    )
    if os.path.splitext(args.data)[1].lower() not in _STREAMABLE or args.format == "libsvm":
        raise CLIError(
            f"{over}, and only CSV, Parquet and NPZ files can be streamed; raise "
            "--memory-budget to read it into memory"
        )
    print(
        f"softmax fit: {over}: streaming it block by block (--block-rows "
        f"{args.block_rows}), one pass over the file per solver iteration",
        file=sys.stderr,
    )
    return True


def _terminal_with_tqdm() -> bool:
    """Whether a FileSource's row bars can be drawn (they need tqdm, and a terminal)."""
    import importlib.util
    import sys

    return sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None


def _streamed_accuracy(estimator: Any, source: Any) -> float:
    """Training accuracy over the blocks of ``source`` (one more pass; unweighted)."""
    import numpy as np
    import pandas as pd

    hits = 0
    for block in source.iter_blocks():
        rows = pd.DataFrame(block.X, columns=source.feature_names, copy=False)
        predicted = np.searchsorted(estimator.classes_, estimator.predict(rows))
        hits += int(np.count_nonzero(predicted == source.encode(block.y)))
    return hits / source.n_samples


def _stream_source(args: argparse.Namespace) -> Any:
    import os

    from softmax.cli._common import CLIError

    if not os.path.isfile(args.data):
        option = "--checkpoint" if args.checkpoint is not None else "--stream"
        raise CLIError(f"{option} needs a data file; no such file: {args.data}")
    try:
        from softmax.streaming import FileSource
    except ImportError as exc:
        from softmax.cli._common import install_hint

        raise CLIError(
            f"--stream needs the streaming backend ({exc}): {install_hint('pyarrow')}"
        ) from None
    if args.block_rows < 1:
        raise CLIError("--block-rows must be at least 1")
    return FileSource(
        args.data, target=args.target, block_rows=args.block_rows, checkpoint=args.checkpoint
    )


def run(args: argparse.Namespace) -> int:
    import time
    import warnings

    import numpy as np

    from softmax.cli._common import (
        CLIError,
        FitProgress,
        check_output_path,
        emit_json,
        load_data,
    )
    from softmax.cli._cv import check_cv_args, fit_cv, print_cv
    from softmax.io import save_model

    output = check_output_path(args.output, suffixes=(".safetensors",))
    check_cv_args(args)
    if args.cv is not None and not args.stream and _should_stream(args):
        raise CLIError(
            f"--cv needs the rows in memory, and {args.data} is larger than --memory-budget "
            f"{args.memory_budget:g} MB; raise --memory-budget"
        )
    streaming = _should_stream(args)
    show = not (args.quiet or args.json)
    if streaming:
        X, y, source, n_samples = _stream_source(args), None, args.data, None
        # a bar of rows for each pass over the file (the first counts them)
        X.progress = show and _terminal_with_tqdm()
    else:
        data = load_data(args.data, target=args.target, fmt=args.format, progress=show)
        X, y, source, n_samples = data.features_for_model(), data.y, data.source, data.n_samples
    cv_report = None
    if args.cv is None:
        estimator = estimator_from_args(args, y)

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.cv is not None:
            estimator, cv_report = fit_cv(args, X, y)
        else:
            with FitProgress(args.max_iter, tol=args.tol, enabled=show) as progress:
                estimator.fit(X, y, callback=progress)
    seconds = time.perf_counter() - start
    save_model(estimator, output)

    summary: dict[str, Any] = {
        "model": str(output),
        "data": source,
        "n_samples": n_samples,
        "n_features": int(estimator.n_features_in_),
        "classes": [str(c) for c in estimator.classes_],
        "solver": getattr(estimator, "solver_", None),
        "n_iter": getattr(estimator, "n_iter_", None),
        "converged": getattr(estimator, "converged_", None),
        "objective": getattr(estimator, "objective_", None),
        "fit_seconds": round(seconds, 3),
        "streamed": streaming,
        "warnings": [str(w.message).splitlines()[0] for w in caught],
    }
    if streaming:
        # the fit's first pass counted the rows; the accuracy takes one more
        summary["n_samples"] = n_samples = int(X.n_samples)
        summary["train_accuracy"] = _streamed_accuracy(estimator, X)
    else:
        summary["train_accuracy"] = float(np.mean(estimator.predict(X) == y))
    if cv_report is not None:
        summary["cv"] = cv_report
    results = None
    if args.summary:
        from softmax.cli._summary import summarize

        results, stats_warnings = summarize(estimator, X, y, args.cov_type, args.target)
        summary["warnings"] += [w for w in stats_warnings if w not in summary["warnings"]]
        summary["inference"] = results.to_dict()
    if args.json:
        emit_json(summary)
        return 0
    import sys

    for message in summary["warnings"]:
        print(f"warning: {message}", file=sys.stderr)
    rows = f"{n_samples} rows, " if n_samples is not None else ""
    print(
        f"fitted on {source}: {rows}{summary['n_features']} features, "
        f"{len(summary['classes'])} classes"
    )
    status = "converged" if summary["converged"] else "NOT converged"
    print(
        f"solver {summary['solver']}: {summary['n_iter']} iterations, {status}, "
        f"objective {summary['objective']:.6g}, {seconds:.2f} s"
    )
    if "train_accuracy" in summary:
        print(f"training accuracy {summary['train_accuracy']:.4f}")
    if cv_report is not None:
        print_cv(cv_report)
    print(f"model written to {output}")
    if results is not None:
        print()
        print(results.summary())
    return 0
