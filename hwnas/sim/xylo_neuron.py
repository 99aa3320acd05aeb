"""The neuron of a SynSense Xylo core as a step of hwnas' simulator: the ``xylo`` arithmetic (issue 34).

Xylo's neuron is not hwnas' CUBA-LIF with other numbers: a step adds the input to the synaptic current *before*
the current decays, decays by bit shifts, resets by subtracting the threshold and may spike several times a step.
In the chip's integers (:mod:`hwnas.sim.xylo` documents each line, as SynSense's simulator computes it)::

    x = clip16(u + I)                 I: the step's weighted input spike counts, in weight units
    u = x - decay(x, dash_syn)        decay(x, d) = x >> d, or sign(x) where that is 0
    v = clip16(v + clip16(clip16(-decay(v, dash_mem) + u) + bias))
    n = min(floor(v / threshold), max_spikes) where v >= threshold, else 0;   v = v - n * threshold

The float model it is trained from (:func:`xylo_float_step`, the ``float`` arithmetic of a network of Xylo neurons)
computes the same equations in real numbers, with ``du = 2^-dash_syn`` and ``dv = 2^-dash_mem``: no rounding, no
saturation. In the ``xylo`` arithmetic the state holds whole
numbers in float64 (exact); rounding and shifts pass gradients straight through (the decays as the float model's
factors) and the spike count the surrogate gradient of :func:`hwnas.sim.neuron.spike` at the first threshold.

One difference from the chip remains: the chip saturates the synaptic current after each source's spikes, this
step after the step's summed input; they differ only when a partial sum leaves 16 bits and the whole does not.
``hwnas validate`` would show it as a spike difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ArchitectureError
from .neuron import LIFState, NeuronParams, spike

STATE_LOW, STATE_HIGH = -(2 ** 15), 2 ** 15 - 1
MAX_DASH = 15
MAX_INPUT_SPIKES = 15   # an input channel delivers at most 15 spikes a step
MAX_HIDDEN_SPIKES = 31  # a hidden neuron spikes at most 31 times a step
MAX_OUTPUT_SPIKES = 1   # an output neuron once
WEIGHT_MAX = 127  # int8 weights: a connection group's largest weight becomes 127 (rockpool's global_quantize)


def dashes(params: NeuronParams) -> tuple[int, int]:
    """The bit-shift decays (``dash_syn``, ``dash_mem``) of a population: ``du = 2^-dash_syn``, ``dv = 2^-dash_mem``;
    an :class:`ArchitectureError` where a decay is not such a power or out of 1..15. ``dash_syn`` 0 would clear the
    current before the membrane reads it; ``dash_mem`` 0 the chip holds, but rockpool's mapper refuses a time
    constant equal to the step."""
    result = []
    for name, value, lowest in (("du", params.du, 1), ("dv", params.dv, 1)):
        dash = round(-math.log2(value)) if value > 0 else -1
        if not lowest <= dash <= MAX_DASH or 2.0 ** -dash != value:
            raise ArchitectureError(f"neuron.{name} {value} is not 2^-d for a whole d in {lowest}..{MAX_DASH}: a Xylo "
                                    f"core decays by bit shifts")
        result.append(dash)
    return result[0], result[1]


@dataclass(frozen=True)
class XyloNeuron:
    """A population's integers on the chip: decays as bit shifts, threshold and bias in weight units (the float
    values times its connection group's scale, rounded), the spikes it may emit per step, the surrogate slope."""

    dash_syn: int
    dash_mem: int
    threshold: int
    bias: int
    max_spikes: int
    surrogate_slope: float = 5.0

    @classmethod
    def of(cls, params: NeuronParams, scale: float, max_spikes: int) -> "XyloNeuron":
        """The integers of ``params`` at ``scale`` weight units per float unit."""
        dash_syn, dash_mem = dashes(params)
        threshold = int(round(params.theta * scale))
        if not 1 <= threshold <= STATE_HIGH:
            raise ArchitectureError(f"threshold {params.theta} at scale {scale:.4g} is {threshold} weight units, "
                                    f"outside Xylo's 1..{STATE_HIGH}")
        return cls(dash_syn, dash_mem, threshold, int(round(params.bias * scale)), max_spikes, params.surrogate_slope)


def _decay(x: torch.Tensor, dash: int) -> torch.Tensor:
    """``x >> dash``, or the sign of x where that is 0 (whole numbers in, whole numbers out)."""
    shifted = torch.floor(x / 2.0 ** dash)
    return torch.where((shifted == 0) & (x != 0), torch.sign(x), shifted)


def _exact(value: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """``exact``'s values with ``value``'s gradient."""
    return value + (exact - value).detach()


def xylo_lif_step(current: torch.Tensor, state: LIFState, neuron: XyloNeuron) -> tuple[torch.Tensor, LIFState]:
    """One step of a Xylo population (the module docstring): ``current`` in whole weight units; the state in whole
    numbers (float64); returns the spike counts (in ``current``'s dtype) and the new state."""
    keep_u, keep_v = 1.0 - 2.0 ** -neuron.dash_syn, 1.0 - 2.0 ** -neuron.dash_mem
    x = (state.u + current.double()).clamp(STATE_LOW, STATE_HIGH)
    with torch.no_grad():
        u_exact = x - _decay(x, neuron.dash_syn)
        leak = -_decay(state.v, neuron.dash_mem)
        leak = torch.where(leak > STATE_HIGH, leak - 2 ** 16, leak)  # -(-32768) wraps in 16 bits, as on the chip
        dv = (leak + u_exact).clamp_(STATE_LOW, STATE_HIGH).add_(neuron.bias).clamp_(STATE_LOW, STATE_HIGH)
        v_exact = (state.v + dv).clamp_(STATE_LOW, STATE_HIGH)
        counts = torch.where(v_exact >= neuron.threshold,
                             torch.floor(v_exact / neuron.threshold).clamp_(max=neuron.max_spikes),
                             torch.zeros_like(v_exact))
    if not (torch.is_grad_enabled() and (x.requires_grad or state.v.requires_grad)):
        return counts.to(current.dtype), LIFState(u_exact, v_exact - counts * neuron.threshold)
    u = _exact(x * keep_u, u_exact)
    v = _exact(state.v * keep_v + u + neuron.bias, v_exact)
    spikes = _exact(spike((v - neuron.threshold) / neuron.threshold, neuron.surrogate_slope), counts)
    return spikes.to(current.dtype), LIFState(u, v - spikes * neuron.threshold)


def xylo_float_step(current: torch.Tensor, state: LIFState, params: NeuronParams,
                    max_spikes: int) -> tuple[torch.Tensor, LIFState]:
    """Xylo's neuron in real numbers (the module docstring's equations without rounding or saturation)::

        u = (1 - du) (u + I);   v = (1 - dv) v + u + b;   n = min(floor(v / theta), max_spikes) where v >= theta

    then ``v = v - n theta``; the spike count has the surrogate gradient of :func:`hwnas.sim.neuron.spike` at the
    first threshold."""
    u = (state.u + current) * (1.0 - params.du)
    v = state.v * (1.0 - params.dv) + u
    if params.bias:
        v = v + params.bias
    with torch.no_grad():
        counts = torch.where(v >= params.theta, torch.floor(v / params.theta).clamp_(max=max_spikes),
                             torch.zeros_like(v))
    if torch.is_grad_enabled() and v.requires_grad:
        counts = _exact(spike((v - params.theta) / params.theta, params.surrogate_slope), counts)
    return counts, LIFState(u, v - counts * params.theta)
