"""The spiking network module: populations of CUBA-LIF neurons joined by synaptic connections, simulated step
by step from a :class:`~hwnas.sim.graph.StepPlan` in either timing model (the network's own by default, any
other by argument; the network is never switched into another timing).

Every forward pass counts spikes, active neuron updates and synaptic operations per population and step.

Arithmetic (:meth:`SpikingNetwork.set_arithmetic`): ``float`` computes the neuron equations in real numbers;
``loihi`` computes what the chip computes (:func:`~hwnas.sim.neuron.loihi_lif_step`), each connection's current
put on the chip's grid first (:func:`chip_current`), so that a network trained in it, hwnas' integer twin and
Lava's fixed-point models give the same spikes; ``xylo`` computes a SynSense Xylo core's neuron in its integers
(:mod:`hwnas.sim.xylo_neuron`; dense networks only), so that a network trained in it equals hwnas' twin of the core
and SynSense's simulator.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import contextmanager
import math
from dataclasses import dataclass

import torch
from torch import nn

from .activity import ActivityStats, LayerActivity
from .batchnorm import StepBatchNorm2d
from .graph import INPUT, Connection, Population, StepPlan, check_timing, topological_order
from .layout import channels_last_applies, steps_channels_last, zeros
from .neuron import ARITHMETICS, LIFState, count_active, lif_step, loihi_lif_step
from .ops import Synapse
from .quantize import WEIGHT_SCALE, WeightFormat, XyloScale
from .xylo_neuron import (MAX_HIDDEN_SPIKES, MAX_INPUT_SPIKES, MAX_OUTPUT_SPIKES, WEIGHT_MAX, XyloNeuron,
                          xylo_float_step, xylo_lif_step)


def chip_current(current: torch.Tensor, exponent: int, bias: torch.Tensor | None) -> torch.Tensor:
    """A connection's current as the chip computes it: the summed mantissas (recovered exactly by rounding:
    quantised weights make them whole numbers) shifted by ``exponent``, rounding towards minus infinity when it
    is negative, over 64, plus the connection's ``bias``; straight-through gradient."""
    with torch.no_grad():
        weighted = current - bias if bias is not None else current
        mantissa_sum = torch.round(weighted * (WEIGHT_SCALE / 2.0 ** exponent))
        exact = torch.floor(mantissa_sum * 2.0 ** exponent) / WEIGHT_SCALE
        if bias is not None:
            exact = exact + bias
    return current + (exact - current).detach() if current.requires_grad else exact


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
        self._synop_weights: dict[str, float] | None = None  # see synops_weighted_by
        self._plans: dict[str, StepPlan] = {}
        # module key -> the NIR node names of the connection (source, chain, destination), for a graph read from NIR
        self.nir_chains: dict[str, tuple[str, ...]] = {}
        # Population name -> factor on its summed input current; set only by firing-rate calibration for scoring.
        self.current_gain: dict[str, float] = {}
        # The neuron model: hwnas' CUBA-LIF ("lif"), or a Xylo core's ("xylo": hwnas.sim.xylo_neuron; its float
        # arithmetic is xylo_float_step, its integer one the xylo arithmetic)
        self.neuron_model = "lif"
        self.arithmetic = "float"
        self.chip_format: WeightFormat | None = None  # the weight format of the loihi arithmetic
        self.spiking_input = True  # loihi arithmetic: the input is spikes (else its connections stay in float)

    # ----- structure ---------------------------------------------------------------------------------------
    def active_connections(self) -> list[Connection]:
        """Connections not switched off."""
        return [c for c in self.connections if c.module_key not in self.disabled]

    def weighted_connections(self) -> list[Connection]:
        """Active connections whose op has weights of its own (:meth:`~hwnas.sim.ops.base.Synapse.weight_module`):
        what quantisation formats and compression act on."""
        return [c for c in self.active_connections() if self.synapses[c.module_key].weight_module() is not None]

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
                        fanout = self.synapses[conn.module_key].fanout(shape).cpu()
                        if self._synop_weights is not None:
                            fanout = fanout * self._synop_weights.get(conn.module_key, 1.0)
                        total = total + fanout
                maps[name] = total.to(device)
            self._fanout = maps
        return self._fanout

    @contextmanager
    def synops_weighted_by(self, weights: dict[str, float]):
        """Within the block, count every synaptic operation of a connection ``weights[module key]`` times (its weight
        bits: bit-weighted synaptic operations, LitE-SNN's Bit-SynOps); connections not named count once."""
        self._synop_weights, self._fanout = dict(weights), None
        try:
            yield self
        finally:
            self._synop_weights, self._fanout = None, None

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

    def pool_batchnorm_steps(self) -> None:
        """Batch-norm for training (:mod:`hwnas.sim.batchnorm`): running statistics pooled over each forward pass's
        steps and a training forward that normalises by them, as evaluation and the folded convolution do."""
        for module in self.modules():
            if isinstance(module, StepBatchNorm2d):
                module.pool_steps()

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

    def set_layer_weight_formats(self, formats: dict) -> None:
        """Give some connections (module key -> :class:`~hwnas.sim.quantize.WeightFormat`) formats of their own,
        e.g. the bits compression chose for each; the others keep theirs. Needs folded BN."""
        unknown = sorted(set(formats) - set(self.synapses.keys()))
        if unknown:
            raise KeyError(f"unknown connections {unknown}")
        if formats and not self.is_folded:
            raise ValueError("fold batch-norm before quantising")
        for key, weight_format in formats.items():
            self.synapses[key].set_weight_format(weight_format)
        self.weights_changed()

    def layer_weight_bits(self) -> dict[str, int]:
        """The weight bits of every active connection whose own format differs from the network's
        (``chip_format``; without one, every weighted connection's once they differ): empty unless compression
        gave connections bits of their own."""
        own = {conn.module_key: self.synapses[conn.module_key].deployed_format(None)
               for conn in self.active_connections()}
        bits = {key: fmt.bits for key, fmt in own.items() if fmt is not None}
        default = self.chip_format.bits if self.chip_format is not None else None
        if len(set(bits.values())) <= 1 and default in (None, *bits.values()):
            return {}
        return {key: value for key, value in bits.items() if value != default}

    def set_arithmetic(self, arithmetic: str, weight_format: WeightFormat | None = None,
                       spiking_input: bool = True) -> None:
        """Compute in ``float`` or in ``loihi`` arithmetic (see the module docstring). ``loihi`` quantises the
        weights to ``weight_format`` (default: 8 bits; idempotent on weights already quantised, such as an hwnas
        export read back) and needs folded batch-norm; with ``spiking_input`` False (direct-encoded images, event
        frames holding counts) the connections from the input keep their float current, as no chip receives
        such input. Ops whose forward does not compute the chip's sums (another tool's linear chains) are
        refused."""
        if arithmetic not in ARITHMETICS:
            raise ValueError(f"unknown arithmetic {arithmetic} (known: {', '.join(ARITHMETICS)})")
        if arithmetic in ("loihi", "xylo"):
            inexact = [key for key, synapse in self.synapses.items() if not synapse.chip_exact()]
            if inexact:
                raise ValueError(f"{arithmetic.capitalize()} arithmetic needs ops that compute the chip's sums; "
                                 f"{inexact[0]} ({type(self.synapses[inexact[0]]).__name__}) does not")
        if arithmetic == "loihi":
            self.chip_format = weight_format or WeightFormat()
            self.set_weight_format(self.chip_format)
        else:
            self.chip_format = None
        self.arithmetic = arithmetic
        self.spiking_input = bool(spiking_input)
        if arithmetic == "xylo":
            self.xylo_neurons()

    def xylo_groups(self) -> dict[str, str]:
        """Per population, its Xylo connection group: ``output`` for the output population, ``hidden`` for the
        others (one weight scale per group, as rockpool's ``global_quantize`` has)."""
        return {name: "output" if name == self.output else "hidden" for name in self.populations}

    def xylo_neurons(self) -> tuple[dict[str, float], dict[str, XyloNeuron]]:
        """Per population, the xylo arithmetic's scale of its inputs (weight units per float unit, one per connection
        group: the group's largest weight or bias becomes 127) and its integers at that scale; gives every weighted
        connection its group's :class:`~hwnas.sim.quantize.XyloScale` (the weights change while training, and the
        scales with them)."""
        groups = self.xylo_groups()
        largest = {"hidden": 0.0, "output": 0.0}
        for name, pop in self.populations.items():
            largest[groups[name]] = max(largest[groups[name]], abs(pop.params.bias))
        for conn in self.active_connections():
            weight = self.synapses[conn.module_key].weight_module()
            if weight is not None:
                value = float(weight.weight.detach().abs().max()) if weight.weight.numel() else 0.0
                largest[groups[conn.dst]] = max(largest[groups[conn.dst]], value)
        scales = {group: WEIGHT_MAX / value if value > 0 else 1.0 for group, value in largest.items()}
        for conn in self.active_connections():
            self.synapses[conn.module_key].set_weight_format(XyloScale(scales[groups[conn.dst]]))
        scale_of = {name: scales[groups[name]] for name in self.populations}
        neurons = {name: XyloNeuron.of(pop.params, scale_of[name],
                                       MAX_OUTPUT_SPIKES if name == self.output else MAX_HIDDEN_SPIKES)
                   for name, pop in self.populations.items()}
        return scale_of, neurons

    def chip_terms(self, like: torch.Tensor) -> dict[str, tuple[int, torch.Tensor | None]]:
        """Per active connection, the exponent and bias that put its current on the chip's grid (loihi
        arithmetic, :func:`chip_current`), biases on ``like``'s device and dtype; connections from graded input
        (``spiking_input`` False) are left out and keep their float current."""
        terms = {}
        for conn in self.active_connections():
            if conn.src == INPUT and not self.spiking_input:
                continue
            exponent, bias = self.synapses[conn.module_key].chip_terms(self.shape_of(conn.src), self.chip_format)
            terms[conn.module_key] = (exponent, None if bias is None else bias.to(like.device, like.dtype))
        return terms

    # ----- simulation --------------------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, record: bool = False,  # type: ignore[override]
                timing: str | None = None, plan: StepPlan | None = None,
                observe: Callable[[str, int, torch.Tensor | None], None] | None = None) -> SimOutput:
        """Run ``inputs`` of shape (T, B, *input_shape) for T + latency steps in ``timing`` (default: the
        network's own), or by a given step ``plan``; ``record`` keeps every population's spikes
        (``SimOutput.codes``). ``observe(population, step, spikes)`` is called for every population at every step
        with its spikes (B, *shape), detached, in the simulation's memory layout (:mod:`hwnas.sim.layout`), or None
        for a step the population sleeps through (all silent): what needs the spikes without keeping them all (the
        search's scores)."""
        if inputs.dim() != 2 + len(self.input_shape) or tuple(inputs.shape[2:]) != self.input_shape:
            raise ValueError(f"expected input (T, B, {', '.join(map(str, self.input_shape))}), got {tuple(inputs.shape)}")
        plan = plan or self.plan(timing)
        channels_last = channels_last_applies(inputs)  # see hwnas.sim.layout
        if channels_last:
            inputs = steps_channels_last(inputs)
        batchnorms = [m for m in self.modules() if isinstance(m, StepBatchNorm2d) and m.pooled] if self.training else []
        for batchnorm in batchnorms:
            batchnorm.start_pass()
        steps_in, batch = inputs.shape[0], inputs.shape[1]
        latency = plan.latency_steps
        total_steps = steps_in + latency
        incoming = {name: [(self.synapses[c.module_key], c.src, delayed, c.module_key)
                           for c, delayed in plan.incoming[name]] for name in plan.order}
        loihi = self.arithmetic == "loihi"
        chip = self.chip_terms(inputs) if loihi else {}
        step = loihi_lif_step if loihi else lif_step
        xylo_scales, xylo_neurons = self.xylo_neurons() if self.arithmetic == "xylo" else ({}, {})
        if xylo_neurons:  # a Xylo core's input: whole spike counts, at most 15 per channel and step
            inputs = inputs.round().clamp(0, MAX_INPUT_SPIKES)
        # float64: synaptic-op counts are whole numbers, exact in any order of summation
        fanout = {name: f.flatten().to(torch.float64) for name, f in self.fanout_maps().items()}
        zeros_in = torch.zeros_like(inputs[0])

        # A population whose inputs all map silence to exactly zero current (and that has no bias) stays at rest
        # until the first activity can reach it, from the input or from a population that a bias drives from
        # step 0: those steps are skipped, not simulated (exact, and a third of the work of a pipelined network
        # at initialisation).
        quiet = {name: pop.params.bias == 0 and all(synapse.maps_zero_to_zero() for synapse, *_ in incoming[name])
                 for name, pop in self.populations.items()}
        # a population driven by a bias can be active from step 0, whatever the input
        active_from = plan.earliest_reach([INPUT] + [name for name in plan.order if not quiet[name]])
        dormant_until = {name: min(active_from[name], total_steps) if quiet[name] else 0 for name in self.populations}

        state: dict[str, LIFState] = {}
        previous: dict[str, torch.Tensor] = {INPUT: zeros_in}
        for name, pop in self.populations.items():
            blank = zeros((batch, *pop.shape), inputs, channels_last)
            previous[name] = blank
            # one zero tensor for u and v: the steps read the state, never write into it (loihi: 1/4096 units)
            rest = blank.double() if loihi or xylo_neurons else blank
            state[name] = LIFState(rest, rest)
        counters = {name: ([], [], []) for name in plan.order}
        no_count = inputs.new_zeros(())
        codes = {}
        if record:  # written at every step a population computes; zero at the steps it sleeps through
            for name, pop in self.populations.items():
                codes[name] = inputs.new_empty((total_steps, batch, pop.neurons))
                codes[name][:int(dormant_until[name])] = 0.0
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
                    if observe is not None:
                        observe(name, t, None)
                    continue
                current, owned = None, False
                for synapse, src, delayed, key in incoming[name]:
                    if delayed and t == 0 and plan.silent_first_step:
                        continue
                    source = previous[src] if delayed else current_spikes[src]
                    contribution = synapse(source)
                    if channels_last and contribution.dim() == 4:  # from a one-channel source: standard layout
                        contribution = contribution.contiguous(memory_format=torch.channels_last)
                    if key in chip:
                        contribution = chip_current(contribution, *chip[key])
                    elif xylo_neurons:  # whole weight units: the sum of int8 weights times spike counts
                        scaled = contribution * xylo_scales[name]
                        contribution = scaled + (torch.round(scaled.detach()) - scaled.detach())
                    if current is None:
                        current = contribution
                        # written into only when fresh: an op may hand back its input (a skip: another population's
                        # spikes, or the input itself)
                        owned = contribution.untyped_storage().data_ptr() != source.untyped_storage().data_ptr()
                    elif owned and not torch.is_grad_enabled():
                        current.add_(contribution)  # the same sum, without a fresh tensor
                    else:
                        current, owned = current + contribution, True
                if current is None:
                    current = torch.zeros_like(previous[name])  # in the simulation's layout
                elif name in self.current_gain:
                    current = current * self.current_gain[name]
                if xylo_neurons:
                    spikes, state[name] = xylo_lif_step(current, state[name], xylo_neurons[name])
                elif self.neuron_model == "xylo":
                    limit = MAX_OUTPUT_SPIKES if name == self.output else MAX_HIDDEN_SPIKES
                    spikes, state[name] = xylo_float_step(current, state[name], pop.params, limit)
                else:
                    spikes, state[name] = step(current, state[name], pop.params)
                current_spikes[name] = spikes
                with torch.no_grad():
                    counters[name][1].append(count_active(spikes, state[name], pop.params))
                    if observe is not None:
                        observe(name, t, spikes.detach())
                    if record:  # spike and synaptic-op counts come from the codes after the loop, in one go
                        codes[name][t].view(spikes.shape).copy_(spikes.detach())  # one pass from any layout
                    else:
                        spike_sum = spikes.detach().sum(0).reshape(-1)  # whole numbers: exact in any order
                        counters[name][0].append(spike_sum.sum())
                        counters[name][2].append(torch.dot(spike_sum.double(), fanout[name]))
                if name == self.output:
                    logits = logits + current.reshape(batch, -1)  # a conv-shaped output population too
                    out_spikes = out_spikes + spikes.reshape(batch, -1)
            previous = current_spikes

        if record:
            with torch.no_grad():
                for name, stacked in codes.items():
                    per_step = stacked.sum(1)  # (steps, neurons), summed over the batch
                    counters[name][0][:] = per_step.sum(1).unbind()
                    counters[name][2][:] = (per_step.double() @ fanout[name]).unbind()
        with torch.no_grad():  # the input layer: non-zero input values and the synaptic ops they cause
            present = (inputs != 0).sum(1, dtype=inputs.dtype).reshape(steps_in, -1)
            padding = [no_count] * latency
            counters[INPUT] = (list(present.sum(1).unbind()) + padding, [no_count] * total_steps,
                               list((present.double() @ fanout[INPUT]).unbind()) + padding)
        for batchnorm in batchnorms:  # running statistics: this pass's steps pooled (see hwnas.sim.batchnorm)
            batchnorm.commit()
        activity = self._activity(counters, batch, total_steps)
        if xylo_neurons:  # back to float units
            logits = logits / xylo_scales[self.output]
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
