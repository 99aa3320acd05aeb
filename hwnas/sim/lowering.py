"""Lowering a simulated network to what a Loihi-style chip holds: neuron groups with per-neuron bias, and
synaptic connections that are either convolutions or sparse matrices, in float or in Loihi integers.

The lowered network is the one description that the Lava backend builds processes from and that hwnas'
bit-exact integer simulator runs, so the two cannot disagree about weights, biases or decays.

Fixed-point conventions (docs/ARCHITECTURE.md "The neuron", Lava's ``PyLifModelBitAcc``):

* a weight w becomes a mantissa m and a shared exponent e with w = m 2^e / 64 (:mod:`hwnas.sim.quantize`); the
  chip adds the mantissas of the spiking inputs and shifts the sum by e;
* the neuron shifts its synaptic input and threshold left by 6, so state is in units of 1/4096;
  ``vth = round(64 theta)``, bias ``round(64 b)`` with bias exponent 6;
* decays are 12-bit: ``du_int = round(4096 du) - 1`` (the current decay adds one), ``dv_int = round(4096 dv)``,
  both clipped to 0..4095.

A connection bias (a folded batch-norm) is input current at every step; with ``du = 1`` the current does not
accumulate, so it is exactly a neuron bias and moves there. With ``du < 1`` it cannot move and is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse

from ..errors import LoweringError
from .graph import INPUT, StepPlan
from .network import SpikingNetwork
from .neuron import DECAY_UNITY, STATE_SHIFT, fixed_decays
from .ops.matrices import conv_matrix
from .quantize import WEIGHT_SCALE, WeightFormat

__all__ = ["DECAY_UNITY", "STATE_SHIFT", "LoweredConnection", "LoweredNetwork", "LoweredPopulation", "lower"]
BIAS_EXPONENT = 6           # bias = round(64 b) << 6 puts it in the state's 1/4096 units
MAX_BIAS_MANTISSA = 4095    # 13-bit signed bias mantissa
MAX_VTH = 2 ** 17 - 1       # 17-bit unsigned threshold


@dataclass
class LoweredPopulation:
    """A neuron group: shape in hwnas order (C, H, W) or (N,), decays, threshold, per-neuron bias (flat)."""

    name: str
    shape: tuple[int, ...]
    du: float
    dv: float
    theta: float
    bias: np.ndarray

    @property
    def neurons(self) -> int:
        return int(np.prod(self.shape))

    def fixed(self) -> dict:
        """The Loihi integers of this group: du, dv, vth, bias mantissas (bias exponent is 6)."""
        du, dv = fixed_decays(self.du, self.dv)
        vth = int(round(WEIGHT_SCALE * self.theta))
        if not 0 < vth <= MAX_VTH:
            raise LoweringError(f"population {self.name}: threshold {self.theta} does not fit Loihi's 17-bit "
                                f"threshold (64 theta = {vth})")
        bias = np.round(self.bias * WEIGHT_SCALE).astype(np.int64)
        if np.abs(bias).max(initial=0) > MAX_BIAS_MANTISSA:
            raise LoweringError(f"population {self.name}: bias up to {np.abs(self.bias).max():.3g} overflows "
                                f"Loihi's 13-bit bias mantissa (|b| < 64)")
        return {"du": du, "dv": dv, "vth": vth, "bias_mant": bias, "bias_exp": BIAS_EXPONENT}


@dataclass
class LoweredConnection:
    """A synaptic connection ``src -> dst``.

    ``kind`` is ``conv`` (``weight`` (C_out, C_in, k, k), same padding, stride 1) or ``matrix`` (``weight`` a
    CSR matrix (dst neurons, src neurons) in hwnas' flat order). ``mantissa`` has the same layout in integers;
    the effective fixed-point weight is ``mantissa * 2**exponent / 64``; ``weight_bits`` is the connection's
    weight precision (the network's format, or the connection's own after compression).
    """

    src: str
    dst: str
    backward: bool
    kind: str
    weight: object
    mantissa: object
    exponent: int
    padding: int = 0
    label: str = ""
    weight_bits: int = 8

    def as_matrix(self, src_shape: tuple[int, ...], integer: bool = False) -> sparse.csr_matrix:
        """This connection as a (dst, src) CSR matrix in hwnas' flat order (floats, or the mantissas)."""
        values = self.mantissa if integer else self.weight
        if self.kind == "matrix":
            return values
        return conv_matrix(np.asarray(values), src_shape, self.padding)


@dataclass
class LoweredNetwork:
    """Populations in simulation order, connections, the input shape and the output population."""

    input_shape: tuple[int, ...]
    populations: dict[str, LoweredPopulation]
    connections: list[LoweredConnection]
    output: str
    latency_steps: int
    weight_format: WeightFormat = field(default_factory=WeightFormat)

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Shape of a population or of the input, in hwnas order."""
        return self.input_shape if name == INPUT else self.populations[name].shape

    def plan(self, timing: str = "pipelined") -> StepPlan:
        """The step plan of the lowered connections in ``timing`` (populations are in simulation order)."""
        return StepPlan.build(list(self.populations), self.connections, timing)


def lower(net: SpikingNetwork, fmt: WeightFormat | None = None) -> LoweredNetwork:
    """Lower a folded network (e.g. one loaded from a ``.nir``) with its weights quantised to ``fmt``, or to a
    connection's own format where its op has one (:meth:`~hwnas.sim.ops.base.Synapse.deployed_format`).

    Float weights stay as the network holds them (a network exported after quantisation-aware training holds
    the quantised values already); mantissas and exponents are their fixed-point form, computed always, so a
    weight that overflows the format is refused even before a fixed-point run.
    """
    fmt = fmt or WeightFormat()
    latency = net.latency("pipelined")  # the chip's timing decides the latency
    shapes = {INPUT: net.input_shape, **{name: pop.shape for name, pop in net.populations.items()}}
    biases = {name: np.full(pop.neurons, float(pop.params.bias)) for name, pop in net.populations.items()}
    connections = []
    for conn in net.active_connections():
        where = f"{conn.src} -> {conn.dst}"
        synapse = net.synapses[conn.module_key]
        own = synapse.deployed_format(fmt)
        kind, values, mantissa, exponent, padding, bias = synapse.lower(shapes[conn.src], own, where)
        if bias is not None and np.any(bias != 0):
            if net.populations[conn.dst].params.du != 1.0:
                raise LoweringError(f"connection {where}: a bias into neurons with du < 1 accumulates in the "
                                    "current and has no Loihi equivalent")
            biases[conn.dst] = biases[conn.dst] + bias
        connections.append(LoweredConnection(conn.src, conn.dst, conn.backward, kind, values, mantissa, exponent,
                                             padding, conn.module_key, own.bits))
    populations = {}
    for name in net.order:
        p = net.populations[name].params
        populations[name] = LoweredPopulation(name, tuple(net.populations[name].shape), p.du, p.dv, p.theta,
                                              biases[name])
    return LoweredNetwork(tuple(net.input_shape), populations, connections, net.output, latency, fmt)
