"""The vocabulary of architectures, importable without torch (the command line's help lists it)."""

from ..sim.graph import TIMINGS

PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
OPS: tuple[str, ...] = ("zero", "skip", "conv3x3")
DOWNSAMPLES: tuple[str, ...] = ("maxpool", "avgpool", "conv")
ENCODINGS: tuple[str, ...] = ("rate", "direct")

__all__ = ["DOWNSAMPLES", "ENCODINGS", "OPS", "PAIRS", "TIMINGS"]
