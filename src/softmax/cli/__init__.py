"""The ``softmax`` command line: a thin face over the public API.

Each command lives in its own module with two functions::

    add_parser(subparsers) -> None   # registers the command and its options
    run(args) -> int                 # does the work, returns the exit status

Building the parser imports nothing but the standard library, so
``softmax --help`` starts fast; NumPy, scikit-learn, pandas and matplotlib
are imported inside ``run``. Errors a user can cause (a missing file, an
unknown column, a model trained on other features) end as one line on
stderr and a non-zero exit status, never a traceback; set
``SOFTMAX_DEBUG=1`` to see the traceback anyway.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# Command modules, in the order `softmax --help` lists them.
_COMMANDS = (
    "softmax.cli.fit",
    "softmax.cli.evaluate",
    "softmax.cli.predict",
    "softmax.cli.info",
    "softmax.cli.export",
    "softmax.cli.demo",
    "softmax.cli.apply",
    "softmax.cli.bandit",  # written by the bandits part of the package
)

EXIT_ERROR = 1  # the command failed (bad data, bad model file, ...)
EXIT_USAGE = 2  # the command line itself was wrong (argparse's convention)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def _version() -> str:
    from softmax import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``softmax`` argument parser with every command registered.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    parser = argparse.ArgumentParser(
        prog="softmax",
        description="Softmax regression from the command line: fit, evaluate and "
        "predict on CSV, Parquet, NPZ or LIBSVM files or built-in datasets.",
        epilog="Start with `softmax demo`. Every command takes --json for "
        "machine-readable output. Docs: docs/cli.md.",
    )
    parser.add_argument("--version", action="version", version=f"softmax {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in _COMMANDS:
        module = importlib.import_module(name)
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        # Remember which module runs each command it registered.
        for command in set(subparsers.choices) - before:
            subparsers.choices[command].set_defaults(_run=module.run)
    return parser


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = f"missing key {exc.args[0]!r}"
    # A user should see one line; keep the first line of multi-line messages.
    first = text.splitlines()[0] if text else text
    if isinstance(exc, FileNotFoundError) and exc.filename:
        first = f"no such file: {exc.filename}"
    return first


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``softmax`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    status : int
        0 on success, 1 when the command failed, 2 for a wrong command line,
        130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("softmax: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `softmax predict ... | head`: the reader left; not an error of ours.
        # Point stdout at devnull so the interpreter's final flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:
        if os.environ.get("SOFTMAX_DEBUG"):
            raise
        from softmax.cli._common import CLIError

        prefix = (
            ""
            if isinstance(exc, (CLIError, ValueError, OSError, TypeError))
            else (f"{type(exc).__name__}: ")
        )
        print(f"softmax {args.command}: error: {prefix}{_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
