"""Training: the loop over epochs, its optimizers, and checkpoints for resuming."""

from deltaflow.training.loop import EpochRecord, History, evaluate, fit

__all__ = ["EpochRecord", "History", "evaluate", "fit"]
