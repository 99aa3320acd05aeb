"""``Identity``: one-to-one connection with weight 1 (the cell's ``skip`` op)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse
import torch

from ...errors import NetxError
from .base import Lowered, NetxSpec, Synapse


class Identity(Synapse):
    """One-to-one connection with weight 1 (the ``skip`` op)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        return dst.float().cpu().reshape(in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.ones(in_shape)

    def chip_exact(self) -> bool:
        return True

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        return 0, None  # weight 1 = 64 / 64: the chip's sum is exact

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        return []  # a plain edge: NIR sums every edge into a node

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "Identity | None":
        return cls() if not chain else None

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        eye = sparse.identity(int(np.prod(src_shape)), format="csr")
        return Lowered("matrix", eye * 1.0, (eye * fmt.scale).astype(np.int64), 0, 0, None)

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        if len(src_shape) != 3:
            raise NetxError(f"layer {where}: an identity connection on a flat population has no netx layer")
        eye = torch.eye(src_shape[0]).reshape(src_shape[0], src_shape[0], 1, 1)
        return NetxSpec("conv", eye, 1, 0)
