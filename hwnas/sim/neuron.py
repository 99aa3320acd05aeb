"""The one spiking neuron model of hwnas: Loihi's current-based leaky integrate-and-fire (CUBA-LIF).

Discrete time, per step t (docs/ARCHITECTURE.md, "The neuron")::

    u[t] = (1 - du) * u[t-1] + I[t]            synaptic current, I = weighted input spikes
    v[t] = (1 - dv) * v[t-1] + u[t] + b        membrane potential
    s[t] = v[t] > theta                        spike
    v[t] = 0 where s[t]                        hard reset to zero

``du = 1`` is a current-free LIF (SNASNet/LightSNN style). Lava's ``LIF`` float model computes exactly this.
The spike's derivative is replaced in the backward pass by a fast-sigmoid surrogate (SuperSpike,
Zenke & Ganguli, Neural Computation 2018): ds/dv = 1 / (1 + slope * |v - theta|)^2.

Two arithmetics compute these equations: ``float`` (:func:`lif_step`, real numbers) and ``loihi``
(:func:`loihi_lif_step`, Loihi's fixed point: state in units of 1/4096 truncated towards zero at every decay,
12-bit decays, integer threshold and bias), which is what the chip, Lava's bit-accurate models and hwnas' integer
twin compute; quantisation-aware training runs in it, with straight-through gradients.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

from ..errors import ArchitectureError
from . import fused
from .quantize import WEIGHT_SCALE

ARITHMETICS = ("float", "loihi", "xylo")  # xylo: hwnas.sim.xylo_neuron, a SynSense Xylo core's neuron
DECAY_UNITY = 4096          # Loihi's 12-bit decay constants (Lava PyLifModelBitAcc.decay_shift = 12)
STATE_SHIFT = 6             # input and threshold are MSB-aligned by 6 bits (act_shift, vth_shift)
STATE_UNIT = WEIGHT_SCALE << STATE_SHIFT  # state units per unit of float membrane potential (4096)
STATE_LIMIT = 2 ** 23       # u and v are 24-bit signed


@dataclass(frozen=True)
class NeuronParams:
    """Parameters of a CUBA-LIF population: decays ``du``, ``dv`` in [0, 1], threshold, bias, surrogate slope."""

    du: float = 1.0
    dv: float = 0.75
    theta: float = 1.0
    bias: float = 0.0
    surrogate_slope: float = 5.0

    def __post_init__(self) -> None:
        for name in ("du", "dv"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ArchitectureError(f"neuron.{name} must lie in [0, 1], got {value}")
        if not 0 < self.theta < float("inf"):
            raise ArchitectureError(f"neuron.theta must be a finite positive number, got {self.theta}")
        if not abs(self.bias) < float("inf"):
            raise ArchitectureError(f"neuron.bias must be a finite number, got {self.bias}")
        if not 0 < self.surrogate_slope < float("inf"):
            raise ArchitectureError(f"neuron.surrogate_slope must be a finite positive number, got {self.surrogate_slope}")

    def to_dict(self) -> dict:
        """JSON-ready dict of the parameters."""
        return asdict(self)

    def fixed_point(self) -> dict:
        """Loihi's integers for these parameters: ``du``, ``dv`` (12-bit decays: the current decay is stored minus
        one), ``vth`` = round(64 theta) and ``bias`` = round(64 b) (mantissa, exponent 6)."""
        du, dv = fixed_decays(self.du, self.dv)
        return {"du": du, "dv": dv,
                "vth": int(round(WEIGHT_SCALE * self.theta)),
                "bias": int(round(WEIGHT_SCALE * self.bias))}

    def exported_threshold(self) -> float:
        """The threshold a float simulator should use to decide as Loihi does: halfway between the chip's
        threshold and the next membrane value its 1/4096 grid holds. Every grid value is then at least half a
        unit (1.2e-4) from it, so float32 and float64 simulators (Norse, Lava's float models) decide alike where
        the chip's membrane would sit exactly on its threshold (an identity input of weight 1, say)."""
        return (self.fixed_point()["vth"] * (1 << STATE_SHIFT) + 0.5) / STATE_UNIT

    @classmethod
    def from_dict(cls, data: dict) -> "NeuronParams":
        """Inverse of :meth:`to_dict`; unknown or non-numeric keys raise :class:`ArchitectureError`."""
        if not isinstance(data, dict):
            raise ArchitectureError("neuron must be an object with du, dv, theta")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ArchitectureError(f"neuron: unknown field '{unknown[0]}' (known: {', '.join(sorted(known))})")
        values = {}
        for key, value in data.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ArchitectureError(f"neuron.{key} must be a number, got {value!r}")
            values[key] = float(value)
        return cls(**values)


def fixed_decays(du: float, dv: float) -> tuple[int, int]:
    """Loihi's 12-bit decay integers: ``round(4096 du) - 1`` (the chip's current decay adds one) and
    ``round(4096 dv)``, both clipped to 0..4095 (so dv = 1 keeps 1/4096 of the membrane)."""
    return (int(min(max(round(DECAY_UNITY * du) - 1, 0), DECAY_UNITY - 1)),
            int(min(max(round(DECAY_UNITY * dv), 0), DECAY_UNITY - 1)))


# Max-pooling on binary spikes is an OR: a sum-pool into memory-less neurons (du = dv = 1) with threshold 0.5.
OR_NEURON = NeuronParams(du=1.0, dv=1.0, theta=0.5)


class LIFState(NamedTuple):
    """State of a population: synaptic current ``u`` and membrane potential ``v`` (same shape as the input)."""

    u: torch.Tensor
    v: torch.Tensor
    # the step's active neurons (count_active), where the step counted them on its way (the fused kernels)
    active: torch.Tensor | None = None


class _SpikeFunction(torch.autograd.Function):
    """Heaviside step forward, fast-sigmoid surrogate derivative backward."""

    @staticmethod
    def forward(ctx, over_threshold: torch.Tensor, slope: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(over_threshold)
        ctx.slope = slope
        return (over_threshold > 0).to(over_threshold.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (over_threshold,) = ctx.saved_tensors
        # grad / (1 + slope |x|)^2, in place on one fresh tensor: half the time of the textbook expression
        denominator = over_threshold.abs().mul_(ctx.slope).add_(1.0)
        return grad_output / denominator.mul_(denominator), None


def spike(over_threshold: torch.Tensor, slope: float) -> torch.Tensor:
    """Spikes where ``over_threshold > 0``, differentiable through the surrogate gradient."""
    return _SpikeFunction.apply(over_threshold, slope)


def initial_state(like: torch.Tensor) -> LIFState:
    """All-zero state shaped like one step of input ``like``."""
    return LIFState(torch.zeros_like(like), torch.zeros_like(like))


def lif_step(current: torch.Tensor, state: LIFState, params: NeuronParams) -> tuple[torch.Tensor, LIFState]:
    """Advance a CUBA-LIF population by one step; returns ``(spikes, new_state)``.

    ``current`` is the synaptic input I[t] of shape (batch, ...); the equations are in the module docstring.
    Without autograd (scoring, evaluation) a plain comparison replaces the surrogate function.
    """
    u = current if params.du == 1.0 else (1.0 - params.du) * state.u + current
    v = u if params.dv == 1.0 else torch.add(u, state.v, alpha=1.0 - params.dv)
    if params.bias:
        v = v + params.bias
    training = torch.is_grad_enabled() and v.requires_grad
    # fused: one pass forward and backward, the same values as the operations below; while training only where v
    # is a tensor of its own (else autograd would sum the gradients of v's uses in another order, rounding otherwise)
    if fused.applies(v) and not (training and (v is u or v is current)):
        if training:
            s, v, active = fused.SpikeReset.apply(v, params.theta, params.surrogate_slope)
        else:
            s, v, active = fused.spike_and_reset(v, params.theta)
        return s, LIFState(u, v, active if params.du == 1.0 else None)
    if training:
        s = spike(v - params.theta, params.surrogate_slope)
        v = v * (1.0 - s)
    else:
        # sign(relu(.)) is the same step function as the comparison, but about twice as fast on the CPU
        s = torch.sign(torch.relu(v - params.theta))
        v = v * (1.0 - s)
    return s, LIFState(u, v)


def count_active(spikes: torch.Tensor, state: LIFState, params: NeuronParams) -> torch.Tensor:
    """Neurons whose update was *active* this step: membrane potential (before reset) non-zero, or, where the
    current decays slowly (du < 1), synaptic current non-zero. Inactive neurons only idle through the step.

    After the step v is 0 exactly where the neuron fired, so v + s is non-zero exactly where v was before reset:
    where du = 1 that is the non-zero v plus the spikes, counted without a tensor for their sum.
    """
    if state.active is not None:
        return state.active
    if params.du == 1.0:
        return torch.count_nonzero(state.v) + torch.count_nonzero(spikes)
    return torch.count_nonzero((state.v + spikes).abs() + state.u.abs())


def _truncate(x: torch.Tensor) -> torch.Tensor:
    """Round towards zero (x minus its C-style remainder, which keeps x's sign; ONNX has no Trunc), with a
    straight-through gradient."""
    return x - torch.fmod(x.detach(), 1.0)


class _LoihiStep(torch.autograd.Function):
    """One step of :func:`loihi_lif_step` for training, forward and backward written out: the same values and
    the same gradients as autograd through the step's operations (straight-through truncation, the clamp's mask,
    the surrogate of :func:`lif_step` on ``(v - threshold) / 4096``, the reset ``v (1 - s)``), in fewer passes
    over the float64 state and with only the membrane before reset and the spikes kept for the backward."""

    @staticmethod
    def forward(ctx, current, u_prev, v_prev, keep_u, keep_v, wrap, bias, threshold, slope):  # type: ignore[override]
        ctx.constants = (keep_u, keep_v, threshold, slope, current.dtype)
        ctx.fused = fused.applies(current, u_prev, v_prev)
        if ctx.fused:
            spikes, u, v_out, v_kept, flags, _ = fused.loihi_forward(current, u_prev, v_prev, keep_u, keep_v, wrap,
                                                                     bias, threshold, STATE_LIMIT,
                                                                     keep_for_backward=True)
            ctx.save_for_backward(v_kept, flags)
            return spikes, u, v_out
        # torch.trunc is x - fmod(x, 1) (the form ONNX can express) to the bit, but for the sign of a zero
        u = current.to(torch.float64, copy=True).mul_(STATE_UNIT)
        if keep_u:
            u += (u_prev * (keep_u / DECAY_UNITY)).trunc_()
        if wrap:  # a current no gradient flows through overflows as on the chip (see loihi_lif_step)
            u = torch.remainder(u + (STATE_LIMIT - 1), 2 * STATE_LIMIT) - (STATE_LIMIT - 1)
        v = (v_prev * (keep_v / DECAY_UNITY)).trunc_().add_(u)
        if bias:
            v += bias
        inside = None
        lowest, highest = torch.aminmax(v)
        if float(lowest) < -STATE_LIMIT + 1 or float(highest) > STATE_LIMIT - 1:  # saturated: no gradient, as clamp's
            inside = (v >= -STATE_LIMIT + 1) & (v <= STATE_LIMIT - 1)
            v.clamp_(-STATE_LIMIT + 1, STATE_LIMIT - 1)
        fired = v > threshold
        ctx.save_for_backward(v, fired, inside)
        return fired.to(current.dtype), u, v.masked_fill(fired, 0.0)

    @staticmethod
    def backward(ctx, grad_spikes, grad_u, grad_v):  # type: ignore[override]
        keep_u, keep_v, threshold, slope, dtype = ctx.constants
        if ctx.fused:
            v, flags = ctx.saved_tensors
            grad_current, grad_u_prev, grad_v_prev = fused.loihi_backward(
                v, flags, grad_spikes, grad_u, grad_v, keep_u, keep_v, threshold, slope, dtype,
                bool(keep_u) and ctx.needs_input_grad[1], ctx.needs_input_grad[2])
            return grad_current, grad_u_prev, grad_v_prev, None, None, None, None, None, None
        v, fired, inside = ctx.saved_tensors
        grad_s = torch.zeros_like(v) if grad_spikes is None else grad_spikes.to(torch.float64, copy=True)
        if grad_v is not None:
            grad_s -= grad_v * v  # the reset v (1 - s)
        denominator = (v - threshold).div_(STATE_UNIT).abs_().mul_(slope).add_(1.0)
        grad_membrane = grad_s.div_(denominator.mul_(denominator)).div_(STATE_UNIT)
        if grad_v is not None:
            grad_membrane += grad_v.masked_fill(fired, 0.0)
        if inside is not None:
            grad_membrane.masked_fill_(~inside, 0.0)
        grad_v_prev = grad_membrane * (keep_v / DECAY_UNITY) if ctx.needs_input_grad[2] else None
        grad_current = grad_membrane if grad_u is None else grad_membrane.add_(grad_u)
        grad_u_prev = grad_current * (keep_u / DECAY_UNITY) if keep_u and ctx.needs_input_grad[1] else None
        return (grad_current.mul_(STATE_UNIT).to(dtype), grad_u_prev, grad_v_prev, None, None, None, None, None,
                None)


def loihi_lif_step(current: torch.Tensor, state: LIFState, params: NeuronParams) -> tuple[torch.Tensor, LIFState]:
    """:func:`lif_step` in Loihi's fixed-point arithmetic (Lava's ``PyLifModelBitAcc``, hwnas'
    :func:`~hwnas.sim.integer.simulate_fixed`): ``current`` in float units on the 1/64 grid (a connection's
    shifted mantissa sum / 64); the state holds whole numbers of 1/4096 in float64 (exact: every product stays
    below 2^53)::

        u = wrap24(trunc(u * (4096 - du - 1) / 4096) + 4096 current)
        v = clip(trunc(v * (4096 - dv) / 4096) + u + 64 bias, +-(2^23 - 1));  spike where v > 64 vth

    Truncation has a straight-through gradient and the spike the surrogate of :func:`lif_step` on the membrane in
    float units, so gradients are those of the float model; spikes come back in ``current``'s dtype.
    """
    fixed = params.fixed_point()
    keep_u, keep_v = DECAY_UNITY - fixed["du"] - 1, DECAY_UNITY - fixed["dv"]
    bias, threshold = fixed["bias"] * (1 << STATE_SHIFT), fixed["vth"] * (1 << STATE_SHIFT)  # in state units
    u_grad = current.requires_grad or bool(keep_u and state.u.requires_grad)
    if torch.is_grad_enabled() and (u_grad or state.v.requires_grad):
        spikes, u, v = _LoihiStep.apply(current, state.u, state.v, keep_u, keep_v, not u_grad, bias, threshold,
                                        params.surrogate_slope)
        return spikes, LIFState(u, v)
    if fused.applies(current, state.u, state.v):  # overflow wraps, as below
        spikes, u, v, _, _, active = fused.loihi_forward(current, state.u, state.v, keep_u, keep_v, True, bias,
                                                         threshold, STATE_LIMIT, keep_for_backward=False,
                                                         count_u=params.du != 1.0)
        return spikes, LIFState(u, v, active)
    drive = current.double() * STATE_UNIT
    u = drive if keep_u == 0 else _truncate(state.u * (keep_u / DECAY_UNITY)) + drive
    if not (torch.is_grad_enabled() and u.requires_grad):  # overflow wraps as on the chip (never trained through)
        # into -2^23 < u <= 2^23: the twin's single wrap, wherever |u| < 3 * 2^23
        u = torch.remainder(u + (STATE_LIMIT - 1), 2 * STATE_LIMIT) - (STATE_LIMIT - 1)
    v = _truncate(state.v * (keep_v / DECAY_UNITY)) + u
    if bias:
        v = v + bias
    v = v.clamp(-STATE_LIMIT + 1, STATE_LIMIT - 1)
    fired = v > threshold  # few operations: the unrolled ONNX graph holds these for every step and population
    return fired.to(current.dtype), LIFState(u, v.masked_fill(fired, 0.0))
