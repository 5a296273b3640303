"""``softmax info MODEL``: what a model file holds, without loading the estimator."""

from __future__ import annotations

import argparse

from softmax.cli._args import Command, add_model_argument

COMMAND = Command(
    description="Show a model file's metadata and tensors. Reads only JSON and raw "
    "numbers: safe on files from anywhere.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)


def run(args: argparse.Namespace) -> int:
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
    if args.json:
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
    return 0
