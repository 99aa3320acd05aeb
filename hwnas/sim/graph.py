"""The graph of a spiking network and the one timing rule every simulator of hwnas follows.

Three timing models (docs/ARCHITECTURE.md, "Timing"):

* ``zero-delay``: a forward connection delivers the source's spikes of the same step (GPU-simulator semantics);
  a backward (feedback) connection delivers them one step later.
* ``pipelined``: every connection delivers one step later, as on Loihi and in Lava. An input shown for T steps
  then needs ``latency_steps`` (the longest chain of forward connections from input to output) extra steps to
  reach the output.
* ``xylo``: the input delivers within the step, every other connection one step later, as on a SynSense Xylo core
  (input spikes reach the hidden neurons at once; hidden-to-hidden and hidden-to-output connections take a step).

:class:`StepPlan` is that rule written once: the order in which populations update within a step, and for each
population its incoming connections with their delays. The torch simulator, the ONNX unrolled loop and the
integer twin all run from a plan; the timing model is an argument of the plan, never a state of the network.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:  # the graph itself needs no torch: the command line's help imports it
    from .neuron import NeuronParams

INPUT = "input"
TIMINGS: tuple[str, ...] = ("zero-delay", "pipelined", "xylo")


@dataclass(frozen=True)
class Population:
    """A group of identical neurons: name, shape of one sample's activity, neuron parameters."""

    name: str
    shape: tuple[int, ...]
    params: NeuronParams

    @property
    def neurons(self) -> int:
        count = 1
        for d in self.shape:
            count *= d
        return count


@dataclass(frozen=True)
class Connection:
    """A synaptic connection ``src -> dst``; ``backward`` ones always deliver one step later."""

    src: str
    dst: str
    backward: bool = False
    tag: str = ""  # tells apart several connections between the same populations (e.g. the op name)

    @property
    def module_key(self) -> str:
        tag = f":{self.tag}" if self.tag else ""
        return f"{self.src}->{self.dst}{tag}{'<' if self.backward else ''}".replace(".", "_")


class Edge(Protocol):
    """What a plan needs of a connection (hwnas' :class:`Connection` and the lowered connections both have it)."""

    src: str
    dst: str
    backward: bool


def check_timing(timing: str) -> str:
    """``timing`` if it names a timing model, else ValueError."""
    if timing not in TIMINGS:
        raise ValueError(f"unknown timing model {timing}")
    return timing


def delay(connection: Edge, timing: str) -> int:
    """Steps a connection takes to deliver: 1 in pipelined timing, for feedback, and in xylo timing for every
    connection but the input's; else 0."""
    return 1 if (timing == "pipelined" or connection.backward or (timing == "xylo" and connection.src != INPUT)) else 0


def topological_order(populations: Sequence[str], connections: Sequence[Edge]) -> list[str]:
    """Populations ordered so that every forward connection's source comes before its destination."""
    incoming = {name: {c.src for c in connections if c.dst == name and not c.backward} for name in populations}
    order, done = [], {INPUT}
    while len(order) < len(populations):
        ready = [n for n in populations if n not in done and incoming[n] <= done]
        if not ready:
            raise ValueError("forward connections form a cycle")
        order.extend(ready)
        done.update(ready)
    return order


@dataclass(frozen=True)
class StepPlan:
    """How one step is computed in a timing model: populations in update order, each with its incoming
    connections (in the network's connection order) and whether each delivers the previous step's spikes."""

    timing: str
    order: tuple[str, ...]
    incoming: dict[str, tuple[tuple[Edge, bool], ...]]
    latency_steps: int
    # True: a delayed connection delivers nothing at the first step (not even a bias), as in an executor whose
    # connection nodes have no output before they first run (Norse's); False: its response to silence
    silent_first_step: bool = False

    @classmethod
    def build(cls, order: Sequence[str], connections: Sequence[Edge], timing: str) -> "StepPlan":
        """The plan of ``connections`` among populations in topological ``order``."""
        check_timing(timing)
        return cls.with_delays(order, [(c, delay(c, timing) > 0) for c in connections], timing)

    @classmethod
    def with_delays(cls, order: Sequence[str], delayed: Sequence[tuple[Edge, bool]], timing: str,
                    silent_first_step: bool = False) -> "StepPlan":
        """A plan with each connection's delay given (``(connection, delivers the step before)`` pairs): how
        another simulator orders its steps (Norse's executor, :func:`hwnas.backends.norse.norse_step_plan`).
        Every undelayed connection must come from the input or from a population earlier in ``order``."""
        position = {name: i for i, name in enumerate(order)}
        for conn, late in delayed:
            if not late and conn.src != INPUT and position[conn.src] >= position[conn.dst]:
                raise ValueError(f"connection {conn.src} -> {conn.dst} delivers within the step, but {conn.src} "
                                 f"is not updated before {conn.dst}")
        incoming = {name: tuple((c, late) for c, late in delayed if c.dst == name) for name in order}
        return cls(timing, tuple(order), incoming, _latency(order, [c for c, _ in delayed], timing), silent_first_step)

    def earliest_reach(self, sources: Sequence[str]) -> dict[str, float]:
        """Per population, the earliest step activity present at step 0 in ``sources`` can reach it (each
        connection adding its delay); 0 for a source, inf if never."""
        conns = [(c, late) for name in self.order for c, late in self.incoming[name]]
        best = {name: 0.0 for name in sources}
        queue = [(0.0, name) for name in sources]
        while queue:
            dist, node = heapq.heappop(queue)
            if dist > best.get(node, math.inf):
                continue
            for conn, late in conns:
                step = 1 if late else 0
                if conn.src == node and dist + step < best.get(conn.dst, math.inf):
                    best[conn.dst] = dist + step
                    heapq.heappush(queue, (best[conn.dst], conn.dst))
        return {name: best.get(name, math.inf) for name in self.order}

    def arrival_steps(self) -> dict[str, float]:
        """Earliest step at which each population can receive input caused by input step 0 (inf if never)."""
        return self.earliest_reach([INPUT])


def _latency(order: Sequence[str], connections: Sequence[Edge], timing: str) -> int:
    """Extra steps after the last input step until its effect has crossed the longest forward chain."""
    if timing == "zero-delay":
        return 0
    longest = {INPUT: 0}
    forward = [c for c in connections if not c.backward]
    for name in order:
        sources = [longest[c.src] + delay(c, timing) for c in forward if c.dst == name and c.src in longest]
        if sources:
            longest[name] = max(sources)
    return int(max((v for k, v in longest.items() if k != INPUT), default=0))
