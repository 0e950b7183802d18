"""One training step traced through the derivation's stages, as data, and its renderers.

:func:`trace_step` runs the engine itself (:func:`deltaflow.backprop.forward` and
:func:`deltaflow.backprop.backward`) on one example and keeps every number the
derivation names, layer by layer: ``z^(l)``, ``a^(l)``, ``g'(z^(l))``, ``dC/da^(l)``,
``delta^(l)``, ``dC/dTheta^(l)`` and ``dC/db^(l)``, the central finite difference of the
cost for every parameter, and the parameters after one step
``Theta := Theta - alpha dC/dTheta``. :func:`render` turns that :class:`StepTrace` into
readable text, Markdown or LaTeX; the CLI only calls the two.

:func:`op_counts` counts, from the layer sizes alone, the multiply-adds the dynamic
programme does and those of the plain chain rule that enumerates every path from a
weight to the output; :func:`path_gradients` really enumerates the paths of a small
network, counting its multiplications as it goes, so the count can be checked and the
gradients compared.

:func:`delta_norm_table` renders the per-layer mean ``|delta^(l)|`` that
``fit(..., track_delta_norms=True)`` records.
"""

from __future__ import annotations

from deltaflow.explain.counting import PATH_ENUMERATION_LIMIT, OpCounts, op_counts
from deltaflow.explain.render import FORMATS, delta_norm_table, render
from deltaflow.explain.trace import LayerTrace, StepTrace, path_gradients, trace_step

__all__ = [
    "FORMATS",
    "LayerTrace",
    "OpCounts",
    "PATH_ENUMERATION_LIMIT",
    "StepTrace",
    "delta_norm_table",
    "op_counts",
    "path_gradients",
    "render",
    "trace_step",
]
