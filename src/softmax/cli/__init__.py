"""The ``softmax`` command line: a thin face over the public API.

``_COMMANDS`` lists the commands with the line ``softmax --help`` shows for
each; each command lives in its own module, ``softmax.cli.NAME``, which
holds::

    COMMAND: _args.Command          # the texts of `softmax NAME --help`
    add_arguments(parser) -> None   # its own options
    run(args) -> int                # the work; returns the exit status

:func:`build_parser` registers each one and gives every command ``--json``.

Building the parser imports nothing but the standard library, so
``softmax --help`` starts fast; NumPy, scikit-learn, pandas and matplotlib
are imported inside ``run``. Errors a user can cause (a missing file, an
unknown column, a model trained on other features) end as one line on
stderr and a non-zero exit status, never a traceback; set
``SOFTMAX_DEBUG=1`` to see the traceback anyway. With ``--json`` the error
is also printed on stdout as a JSON document (:func:`error_document`), so a
script that reads stdout always gets JSON.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from softmax.cli._args import Command, add_json_flag

__all__ = ["build_parser", "error_document", "main"]

#: The commands, in the order ``softmax --help`` lists them, with the line it
#: shows for each. The module ``softmax.cli.NAME`` holds the rest of a command.
_COMMANDS = {
    "fit": "train a softmax regression and save it to a model file",
    "evaluate": "report accuracy, log loss, per-class scores, confusion matrix, calibration",
    "predict": "write predicted labels or class probabilities as CSV or Parquet",
    "info": "show what a model file holds (classes, features, parameters, training)",
    "export": "export a model file to ONNX (needs softmax[onnx])",
    "demo": "fit and evaluate on the MNIST digits shipped with softmax (no network)",
    "apply": "print the softmax (or log-softmax) of a vector of numbers",
    "bandit": "compare softmax, epsilon-greedy, UCB and gradient bandit policies",
}

EXIT_ERROR = 1  # the command failed (bad data, bad model file, ...)
EXIT_USAGE = 2  # the command line itself was wrong (argparse's convention)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


def _version() -> str:
    from softmax import __version__

    return __version__


class _Parser(argparse.ArgumentParser):
    """argparse's parser, remembering its usage error for the ``--json`` document.

    The command parsers are made by ``add_subparsers`` with the class of the
    parser that holds them, so they are ``_Parser`` too.
    """

    last_error: str | None = None
    commands: tuple[str, ...] = ()  # the command names, set by build_parser

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        _Parser.last_error = message
        super().error(message)


def build_parser() -> _Parser:
    """The ``softmax`` argument parser with every command registered.

    Returns
    -------
    parser : argparse.ArgumentParser
        With ``commands``, the names of the commands.
    """
    parser = _Parser(
        prog="softmax",
        description="Softmax regression from the command line: fit, evaluate and "
        "predict on CSV, Parquet, NPZ or LIBSVM files or built-in datasets.",
        epilog="Start with `softmax demo`. Every command takes --json for "
        "machine-readable output; `softmax COMMAND --help` lists a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"softmax {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, line in _COMMANDS.items():
        module = importlib.import_module(f"softmax.cli.{name}")
        command: Command = module.COMMAND
        sub = subparsers.add_parser(
            name, help=line, description=command.description, epilog=command.epilog
        )
        module.add_arguments(sub)
        add_json_flag(sub)
        sub.set_defaults(_run=module.run)
    parser.commands = tuple(subparsers.choices)
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


def error_document(command: str | None, message: str, status: int) -> dict[str, object]:
    """The JSON document a failed command prints on stdout under ``--json``.

    Parameters
    ----------
    command : str or None
        The command that failed (None when the command line named none).
    message : str
        The one-line error, as printed on stderr after ``error:``.
    status : int
        The exit status: 1 (the command failed), 2 (a wrong command line) or
        130 (interrupted).

    Returns
    -------
    document : dict
        ``{"error": message, "command": command, "exit_status": status}``.
    """
    return {"error": message, "command": command, "exit_status": status}


def _print_json_error(command: str | None, message: str, status: int) -> None:
    import json

    try:
        print(json.dumps(error_document(command, message, status), ensure_ascii=False))
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):  # stdout already gone
        pass


def _unknown_command(parser: _Parser, argv: Sequence[str]) -> str | None:
    """The usage error for a mistyped command, with a suggestion; None when it is known."""
    import difflib

    first = next(iter(argv), None)
    if first is None or first.startswith("-"):
        return None
    commands = list(parser.commands)
    if first in commands:
        return None
    close = difflib.get_close_matches(first, commands, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown command {first!r}{hint} (commands: {', '.join(commands)})"


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

    Notes
    -----
    Called without ``argv`` (``python -m softmax``, the ``softmax`` script),
    the process ends right after; :func:`_prepare_exit` makes that end quick,
    so that Ctrl-C stops a command within a fraction of a second.
    """
    status = _main(list(sys.argv[1:] if argv is None else argv))
    if argv is None:
        _prepare_exit()
    return status


def _prepare_exit() -> None:
    """Flush the output and take the heap out of the shutdown's garbage collection.

    With scikit-learn, SciPy and pandas loaded, the collections the
    interpreter runs while it shuts down take about half a second (more on a
    busy machine): the command would end that much after Ctrl-C, and a
    ``SIGINT`` arriving in that window, after the work is done, would be lost
    (exit status 0). Every file is written and closed at this point, so
    ``gc.freeze()`` moves the objects out of the collector's sight and they
    are freed by reference counting alone; what cycles remain, the operating
    system reclaims with the process.
    """
    import contextlib
    import gc

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    gc.freeze()


def _main(argv: list[str]) -> int:
    wants_json = "--json" in argv
    parser = build_parser()
    _Parser.last_error = None
    try:
        unknown = _unknown_command(parser, argv)
        if unknown is not None:
            parser.error(unknown)
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error
        status = int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        if status != 0 and wants_json and _Parser.last_error is not None:
            command = argv[0] if argv and not argv[0].startswith("-") else None
            _print_json_error(command, _Parser.last_error, status)
        return status
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    json_errors = bool(getattr(args, "json", False))
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"softmax {args.command}: interrupted", file=sys.stderr)
        if json_errors:
            _print_json_error(args.command, "interrupted", EXIT_INTERRUPTED)
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
        message = f"{prefix}{_one_line(exc)}"
        print(f"softmax {args.command}: error: {message}", file=sys.stderr)
        if json_errors:
            _print_json_error(args.command, message, EXIT_ERROR)
        return EXIT_ERROR
