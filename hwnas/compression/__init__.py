"""Compression of a trained network for the chip: LitE-SNN's joint pruning, mixed precision and timestep search
(:mod:`hwnas.compression.run`), with the chip's own formats (:mod:`hwnas.compression.compconv`), timestep weights
(:mod:`hwnas.compression.timesteps`) and cost terms (:mod:`hwnas.compression.costs`)."""

from .run import CompressConfig, CompressOutcome, compress_run

__all__ = ["CompressConfig", "CompressOutcome", "compress_run"]
