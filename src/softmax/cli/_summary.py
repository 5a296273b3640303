"""The inference table the commands print: ``fit --summary``, ``info --summary DATA``.

Standard library only at import time (the parser is built from it); the
statistics come from :func:`softmax.inference` inside :func:`summarize`.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["COV_TYPES", "add_cov_type_option", "summarize"]

#: The covariances the command line offers (the cluster one needs a groups column).
COV_TYPES = ("nonrobust", "HC0", "HC1")


def add_cov_type_option(parser: argparse.ArgumentParser) -> None:
    """``--cov-type``, the covariance of the ``--summary`` table."""
    parser.add_argument(
        "--cov-type",
        choices=COV_TYPES,
        default="nonrobust",
        help="covariance of the --summary table: nonrobust (inverse information, the "
        "default), HC0 or HC1 (sandwich, robust to misspecified probabilities)",
    )


def summarize(
    model: Any, X: Any, y: Any, cov_type: str, dep_name: str | None = None
) -> tuple[Any, list[str]]:
    """``softmax.inference(model, X, y, cov_type=...)`` with its warnings as lines.

    ``dep_name`` (the label column) names the dependent variable in the table.

    Returns
    -------
    results : InferenceResults
    warnings : list of str
        First lines of the warnings it raised (separation, an off-optimum
        fit), for stderr or the JSON document; the summary's notes repeat them.

    Raises
    ------
    CLIError
        When inference refuses the model or the rows (an L1 fit, another
        number of features, labels the model does not know, ...).
    """
    import warnings

    from softmax._inference import inference
    from softmax.cli._common import CLIError

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = inference(model, X, y, cov_type=cov_type)
        except (ValueError, TypeError) as exc:
            raise CLIError(f"--summary: {str(exc).splitlines()[0]}") from None
    if dep_name:
        results.dep_name = dep_name
    return results, [str(w.message).splitlines()[0] for w in caught]
