"""Loihi-style fixed-point quantisation, shared by quantisation-aware training, the lowering to Loihi integers
and the exports.

docs/ARCHITECTURE.md's convention: with a weight scale of 64, a float weight w becomes the integer round(64 w); a
synaptic layer's integers use ``bits`` bits with one shared exponent e, so the stored mantissas m satisfy
w ~= m * 2^e / 64. With mixed signs the mantissa is an even integer in [-2^bits, 2^bits - 2] (Lava's Dense
drops the lowest bit when signs are mixed), i.e. for 8 bits even integers in -256..254. A bias becomes
round(64 b) / 64; a threshold round(64 theta).

Fewer bits: Lava's synapses hold 8-bit mantissas (plus sign) and a connection's ``num_weight_bits`` b keeps only
their top b bits (``lava.utils.weightutils.truncate_weights``). hwnas' b-bit mantissa m (even, in
[-2^b, 2^b - 2]) is stored there as m << (8 - b) with the exponent lowered by 8 - b: the same value, on Lava's
grid. The chip's exponent range (-8..7) therefore bounds e - (8 - b), i.e. e lies in -b..15 - b
(:attr:`WeightFormat.min_exponent`). Mixed-sign weights need at least 2 bits (one of them is the sign).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

WEIGHT_SCALE = 64
MIN_EXPONENT, MAX_EXPONENT = -8, 7  # the shared-exponent range of Lava's synaptic processes
CHIP_MANTISSA_BITS = 8              # the mantissa bits a Lava synapse holds before num_weight_bits truncates them
MIN_WEIGHT_BITS = 2                 # mixed-sign weights: one bit is the sign


@dataclass(frozen=True)
class WeightFormat:
    """Integer weight format: mantissa bits (plus sign) and the 1/64 scale."""

    bits: int = 8
    scale: int = WEIGHT_SCALE

    def __post_init__(self) -> None:
        if self.bits < MIN_WEIGHT_BITS:
            raise ValueError(f"a weight format needs at least {MIN_WEIGHT_BITS} bits (mixed signs), got {self.bits}")

    @property
    def chip_shift(self) -> int:
        """How far Lava's synapse shifts these mantissas left to hold them as its 8-bit ones (0 from 8 bits)."""
        return max(0, CHIP_MANTISSA_BITS - self.bits)

    @property
    def min_exponent(self) -> int:
        return MIN_EXPONENT + self.chip_shift

    @property
    def max_exponent(self) -> int:
        return MAX_EXPONENT + self.chip_shift

    @property
    def max_mantissa(self) -> int:
        return 2 ** self.bits - 2

    @property
    def min_mantissa(self) -> int:
        return -(2 ** self.bits)


@dataclass(frozen=True)
class XyloScale:
    """Xylo's weight format (the ``xylo`` arithmetic): int8 weights ``round(w * scale)``, one scale per connection
    group (hidden or output neurons' inputs), so that the group's largest weight is 127 (rockpool's
    ``global_quantize``: its own mapping of an export then finds the same integers)."""

    scale: float
    bits: int = 8


def xylo_integers(weight: torch.Tensor, fmt: XyloScale) -> torch.Tensor:
    """The chip's integer weights of ``weight`` in Xylo's format: ``round(w * scale)`` within int8's symmetric range,
    computed in the weight's own dtype (as training computes them; the lowering takes them from here too, so that a
    product near .5 rounds alike), as a tensor of that dtype."""
    limit = 2 ** (fmt.bits - 1) - 1
    return torch.round(weight.detach() * fmt.scale).clamp_(-limit, limit)


def shared_exponent(weight: torch.Tensor, fmt: WeightFormat) -> int:
    """The smallest exponent e in the format's range (:attr:`WeightFormat.min_exponent`) with max |scale * w| / 2^e
    within the mantissa range."""
    largest = float(weight.detach().abs().max()) * fmt.scale
    if largest == 0:
        return 0
    exponent = math.ceil(math.log2(largest / fmt.max_mantissa))
    return int(min(fmt.max_exponent, max(fmt.min_exponent, exponent)))


def weight_mantissas(weight: torch.Tensor, fmt: WeightFormat) -> tuple[torch.Tensor, int]:
    """Integer mantissas (even, clipped) and the shared exponent of a float weight tensor."""
    exponent = shared_exponent(weight, fmt)
    scaled = weight.detach() * fmt.scale / 2.0 ** exponent
    mantissa = (torch.round(scaled / 2.0) * 2.0).clamp(fmt.min_mantissa, fmt.max_mantissa)
    return mantissa, exponent


def fake_quantize_weight(weight: torch.Tensor, fmt: "WeightFormat | XyloScale") -> torch.Tensor:
    """The float value of the quantised weight, with a straight-through gradient (identity backward)."""
    if isinstance(fmt, XyloScale):
        return weight + (xylo_integers(weight, fmt) / fmt.scale - weight).detach()
    mantissa, exponent = weight_mantissas(weight, fmt)
    quantised = mantissa * 2.0 ** exponent / fmt.scale
    return weight + (quantised - weight).detach()


def fake_quantize_bias(bias: torch.Tensor, scale: int = WEIGHT_SCALE) -> torch.Tensor:
    """A bias on the 1/scale grid, straight-through gradient."""
    return bias + (torch.round(bias.detach() * scale) / scale - bias).detach()


def quantised_weights(weight: torch.Tensor, fmt: WeightFormat, where: str):
    """Float values (float64 numpy, as given), integer mantissas and the exponent of a weight tensor in ``fmt``.

    Weights beyond the format's range (the exponent is capped) raise :class:`~hwnas.errors.LoweringError`.
    """
    from ..errors import LoweringError

    mantissa, exponent = weight_mantissas(weight, fmt)
    values = weight.detach().double().cpu().numpy()
    largest = float(weight.detach().abs().max()) if weight.numel() else 0.0
    if largest * fmt.scale / 2.0 ** exponent > fmt.max_mantissa + 1:
        raise LoweringError(f"connection {where}: weights up to {largest:.4g} overflow the {fmt.bits}-bit weight "
                            f"format (largest representable {fmt.max_mantissa * 2.0 ** exponent / fmt.scale:.4g})")
    return values, mantissa.to(torch.int64).numpy(), exponent


def deployed_weight(weight: torch.Tensor, weight_format: WeightFormat | None) -> torch.Tensor:
    """The weight as deployed: quantised when trained with a format (no gradient), on the CPU."""
    weight = weight.detach()
    if weight_format is not None:
        weight = fake_quantize_weight(weight, weight_format)
    return weight.cpu()
