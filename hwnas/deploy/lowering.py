"""Lowering a simulated network to what a Loihi-style chip holds: neuron groups with per-neuron bias, and
synaptic connections that are either convolutions or sparse matrices, in float or in Loihi integers.

The lowered network is the one description that the Lava backend builds processes from and that hwnas'
bit-exact integer simulator runs, so the two cannot disagree about weights, biases or decays.

Fixed-point conventions (ARCHITECTURE.md "The neuron", Lava's ``PyLifModelBitAcc``):

* a weight w becomes a mantissa m and a shared exponent e with w = m 2^e / 64 (:mod:`hwnas.quantize`); the
  chip adds the mantissas of the spiking inputs and shifts the sum by e;
* the neuron shifts its synaptic input and threshold left by 6, so state is in units of 1/4096;
  ``vth = round(64 theta)``, bias ``round(64 b)`` with bias exponent 6;
* decays are 12-bit: ``du_int = round(4096 du) - 1`` (the current decay adds one), ``dv_int = round(4096 dv)``,
  both clipped to 0..4095.

A connection bias (a folded batch-norm) is input current at every step; with ``du = 1`` the current does not
accumulate, so it is exactly a neuron bias and moves there. With ``du < 1`` it cannot move and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sparse
import torch

from ..errors import HwnasError
from ..quantize import WEIGHT_SCALE, WeightFormat, weight_mantissas
from ..search.network import INPUT, SpikingNetwork
from ..search.ops import AvgPoolThen, Conv, ConvBN, FlattenLinear, Identity, SumPool, Synapse

DECAY_UNITY = 4096          # Loihi's 12-bit decay constants (Lava PyLifModelBitAcc.decay_shift = 12)
STATE_SHIFT = 6             # input and threshold are MSB-aligned by 6 bits (act_shift, vth_shift)
BIAS_EXPONENT = 6           # bias = round(64 b) << 6 puts it in the state's 1/4096 units
MAX_BIAS_MANTISSA = 4095    # 13-bit signed bias mantissa
MAX_VTH = 2 ** 17 - 1       # 17-bit unsigned threshold


class LoweringError(HwnasError):
    """The network cannot be held by the target representation (names the connection or population)."""


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
        du = int(min(max(round(DECAY_UNITY * self.du) - 1, 0), DECAY_UNITY - 1))
        dv = int(min(max(round(DECAY_UNITY * self.dv), 0), DECAY_UNITY - 1))
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
    the effective fixed-point weight is ``mantissa * 2**exponent / 64``.
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


def conv_matrix(weight: np.ndarray, in_shape: tuple[int, ...], padding: int) -> sparse.csr_matrix:
    """A stride-1 convolution (cross-correlation, as torch computes it) as a (out, in) sparse matrix."""
    c_out, c_in, kh, kw = weight.shape
    _, height, width = in_shape
    out_h, out_w = height + 2 * padding - kh + 1, width + 2 * padding - kw + 1
    oc, ic, dy, dx, oy, ox = np.meshgrid(np.arange(c_out), np.arange(c_in), np.arange(kh), np.arange(kw),
                                         np.arange(out_h), np.arange(out_w), indexing="ij")
    iy, ix = oy + dy - padding, ox + dx - padding
    inside = (iy >= 0) & (iy < height) & (ix >= 0) & (ix < width)
    w = weight[oc, ic, dy, dx]
    keep = inside & (w != 0)
    rows = (oc * out_h + oy) * out_w + ox
    cols = (ic * height + iy) * width + ix
    return sparse.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(c_out * out_h * out_w, c_in * height * width))


def pool_matrix(in_shape: tuple[int, ...], k: int, value: float) -> sparse.csr_matrix:
    """Non-overlapping k x k pooling with weight ``value`` as a (out, in) sparse matrix (floor-cut border)."""
    c, height, width = in_shape
    out_h, out_w = height // k, width // k
    ch, oy, ox, dy, dx = np.meshgrid(np.arange(c), np.arange(out_h), np.arange(out_w), np.arange(k), np.arange(k),
                                     indexing="ij")
    rows = ((ch * out_h + oy) * out_w + ox).ravel()
    cols = ((ch * height + oy * k + dy) * width + ox * k + dx).ravel()
    return sparse.csr_matrix((np.full(rows.size, value), (rows, cols)), shape=(c * out_h * out_w, c * height * width))


def _quantised(weight: torch.Tensor, fmt: WeightFormat, where: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Float values (as given), mantissas and exponent of a weight tensor in ``fmt``.

    Weights beyond the format's range (the exponent is capped) raise :class:`LoweringError`.
    """
    mantissa, exponent = weight_mantissas(weight, fmt)
    values = weight.detach().double().cpu().numpy()
    largest = float(weight.detach().abs().max()) if weight.numel() else 0.0
    if largest * fmt.scale / 2.0 ** exponent > fmt.max_mantissa + 1:
        raise LoweringError(f"connection {where}: weights up to {largest:.4g} overflow the {fmt.bits}-bit weight "
                            f"format (largest representable {fmt.max_mantissa * 2.0 ** exponent / fmt.scale:.4g})")
    return values, mantissa.to(torch.int64).numpy(), exponent


def _lower_synapse(synapse: Synapse, src_shape: tuple[int, ...], fmt: WeightFormat, where: str):
    """(kind, float weight, mantissa, exponent, padding, bias per dst neuron or None) of one synapse."""
    if isinstance(synapse, ConvBN):
        raise LoweringError(f"connection {where}: batch-norm is not folded (export the trained network first)")
    if isinstance(synapse, Conv):
        values, mantissa, exponent = _quantised(synapse.conv.weight, fmt, where)
        padding = int(synapse.conv.padding[0])
        bias = synapse.conv.bias.detach().double().cpu().numpy()
        out_shape = synapse.output_shape(src_shape)
        per_neuron = np.repeat(bias, out_shape[1] * out_shape[2])
        return "conv", values, mantissa, exponent, padding, per_neuron
    if isinstance(synapse, FlattenLinear):
        values, mantissa, exponent = _quantised(synapse.linear.weight, fmt, where)
        return "matrix", sparse.csr_matrix(values), sparse.csr_matrix(mantissa), exponent, 0, None
    if isinstance(synapse, Identity):
        n = int(np.prod(src_shape))
        eye = sparse.identity(n, format="csr")
        return "matrix", eye * 1.0, (eye * fmt.scale).astype(np.int64), 0, 0, None
    if isinstance(synapse, SumPool):
        k = synapse.kernel_size
        return ("matrix", pool_matrix(src_shape, k, 1.0), pool_matrix(src_shape, k, fmt.scale).astype(np.int64),
                0, 0, None)
    if isinstance(synapse, AvgPoolThen):
        k = synapse.kernel_size
        shift = math.log2(k * k)
        if shift != int(shift):
            raise LoweringError(f"connection {where}: average pooling over {k}x{k} is not a power-of-two division")
        pooled = (src_shape[0], src_shape[1] // k, src_shape[2] // k)
        kind, values, mantissa, exponent, padding, bias = _lower_synapse(synapse.inner, pooled, fmt, where)
        inner_float = values if kind == "matrix" else conv_matrix(values, pooled, padding)
        inner_int = mantissa if kind == "matrix" else conv_matrix(mantissa, pooled, padding)
        # averaging divides by k^2 = 2^shift: the same mantissas with a smaller exponent, exactly
        ones = pool_matrix(src_shape, k, 1.0)
        return ("matrix", (inner_float @ ones) / (k * k), (inner_int @ ones.astype(np.int64)).tocsr(),
                exponent - int(shift), 0, bias)
    raise LoweringError(f"connection {where}: {type(synapse).__name__} has no Loihi mapping")


def lower(net: SpikingNetwork, fmt: WeightFormat | None = None) -> LoweredNetwork:
    """Lower a folded network (e.g. one loaded from a ``.nir``) with its weights quantised to ``fmt``.

    Float weights stay as the network holds them (a network exported after quantisation-aware training holds
    the quantised values already); mantissas and exponents are their fixed-point form, computed always, so a
    weight that overflows the format is refused even before a fixed-point run.
    """
    fmt = fmt or WeightFormat()
    saved_timing, net.timing = net.timing, "pipelined"  # the chip's timing decides the latency
    try:
        latency = net.latency_steps
    finally:
        net.timing = saved_timing
    shapes = {INPUT: net.input_shape, **{name: pop.shape for name, pop in net.populations.items()}}
    biases = {name: np.full(pop.neurons, float(pop.params.bias)) for name, pop in net.populations.items()}
    connections = []
    for conn in net.active_connections():
        where = f"{conn.src} -> {conn.dst}"
        synapse = net.synapses[conn.module_key]
        kind, values, mantissa, exponent, padding, bias = _lower_synapse(synapse, shapes[conn.src], fmt, where)
        if bias is not None and np.any(bias != 0):
            if net.populations[conn.dst].params.du != 1.0:
                raise LoweringError(f"connection {where}: a bias into neurons with du < 1 accumulates in the "
                                    "current and has no Loihi equivalent")
            biases[conn.dst] = biases[conn.dst] + bias
        connections.append(LoweredConnection(conn.src, conn.dst, conn.backward, kind, values, mantissa, exponent,
                                             padding, conn.module_key))
    populations = {}
    for name in net.order:
        p = net.populations[name].params
        populations[name] = LoweredPopulation(name, tuple(net.populations[name].shape), p.du, p.dv, p.theta,
                                              biases[name])
    return LoweredNetwork(tuple(net.input_shape), populations, connections, net.output, latency, fmt)
