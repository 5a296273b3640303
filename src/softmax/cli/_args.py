"""Options several commands share. Standard library only: imported while the
parser is built, so it must not slow ``softmax --help`` down."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

__all__ = [
    "FORMATS",
    "Command",
    "add_data_arguments",
    "add_json_flag",
    "add_model_argument",
]

FORMATS = ("csv", "parquet", "npz", "libsvm")


@dataclass(frozen=True)
class Command:
    """The texts of ``softmax NAME --help``, around the command's options.

    Each command module ``softmax.cli.NAME`` holds one as ``COMMAND``, beside
    ``add_arguments(parser)`` (its own options) and ``run(args)``;
    :func:`softmax.cli.build_parser` registers it with the line
    ``softmax --help`` shows for it and gives it what every command has
    (``--json``).

    Parameters
    ----------
    description : str
        The paragraph above the options.
    epilog : str, optional
        The line below them (an example).
    """

    description: str
    epilog: str | None = None


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """The ``--json`` option every command has."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document on stdout instead of text (for scripts)",
    )


def add_model_argument(parser: argparse.ArgumentParser) -> None:
    """MODEL, the model file evaluate, predict, info and export read."""
    parser.add_argument("model", metavar="MODEL", help="a model file written by `softmax fit`")


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
