"""Models that travel: ONNX, PyTorch and scikit-learn in and out.

* :func:`to_onnx` / :func:`from_onnx`: an ONNX graph of MatMul, Add and activation nodes
  (needs ``onnx``: ``pip install 'deltaflow[onnx]'``);
* :func:`to_torch` / :func:`from_torch`: a ``torch.nn.Sequential`` of ``Linear`` layers
  and activation modules (needs ``torch``);
* :func:`to_sklearn` / :func:`from_sklearn`: a fitted scikit-learn ``MLPClassifier`` or
  ``MLPRegressor``.

Every ``to_*`` takes a :class:`~deltaflow.Network`, the path of a deltaflow model file or
a fitted deltaflow estimator. The parameters are copied bit for bit each way, so a round
trip gives back the same network. An optional package that is missing is named, with
the command that installs it, in a :class:`~deltaflow.errors.MissingDependencyError`.
"""

from __future__ import annotations

from deltaflow.interop.onnx import from_onnx, to_onnx
from deltaflow.interop.sklearn import from_sklearn, to_sklearn
from deltaflow.interop.torch import from_torch, to_torch

__all__ = ["from_onnx", "from_sklearn", "from_torch", "to_onnx", "to_sklearn", "to_torch"]
