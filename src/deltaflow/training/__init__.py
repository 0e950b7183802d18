"""Training: the loop over epochs and its parts, optimizers, and checkpoints for resuming.

:mod:`.loop` (``fit``, ``run``, ``evaluate``), :mod:`.batches` (batch sources),
:mod:`.steps` (training steps), :mod:`.hooks` (what happens between epochs),
:mod:`.optimizers` and :mod:`.checkpoint`.
"""

from deltaflow.training.batches import ArraySource, Batch, BatchSource
from deltaflow.training.hooks import EpochRecord, History, Hook, TrainingState
from deltaflow.training.loop import evaluate, fit, run
from deltaflow.training.steps import FusedSgdStep, OptimizerStep, Step, make_step

__all__ = [
    "ArraySource",
    "Batch",
    "BatchSource",
    "EpochRecord",
    "FusedSgdStep",
    "History",
    "Hook",
    "OptimizerStep",
    "Step",
    "TrainingState",
    "evaluate",
    "fit",
    "make_step",
    "run",
]
