"""hwnas' integer twin of a SynSense Xylo SNN core (issue 34): what the chip computes, in its own integers.

A Xylo core holds one population of hidden neurons and one of output (readout) neurons, joined by three dense
int8 weight matrices: input channels to hidden neurons, hidden to hidden ("recurrent": every hidden-to-hidden
connection, feedforward ones included) and hidden to output. Per step, in this order (the order of SynSense's
bit-accurate simulator, ``xylosim``, which rockpool's ``XyloSim`` runs):

1. the step's input spikes (at most 15 per channel) are added to the hidden neurons' synaptic currents;
2. the hidden neurons' spikes of the previous step (at most 31 each) are added to the hidden and the output
   neurons' synaptic currents: hidden-to-hidden and hidden-to-output connections take one step;
3. every hidden neuron, then every output neuron, updates:
   ``i = i - decay(i, dash_syn)`` for each of its synapses (hidden neurons have two, output neurons one), then
   ``v = v + (-decay(v, dash_mem) + sum(i)) + bias``, and while ``v >= threshold`` (at most 31 spikes, 1 for an
   output neuron) it spikes and ``v = v - threshold``.

``decay(x, dash) = x >> dash``, or the sign of x where that shift is 0 (a state never stalls above zero); a
weight is ``w << weight_shift``; every addition saturates at the 16-bit state's bounds. A spike delivers its
weight once per spike, each addition saturating; as one source adds the same weight, ``clip(i + n w)`` is the same.
``tests/test_xylo.py`` compares this twin with ``XyloSim`` (rockpool's optional extra) state for state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

from ..errors import LoweringError
from .xylo_neuron import MAX_HIDDEN_SPIKES, MAX_INPUT_SPIKES, MAX_OUTPUT_SPIKES

STATE_BITS = 16
WEIGHT_RANGE = (-128, 127)
DASH_RANGE = (0, 15)
SHIFT_RANGE = (0, 8)

@dataclass
class XyloCore:
    """One Xylo core's configuration in the chip's integers (rockpool's specification, checked and normalised):
    ``weights_in`` (inputs, hidden, synapses), ``weights_rec`` (hidden, hidden, synapses), ``weights_out``
    (hidden, outputs); per hidden neuron ``dash_mem``, ``dash_syn`` (hidden, 2), ``threshold``, ``bias``; per
    output neuron ``dash_mem_out``, ``dash_syn_out``, ``threshold_out``, ``bias_out``; the three weight shifts;
    ``aliases[n]``: the hidden neurons that spike whenever hidden neuron n does."""

    weights_in: np.ndarray
    weights_rec: np.ndarray
    weights_out: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    threshold: np.ndarray
    bias: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    threshold_out: np.ndarray
    bias_out: np.ndarray
    weight_shift_in: int = 0
    weight_shift_rec: int = 0
    weight_shift_out: int = 0
    aliases: list = field(default_factory=list)

    @property
    def inputs(self) -> int:
        return self.weights_in.shape[0]

    @property
    def hidden(self) -> int:
        return self.dash_mem.size

    @property
    def outputs(self) -> int:
        return self.dash_mem_out.size

    @classmethod
    def from_specification(cls, spec: dict) -> "XyloCore":
        """A core from rockpool's specification (the keys of ``XyloSim.from_specification``, as rockpool's
        ``mapper`` and ``global_quantize`` return them); a one-line :class:`LoweringError` names what is not
        integer, out of the chip's range or of inconsistent shape. Output weights given for the last ``k`` hidden
        neurons only (rockpool's ``OEN``) are placed on those."""
        w_in = _integers(spec, "weights_in", WEIGHT_RANGE)
        if w_in.ndim == 2:
            w_in = w_in[:, :, None]
        hidden = w_in.shape[1]
        w_rec = spec.get("weights_rec")
        w_rec = np.zeros((hidden, hidden, 1), np.int64) if w_rec is None else \
            _integers(spec, "weights_rec", WEIGHT_RANGE)
        if w_rec.ndim == 2:
            w_rec = w_rec[:, :, None]
        hidden = w_rec.shape[0]
        if w_in.ndim != 3 or w_rec.shape[:2] != (hidden, hidden) or w_in.shape[1] > hidden:
            raise LoweringError(f"Xylo weights: weights_in {w_in.shape} and weights_rec {w_rec.shape} do not match")
        if max(w_in.shape[2], w_rec.shape[2]) > 2:
            raise LoweringError("Xylo hidden neurons have at most 2 synapses (the weights' last axis)")
        if w_in.shape[1] < hidden:  # rockpool's IENs: the first hidden neurons receive the input
            w_in = np.concatenate([w_in, np.zeros((w_in.shape[0], hidden - w_in.shape[1], w_in.shape[2]), np.int64)], 1)
        w_out = _integers(spec, "weights_out", WEIGHT_RANGE)
        if w_out.ndim != 2 or w_out.shape[0] > hidden:
            raise LoweringError(f"Xylo weights_out {w_out.shape}: expected (hidden neurons <= {hidden}, outputs)")
        w_out = np.concatenate([np.zeros((hidden - w_out.shape[0], w_out.shape[1]), np.int64), w_out])
        outputs = w_out.shape[1]

        def per_neuron(key, count, bounds, default=0):
            values = spec.get(key)
            if values is None:
                return np.full(count, default, np.int64)
            values = _integers(spec, key, bounds).reshape(-1)
            if values.size != count:
                raise LoweringError(f"Xylo {key}: {values.size} values for {count} neurons")
            return values

        state = (-(2 ** (STATE_BITS - 1)), 2 ** (STATE_BITS - 1) - 1)
        aliases = spec.get("aliases") or [[] for _ in range(hidden)]
        if len(aliases) != hidden or any(not 0 <= int(a) < hidden for row in aliases for a in row):
            raise LoweringError(f"Xylo aliases: expected {hidden} lists of hidden neuron indices")
        shifts = {}
        for key in ("weight_shift_in", "weight_shift_rec", "weight_shift_out"):
            value = spec.get(key, 0)
            if int(value) != value or not SHIFT_RANGE[0] <= value <= SHIFT_RANGE[1]:
                raise LoweringError(f"Xylo {key} {value}: expected an integer in {SHIFT_RANGE[0]}..{SHIFT_RANGE[1]}")
            shifts[key] = int(value)
        return cls(weights_in=w_in, weights_rec=w_rec, weights_out=w_out,
                   dash_mem=per_neuron("dash_mem", hidden, DASH_RANGE),
                   dash_syn=np.stack([per_neuron("dash_syn", hidden, DASH_RANGE),
                                      per_neuron("dash_syn_2", hidden, DASH_RANGE)], axis=1),
                   threshold=per_neuron("threshold", hidden, state), bias=per_neuron("bias", hidden, state),
                   dash_mem_out=per_neuron("dash_mem_out", outputs, DASH_RANGE),
                   dash_syn_out=per_neuron("dash_syn_out", outputs, DASH_RANGE),
                   threshold_out=per_neuron("threshold_out", outputs, state),
                   bias_out=per_neuron("bias_out", outputs, state),
                   aliases=[[int(a) for a in row] for row in aliases], **shifts)

    def specification(self) -> dict:
        """The keys ``XyloSim.from_specification`` takes, as integer arrays."""
        return {"weights_in": self.weights_in, "weights_rec": self.weights_rec, "weights_out": self.weights_out,
                "dash_mem": self.dash_mem, "dash_syn": self.dash_syn[:, 0], "dash_syn_2": self.dash_syn[:, 1],
                "threshold": self.threshold, "bias": self.bias, "dash_mem_out": self.dash_mem_out,
                "dash_syn_out": self.dash_syn_out, "threshold_out": self.threshold_out, "bias_out": self.bias_out,
                "weight_shift_in": self.weight_shift_in, "weight_shift_rec": self.weight_shift_rec,
                "weight_shift_out": self.weight_shift_out, "aliases": [list(a) for a in self.aliases]}


@dataclass
class XyloRecord:
    """What a Xylo core computed for a batch: spike counts per step of the hidden (samples, steps, hidden) and the
    output neurons (samples, steps, outputs), and, when recorded, the states after each step: ``vmem`` and
    ``isyn`` (samples, steps, hidden, 2) of the hidden neurons, ``vmem_out`` and ``isyn_out`` of the outputs."""

    hidden_spikes: np.ndarray
    output_spikes: np.ndarray
    vmem: np.ndarray | None = None
    isyn: np.ndarray | None = None
    vmem_out: np.ndarray | None = None
    isyn_out: np.ndarray | None = None


def _integers(spec: dict, key: str, bounds: tuple[int, int]) -> np.ndarray:
    """``spec[key]`` as int64, refused in one line unless every value is a whole number within ``bounds``."""
    if spec.get(key) is None:
        raise LoweringError(f"Xylo specification lacks {key}")
    values = np.asarray(spec[key])
    if values.dtype == object or not np.issubdtype(values.dtype, np.number):
        raise LoweringError(f"Xylo {key}: expected numbers, got {values.dtype}")
    if values.size and not (np.isfinite(values).all() and (np.round(values) == values).all()):
        raise LoweringError(f"Xylo {key}: expected integers (quantise the specification first)")
    values = values.astype(np.int64)
    if values.size and (values.min() < bounds[0] or values.max() > bounds[1]):
        raise LoweringError(f"Xylo {key}: values {values.min()}..{values.max()} outside the chip's "
                            f"{bounds[0]}..{bounds[1]}")
    return values


def simulate_xylo(core: XyloCore, counts: np.ndarray, record_states: bool = False) -> XyloRecord:
    """Run ``core`` on input spike counts (samples, steps, inputs), each sample from a zero state; counts above 15
    deliver 15, as the chip's input does. ``record_states`` also returns the neurons' states after every step."""
    counts = np.asarray(counts)
    if counts.ndim == 2:
        counts = counts[None]
    if counts.ndim != 3 or counts.shape[2] != core.inputs:
        raise LoweringError(f"Xylo input {counts.shape}: expected (samples, steps, {core.inputs} channels)")
    if counts.size and (counts.min() < 0 or (np.round(counts) != counts).any()):
        raise LoweringError("Xylo input: expected non-negative whole spike counts")
    samples, steps, _ = counts.shape
    hidden, outputs = core.hidden, core.outputs
    alias_start = np.zeros(hidden + 1, np.int64)
    alias_start[1:] = np.cumsum([len(a) for a in core.aliases])
    alias_targets = np.array([a for row in core.aliases for a in row], np.int64)
    shape = (samples, steps) if record_states else (0, 0)
    record = XyloRecord(hidden_spikes=np.zeros((samples, steps, hidden), np.int64),
                        output_spikes=np.zeros((samples, steps, outputs), np.int64),
                        vmem=np.zeros((*shape, hidden), np.int64), isyn=np.zeros((*shape, hidden, 2), np.int64),
                        vmem_out=np.zeros((*shape, outputs), np.int64), isyn_out=np.zeros((*shape, outputs), np.int64))
    _run(np.minimum(counts, MAX_INPUT_SPIKES).astype(np.int64),
               _shifted(core.weights_in, core.weight_shift_in), _shifted(core.weights_rec, core.weight_shift_rec),
               _shifted(core.weights_out, core.weight_shift_out), core.dash_mem, core.dash_syn, core.threshold,
               core.bias, core.dash_mem_out, core.dash_syn_out, core.threshold_out, core.bias_out,
               alias_start, alias_targets, record_states, record.hidden_spikes, record.output_spikes,
               record.vmem, record.isyn, record.vmem_out, record.isyn_out)
    if not record_states:
        record.vmem = record.isyn = record.vmem_out = record.isyn_out = None
    return record


def _shifted(weights: np.ndarray, shift: int) -> np.ndarray:
    """``w << shift`` as the chip's 16-bit weight (wrapping, as the C cast does)."""
    return _wrap(np.ascontiguousarray(weights, np.int64) << shift)


def _wrap(values: np.ndarray) -> np.ndarray:
    return ((values + 2 ** (STATE_BITS - 1)) % 2 ** STATE_BITS) - 2 ** (STATE_BITS - 1)


def _jit(function):
    """``function`` compiled by numba on first call and cached on disk (uncached where no cache folder is writable)."""
    try:
        return njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return njit(cache=False, nogil=True, boundscheck=False)(function)


_LOW, _HIGH = -(2 ** (STATE_BITS - 1)), 2 ** (STATE_BITS - 1) - 1


@_jit
def _clip(x):  # pragma: no cover - numba-compiled
    return _LOW if x < _LOW else (_HIGH if x > _HIGH else x)


@_jit
def _wrap16(x):  # pragma: no cover
    return ((x - _LOW) % (_HIGH - _LOW + 1)) + _LOW


@_jit
def _decay(x, dash):  # pragma: no cover
    d = x >> dash
    if d == 0:
        d = 1 if x > 0 else (-1 if x < 0 else 0)
    return d


@_jit
def _update(isyn, v, dash_syn, dash_mem, threshold, bias, spikes, limit):  # pragma: no cover
    """One neuron's step: its synaptic currents decay, the membrane integrates them and its bias, and it spikes
    once per threshold crossed (``spikes`` already came from aliases), at most ``limit`` times."""
    total = 0
    for s in range(isyn.size):
        isyn[s] -= _decay(isyn[s], dash_syn[s])
        total += isyn[s]
    dv = _clip(_wrap16(-_decay(v, dash_mem)) + total)
    dv = _clip(dv + bias)
    v = _clip(v + dv)
    while v >= threshold and spikes < limit:
        spikes += 1
        v = _wrap16(v - threshold)
    return v, spikes


@_jit
def _run(counts, w_in, w_rec, w_out, dash_mem, dash_syn, threshold, bias, dash_mem_out, dash_syn_out,
         threshold_out, bias_out, alias_start, alias_targets, record_states, hidden_spikes, output_spikes,
         vmem_rec, isyn_rec, vmem_out_rec, isyn_out_rec):  # pragma: no cover
    samples, steps, inputs = counts.shape
    hidden = dash_mem.size
    outputs = dash_mem_out.size
    isyn = np.zeros((hidden, 2), np.int64)
    v = np.zeros(hidden, np.int64)
    isyn_out = np.zeros((outputs, 1), np.int64)
    v_out = np.zeros(outputs, np.int64)
    previous = np.zeros(hidden, np.int64)
    current = np.zeros(hidden, np.int64)
    syn_out = np.zeros(1, np.int64)
    for b in range(samples):
        isyn[:] = 0
        v[:] = 0
        isyn_out[:] = 0
        v_out[:] = 0
        previous[:] = 0
        for t in range(steps):
            for i in range(inputs):  # this step's input spikes
                n = counts[b, t, i]
                if n > 0:
                    for s in range(w_in.shape[2]):
                        for j in range(hidden):
                            isyn[j, s] = _clip(isyn[j, s] + n * w_in[i, j, s])
            for i in range(hidden):  # the hidden neurons' spikes of the previous step
                n = min(previous[i], MAX_HIDDEN_SPIKES)
                if n > 0:
                    for s in range(w_rec.shape[2]):
                        for j in range(hidden):
                            isyn[j, s] = _clip(isyn[j, s] + n * w_rec[i, j, s])
                    for k in range(outputs):
                        isyn_out[k, 0] = _clip(isyn_out[k, 0] + n * w_out[i, k])
            current[:] = 0
            for j in range(hidden):
                v[j], current[j] = _update(isyn[j], v[j], dash_syn[j], dash_mem[j], threshold[j], bias[j],
                                           current[j], MAX_HIDDEN_SPIKES)
                for a in range(alias_start[j], alias_start[j + 1]):
                    target = alias_targets[a]
                    current[target] = min(current[target] + current[j], MAX_HIDDEN_SPIKES)
            for k in range(outputs):
                syn_out[0] = dash_syn_out[k]
                v_out[k], spiked = _update(isyn_out[k], v_out[k], syn_out, dash_mem_out[k], threshold_out[k],
                                           bias_out[k], 0, MAX_OUTPUT_SPIKES)
                output_spikes[b, t, k] = spiked
            hidden_spikes[b, t] = current
            previous[:] = current
            if record_states:
                vmem_rec[b, t] = v
                isyn_rec[b, t] = isyn
                vmem_out_rec[b, t] = v_out
                isyn_out_rec[b, t] = isyn_out[:, 0]


def hidden_order(net) -> list[str]:
    """The hidden populations of a dense network in the order a Xylo core holds them: those the input feeds first
    (the chip's input weights reach its first 128 hidden neurons only), those that feed the output last (its output
    weights read its last 128), the others between, each group in update order."""
    from ..sim.graph import INPUT

    fed = {c.dst for c in net.active_connections() if c.src == INPUT}
    feeding = {c.src for c in net.active_connections() if c.dst == net.output}
    hidden = [name for name in net.order if name != net.output]
    return sorted(hidden, key=lambda name: 0 if name in fed else 2 if name in feeding else 1)


def hidden_layout(net) -> dict[str, tuple[int, int]]:
    """Each hidden population's neurons on the core, ``(first, end)``, in :func:`hidden_order`."""
    layout, start = {}, 0
    for name in hidden_order(net):
        layout[name] = (start, start + net.populations[name].neurons)
        start = layout[name][1]
    return layout


def lower_xylo(net) -> XyloCore:
    """A dense network in the xylo arithmetic (:meth:`~hwnas.sim.network.SpikingNetwork.set_arithmetic`) as the
    Xylo core that computes it: its hidden populations on the hidden neurons in :func:`hidden_order`, the output
    population on the output neurons, each connection's int8 weights in the input, recurrent or output matrix
    (connections between the same populations add up). A :class:`LoweringError` names what a core cannot hold."""
    from ..sim.graph import INPUT

    import torch

    from .quantize import XyloScale, xylo_integers

    if net.arithmetic != "xylo" or net.timing != "xylo":
        raise LoweringError("lower a network to a Xylo core in the xylo arithmetic and timing (set_arithmetic('xylo'), "
                            "timing 'xylo')")
    scales, neurons = net.xylo_neurons()
    layout = hidden_layout(net)
    hidden = list(layout)
    offsets = {name: first for name, (first, _) in layout.items()}
    total, inputs = max((end for _, end in layout.values()), default=0), int(np.prod(net.input_shape))
    outputs = net.populations[net.output].neurons
    w_in = np.zeros((inputs, total), np.int64)
    w_rec = np.zeros((total, total), np.int64)
    w_out = np.zeros((total, outputs), np.int64)
    for conn in net.active_connections():
        module = net.synapses[conn.module_key].weight_module()
        weight = None if module is None else module.weight.detach().cpu()
        src_size = inputs if conn.src == INPUT else net.populations[conn.src].neurons
        if weight is None or tuple(weight.shape) != (net.populations[conn.dst].neurons, src_size):
            raise LoweringError(f"connection {conn.src} -> {conn.dst}: a Xylo core holds dense weight matrices only")
        integers = xylo_integers(weight, XyloScale(scales[conn.dst])).to(torch.int64).numpy().T
        if conn.src == INPUT:
            if conn.dst == net.output:
                raise LoweringError("the input cannot reach Xylo's output neurons directly")
            w_in[:, offsets[conn.dst]:offsets[conn.dst] + integers.shape[1]] += integers
        elif conn.dst == net.output:
            w_out[offsets[conn.src]:offsets[conn.src] + integers.shape[0]] += integers
        else:
            rows, cols = offsets[conn.src], offsets[conn.dst]
            w_rec[rows:rows + integers.shape[0], cols:cols + integers.shape[1]] += integers

    def per_neuron(field_name, names):
        return np.concatenate([np.full(net.populations[n].neurons, getattr(neurons[n], field_name)) for n in names])

    out = neurons[net.output]
    return XyloCore.from_specification({
        "weights_in": w_in[:, :, None], "weights_rec": w_rec[:, :, None], "weights_out": w_out,
        "dash_mem": per_neuron("dash_mem", hidden), "dash_syn": per_neuron("dash_syn", hidden),
        "dash_syn_2": np.zeros(total, np.int64), "threshold": per_neuron("threshold", hidden),
        "bias": per_neuron("bias", hidden),
        "dash_mem_out": np.full(outputs, out.dash_mem), "dash_syn_out": np.full(outputs, out.dash_syn),
        "threshold_out": np.full(outputs, out.threshold), "bias_out": np.full(outputs, out.bias)})

