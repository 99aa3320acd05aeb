"""``FlattenLinear``: flatten a feature map and apply a dense layer (the classifier)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import NirError
from ..quantize import deployed_weight, fake_quantize_weight, quantised_weights, shared_exponent
from .base import Lowered, NetxSpec, Synapse

_NIR_CHAINS = (["Flatten", "Linear"], ["Flatten", "Affine"], ["Linear"], ["Affine"])


class FlattenLinear(Synapse):
    """Flatten a feature map and apply a dense layer (the classifier)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.weight_format = None  # a hwnas.sim.quantize.WeightFormat during quantisation-aware training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.linear.weight
        if self.weight_format is not None:
            weight = fake_quantize_weight(weight, self.weight_format)
        return F.linear(x.flatten(1), weight)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.linear.out_features,)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        mask = self._nonzero().float()
        return (dst.float().cpu().flatten() @ mask).reshape(in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return self._nonzero().sum(1).float()

    def _nonzero(self) -> torch.Tensor:
        # synapses exist where the deployed weight is non-zero: quantisation rounds small weights to zero
        return deployed_weight(self.linear.weight, self.weight_format) != 0

    def weight_module(self) -> nn.Module:
        return self.linear

    def set_weight_format(self, weight_format) -> None:
        self.weight_format = weight_format

    def chip_exact(self) -> bool:
        return True

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        return shared_exponent(self.linear.weight, self.weight_format or fmt), None

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        import nir

        weight = deployed_weight(self.linear.weight, self.weight_format)
        return [(f"{prefix}.flatten", nir.Flatten(input_type={"input": np.array(source_shape)}, start_dim=0, end_dim=-1)),
                (prefix, nir.Linear(weight=weight.numpy()))]

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "FlattenLinear | None":
        if kinds not in _NIR_CHAINS:
            return None
        layer = nodes[chain[-1]]
        if kinds[-1] == "Affine" and np.any(np.asarray(layer.bias) != 0):
            raise NirError(f"node '{chain[-1]}' (Affine): a non-zero bias is not supported (put it in v_leak)")
        weight = torch.as_tensor(np.asarray(layer.weight), dtype=torch.float32)
        if weight.shape[1] != int(np.prod(source_shape)):
            raise NirError(f"shape mismatch at '{chain[-1]}': weight takes {weight.shape[1]} inputs, {where.split()[0]} "
                           f"has {int(np.prod(source_shape))}")
        synapse = cls(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            synapse.linear.weight.copy_(weight)
        return synapse

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        values, mantissa, exponent = quantised_weights(self.linear.weight, fmt, where)
        return Lowered("matrix", sparse.csr_matrix(values), sparse.csr_matrix(mantissa), exponent, 0, None)

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        return NetxSpec("dense", self.linear.weight.detach(), 1, 0)
