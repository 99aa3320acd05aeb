"""The spiking network simulator: populations of CUBA-LIF neurons joined by synaptic connections.

Two timing models (ARCHITECTURE.md, "Timing"):

* ``zero-delay``: a forward connection delivers the source's spikes of the same step (GPU-simulator semantics);
  backward (feedback) connections deliver them one step later.
* ``pipelined``: every connection delivers one step later, as on Loihi and in Lava. An input shown for T steps
  then needs ``latency_steps`` (the longest chain of connections from input to output) extra steps to reach the
  output; the simulator runs them.

Every forward pass counts spikes, active neuron updates and synaptic operations per population and step.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..activity import ActivityStats, LayerActivity
from ..neuron import OR_NEURON, LIFState, NeuronParams, count_active, initial_state, lif_step
from .ops import AvgPoolThen, Conv, ConvBN, FlattenLinear, Identity, SumPool, Synapse
from .space import Architecture, Edge

INPUT = "input"


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


@dataclass
class SimOutput:
    """Result of a forward pass.

    ``logits``: output-layer synaptic current summed over all steps, divided by the input steps (B, classes).
    ``output_spikes``: output spike counts (B, classes). ``codes``: per population, spikes (steps, B, N) as 0/1
    floats, only when recorded.
    """

    logits: torch.Tensor
    output_spikes: torch.Tensor
    activity: ActivityStats
    latency_steps: int
    codes: dict[str, torch.Tensor] | None = None


class SpikingNetwork(nn.Module):
    """A graph of populations and connections, simulated step by step in one of two timing models."""

    def __init__(self, input_shape: tuple[int, ...], populations: list[Population],
                 connections: list[tuple[Connection, Synapse]], output: str, timing: str) -> None:
        super().__init__()
        if timing not in ("zero-delay", "pipelined"):
            raise ValueError(f"unknown timing model {timing}")
        self.input_shape = tuple(input_shape)
        self.timing = timing
        self.output = output
        self.populations = {p.name: p for p in populations}
        self.connections = [c for c, _ in connections]
        self.synapses = nn.ModuleDict({c.module_key: m for c, m in connections})
        self.disabled: set[str] = set()  # module keys of connections switched off (supernet ablation)
        self.edge_modules: dict[Edge, list[str]] = {}  # cell edge -> module keys of its connections (both cells)
        self.order = self._topological_order()
        self._fanout: dict[str, torch.Tensor] | None = None
        # Population name -> factor on its summed input current; set only by firing-rate calibration for scoring.
        self.current_gain: dict[str, float] = {}

    # ----- structure ---------------------------------------------------------------------------------------
    def _topological_order(self) -> list[str]:
        incoming = {name: {c.src for c in self.connections if c.dst == name and not c.backward}
                    for name in self.populations}
        order, done = [], {INPUT}
        while len(order) < len(self.populations):
            ready = [n for n in self.populations if n not in done and incoming[n] <= done]
            if not ready:
                raise ValueError("forward connections form a cycle")
            order.extend(ready)
            done.update(ready)
        return order

    def active_connections(self) -> list[Connection]:
        """Connections not switched off."""
        return [c for c in self.connections if c.module_key not in self.disabled]

    def _delay(self, conn: Connection) -> int:
        return 1 if (self.timing == "pipelined" or conn.backward) else 0

    def arrival_steps(self) -> dict[str, float]:
        """Earliest step at which each population can receive input caused by input step 0 (inf if never)."""
        return self._earliest_reach([INPUT], self.active_connections())

    def _earliest_reach(self, sources: list[str], conns: list[Connection]) -> dict[str, float]:
        """Per population, the earliest step activity present at step 0 in ``sources`` can reach it over ``conns``
        (each adding its delay); 0 for a source, inf if never."""
        best = {name: 0.0 for name in sources}
        queue = [(0.0, name) for name in sources]
        while queue:
            dist, node = heapq.heappop(queue)
            if dist > best.get(node, math.inf):
                continue
            for conn in conns:
                if conn.src == node and dist + self._delay(conn) < best.get(conn.dst, math.inf):
                    best[conn.dst] = dist + self._delay(conn)
                    heapq.heappush(queue, (best[conn.dst], conn.dst))
        return {name: best.get(name, math.inf) for name in self.order}

    @property
    def latency_steps(self) -> int:
        """Extra steps after the last input step until its effect has crossed the longest forward chain."""
        if self.timing != "pipelined":
            return 0
        longest = {INPUT: 0}
        conns = [c for c in self.active_connections() if not c.backward]
        for name in self.order:
            sources = [longest[c.src] + 1 for c in conns if c.dst == name and c.src in longest]
            if sources:
                longest[name] = max(sources)
        return int(max((v for k, v in longest.items() if k != INPUT), default=0))

    def fanout_maps(self) -> dict[str, torch.Tensor]:
        """Per population, the non-zero fan-out of each neuron summed over its active outgoing connections."""
        if self._fanout is None:
            device = next(self.parameters()).device
            maps = {}
            shapes = {INPUT: self.input_shape, **{name: pop.shape for name, pop in self.populations.items()}}
            for name, shape in shapes.items():
                total = torch.zeros(shape)
                for conn in self.active_connections():
                    if conn.src == name:
                        total = total + self.synapses[conn.module_key].fanout(shape).cpu()
                maps[name] = total.to(device)
            self._fanout = maps
        return self._fanout

    def set_disabled(self, module_keys: set[str]) -> None:
        """Switch off the given connections (by module key); used by the pruning strategy's supernet."""
        unknown = set(module_keys) - set(self.synapses.keys())
        if unknown:
            raise KeyError(f"unknown connections {sorted(unknown)}")
        self.disabled = set(module_keys)
        self._fanout = None

    def fold_batchnorm(self) -> None:
        """Replace every convolution + batch-norm by one convolution with bias (running statistics folded in)."""
        for key in list(self.synapses.keys()):
            synapse = self.synapses[key]
            if isinstance(synapse, ConvBN):
                self.synapses[key] = Conv.from_conv_bn(synapse)
            elif isinstance(synapse, AvgPoolThen) and isinstance(synapse.inner, ConvBN):
                synapse.inner = Conv.from_conv_bn(synapse.inner)
        self._fanout = None

    @property
    def is_folded(self) -> bool:
        """True when no batch-norm is left."""
        return not any(isinstance(m, ConvBN) for m in self.modules())

    def set_weight_format(self, weight_format) -> None:
        """Fake-quantise every weighted connection to ``weight_format`` (None: float weights). Needs folded BN."""
        if weight_format is not None and not self.is_folded:
            raise ValueError("fold batch-norm before quantising")
        for module in self.modules():
            if isinstance(module, (Conv, FlattenLinear)):
                module.weight_format = weight_format

    # ----- simulation --------------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, record: bool = False) -> SimOutput:  # type: ignore[override]
        """Run ``inputs`` of shape (T, B, *input_shape) for T + ``latency_steps`` steps."""
        if inputs.dim() != 2 + len(self.input_shape) or tuple(inputs.shape[2:]) != self.input_shape:
            raise ValueError(f"expected input (T, B, {', '.join(map(str, self.input_shape))}), got {tuple(inputs.shape)}")
        steps_in, batch = inputs.shape[0], inputs.shape[1]
        latency = self.latency_steps
        total_steps = steps_in + latency
        conns = self.active_connections()
        incoming = {name: [(self.synapses[c.module_key], c.src, self._delay(c) > 0) for c in conns if c.dst == name]
                    for name in self.order}
        fanout = {name: f.flatten().to(inputs.dtype) for name, f in self.fanout_maps().items()}
        zeros_in = torch.zeros_like(inputs[0])

        # A population whose inputs all map silence to exactly zero current (and that has no bias) stays at rest
        # until the first activity can reach it, from the input or from a population that a bias drives from
        # step 0: those steps are skipped, not simulated (exact, and a third of the work of a pipelined network
        # at initialisation).
        quiet = {name: pop.params.bias == 0 and all(synapse.maps_zero_to_zero() for synapse, _, _ in incoming[name])
                 for name, pop in self.populations.items()}
        # a population driven by a bias can be active from step 0, whatever the input
        active_from = self._earliest_reach([INPUT] + [name for name in self.order if not quiet[name]], conns)
        dormant_until = {name: min(active_from[name], total_steps) if quiet[name] else 0 for name in self.populations}

        state: dict[str, LIFState] = {}
        previous: dict[str, torch.Tensor] = {INPUT: zeros_in}
        for name, pop in self.populations.items():
            blank = inputs.new_zeros((batch, *pop.shape))
            previous[name] = blank
            state[name] = initial_state(blank)
        counters = {name: ([], [], []) for name in self.order}
        no_count = inputs.new_zeros(())
        codes = {name: inputs.new_zeros((total_steps, batch, pop.neurons)) for name, pop in self.populations.items()} \
            if record else {}
        logits = inputs.new_zeros((batch, self.populations[self.output].neurons))
        out_spikes = torch.zeros_like(logits)

        for t in range(total_steps):
            current_spikes = {INPUT: inputs[t] if t < steps_in else zeros_in}
            for name in self.order:
                pop = self.populations[name]
                if t < dormant_until[name]:
                    current_spikes[name] = previous[name]  # still all zeros
                    for counter in counters[name]:
                        counter.append(no_count)
                    continue
                current = None
                for synapse, src, delayed in incoming[name]:
                    contribution = synapse(previous[src] if delayed else current_spikes[src])
                    current = contribution if current is None else current + contribution
                if current is None:
                    current = previous[name].new_zeros(previous[name].shape)
                elif name in self.current_gain:
                    current = current * self.current_gain[name]
                spikes, state[name] = lif_step(current, state[name], pop.params)
                current_spikes[name] = spikes
                with torch.no_grad():
                    counters[name][1].append(count_active(spikes, state[name], pop.params))
                    if record:  # spike and synaptic-op counts come from the codes after the loop, in one go
                        codes[name][t] = spikes.detach().reshape(batch, -1)
                    else:
                        spike_sum = spikes.detach().reshape(batch, -1).sum(0)
                        counters[name][0].append(spike_sum.sum())
                        counters[name][2].append(torch.dot(spike_sum, fanout[name]))
                if name == self.output:
                    logits = logits + current
                    out_spikes = out_spikes + spikes
            previous = current_spikes

        if record:
            with torch.no_grad():
                for name, stacked in codes.items():
                    per_step = stacked.sum(1)  # (steps, neurons), summed over the batch
                    counters[name][0][:] = per_step.sum(1).unbind()
                    counters[name][2][:] = (per_step @ fanout[name]).unbind()
        with torch.no_grad():  # the input layer: non-zero input values and the synaptic ops they cause
            present = (inputs != 0).sum(1, dtype=inputs.dtype).reshape(steps_in, -1)
            padding = [no_count] * latency
            counters[INPUT] = (list(present.sum(1).unbind()) + padding, [no_count] * total_steps,
                               list((present @ fanout[INPUT]).unbind()) + padding)
        activity = self._activity(counters, batch, total_steps)
        return SimOutput(logits / steps_in, out_spikes, activity, latency, codes if record else None)

    def _activity(self, counters: dict, batch: int, steps: int) -> ActivityStats:
        names = [INPUT] + [name for name in counters if name != INPUT]
        # one stack and one transfer for all counters, not a host sync per step
        stacked = torch.stack([torch.stack([torch.stack(c).double() for c in counters[n]]) for n in names]).cpu()
        layers = {}
        for i, name in enumerate(names):
            spikes, active, synops = stacked[i].tolist()
            if name == INPUT:
                layers[name] = LayerActivity(name, math.prod(self.input_shape), spikes, active, synops, "input")
            else:
                layers[name] = LayerActivity(name, self.populations[name].neurons, spikes, active, synops)
        return ActivityStats(batch, steps, layers)


def cell_synapse(edge: Edge, width: int) -> Synapse:
    """The connection that implements a non-zero cell op."""
    if edge.op == "conv3x3":
        return ConvBN(width, width)
    if edge.op == "skip":
        return Identity()
    raise ValueError(f"op {edge.op} has no connection")


def build_network(arch: Architecture, cell_edges: tuple[Edge, ...] | None = None) -> SpikingNetwork:
    """Build the network of ``arch``: stem, cell, downsample, cell, classifier.

    ``cell_edges`` overrides the architecture's cell with any edge list (several ops per pair make the pruning
    strategy's supernet). Populations are named ``stem``, ``cell1.n1`` .. ``cell2.n3``, ``down`` (max-pool only)
    and ``output``.
    """
    edges = tuple(e for e in (cell_edges if cell_edges is not None else arch.cell) if e.op != "zero")
    channels, height, width_px = arch.input_shape
    c = arch.width
    full = (c, height, width_px)
    half = (c, height // 2, width_px // 2)
    populations = [Population("stem", full, arch.neuron)]
    connections: list[tuple[Connection, Synapse]] = [(Connection(INPUT, "stem"), ConvBN(channels, c))]
    edge_modules: dict[Edge, list[str]] = {}

    def add_cell(prefix: str, input_name: str, shape: tuple[int, ...], wrap_input=None) -> str:
        names = {0: input_name, 1: f"{prefix}.n1", 2: f"{prefix}.n2", 3: f"{prefix}.n3"}
        for node in (1, 2, 3):
            populations.append(Population(names[node], shape, arch.neuron))
        for edge in edges:
            synapse = cell_synapse(edge, c)
            if edge.backward:
                conn = Connection(names[edge.dst], names[edge.src], backward=True, tag=edge.op)
            else:
                if edge.src == 0 and wrap_input is not None:
                    synapse = wrap_input(synapse)
                conn = Connection(names[edge.src], names[edge.dst], tag=edge.op)
            connections.append((conn, synapse))
            edge_modules.setdefault(edge, []).append(conn.module_key)
        return names[3]

    cell1_out = add_cell("cell1", "stem", full)
    if arch.downsample == "maxpool":
        populations.append(Population("down", half, OR_NEURON))
        connections.append((Connection(cell1_out, "down"), SumPool(2)))
        cell2_out = add_cell("cell2", "down", half)
    else:
        cell2_out = add_cell("cell2", cell1_out, half, wrap_input=lambda s: AvgPoolThen(s, 2))
    populations.append(Population("output", (arch.num_classes,), arch.neuron))
    connections.append((Connection(cell2_out, "output"), FlattenLinear(c * half[1] * half[2], arch.num_classes)))
    net = SpikingNetwork(arch.input_shape, populations, connections, "output", arch.timing)
    net.edge_modules = edge_modules
    return net
