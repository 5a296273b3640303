"""Options several commands share. Standard library only: imported while the
parser is built, so it must not slow ``softmax --help`` down."""

from __future__ import annotations

import argparse

__all__ = ["FORMATS", "add_data_arguments", "add_json_flag"]

FORMATS = ("csv", "parquet", "npz", "libsvm")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option every command has."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of text (for scripts)",
    )


def add_data_arguments(parser: argparse.ArgumentParser, *, target_help: str) -> None:
    """DATA, --target and --format, as fit, evaluate and predict take them."""
    parser.add_argument(
        "data",
        metavar="DATA",
        help="a CSV, Parquet, NPZ (arrays X and y) or LIBSVM file, or a built-in "
        "dataset: mnist-sample, mnist, digits, iris",
    )
    parser.add_argument("--target", metavar="COLUMN", help=target_help)
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="file format, when the file name's suffix does not tell "
        "(.csv .tsv .parquet .pq .npz .svm .svmlight .libsvm)",
    )
