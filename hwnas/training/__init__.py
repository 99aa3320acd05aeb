"""Training: surrogate-gradient training of a searched network then quantisation-aware fine-tuning in the
target's fixed point (:mod:`.loop`), training another tool's NIR graph (:mod:`.imported`), and the trained model
on disk (:mod:`.model_file`). The Python API's verb for it is :func:`hwnas.api.train` (``hwnas.train(...)``)."""

from .loop import (ShortTraining, TrainConfig, TrainOutcome, evaluate, short_training, train_epochs, train_run,
                   training_subset)
from .model_file import load_model

__all__ = ["ShortTraining", "TrainConfig", "TrainOutcome", "evaluate", "load_model", "short_training", "train_epochs",
           "train_run", "training_subset"]
