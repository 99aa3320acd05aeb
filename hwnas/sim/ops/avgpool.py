"""``AvgPoolThen``: average pooling folded into the following connection (linear, so the chip needs no extra
layer of neurons for it)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import LoweringError, NetxError
from .base import Lowered, NetxSpec, Synapse, nir_pool_node, nir_pool_size, pooled_shape, unpool
from .matrices import conv_matrix, pool_matrix


class AvgPoolThen(Synapse):
    """Average pooling folded into the following connection (linear, so the chip needs no extra layer)."""

    def __init__(self, inner: Synapse, kernel_size: int = 2) -> None:
        super().__init__()
        self.inner = inner
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(F.avg_pool2d(x, self.kernel_size))

    def _pooled(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return pooled_shape(in_shape, self.kernel_size)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.inner.output_shape(self._pooled(in_shape))

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        # pooling windows do not overlap, so each source neuron reaches exactly what its pooled position reaches
        return unpool(self.inner.transpose_count(dst, self._pooled(in_shape)), in_shape, self.kernel_size)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        # each pooled source position stands for a k x k window of source neurons, all with non-zero weight
        return self.inner.fanin(self._pooled(in_shape)) * float(self.kernel_size ** 2)

    def maps_zero_to_zero(self) -> bool:
        return self.inner.maps_zero_to_zero()

    def kernel_weights(self) -> int | None:
        # pooling then a convolution is one convolution with a k-times larger kernel and stride k
        inner = self.inner.kernel_weights()
        return None if inner is None else inner * self.kernel_size ** 2

    @property
    def has_batchnorm(self) -> bool:
        return self.inner.has_batchnorm

    def folded(self) -> "AvgPoolThen":
        self.inner = self.inner.folded()
        return self

    def set_weight_format(self, weight_format) -> None:
        self.inner.set_weight_format(weight_format)

    def deployed_format(self, fmt):
        return self.inner.deployed_format(fmt)

    def weight_module(self):
        return self.inner.weight_module()

    def channel_bias(self) -> torch.Tensor | None:
        return self.inner.channel_bias()

    def chip_exact(self) -> bool:
        return self.inner.chip_exact()

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        exponent, bias = self.inner.chip_terms(self._pooled(src_shape), fmt)
        return exponent - self._shift("in Loihi arithmetic"), bias

    def _shift(self, where: str) -> int:
        """log2 of the window size: averaging is a shift of the exponent on the chip."""
        shift = math.log2(self.kernel_size ** 2)
        if shift != int(shift):
            raise LoweringError(f"connection {where}: average pooling over {self.kernel_size}x{self.kernel_size} is "
                                "not a power-of-two division")
        return int(shift)

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        pool = (f"{prefix}.avgpool", nir_pool_node("AvgPool2d", self.kernel_size))
        return [pool, *self.inner.nir_nodes(prefix, self._pooled(source_shape))]

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "AvgPoolThen | None":
        if not kinds or kinds[0] != "AvgPool2d":
            return None
        k = nir_pool_size(chain[0], nodes[chain[0]])
        return cls(read_chain(chain[1:], pooled_shape(source_shape, k)), k)

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        k = self.kernel_size
        shift = self._shift(where)
        pooled = self._pooled(src_shape)
        kind, values, mantissa, exponent, padding, bias = self.inner.lower(pooled, fmt, where)
        inner_float = values if kind == "matrix" else conv_matrix(values, pooled, padding)
        inner_int = mantissa if kind == "matrix" else conv_matrix(mantissa, pooled, padding)
        # averaging divides by k^2 = 2^shift: the same mantissas with a smaller exponent, exactly
        ones = pool_matrix(src_shape, k, 1.0)
        return Lowered("matrix", (inner_float @ ones) / (k * k), (inner_int @ ones.astype(np.int64)).tocsr(),
                       exponent - shift, 0, bias)

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        k = self.kernel_size
        inner = self.inner.netx_layer(self._pooled(src_shape), where)
        if inner.kind != "conv" or inner.stride != 1:
            raise NetxError(f"layer {where}: average pooling before a {inner.kind} layer has no netx layer")
        if src_shape[1] % k or src_shape[2] % k:
            raise NetxError(f"layer {where}: average pooling by {k} of a {src_shape[1]}x{src_shape[2]} map cuts the "
                            "border, which a strided netx convolution cannot reproduce")
        # pool by k, then conv(pad p) == conv with each tap spread over a k x k block / k^2, stride k, pad k p
        spread = inner.weight.repeat_interleave(k, dim=2).repeat_interleave(k, dim=3) / (k * k)
        return NetxSpec("conv", spread, k, k * inner.padding)
