"""The one spiking neuron model of hwnas: Loihi's current-based leaky integrate-and-fire (CUBA-LIF).

Discrete time, per step t (docs/ARCHITECTURE.md, "The neuron")::

    u[t] = (1 - du) * u[t-1] + I[t]            synaptic current, I = weighted input spikes
    v[t] = (1 - dv) * v[t-1] + u[t] + b        membrane potential
    s[t] = v[t] > theta                        spike
    v[t] = 0 where s[t]                        hard reset to zero

``du = 1`` is a current-free LIF (SNASNet/LightSNN style). Lava's ``LIF`` float model computes exactly this.
The spike's derivative is replaced in the backward pass by a fast-sigmoid surrogate (SuperSpike,
Zenke & Ganguli, Neural Computation 2018): ds/dv = 1 / (1 + slope * |v - theta|)^2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch

from ..errors import ArchitectureError


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


# Max-pooling on binary spikes is an OR: a sum-pool into memory-less neurons (du = dv = 1) with threshold 0.5.
OR_NEURON = NeuronParams(du=1.0, dv=1.0, theta=0.5)


class LIFState(NamedTuple):
    """State of a population: synaptic current ``u`` and membrane potential ``v`` (same shape as the input)."""

    u: torch.Tensor
    v: torch.Tensor


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
        surrogate = 1.0 / (1.0 + ctx.slope * over_threshold.abs()) ** 2
        return grad_output * surrogate, None


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
    if torch.is_grad_enabled() and v.requires_grad:
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

    After the step v is 0 exactly where the neuron fired, so v + s is non-zero exactly where v was before reset.
    """
    touched = state.v + spikes
    if params.du != 1.0:
        touched = touched.abs() + state.u.abs()
    return torch.count_nonzero(touched)
