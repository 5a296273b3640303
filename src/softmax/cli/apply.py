"""``softmax apply "1 2 3" [--temperature T] [--log]``: the softmax of a vector."""

from __future__ import annotations

import argparse

from softmax.cli._args import Command

COMMAND = Command(
    description="Print softmax(x / T) of the numbers given (separated by spaces "
    "or commas), for quick checks.",
    epilog='example: softmax apply "1 2 3 4 1 2 3"',
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "values", metavar="VALUES", nargs="+", help='numbers, e.g. "1 2 3" or 1,2,3 or 1 2 3'
    )
    parser.add_argument(
        "-t",
        "--temperature",
        type=float,
        default=1.0,
        help="softmax(x / T); T > 0, or 0 for the hard max (default 1)",
    )
    parser.add_argument("--log", action="store_true", help="print log-softmax instead")
    parser.add_argument(
        "--digits", type=int, default=3, help="decimals printed (default 3; --json is exact)"
    )


def _parse(values: list[str]) -> list[float]:
    from softmax.cli._common import CLIError

    tokens = [t for v in values for t in v.replace(",", " ").split()]
    if not tokens:
        raise CLIError('give at least one number, e.g. softmax apply "1 2 3"')
    numbers = []
    for token in tokens:
        try:
            numbers.append(float(token))
        except ValueError:
            raise CLIError(f"{token!r} is not a number") from None
    return numbers


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from softmax.cli._common import CLIError, emit_json

    x = np.asarray(_parse(args.values), dtype=np.float64)
    if not np.isfinite(args.temperature) or args.temperature < 0:
        raise CLIError(f"--temperature must be a number >= 0, got {args.temperature}")
    if args.digits < 0:
        raise CLIError("--digits must be >= 0")
    from softmax.functions import log_softmax, softmax

    func = log_softmax if args.log else softmax
    result = func(x, temperature=args.temperature)
    if args.json:
        emit_json(
            {
                "input": x.tolist(),
                "temperature": args.temperature,
                "function": "log_softmax" if args.log else "softmax",
                "output": [float(v) for v in result],
            }
        )
        return 0
    print(" ".join(f"{v:.{args.digits}f}" for v in result))
    return 0
