"""The vocabulary of architectures, importable without torch (the command line's help lists it)."""

from ..sim.graph import TIMINGS

PAIRS: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
OPS: tuple[str, ...] = ("zero", "skip", "conv3x3")
DENSE_OPS: tuple[str, ...] = ("zero", "linear")  # cells of dense populations (a Xylo core: hwnas.arch.dense)
EDGE_OPS: tuple[str, ...] = ("zero", "skip", "conv3x3", "linear")  # every op an edge may name
DOWNSAMPLES: tuple[str, ...] = ("maxpool", "avgpool", "conv")
ENCODINGS: tuple[str, ...] = ("rate", "direct")

__all__ = ["DENSE_OPS", "DOWNSAMPLES", "EDGE_OPS", "ENCODINGS", "OPS", "PAIRS", "TIMINGS"]
