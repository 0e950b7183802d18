"""``deltaflow export``: a saved model as ONNX or as a PyTorch state_dict."""

from __future__ import annotations

import argparse
import io as _io
from typing import Any

from deltaflow import io
from deltaflow.cli._common import check_output
from deltaflow.errors import ConfigError
from deltaflow.interop import to_onnx, to_torch
from deltaflow.interop._common import require

_FORMATS = (".onnx", ".pt")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a saved model as ONNX (.onnx) or a PyTorch state_dict (.pt)",
        description=(
            "Write a model saved by deltaflow as an ONNX model (FILE.onnx: MatMul, Add and "
            "activation nodes, with the layer sizes, activations, cost and input scaling "
            "in its metadata) or as the state_dict of a torch.nn.Sequential of Linear "
            "layers and activations (FILE.pt, saved with torch.save; load it with "
            "torch.load(FILE, weights_only=True)). The format follows the extension."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="a .safetensors file saved by deltaflow")
    p.add_argument(
        "--output", "-o", metavar="FILE", required=True, help="FILE.onnx or FILE.pt to write"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--opset", type=int, default=17, help="ONNX operator set (default 17)")
    p.add_argument(
        "--include-scaling",
        action="store_true",
        help="ONNX only: divide the inputs by the model's stored input scaling inside the "
        "graph, so that it takes raw inputs as 'deltaflow predict' does",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    suffix = args.output.lower()[-5:]
    kind = next((f for f in _FORMATS if suffix.endswith(f)), None)
    if kind is None:
        raise ConfigError(
            f"--output {args.output!r} must end in .onnx (ONNX) or .pt (PyTorch state_dict)"
        )
    if args.include_scaling and kind == ".pt":
        raise ConfigError("--include-scaling applies to .onnx exports only")
    target = check_output(args.output, args.force, "output file")
    if kind == ".onnx":
        to_onnx(args.model, target, opset=args.opset, include_scaling=args.include_scaling)
    else:
        net = io.load(args.model)  # a bad model file is named before a missing package
        torch = require("torch", "torch (the CPU build is enough)")
        module = to_torch(net)
        buf = _io.BytesIO()
        torch.save(module.state_dict(), buf)
        io.atomic_write_bytes(target, buf.getvalue())
    print(f"wrote {target}")
    return 0
