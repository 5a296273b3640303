"""``softmax predict MODEL DATA -o OUT [--proba]``: labels or probabilities to a file."""

from __future__ import annotations

import argparse
from typing import Any

from softmax.cli._args import Command, add_data_arguments, add_model_argument

COMMAND = Command(
    description="Predict DATA with a model file. Tabular DATA may keep other "
    "columns (the label, ids): the model's own feature columns are picked by name.",
    epilog="example: softmax predict model.safetensors new.csv -o predictions.csv --proba",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    add_data_arguments(
        parser, target_help="a label column to leave out of the features (optional)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT",
        help="write to OUT (.csv or .parquet); default: CSV on stdout",
    )
    parser.add_argument(
        "--proba",
        action="store_true",
        help="write one probability column per class (proba_<class>) besides the label",
    )


def run(args: argparse.Namespace) -> int:
    import sys

    import numpy as np

    from softmax.cli._common import (
        check_output_path,
        emit_json,
        load_data,
        load_model_file,
    )

    out = None
    if args.output is not None:
        out = check_output_path(args.output, suffixes=(".csv", ".parquet", ".pq"))
    model = load_model_file(args.model)
    data = load_data(
        args.data,
        target=args.target,
        fmt=args.format,
        require_target=False,
        model=model,
        progress=not args.json,
    )
    X = data.features_for_model(model)
    columns: dict[str, Any] = {}
    if args.proba:
        proba = model.predict_proba(X)
        labels = model.classes_[np.argmax(proba, axis=1)]
        columns["prediction"] = labels
        for k, cls in enumerate(model.classes_):
            columns[f"proba_{cls}"] = proba[:, k]
    else:
        labels = model.predict(X)
        columns["prediction"] = labels

    if out is not None:
        _write_table(columns, out)
    values, counts = np.unique(labels.astype(str), return_counts=True)
    if args.json:
        document: dict[str, Any] = {
            "model": args.model,
            "data": data.source,
            "n_samples": data.n_samples,
            "output": None if out is None else str(out),
            "counts": dict(zip(values.tolist(), counts.tolist())),
        }
        if out is None:
            document["predictions"] = {k: np.asarray(v).tolist() for k, v in columns.items()}
        emit_json(document)
        return 0
    if out is None:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(list(columns))
        for row in zip(*(np.asarray(v).tolist() for v in columns.values())):
            writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        return 0
    summary = ", ".join(f"{v}: {c}" for v, c in zip(values, counts))
    print(f"wrote {data.n_samples} predictions to {out} ({summary})")
    return 0


def _write_table(columns: dict[str, Any], out: Any) -> None:
    """Write the prediction columns to ``out`` (.csv, or .parquet / .pq), atomically."""
    from softmax._persist import atomic_write
    from softmax.cli._common import CLIError, install_hint

    try:
        import pandas as pd
    except ImportError:
        raise CLIError(f"writing predictions needs pandas: {install_hint('pandas')}") from None
    frame = pd.DataFrame(columns)
    if out.suffix.lower() == ".csv":
        atomic_write(out, lambda fh: frame.to_csv(fh, index=False, encoding="utf-8"))
        return
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise CLIError(f"writing Parquet needs pyarrow: {install_hint('pyarrow')}") from None
    atomic_write(out, lambda fh: frame.to_parquet(fh, index=False))
