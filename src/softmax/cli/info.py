"""``softmax info MODEL``: what a model file holds, without loading the estimator."""

from __future__ import annotations

import argparse

from softmax.cli._args import Command, add_model_argument

COMMAND = Command(
    description="Show a model file's metadata and tensors. Reads only JSON and raw "
    "numbers: safe on files from anywhere. With --summary DATA, also the table of "
    "coefficients, standard errors and tests on the rows the model was fitted on.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    stats = parser.add_argument_group("statistics")
    stats.add_argument(
        "--summary",
        metavar="DATA",
        help="also print the coefficients' standard errors, z values, p-values and "
        "likelihood statistics on DATA, the rows the model was fitted on (a file as "
        "`softmax fit` takes it, or a built-in dataset)",
    )
    stats.add_argument("--target", metavar="COLUMN", help="label column of DATA (CSV/Parquet)")
    from softmax.cli._args import FORMATS
    from softmax.cli._summary import add_cov_type_option

    stats.add_argument("--format", choices=FORMATS, help="file format of DATA")
    add_cov_type_option(stats)


def run(args: argparse.Namespace) -> int:
    import math
    import os

    from softmax.cli._common import CLIError, emit_json
    from softmax.io import read_model_metadata

    if os.path.isdir(args.model):
        raise CLIError(f"{args.model} is a directory, not a model file")
    if not os.path.isfile(args.model):
        raise CLIError(f"no such model file: {args.model}")
    try:
        meta = read_model_metadata(args.model)
    except ValueError as exc:
        raise CLIError(f"cannot read model: {exc}") from None
    meta.pop("classes_array", None)
    meta["file"] = args.model
    meta["file_bytes"] = os.path.getsize(args.model)
    results = None
    if args.summary is not None:
        from softmax.cli._common import load_data, load_model_file
        from softmax.cli._summary import summarize

        model = load_model_file(args.model)
        data = load_data(args.summary, target=args.target, fmt=args.format, model=model)
        results, stats_warnings = summarize(
            model, data.features_for_model(model), data.y, args.cov_type, args.target
        )
        meta["inference"] = {"data": data.source, **results.to_dict()}
        meta["warnings"] = stats_warnings
    elif args.target is not None or args.format is not None:
        raise CLIError("--target and --format describe the DATA of --summary DATA")
    if args.json:
        C = meta.get("params", {}).get("C")
        if isinstance(C, float) and math.isinf(C) and C > 0:
            meta["params"]["C"] = "inf"  # JSON has no infinity (null would be ambiguous)
        emit_json(meta)
        return 0
    classes = meta["classes"]["values"]
    names = meta.get("feature_names")
    print(
        f"{args.model}: softmax model (format {meta['format_version']}, written by "
        f"softmax {meta['library_version']}, {meta['file_bytes']} bytes)"
    )
    shown = ", ".join(str(c) for c in classes[:20]) + (" ..." if len(classes) > 20 else "")
    print(f"classes      {len(classes)} ({meta['classes']['dtype']}): {shown}")
    if names:
        more = f" ... ({len(names)} in all)" if len(names) > 8 else ""
        print(f"features     {meta['n_features_in']}: {', '.join(names[:8])}{more}")
    else:
        print(f"features     {meta['n_features_in']} (unnamed)")
    for name, tensor in meta["tensors"].items():
        print(f"tensor       {name}: {tensor['dtype']} {tuple(tensor['shape'])}")
    params = ", ".join(f"{k}={v!r}" for k, v in meta.get("params", {}).items())
    print(f"parameters   {params}")
    training = ", ".join(f"{k}={v}" for k, v in meta.get("training", {}).items())
    print(f"training     {training}")
    if results is not None:
        import sys

        for message in meta["warnings"]:
            print(f"warning: {message}", file=sys.stderr)
        print()
        print(results.summary())
    return 0
