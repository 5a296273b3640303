"""``softmax fit ... --cv K``: choose ``C`` by cross-validation (SoftmaxRegressionCV).

The options are added to ``softmax fit`` by :func:`add_cv_options`;
:func:`check_cv_args` refuses combinations that make no sense before any
data is read; :func:`fit_cv` runs :class:`~softmax.SoftmaxRegressionCV` with
``cv=K`` (``StratifiedKFold(K)``, not shuffled: the folds the library gives
for the same ``K``), draws the figures asked for and returns what the
summary reports. Standard library only at import (the parser is built from it).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

__all__ = ["add_cv_options", "check_cv_args", "fit_cv", "parse_cs", "print_cv"]

#: Suffixes of the figure files (what matplotlib writes by name).
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")

#: Options that only mean something with --cv: option -> attribute.
_CV_ONLY = {
    "--Cs": "Cs",
    "--scoring": "scoring",
    "--one-se": "one_se",
    "--cv-plot": "cv_plot",
    "--path-plot": "path_plot",
}


def add_cv_options(parser: argparse.ArgumentParser) -> None:
    """``--cv``, ``--Cs``, ``--scoring``, ``--one-se``, ``--cv-plot``, ``--path-plot``."""
    group = parser.add_argument_group("choosing C by cross-validation (see SoftmaxRegressionCV)")
    group.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="choose C by K-fold stratified cross-validation over --Cs, then fit all "
        "rows at the chosen C (excludes --C)",
    )
    group.add_argument(
        "--Cs",
        metavar="N|LIST",
        help="the grid of C: a whole number N for N values np.logspace(-4, 4, N) "
        "(default 10), or comma-separated values such as 0.01,0.1,1,10",
    )
    group.add_argument(
        "--scoring",
        metavar="NAME",
        help="scikit-learn scorer of the held-out folds, greater is better "
        "(default neg_log_loss; e.g. accuracy, f1_macro)",
    )
    group.add_argument(
        "--one-se",
        action="store_true",
        help="one-standard-error rule (glmnet's lambda.1se): the smallest C whose "
        "mean score is within one standard error of the best",
    )
    group.add_argument(
        "--cv-plot",
        metavar="FILE",
        help="write the CV curve (mean score and one standard error against C) "
        "to FILE (.png, .svg, .pdf)",
    )
    group.add_argument(
        "--path-plot",
        metavar="FILE",
        help="write the regularisation path on all rows over the grid to FILE (.png, .svg, .pdf)",
    )


def parse_cs(text: str | None) -> int | list[float]:
    """``--Cs``: a count (a plain whole number) or a list of values ``> 0``.

    Raises
    ------
    CLIError
        For text that is neither, a count below 1, or a value that is not
        a finite number above 0.
    """
    from softmax.cli._common import CLIError

    if text is None:
        return 10
    text = text.strip()
    if text.isdigit():
        count = int(text)
        if count < 1:
            raise CLIError("--Cs: a count of values of C must be at least 1")
        return count
    values = []
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value = float(part)
        except ValueError:
            raise CLIError(
                f"--Cs {text!r}: give a whole number (how many values of C) or "
                "comma-separated numbers > 0 such as 0.01,0.1,1"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise CLIError(f"--Cs: every value of C must be a finite number > 0; got {part!r}")
        values.append(value)
    if not values:
        raise CLIError("--Cs is empty; give a count or values of C")
    return values


def check_cv_args(args: argparse.Namespace) -> None:
    """Refuse combinations of options that make no sense, before any work."""
    from softmax.cli._common import CLIError, check_output_path

    if args.cv is None:
        given = [opt for opt, attr in _CV_ONLY.items() if getattr(args, attr) not in (None, False)]
        if given:
            raise CLIError(f"{given[0]} needs --cv K (it belongs to cross-validation)")
        return
    if args.cv < 2:
        raise CLIError(f"--cv must be at least 2 folds; got {args.cv}")
    if args.C is not None:
        raise CLIError(
            "--C and --cv exclude each other: --cv chooses C from the grid --Cs "
            "(give --Cs with one value to fix it)"
        )
    refused = {
        "--summary": args.summary
        and "its standard errors treat C as fixed, but --cv chose it on these rows; "
        "fit again with --C <the chosen C> --summary",
        "--reference-class": args.reference_class is not None
        and "SoftmaxRegressionCV fits the symmetric form only",
        "--stream": args.stream and "cross-validation needs the rows in memory",
    }
    for option, why in refused.items():
        if why:
            raise CLIError(f"--cv cannot be combined with {option}: {why}")
    args.Cs_grid = parse_cs(args.Cs)
    for option, value in (("--cv-plot", args.cv_plot), ("--path-plot", args.path_plot)):
        if value is not None:
            from softmax.cli.evaluate import require_matplotlib

            require_matplotlib(f"{option} (or leave it out)")
            try:
                check_output_path(value, suffixes=FIGURE_SUFFIXES)
            except CLIError as exc:
                raise CLIError(f"{option}: {exc}") from None


def fit_cv(args: argparse.Namespace, X: Any, y: Any) -> tuple[Any, dict[str, Any]]:
    """Cross-validate, refit at the chosen C, draw the figures.

    Returns
    -------
    model : SoftmaxRegression
        The refitted model (``SoftmaxRegressionCV.estimator_``), which is saved.
    report : dict
        What ``--json`` prints under ``"cv"``: the folds, the grid, each
        ``C``'s mean score and standard error, the best and the chosen ``C``
        and the figures written.
    """
    import numpy as np
    from sklearn.metrics import get_scorer

    from softmax.cli._common import CLIError
    from softmax.model_selection import SoftmaxRegressionCV

    scoring = args.scoring or "neg_log_loss"
    try:
        get_scorer(scoring)
    except ValueError:
        raise CLIError(
            f"--scoring {scoring!r} is not a scikit-learn scorer name "
            "(sklearn.metrics.get_scorer_names() lists them; e.g. neg_log_loss, accuracy)"
        ) from None
    smallest = int(np.unique(np.asarray(y), return_counts=True)[1].min())
    if args.cv > smallest:
        raise CLIError(
            f"--cv {args.cv}: the smallest class has only {smallest} rows; stratified "
            f"folds need at most that many (use --cv {max(2, smallest)} or fewer)"
        )
    cv = SoftmaxRegressionCV(
        Cs=args.Cs_grid,
        l1_ratios=(args.l1_ratio,),
        fit_intercept=not args.no_intercept,
        cv=args.cv,
        scoring=scoring,
        solver=args.solver,
        tol=args.tol,
        max_iter=args.max_iter,
        class_weight=args.class_weight,
        random_state=args.random_state,
        select="1se" if args.one_se else "best",
        label_smoothing=args.label_smoothing,
    )
    cv.fit(X, y)
    scores = cv.scores_[:, 0, :]  # (folds, Cs): one l1_ratio
    mean = scores.mean(axis=0)
    se = scores.std(axis=0, ddof=1) / math.sqrt(scores.shape[0])
    best = int(np.argmax(mean))
    report: dict[str, Any] = {
        "folds": int(args.cv),
        "scoring": cv.scoring,
        "rule": "one standard error" if args.one_se else "best mean score",
        "C": float(cv.C_),
        "best_C": float(cv.Cs_[best]),
        "Cs": [float(c) for c in cv.Cs_],
        "mean_scores": [float(m) for m in mean],
        "std_errors": [float(s) for s in se],
        "plots": {},
    }
    if args.cv_plot is not None:
        from softmax.plotting import plot_cv_scores

        plot_cv_scores(cv, path=args.cv_plot)
        report["plots"]["cv"] = str(args.cv_plot)
    if args.path_plot is not None:
        from softmax.model_selection import regularization_path
        from softmax.plotting import plot_regularization_path

        path = regularization_path(
            X,
            y,
            cv.Cs_,
            l1_ratio=args.l1_ratio,
            class_weight=args.class_weight,
            fit_intercept=not args.no_intercept,
            solver=args.solver,
            tol=args.tol,
            max_iter=args.max_iter,
            label_smoothing=args.label_smoothing,
        )
        names = getattr(cv, "feature_names_in_", None)
        plot_regularization_path(
            path,
            feature_names=None if names is None else list(names),
            title=f"Regularisation path (C chosen by {args.cv}-fold CV: {cv.C_:.4g})",
            path=args.path_plot,
        )
        report["plots"]["path"] = str(args.path_plot)
    return cv.estimator_, report


def print_cv(report: dict[str, Any]) -> None:
    """The CV table as text: one line per C, the chosen and the best marked."""
    print(
        f"cross-validation: {report['folds']} stratified folds, scoring {report['scoring']}, "
        f"rule: {report['rule']}"
    )
    print(f"{'C':>10}  {'mean score':>12}  {'std error':>10}")
    for c, m, s in zip(report["Cs"], report["mean_scores"], report["std_errors"]):
        mark = []
        if c == report["C"]:
            mark.append("chosen")
        if c == report["best_C"]:
            mark.append("best")
        tail = f"  <- {', '.join(mark)}" if mark else ""
        print(f"{c:>10.4g}  {m:>12.6f}  {s:>10.2e}{tail}")
    print(f"chosen C = {report['C']:.6g}")
    for kind, path in report["plots"].items():
        print(f"{kind} figure written to {path}")
