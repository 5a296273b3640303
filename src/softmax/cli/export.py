"""``softmax export MODEL -o model.onnx``: the model as an ONNX graph."""

from __future__ import annotations

import argparse

from softmax.cli._args import Command, add_model_argument

COMMAND = Command(
    description="Write the model as an ONNX graph: Gemm + Softmax for the "
    "probabilities and ArgMax for the label index (input 'X', outputs 'label' "
    "and 'probabilities').",
    epilog="example: softmax export model.safetensors -o model.onnx",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_argument(parser)
    parser.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="ONNX file to write (.onnx)"
    )
    parser.add_argument(
        "--opset", type=int, default=None, help="ONNX opset to target (default: 17)"
    )


def run(args: argparse.Namespace) -> int:
    from softmax.cli._common import CLIError, check_output_path, emit_json, load_model_file

    out = check_output_path(args.output, suffixes=(".onnx",))
    model = load_model_file(args.model)
    try:
        from softmax.onnx import DEFAULT_OPSET, export_onnx
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    opset = DEFAULT_OPSET if args.opset is None else args.opset
    try:
        export_onnx(model, out, opset=opset)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    document = {
        "model": args.model,
        "output": str(out),
        "opset": opset,
        "inputs": {"X": ["N", int(model.n_features_in_)]},
        "outputs": {
            "label": ["N"],
            "class": ["N"],
            "probabilities": ["N", len(model.classes_)],
        },
        "classes": [str(c) for c in model.classes_],
    }
    if args.json:
        emit_json(document)
        return 0
    print(
        f"wrote {out} (opset {opset}): input X [N, {model.n_features_in_}] -> label [N] "
        f"(index into the classes), class [N], probabilities [N, {len(model.classes_)}]; "
        f"classes {document['classes']}"
    )
    return 0
