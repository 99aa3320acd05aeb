"""Compression of a trained network for the chip: LitE-SNN's joint pruning, mixed precision and timestep search
(:mod:`hwnas.compress.run`), with the chip's own formats (:mod:`hwnas.compress.compconv`), timestep weights
(:mod:`hwnas.compress.timesteps`) and cost terms (:mod:`hwnas.compress.costs`)."""

from .. import make_callable
from .run import CompressConfig, CompressOutcome, compress_run

__all__ = ["CompressConfig", "CompressOutcome", "compress_run"]

make_callable(__name__)  # hwnas.compress(...) is hwnas.api.compress
