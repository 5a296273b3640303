"""``softmax evaluate MODEL DATA [--plots DIR]``: the report on held-out rows."""

from __future__ import annotations

import argparse
from typing import Any

from softmax.cli._args import Command, add_data_arguments, add_model_argument

COMMAND = Command(
    description="Evaluate a model file on labelled DATA: accuracy, log loss, "
    "per-class precision/recall/F1, the confusion matrix and the expected "
    "calibration error; --plots DIR also writes PNG figures.",
    epilog="example: softmax evaluate model.safetensors test.csv --target species "
    "--plots figures/",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_arguments(parser, target_help="the column holding the labels (CSV/Parquet)")
    add_plot_options(parser)


def add_plot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plots",
        metavar="DIR",
        help="write confusion_matrix.png, reliability.png and (for image data) "
        "class_weights.png into DIR (created if needed)",
    )
    parser.add_argument(
        "--image-shape",
        metavar="HxW",
        help="draw the class weights as HxW images (default: guessed for square pixel data)",
    )
    parser.add_argument(
        "--bins", type=int, default=15, help="confidence bins for the calibration error (15)"
    )


def parse_image_shape(text: str | None, n_features: int) -> tuple[int, int] | None:
    from softmax.cli._common import CLIError

    if text is None:
        return None
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CLIError(f"--image-shape must look like 28x28, got {text!r}") from None
    if height < 1 or width < 1 or height * width != n_features:
        raise CLIError(f"--image-shape {text} does not match the model's {n_features} features")
    return height, width


def require_matplotlib(what: str) -> None:
    """Fail early, before any work, when the figures cannot be drawn.

    Parameters
    ----------
    what : str
        What needs the figures, and how to do without them, as the message
        should say it (e.g. ``"--plots"``).
    """
    import importlib.util

    from softmax.cli._common import CLIError, install_hint

    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError(f"{what} needs matplotlib: {install_hint('matplotlib')}")


def write_plots(
    folder: str,
    report: dict[str, Any],
    curve: dict[str, Any],
    model: Any,
    image_shape: tuple[int, int] | None,
) -> list[str]:
    """Write the evaluation figures as PNG files; return their paths.

    Call :func:`require_matplotlib` first: this assumes matplotlib is there.
    """
    import os

    from softmax import plotting
    from softmax.cli._common import CLIError

    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the plots folder {folder}: {exc.strerror}") from None

    written = []
    path = os.path.join(folder, "confusion_matrix.png")
    plotting.plot_confusion_matrix(
        report["confusion_matrix"],
        report["classes"],
        title=f"Confusion matrix (accuracy {report['accuracy']:.3f})",
        path=path,
    )
    written.append(path)
    path = os.path.join(folder, "reliability.png")
    plotting.plot_reliability_diagram(curve, ece=report["ece"], path=path)
    written.append(path)
    if image_shape is not None:
        path = os.path.join(folder, "class_weights.png")
        plotting.plot_class_weights(
            model.coef_, [str(c) for c in model.classes_], image_shape=image_shape, path=path
        )
        written.append(path)
    return written


def evaluate(model: Any, data: Any, bins: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report dict and reliability curve of ``model`` on ``data``."""
    from softmax.cli._common import CLIError
    from softmax.metrics import classification_report, reliability_curve

    if bins < 1:
        raise CLIError("--bins must be at least 1")
    proba = model.predict_proba(data.features_for_model(model))
    report = classification_report(data.y, proba, model.classes_, n_bins=bins)
    curve = reliability_curve(data.y, proba, classes=model.classes_, n_bins=bins)
    return report, curve


def run(args: argparse.Namespace) -> int:
    from softmax.cli._common import emit_json, load_data, load_model_file
    from softmax.metrics import format_report

    if args.plots:
        require_matplotlib("--plots")
    model = load_model_file(args.model)
    data = load_data(
        args.data, target=args.target, fmt=args.format, model=model, progress=not args.json
    )
    report, curve = evaluate(model, data, args.bins)
    image_shape = parse_image_shape(args.image_shape, data.n_features) or data.image_shape
    figures = write_plots(args.plots, report, curve, model, image_shape) if args.plots else []
    if args.json:
        emit_json({"model": args.model, "data": data.source, **report, "figures": figures})
        return 0
    print(f"model {args.model} on {data.source}")
    print(format_report(report))
    if figures:
        print()
        print("figures: " + ", ".join(figures))
    return 0
