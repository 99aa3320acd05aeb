"""The ``Architecture`` genotype: the LightSNN/SNASNet-style cell and the macro skeleton around it.

Macro skeleton: ``stem -> cell -> (downsample -> cell) x (stages - 1) -> [head pooling] -> classifier``; every
cell shares one searched genotype; the width (or one width per stage), the number of stages, the downsampling
and the head pooling are the macro choices (fitted to the target by the search's pre-flight,
:mod:`hwnas.nas.preflight`).
A cell has 4 nodes: node 0 is the cell input, nodes 1-3 are spiking populations, node 3 is the cell output.
Each of the 6 node pairs (i, j), i < j, carries one op from {zero, skip, conv3x3} and a direction:

* forward: node j receives op(spikes of node i) at the same step (zero-delay timing) or one step later
  (pipelined timing, as on Loihi);
* backward (temporal feedback): node i receives op(spikes of node j at step t) at step t+1. Node 0 is the cell
  input, not a population of the cell, so pairs (0, j) can only be forward.

A cell is valid when node 3 can be reached from node 0 through forward non-zero edges. Its *canonical* form
(:func:`canonical_cell`, what an :class:`Architecture` holds) sets every edge that cannot influence node 3, or
that nothing drives, to ``zero``: cells equal after that compute the same and are one candidate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import ArchitectureError
from ..io_utils import write_json_atomic
from ..sim.neuron import NeuronParams
from .choices import DOWNSAMPLES, EDGE_OPS, ENCODINGS, OPS, PAIRS, TIMINGS

FORMAT = "hwnas.architecture"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Edge:
    """One op on node pair (src, dst), src < dst; ``backward`` means dst feeds src one step later."""

    src: int
    dst: int
    op: str
    backward: bool = False

    def __post_init__(self) -> None:
        if (self.src, self.dst) not in PAIRS:
            raise ArchitectureError(f"edge ({self.src}, {self.dst}) is not a node pair of the cell (pairs: {PAIRS})")
        if self.op not in EDGE_OPS:
            raise ArchitectureError(f"edge ({self.src}, {self.dst}): unknown op '{self.op}' (choose "
                                    f"{', '.join(EDGE_OPS)})")
        if self.backward and self.src == 0:
            raise ArchitectureError(f"edge ({self.src}, {self.dst}): node 0 is the cell input and takes no backward edge")
        if self.backward and self.op == "zero":
            raise ArchitectureError(f"edge ({self.src}, {self.dst}): a zero op has no direction")

    @property
    def key(self) -> str:
        """Short text form, e.g. ``0-1:conv3x3`` or ``1-3:skip<`` (``<`` marks a backward edge)."""
        return f"{self.src}-{self.dst}:{self.op}{'<' if self.backward else ''}"

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"pair": [self.src, self.dst], "op": self.op, "direction": "backward" if self.backward else "forward"}

    @classmethod
    def from_dict(cls, data: dict) -> "Edge":
        """Inverse of :meth:`to_dict`."""
        try:
            src, dst = data["pair"]
            direction = data.get("direction", "forward")
            op = data["op"]
        except (KeyError, TypeError, ValueError):
            raise ArchitectureError(f"cell edge {data!r} needs 'pair': [i, j], 'op' and 'direction'") from None
        if direction not in ("forward", "backward"):
            raise ArchitectureError(f"cell edge {data!r}: direction must be 'forward' or 'backward'")
        if not isinstance(src, int) or not isinstance(dst, int) or not isinstance(op, str):
            raise ArchitectureError(f"cell edge {data!r}: pair must hold two integers and op a name")
        return cls(src, dst, op, direction == "backward")


Cell = tuple[Edge, ...]


def cell_key(cell: Cell) -> str:
    """Canonical text key of a cell (edges in pair order)."""
    return " ".join(edge.key for edge in sorted(cell, key=lambda e: (PAIRS.index((e.src, e.dst)), e.op, e.backward)))


def parse_cell_key(key: str) -> Cell:
    """Inverse of :func:`cell_key` for a cell with one edge per pair."""
    edges = []
    for token in key.split():
        try:
            pair, op = token.split(":")
            src, dst = (int(n) for n in pair.split("-"))
        except ValueError:
            raise ArchitectureError(f"malformed cell edge '{token}' (expected e.g. 0-1:conv3x3 or 1-3:skip<)") from None
        edges.append(Edge(src, dst, op.rstrip("<"), op.endswith("<")))
    cell = tuple(edges)
    check_cell(cell)
    return cell


def forward_reachable(edges: Cell) -> set[int]:
    """Nodes reachable from node 0 through forward, non-zero edges."""
    reached = {0}
    for src, dst in PAIRS:  # pairs are in topological order, so one pass suffices
        if src in reached and any(e.src == src and e.dst == dst and not e.backward and e.op != "zero" for e in edges):
            reached.add(dst)
    return reached


def _connections(edges: Cell) -> list[tuple[int, int]]:
    """The cell's non-zero edges as (from, to) node pairs: a backward edge (i, j) carries node j's spikes to i."""
    return [(e.dst, e.src) if e.backward else (e.src, e.dst) for e in edges if e.op != "zero"]


def _closure(start: int, links: list[tuple[int, int]]) -> set[int]:
    reached, frontier = {start}, [start]
    while frontier:
        node = frontier.pop()
        for a, b in links:
            if a == node and b not in reached:
                reached.add(b)
                frontier.append(b)
    return reached


def live_nodes(edges: Cell) -> set[int]:
    """Nodes that carry information to the output: driven from node 0 and able to reach node 3, over forward and
    backward edges alike (nodes 0 and 3 always)."""
    links = _connections(edges)
    driven = _closure(0, links)
    useful = _closure(3, [(b, a) for a, b in links])
    return {0, 3} | (driven & useful)


def canonical_cell(cell: Cell) -> Cell:
    """The cell with every edge that cannot influence the output, or that nothing drives, set to ``zero``.

    Two cells that compute the same output this way are one candidate; the builder creates no population for a
    node left without edges, so simulation, mapping, energy and export never carry dead populations.
    """
    live = live_nodes(cell)
    kept = []
    for edge in cell:
        a, b = (edge.dst, edge.src) if edge.backward else (edge.src, edge.dst)
        kept.append(edge if edge.op == "zero" or (a in live and b in live) else Edge(edge.src, edge.dst, "zero"))
    return tuple(kept)


def is_chain(cell: Cell) -> bool:
    """True when the canonical cell's non-zero edges form one forward path from node 0 to node 3 (no fan-out, no
    fan-in, no feedback): the only cells lava-dl's netx, a sequential layer format, can hold."""
    links = [(e.src, e.dst, e.backward) for e in canonical_cell(cell) if e.op != "zero"]
    if any(backward for _, _, backward in links):
        return False
    sources = [src for src, _, _ in links]
    targets = [dst for _, dst, _ in links]
    return len(set(sources)) == len(sources) and len(set(targets)) == len(targets)


def check_cell(cell: Cell) -> None:
    """Raise :class:`ArchitectureError` unless the cell has exactly one edge per pair and reaches node 3."""
    pairs = [(e.src, e.dst) for e in cell]
    for pair in PAIRS:
        if pairs.count(pair) != 1:
            raise ArchitectureError(f"cell must have exactly one edge on pair {pair}, found {pairs.count(pair)}")
    if 3 not in forward_reachable(cell):
        raise ArchitectureError("cell output (node 3) is not reachable from its input through forward non-zero edges")


def check_ops(cell: Cell, ops: tuple[str, ...], what: str) -> None:
    """Raise :class:`ArchitectureError` unless every edge's op is one of ``ops``."""
    for edge in cell:
        if edge.op not in ops:
            raise ArchitectureError(f"edge {edge.key}: {what} takes the ops {', '.join(ops)}")


def pair_choices(pair: tuple[int, int], allow_backward: bool = True) -> list[Edge]:
    """Every edge that pair ``pair`` can carry: zero, then each non-zero op forward (and backward if allowed)."""
    src, dst = pair
    choices = [Edge(src, dst, "zero")]
    for op in OPS[1:]:
        choices.append(Edge(src, dst, op))
        if allow_backward and src != 0:
            choices.append(Edge(src, dst, op, True))
    return choices


@dataclass(frozen=True)
class Architecture:
    """A complete, JSON-serialisable network description (genotype plus everything needed to build it)."""

    cell: Cell
    input_shape: tuple[int, int, int]
    num_classes: int
    width: int
    timesteps: int
    downsample: str = "maxpool"
    timing: str = "pipelined"
    encoding: str = "rate"
    neuron: NeuronParams = field(default_factory=NeuronParams)
    stages: int = 2      # cells; each after the first follows a 2x2 downsampling
    head_pool: int = 1   # k > 1: k x k pooling before the classifier (cuts its fan-in by k^2), as ``downsample``
    widths: tuple[int, ...] = ()  # channels per stage (widths[0] == width); empty: ``width`` in every stage
    stem_pool: int = 1   # k > 1: the input average-pooled k x k into the stem's convolution (a stride-k stem)

    def __post_init__(self) -> None:
        check_cell(self.cell)
        check_ops(self.cell, OPS, "a convolutional cell")
        object.__setattr__(self, "cell", canonical_cell(self.cell))  # dead edges never reach a network
        if len(self.input_shape) != 3 or any(int(d) < 1 for d in self.input_shape):
            raise ArchitectureError(f"input_shape must be [channels, height, width] of positive sizes, got {list(self.input_shape)}")
        if self.input_shape[1] < 2 or self.input_shape[2] < 2:
            raise ArchitectureError(f"input must be at least 2x2 for the downsampling stage, got {list(self.input_shape)}")
        for name in ("num_classes", "width", "timesteps", "stages", "head_pool", "stem_pool"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchitectureError(f"{name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ArchitectureError(f"num_classes must be at least 2, got {self.num_classes}")
        for name, allowed in (("downsample", DOWNSAMPLES), ("timing", TIMINGS), ("encoding", ENCODINGS)):
            if getattr(self, name) not in allowed:
                raise ArchitectureError(f"{name} '{getattr(self, name)}' is unknown (choose {', '.join(allowed)})")
        if self.widths:
            object.__setattr__(self, "widths", tuple(self.widths))
            if len(self.widths) != self.stages or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                                      for w in self.widths):
                raise ArchitectureError(f"widths must be {self.stages} positive integers (one per stage), got "
                                        f"{list(self.widths)}")
            if self.widths[0] != self.width:
                raise ArchitectureError(f"widths[0] ({self.widths[0]}) must equal width ({self.width}), the stem's")
            if len(set(self.widths)) > 1 and self.downsample != "conv":
                raise ArchitectureError(f"widths {list(self.widths)} change channels between stages: only the conv "
                                        "downsampling (a strided convolution into spiking neurons) can")
        side = (min(self.input_shape[1], self.input_shape[2]) // self.stem_pool // 2 ** (self.stages - 1)
                // self.head_pool)
        if side < 1:
            raise ArchitectureError(f"stem pooling {self.stem_pool}, {self.stages} stages and head pooling "
                                    f"{self.head_pool} shrink a "
                                    f"{self.input_shape[1]}x{self.input_shape[2]} input below one pixel")

    @property
    def key(self) -> str:
        """Canonical key of the searched part (the cell)."""
        return cell_key(self.cell)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Channels of each stage's cell (the first is also the stem's)."""
        return self.widths or (self.width,) * self.stages

    @property
    def skeleton_key(self) -> str:
        """Short text form of the macro choices: widths per stage and head pooling, e.g. ``16/16 pool1`` (and
        ``stem2`` first when the stem pools its input)."""
        stem = f"stem{self.stem_pool} " if self.stem_pool > 1 else ""
        return f"{stem}{'/'.join(map(str, self.stage_widths))} pool{self.head_pool}"

    def __str__(self) -> str:
        """The cell's key and the skeleton, e.g. ``0-3:conv3x3 (16/16 pool1, maxpool, 8 timesteps, input 1x8x8)``;
        ``repr`` stays the full dataclass."""
        shape = "x".join(map(str, self.input_shape))
        return (f"{self.key} ({self.skeleton_key}, {self.downsample} downsampling, {self.timesteps} timesteps, "
                f"input {shape})")

    def with_cell(self, cell: Cell) -> "Architecture":
        """A copy with another cell."""
        return replace(self, cell=tuple(cell))

    def to_dict(self) -> dict:
        """JSON-ready dict (see :meth:`from_dict`)."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "cell": [edge.to_dict() for edge in self.cell],
            "cell_key": self.key,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "width": self.width,
            "timesteps": self.timesteps,
            "downsample": self.downsample,
            "timing": self.timing,
            "encoding": self.encoding,
            "neuron": self.neuron.to_dict(),
            "stages": self.stages,
            "head_pool": self.head_pool,
            **({"widths": list(self.widths)} if self.widths else {}),
            **({"stem_pool": self.stem_pool} if self.stem_pool > 1 else {}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        """Build from :meth:`to_dict`'s form; anything malformed raises :class:`ArchitectureError`."""
        if not isinstance(data, dict):
            raise ArchitectureError("architecture must be a JSON object")
        if data.get("format", FORMAT) != FORMAT:
            raise ArchitectureError(f"not an hwnas architecture (format '{data.get('format')}')")
        if data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ArchitectureError(f"architecture version {data.get('version')} is not supported (this hwnas reads {FORMAT_VERSION})")
        required = ("cell", "input_shape", "num_classes", "width", "timesteps")
        for name in required:
            if name not in data:
                raise ArchitectureError(f"architecture is missing field '{name}'")
        known = set(required) | {"format", "version", "cell_key", "downsample", "timing", "encoding", "neuron",
                                 "stages", "head_pool", "widths", "stem_pool"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchitectureError(f"architecture has unknown field '{unknown[0]}'")
        if not isinstance(data["cell"], list):
            raise ArchitectureError("architecture 'cell' must be a list of edges")
        if not isinstance(data["input_shape"], list) or not all(isinstance(d, int) for d in data["input_shape"]):
            raise ArchitectureError("architecture 'input_shape' must be a list of integers")
        if not isinstance(data.get("widths", []), list):
            raise ArchitectureError("architecture 'widths' must be a list of integers")
        return cls(
            cell=tuple(Edge.from_dict(edge) for edge in data["cell"]),
            input_shape=tuple(data["input_shape"]),  # type: ignore[arg-type]
            num_classes=data["num_classes"],
            width=data["width"],
            timesteps=data["timesteps"],
            downsample=data.get("downsample", "maxpool"),
            timing=data.get("timing", "pipelined"),
            encoding=data.get("encoding", "rate"),
            neuron=NeuronParams.from_dict(data.get("neuron", {})),
            stages=data.get("stages", 2),
            head_pool=data.get("head_pool", 1),
            widths=tuple(data.get("widths", ())),
            stem_pool=data.get("stem_pool", 1),
        )

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "Architecture":
        """Read a JSON file written by :meth:`save`; unreadable or malformed files raise :class:`ArchitectureError`."""
        data = read_architecture_json(path)
        try:
            return cls.from_dict(data)
        except ArchitectureError as exc:
            raise ArchitectureError(f"{path}: {exc}") from None


def read_architecture_json(path: str | Path):
    """The JSON value of an architecture file; unreadable files and invalid JSON raise :class:`ArchitectureError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ArchitectureError(f"cannot read architecture {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ArchitectureError(f"{path} is not a text (JSON) file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchitectureError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None


def default_width(input_shape: tuple[int, int, int]) -> int:
    """Channels per cell chosen from the input size: 16 up to 16x16 pixels, 32 up to 64x64, 64 beyond."""
    pixels = input_shape[1] * input_shape[2]
    if pixels <= 16 * 16:
        return 16
    if pixels <= 64 * 64:
        return 32
    return 64
