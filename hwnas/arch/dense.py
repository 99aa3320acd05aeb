"""Networks of dense populations, the shape a SynSense Xylo core holds (issue 34): a searched cell between a stem
and a readout, every connection a dense weight matrix.

``input (channels) -linear-> stem -> cell (nodes 1..3, node 0 is the stem) -> node 3 -linear-> output (classes)``

A cell edge is ``linear`` (a dense matrix between two populations of ``width`` neurons) or ``zero``; a backward
edge (``1-3:linear<``) feeds node 3 back to node 1. On the chip the input reaches the stem within a step and every
other connection takes one step (``xylo`` timing); all hidden-to-hidden matrices, forward and backward, are the
core's one recurrent matrix. The stem is the only population the input feeds, as rockpool's mapper requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ArchitectureError
from ..io_utils import write_json_atomic
from ..sim.graph import INPUT, Connection, Population
from ..sim.neuron import NeuronParams
from .choices import DENSE_OPS, ENCODINGS, PAIRS, TIMINGS
from .genotype import Cell, Edge, canonical_cell, cell_key, check_cell, check_ops, read_architecture_json

FAMILY = "dense"
# Xylo's decays are bit shifts: du = 2^-1 (the current halves each step), dv = 2^-2
XYLO_NEURON = NeuronParams(du=0.5, dv=0.25, theta=1.0)


@dataclass(frozen=True)
class DenseArchitecture:
    """A network of dense populations: the cell, ``input_channels`` per step, ``num_classes`` outputs, ``width``
    neurons per population, ``timesteps`` input steps, the timing and the neuron."""

    cell: Cell
    input_channels: int
    num_classes: int
    width: int
    timesteps: int
    timing: str = "xylo"
    encoding: str = "direct"  # the input holds spike counts per step, shown as they are
    neuron: NeuronParams = field(default_factory=lambda: XYLO_NEURON)

    def __post_init__(self) -> None:
        check_cell(self.cell)
        check_ops(self.cell, DENSE_OPS, "a dense cell")
        object.__setattr__(self, "cell", canonical_cell(self.cell))
        for name in ("input_channels", "num_classes", "width", "timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchitectureError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ArchitectureError(f"num_classes must be at least 2, got {self.num_classes}")
        for name, allowed in (("timing", TIMINGS), ("encoding", ENCODINGS)):
            if getattr(self, name) not in allowed:
                raise ArchitectureError(f"{name} '{getattr(self, name)}' is unknown (choose {', '.join(allowed)})")

    @property
    def key(self) -> str:
        """Canonical key of the searched part (the cell)."""
        return cell_key(self.cell)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One step's input, as frame data holds it: ``(input_channels, 1, 1)``."""
        return (self.input_channels, 1, 1)

    # The skeleton's terms of a convolutional architecture, as a dense network has them: one stage of ``width``
    # neurons per population, no pooling (reports and the search's bookkeeping read them alike).
    stages = 1
    head_pool = 1
    stem_pool = 1
    widths = ()  # (not a field: a dense network has no per-stage widths)
    downsample = "none"

    @property
    def stage_widths(self) -> tuple[int, ...]:
        return (self.width,)

    @property
    def skeleton_key(self) -> str:
        """Short text form of the macro choices, e.g. ``dense 64``."""
        return f"dense {self.width}"

    @property
    def hidden_neurons(self) -> int:
        """Neurons of the stem and the cell's populations: what a core's hidden neurons must hold."""
        used = {node for edge in self.cell if edge.op != "zero" for node in (edge.src, edge.dst)} | {3}
        return self.width * (1 + len(used - {0}))

    def __str__(self) -> str:
        return (f"{self.key} ({self.skeleton_key}, {self.timesteps} timesteps, {self.input_channels} input "
                f"channels)")

    def with_cell(self, cell: Cell) -> "DenseArchitecture":
        """A copy with another cell."""
        return replace(self, cell=tuple(cell))

    def to_dict(self) -> dict:
        """JSON-ready dict (see :meth:`from_dict`)."""
        return {"format": "hwnas.architecture", "version": 1, "family": FAMILY,
                "cell": [edge.to_dict() for edge in self.cell], "cell_key": self.key,
                "input_channels": self.input_channels, "num_classes": self.num_classes, "width": self.width,
                "timesteps": self.timesteps, "timing": self.timing, "encoding": self.encoding,
                "neuron": self.neuron.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "DenseArchitecture":
        """Build from :meth:`to_dict`'s form; anything malformed raises :class:`ArchitectureError`."""
        if not isinstance(data, dict) or data.get("family") != FAMILY:
            raise ArchitectureError("not a dense architecture (family 'dense')")
        required = ("cell", "input_channels", "num_classes", "width", "timesteps")
        for name in required:
            if name not in data:
                raise ArchitectureError(f"architecture is missing field '{name}'")
        unknown = sorted(set(data) - set(required) - {"format", "version", "family", "cell_key", "timing",
                                                      "encoding", "neuron"})
        if unknown:
            raise ArchitectureError(f"architecture has unknown field '{unknown[0]}'")
        if not isinstance(data["cell"], list):
            raise ArchitectureError("architecture 'cell' must be a list of edges")
        return cls(cell=tuple(Edge.from_dict(edge) for edge in data["cell"]), input_channels=data["input_channels"],
                   num_classes=data["num_classes"], width=data["width"], timesteps=data["timesteps"],
                   timing=data.get("timing", "xylo"), encoding=data.get("encoding", "direct"),
                   neuron=NeuronParams.from_dict(data["neuron"]) if "neuron" in data else XYLO_NEURON)

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "DenseArchitecture":
        """Read a JSON file written by :meth:`save`."""
        try:
            return cls.from_dict(read_architecture_json(path))
        except ArchitectureError as exc:
            raise ArchitectureError(f"{path}: {exc}") from None


def is_dense(arch) -> bool:
    """True for a network of dense populations."""
    return isinstance(arch, DenseArchitecture)


def dense_pair_choices(pair: tuple[int, int], allow_backward: bool = True) -> list[Edge]:
    """Every edge a dense cell's ``pair`` can carry: zero, linear, and (not into node 0) linear backward."""
    src, dst = pair
    choices = [Edge(src, dst, "zero"), Edge(src, dst, "linear")]
    if allow_backward and src != 0:
        choices.append(Edge(src, dst, "linear", True))
    return choices


def build_dense_network(arch: DenseArchitecture, cell_edges: tuple[Edge, ...] | None = None):
    """The :class:`~hwnas.sim.network.SpikingNetwork` of ``arch``: populations ``stem``, ``cell.n1`` ..
    ``cell.n3`` (nodes without edges get none) and ``output``, every connection a dense matrix
    (:class:`~hwnas.sim.ops.FlattenLinear`); every population is of Xylo's neurons (hwnas.sim.xylo_neuron)."""
    from ..sim.network import SpikingNetwork
    from ..sim.ops import FlattenLinear

    edges = tuple(e for e in (cell_edges if cell_edges is not None else arch.cell) if e.op != "zero")
    width = arch.width
    names = {0: "stem", 1: "cell.n1", 2: "cell.n2", 3: "cell.n3"}
    populations = [Population("stem", (width,), arch.neuron)]
    connections = [(Connection(INPUT, "stem"), FlattenLinear(arch.input_channels, width))]
    used = {node for edge in edges for node in (edge.src, edge.dst)} | {3}
    for node in (1, 2, 3):
        if node in used:
            populations.append(Population(names[node], (width,), arch.neuron))
    edge_modules: dict[Edge, list[str]] = {}
    for edge in edges:
        if edge.backward:
            conn = Connection(names[edge.dst], names[edge.src], backward=True, tag=edge.op)
        else:
            conn = Connection(names[edge.src], names[edge.dst], tag=edge.op)
        connections.append((conn, FlattenLinear(width, width)))
        edge_modules.setdefault(edge, []).append(conn.module_key)
    populations.append(Population("output", (arch.num_classes,), arch.neuron))
    connections.append((Connection(names[3], "output"), FlattenLinear(width, arch.num_classes)))
    net = SpikingNetwork(arch.input_shape, populations, connections, "output", arch.timing)
    net.edge_modules = edge_modules
    net.neuron_model = "xylo"
    return net


__all__ = ["DENSE_OPS", "FAMILY", "PAIRS", "XYLO_NEURON", "DenseArchitecture", "build_dense_network",
           "dense_pair_choices", "is_dense"]
