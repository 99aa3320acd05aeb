"""The spiking network module: populations of CUBA-LIF neurons joined by synaptic connections, simulated step
by step from a :class:`~hwnas.sim.graph.StepPlan` in either timing model (the network's own by default, any
other by argument; the network is never switched into another timing).

Every forward pass counts spikes, active neuron updates and synaptic operations per population and step.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import nn

from .activity import ActivityStats, LayerActivity
from .graph import INPUT, Connection, Population, StepPlan, check_timing, topological_order
from .neuron import LIFState, count_active, initial_state, lif_step
from .ops import Synapse


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
    """A graph of populations and connections, simulated step by step in either timing model; ``timing`` is the
    model a forward pass uses unless it is given another."""

    def __init__(self, input_shape: tuple[int, ...], populations: list[Population],
                 connections: list[tuple[Connection, Synapse]], output: str, timing: str) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        self.timing = check_timing(timing)
        self.output = output
        self.populations = {p.name: p for p in populations}
        self.connections = [c for c, _ in connections]
        self.synapses = nn.ModuleDict({c.module_key: m for c, m in connections})
        self.disabled: set[str] = set()  # module keys of connections switched off (supernet ablation)
        self.edge_modules: dict[object, list[str]] = {}  # the builder's edge -> module keys of its connections
        self.order = topological_order(list(self.populations), self.connections)
        self._fanout: dict[str, torch.Tensor] | None = None
        self._plans: dict[str, StepPlan] = {}
        # Population name -> factor on its summed input current; set only by firing-rate calibration for scoring.
        self.current_gain: dict[str, float] = {}

    # ----- structure ---------------------------------------------------------------------------------------
    def active_connections(self) -> list[Connection]:
        """Connections not switched off."""
        return [c for c in self.connections if c.module_key not in self.disabled]

    def plan(self, timing: str | None = None) -> StepPlan:
        """The step plan of the active connections in ``timing`` (default: the network's own)."""
        timing = check_timing(timing or self.timing)
        if timing not in self._plans:
            self._plans[timing] = StepPlan.build(self.order, self.active_connections(), timing)
        return self._plans[timing]

    def arrival_steps(self, timing: str | None = None) -> dict[str, float]:
        """Earliest step at which each population can receive input caused by input step 0 (inf if never)."""
        return self.plan(timing).arrival_steps()

    def latency(self, timing: str | None = None) -> int:
        """Extra steps after the last input step until its effect has crossed the longest forward chain."""
        return self.plan(timing).latency_steps

    @property
    def latency_steps(self) -> int:
        """:meth:`latency` in the network's own timing."""
        return self.latency()

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Shape of a population or of the input."""
        return self.input_shape if name == INPUT else self.populations[name].shape

    def fanout_maps(self) -> dict[str, torch.Tensor]:
        """Per population, the non-zero fan-out of each neuron summed over its active outgoing connections."""
        if self._fanout is None:
            # the device of the weights (parameters, or buffers for a graph read from NIR); none: a pooling-only graph
            device = next(itertools.chain(self.parameters(), self.buffers()), torch.empty(0)).device
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

    def weights_changed(self) -> None:
        """Forget what was derived from the weights (the fan-out: a quantised weight that rounds to zero is no
        synapse); training and loading weights call it."""
        self._fanout = None

    def _load_from_state_dict(self, *args, **kwargs):  # loading weights, also as part of a larger module
        super()._load_from_state_dict(*args, **kwargs)
        self.weights_changed()

    def _apply(self, fn, *args, **kwargs):  # .to(), .cpu(), .cuda(): the cached fan-out stays behind otherwise
        self.weights_changed()
        return super()._apply(fn, *args, **kwargs)

    def set_disabled(self, module_keys: set[str]) -> None:
        """Switch off the given connections (by module key); used by the pruning strategy's supernet."""
        unknown = set(module_keys) - set(self.synapses.keys())
        if unknown:
            raise KeyError(f"unknown connections {sorted(unknown)}")
        self.disabled = set(module_keys)
        self._fanout = None
        self._plans = {}

    def fold_batchnorm(self) -> None:
        """Replace every convolution + batch-norm by one convolution with bias (running statistics folded in)."""
        for key in list(self.synapses.keys()):
            self.synapses[key] = self.synapses[key].folded()
        self.weights_changed()

    @property
    def is_folded(self) -> bool:
        """True when no batch-norm is left."""
        return not any(synapse.has_batchnorm for synapse in self.synapses.values())

    def set_weight_format(self, weight_format) -> None:
        """Fake-quantise every weighted connection to ``weight_format`` (None: float weights). Needs folded BN."""
        if weight_format is not None and not self.is_folded:
            raise ValueError("fold batch-norm before quantising")
        for synapse in self.synapses.values():
            synapse.set_weight_format(weight_format)
        self.weights_changed()

    # ----- simulation --------------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, record: bool = False,  # type: ignore[override]
                timing: str | None = None) -> SimOutput:
        """Run ``inputs`` of shape (T, B, *input_shape) for T + latency steps in ``timing`` (default: the
        network's own); ``record`` keeps every population's spikes (``SimOutput.codes``)."""
        if inputs.dim() != 2 + len(self.input_shape) or tuple(inputs.shape[2:]) != self.input_shape:
            raise ValueError(f"expected input (T, B, {', '.join(map(str, self.input_shape))}), got {tuple(inputs.shape)}")
        plan = self.plan(timing)
        steps_in, batch = inputs.shape[0], inputs.shape[1]
        latency = plan.latency_steps
        total_steps = steps_in + latency
        incoming = {name: [(self.synapses[c.module_key], c.src, delayed) for c, delayed in plan.incoming[name]]
                    for name in plan.order}
        fanout = {name: f.flatten().to(inputs.dtype) for name, f in self.fanout_maps().items()}
        zeros_in = torch.zeros_like(inputs[0])

        # A population whose inputs all map silence to exactly zero current (and that has no bias) stays at rest
        # until the first activity can reach it, from the input or from a population that a bias drives from
        # step 0: those steps are skipped, not simulated (exact, and a third of the work of a pipelined network
        # at initialisation).
        quiet = {name: pop.params.bias == 0 and all(synapse.maps_zero_to_zero() for synapse, _, _ in incoming[name])
                 for name, pop in self.populations.items()}
        # a population driven by a bias can be active from step 0, whatever the input
        active_from = plan.earliest_reach([INPUT] + [name for name in plan.order if not quiet[name]])
        dormant_until = {name: min(active_from[name], total_steps) if quiet[name] else 0 for name in self.populations}

        state: dict[str, LIFState] = {}
        previous: dict[str, torch.Tensor] = {INPUT: zeros_in}
        for name, pop in self.populations.items():
            blank = inputs.new_zeros((batch, *pop.shape))
            previous[name] = blank
            state[name] = initial_state(blank)
        counters = {name: ([], [], []) for name in plan.order}
        no_count = inputs.new_zeros(())
        codes = {name: inputs.new_zeros((total_steps, batch, pop.neurons)) for name, pop in self.populations.items()} \
            if record else {}
        logits = inputs.new_zeros((batch, self.populations[self.output].neurons))
        out_spikes = torch.zeros_like(logits)

        for t in range(total_steps):
            current_spikes = {INPUT: inputs[t] if t < steps_in else zeros_in}
            for name in plan.order:
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
                    logits = logits + current.reshape(batch, -1)  # a conv-shaped output population too
                    out_spikes = out_spikes + spikes.reshape(batch, -1)
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
