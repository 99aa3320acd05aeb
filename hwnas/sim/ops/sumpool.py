"""``SumPool``: non-overlapping k x k sum-pooling with weight 1; into OR neurons it is max-pooling on spikes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import NetxError
from .base import Lowered, NetxSpec, Synapse, nir_pool_node, nir_pool_size, pooled_shape, unpool
from .matrices import pool_matrix


class SumPool(Synapse):
    """Non-overlapping k x k sum-pooling with weight 1 (into OR neurons, this is max-pooling on spikes)."""

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.avg_pool2d(x, k) * float(k * k)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return pooled_shape(in_shape, self.kernel_size)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        return unpool(dst.float().cpu(), in_shape, self.kernel_size)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.full(self.output_shape(in_shape), float(self.kernel_size ** 2))

    def chip_exact(self) -> bool:
        return True

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        return 0, None  # weight 1 = 64 / 64: the chip's sum is exact

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        return [(prefix, nir_pool_node("SumPool2d", self.kernel_size))]

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "SumPool | None":
        return cls(nir_pool_size(chain[0], nodes[chain[0]])) if kinds == ["SumPool2d"] else None

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        k = self.kernel_size
        return Lowered("matrix", pool_matrix(src_shape, k, 1.0), pool_matrix(src_shape, k, fmt.scale).astype(np.int64),
                       0, 0, None)

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        raise NetxError(f"layer {where} is a pooling layer (sum-pool into OR neurons, i.e. max-pool): netx cannot "
                        "load pooling layers; search with --deployable netx, which folds pooling into "
                        "strided convolutions")
