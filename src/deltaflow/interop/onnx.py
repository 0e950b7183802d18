"""ONNX export and import: a network as a graph of MatMul, Add and activation nodes.

deltaflow's layer ``z[l] = a[l-1] @ Theta[l] + b[l]`` with ``Theta[l]`` of shape
``(S[l-1], S[l])`` is ONNX's ``MatMul`` followed by ``Add`` with no transposes, so an
export holds the parameters exactly as the network does. The graph reads::

    input (batch, S[0]) -> [Div by the input divisor] -> MatMul -> Add -> g^(1) -> ...
        -> MatMul -> Add -> g^(L) -> output (batch, S[L])

with ``g`` one of Sigmoid, Tanh, Relu, LeakyRelu (alpha 0.01), Softmax (last axis) or
Identity, the batch dimension named ``batch`` and left free, and every tensor in the
network's dtype. The optional ``Div`` appears only with ``include_scaling=True``.

The model's ``metadata_props`` carry what the graph cannot: ``deltaflow.sizes``,
``deltaflow.activations``, ``deltaflow.cost``, ``deltaflow.dtype`` (JSON),
``deltaflow.class_names`` (JSON list or ``null``), ``deltaflow.input_divisor`` (the
number raw inputs are divided by before the first layer) and
``deltaflow.scaling_in_graph`` (``"true"`` when the ``Div`` node does that division).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from deltaflow import __version__
from deltaflow.errors import ConfigError, ModelFileError
from deltaflow.interop._common import build_network, model_facts, require
from deltaflow.io import atomic_write_bytes
from deltaflow.network import Network

__all__ = ["from_onnx", "to_onnx"]

_INSTALL = "'deltaflow[onnx]'"
#: the first opset whose Softmax normalises over one axis, as deltaflow's does
_MIN_OPSET = 13
_ONNX_ACTIVATIONS = {
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "relu": "Relu",
    "leaky_relu": "LeakyRelu",
    "softmax": "Softmax",
    "identity": "Identity",
}
_DELTAFLOW_ACTIVATIONS = {v: k for k, v in _ONNX_ACTIVATIONS.items()}
_LEAKY_SLOPE = 0.01
_SUPPORTED = "chains of Gemm or MatMul+Add with Sigmoid, Tanh, Relu, LeakyRelu, Softmax, Identity"


def to_onnx(
    net: Any,
    path: str | os.PathLike[str],
    *,
    opset: int = 17,
    include_scaling: bool = False,
    input_divisor: float | None = None,
    class_names: Any = None,
) -> None:
    """Write ``net`` as an ONNX model to ``path``, atomically.

    Parameters
    ----------
    net : Network, path of a deltaflow model file, or fitted deltaflow estimator
        The model. A model file brings the input scaling stored with it (``deltaflow
        train --save`` stores one) and an estimator its ``classes_``.
    path : path
        Where to write, conventionally ``*.onnx``.
    opset : int, default 17
        The ONNX operator set, from 13 to the newest the installed ``onnx`` knows.
    include_scaling : bool, default False
        Also divide the input by the input divisor inside the graph, so that the ONNX
        model takes raw inputs (raw pixels, say) as ``deltaflow predict`` does.
    input_divisor : float, optional
        The number raw inputs are divided by; overrides the one the model file stores.
    class_names : sequence, optional
        Names of the output classes, kept in the metadata.

    Raises
    ------
    MissingDependencyError
        If ``onnx`` is not installed.
    ConfigError
        For an opset out of range or an activation ONNX has no node for.
    """
    onnx = require("onnx", _INSTALL)
    facts = model_facts(net, input_divisor=input_divisor, class_names=class_names)
    net = facts.net
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not _MIN_OPSET <= opset <= newest:
        raise ConfigError(
            f"opset must be a whole number from {_MIN_OPSET} to {newest}, got {opset!r}"
        )
    for l, g in enumerate(net.activations, start=1):
        if g.name not in _ONNX_ACTIVATIONS:
            raise ConfigError(f"layer {l}'s activation {g.name!r} has no ONNX node to export it as")
        if g.name == "leaky_relu" and getattr(g, "slope", _LEAKY_SLOPE) != _LEAKY_SLOPE:
            raise ConfigError(f"layer {l}'s leaky_relu has slope {g.slope}; export supports 0.01")
    scaled = include_scaling and facts.input_divisor != 1.0
    model = _graph(onnx, net, opset, facts.input_divisor if scaled else None)
    meta = {
        "deltaflow.sizes": json.dumps(net.sizes),
        "deltaflow.activations": json.dumps(net.activation_names),
        "deltaflow.cost": json.dumps(net.loss.name),
        "deltaflow.dtype": json.dumps(net.dtype.name),
        "deltaflow.class_names": json.dumps(facts.class_names),
        "deltaflow.input_divisor": json.dumps(facts.input_divisor),
        "deltaflow.scaling_in_graph": "true" if scaled else "false",
    }
    onnx.helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    atomic_write_bytes(path, model.SerializeToString())


def _graph(onnx: Any, net: Network, opset: int, divisor: float | None) -> Any:
    """The ModelProto of ``net``; with ``divisor``, a Div node scales the input first."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    elem = helper.np_dtype_to_tensor_dtype(net.dtype)
    nodes, inits = [], []
    current = "input"
    if divisor is not None:
        inits.append(numpy_helper.from_array(np.array(divisor, dtype=net.dtype), "input_divisor"))
        nodes.append(helper.make_node("Div", [current, "input_divisor"], ["x"], name="scale"))
        current = "x"
    for l in range(1, net.L + 1):
        theta, b, g = net.weights[l - 1], net.biases[l - 1], net.activations[l - 1]
        inits.append(numpy_helper.from_array(np.ascontiguousarray(theta), f"theta.{l}"))
        inits.append(numpy_helper.from_array(np.ascontiguousarray(b), f"b.{l}"))
        out = "output" if l == net.L else f"a.{l}"
        op = _ONNX_ACTIVATIONS[g.name]
        attrs: dict[str, Any] = {}
        if op == "Softmax":
            attrs["axis"] = -1
        elif op == "LeakyRelu":
            attrs["alpha"] = _LEAKY_SLOPE
        nodes += [
            helper.make_node("MatMul", [current, f"theta.{l}"], [f"xw.{l}"], name=f"matmul.{l}"),
            helper.make_node("Add", [f"xw.{l}", f"b.{l}"], [f"z.{l}"], name=f"add.{l}"),
            helper.make_node(op, [f"z.{l}"], [out], name=f"g.{l}", **attrs),
        ]
        current = out
    graph = helper.make_graph(
        nodes,
        "deltaflow",
        [helper.make_tensor_value_info("input", elem, ["batch", net.sizes[0]])],
        [helper.make_tensor_value_info("output", elem, ["batch", net.sizes[-1]])],
        initializer=inits,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="deltaflow",
        producer_version=__version__,
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    model.doc_string = f"deltaflow {net!r}"
    return model


def from_onnx(path: str | os.PathLike[str], *, cost: str | None = None) -> Network:
    """Read an ONNX model that is a chain of dense layers into a Network.

    Each layer is a ``Gemm`` (any ``alpha``, ``beta`` and ``transB``; ``transA = 0``) or
    a ``MatMul`` followed by an optional ``Add`` of a constant bias, then optionally one
    of Sigmoid, Tanh, Relu, LeakyRelu (alpha 0.01), Softmax (last axis) or Identity;
    a layer without one is an identity layer. Weights come from initializers or
    ``Constant`` nodes, in float32 or float64. The parameters are copied bit for bit
    (a Gemm's ``alpha`` or ``beta`` other than 1 scales them once).

    Parameters
    ----------
    path : path
        The ``.onnx`` file.
    cost : str, optional
        The network's cost. By default the one in the model's deltaflow metadata, else
        the one matching the output: cross-entropy for softmax, binary cross-entropy
        for sigmoid, squared error otherwise.

    Raises
    ------
    MissingDependencyError
        If ``onnx`` is not installed.
    ModelFileError
        For a file that is not a valid ONNX model, or a graph that is not such a chain:
        the message names the node that does not fit.
    """
    onnx = require("onnx", _INSTALL)
    path = Path(path)
    model = _read(onnx, path)
    graph = model.graph
    where = str(path)
    consts = _constants(onnx, graph, where)
    inputs = [v for v in graph.input if v.name not in consts]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelFileError(
            f"{where}: the graph has {len(inputs)} inputs and {len(graph.output)} outputs; "
            "deltaflow imports a graph with exactly one of each"
        )
    dtype = _input_dtype(onnx, inputs[0], where)
    layers = _layers(graph, inputs[0].name, consts, dtype, where)
    if cost is None:
        meta = {p.key: p.value for p in model.metadata_props}
        if "deltaflow.cost" in meta:
            try:
                cost = json.loads(meta["deltaflow.cost"])
            except ValueError:
                raise ModelFileError(f"{where}: metadata deltaflow.cost is not JSON") from None
    return build_network(layers, dtype, cost, where)


def _read(onnx: Any, path: Path) -> Any:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelFileError(f"no such ONNX file: {path}") from None
    except IsADirectoryError:
        raise ModelFileError(f"{path} is a directory, not an ONNX file") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf's DecodeError, onnx's ValidationError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a valid ONNX model ({first})") from None
    return model


def _constants(onnx: Any, graph: Any, where: str) -> dict[str, np.ndarray]:
    """The graph's initializers and Constant nodes' values, by name."""
    out: dict[str, np.ndarray] = {}
    tensors = [(t.name, t) for t in graph.initializer]
    for node in graph.node:
        if node.op_type == "Constant":
            value = [a for a in node.attribute if a.name == "value"]
            if len(value) != 1:
                raise ModelFileError(
                    f"{where}: node {node.name!r} (Constant) holds no tensor 'value'; "
                    f"deltaflow imports {_SUPPORTED}"
                )
            tensors.append((node.output[0], value[0].t))
    for name, t in tensors:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelFileError(
                f"{where}: tensor {name!r} is stored outside the model file; save the model "
                "with its weights inside (onnx.save with save_as_external_data=False)"
            )
        out[name] = onnx.numpy_helper.to_array(t)
    return out


def _input_dtype(onnx: Any, value: Any, where: str) -> np.dtype:
    elem = value.type.tensor_type.elem_type
    names = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}
    if elem not in names:
        name = onnx.TensorProto.DataType.Name(elem) if elem else "unknown"
        raise ModelFileError(
            f"{where}: the input {value.name!r} is of type {name}; deltaflow networks "
            "compute in float (float32) or double (float64)"
        )
    return np.dtype(names[elem])


def _layers(
    graph: Any, current: str, consts: dict[str, np.ndarray], dtype: np.dtype, where: str
) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Walk the chain from the input; ``(Theta, b, g)`` per layer."""
    layers: list[list[Any]] = []  # [theta, b or None, g or None]

    def refuse(node: Any, why: str) -> ModelFileError:
        return ModelFileError(
            f"{where}: node {node.name!r} ({node.op_type}) {why}; deltaflow imports {_SUPPORTED}"
        )

    def const(node: Any, name: str) -> np.ndarray:
        if name not in consts:
            raise refuse(node, f"takes {name!r}, which is not a constant")
        value = consts[name]
        if value.dtype != dtype:
            raise refuse(node, f"has a {value.dtype} constant {name!r} in a {dtype} graph")
        return value

    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if len(node.output) != 1 or not node.input or current not in node.input:
            raise refuse(node, "is not part of a single chain from the input")
        others = [n for n in node.input if n != current]
        op = node.op_type
        attrs = {a.name: a for a in node.attribute}
        open_layer = layers[-1] if layers and layers[-1][2] is None else None
        if op in ("MatMul", "Gemm") and node.input[0] != current:
            raise refuse(node, "multiplies the chain's value from the right")
        if op == "MatMul":
            theta = const(node, node.input[1])
            if theta.ndim != 2:
                raise refuse(node, f"has weights of shape {theta.shape}")
            layers.append([theta, None, None])
        elif op == "Gemm":
            layers.append(_gemm(node, attrs, const, refuse))
        elif op == "Add":
            if open_layer is None or open_layer[1] is not None or len(others) != 1:
                raise refuse(node, "adds to something other than a layer's weighted sums")
            b = const(node, others[0])
            if b.size != open_layer[0].shape[1] or b.ndim > 2:
                raise refuse(node, f"adds a constant of shape {b.shape} to a layer's sums")
            open_layer[1] = b.reshape(-1)
        elif op == "Identity":
            pass
        elif op in _DELTAFLOW_ACTIVATIONS:
            if open_layer is None:
                raise refuse(node, "does not follow a layer's weighted sums")
            open_layer[2] = _activation(node, attrs, refuse)
        else:
            raise refuse(node, "is not a supported operation")
        current = node.output[0]
    if current != graph.output[0].name:
        raise ModelFileError(f"{where}: the chain ends at {current!r}, not at the graph's output")
    if not layers:
        raise ModelFileError(f"{where}: the graph has no layers (no Gemm or MatMul)")
    return [
        (theta, np.zeros(theta.shape[1], dtype=dtype) if b is None else b, g or "identity")
        for theta, b, g in layers
    ]


def _gemm(node: Any, attrs: dict[str, Any], const: Any, refuse: Any) -> list[Any]:
    """``Y = alpha * A @ B' + beta * C`` as ``[Theta, b, None]`` (B' is B or B.T)."""
    if attrs.get("transA") is not None and attrs["transA"].i != 0:
        raise refuse(node, "transposes its input (transA=1)")
    theta = const(node, node.input[1])
    if theta.ndim != 2:
        raise refuse(node, f"has weights of shape {theta.shape}")
    if attrs.get("transB") is not None and attrs["transB"].i != 0:
        theta = theta.T
    theta = np.ascontiguousarray(theta)
    alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
    beta = attrs["beta"].f if "beta" in attrs else 1.0
    if alpha != 1.0:
        theta = theta * theta.dtype.type(alpha)
    b = None
    if len(node.input) > 2 and node.input[2]:
        c = const(node, node.input[2])
        if c.size == 1:
            c = np.full(theta.shape[1], c.reshape(()), dtype=theta.dtype)
        if c.size != theta.shape[1] or c.ndim > 2:
            raise refuse(node, f"has a bias of shape {c.shape} for {theta.shape[1]} units")
        b = c.reshape(-1) * c.dtype.type(beta) if beta != 1.0 else c.reshape(-1)
    return [theta, b, None]


def _activation(node: Any, attrs: dict[str, Any], refuse: Any) -> str:
    name = _DELTAFLOW_ACTIVATIONS[node.op_type]
    if name == "leaky_relu":
        alpha = attrs["alpha"].f if "alpha" in attrs else _LEAKY_SLOPE
        if not np.isclose(alpha, _LEAKY_SLOPE, rtol=1e-6, atol=0):
            raise refuse(node, f"has alpha {alpha:g}; deltaflow's leaky_relu has slope 0.01")
    if name == "softmax":
        axis = attrs["axis"].i if "axis" in attrs else -1
        if axis not in (-1, 1):
            raise refuse(node, f"normalises over axis {axis}, not over the units (axis -1)")
    return name
