"""``LinearChain``: any chain of linear NIR nodes that no other op reads (a convolution then sum pooling, a scale
after a linear layer, strided or grouped convolutions, ...), composed into one sparse (destination, source)
matrix and a bias per destination neuron: exactly what the chip stores for a connection, so it runs in hwnas'
simulators and in Lava. Written back to NIR as the nodes it was read from."""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sparse
import torch

from ...errors import NirError
from ..quantize import quantised_weights
from .base import Lowered, Synapse, nir_pool_size
from .matrices import conv_matrix, pool_matrix

CHAIN_NODES = ("Conv2d", "Linear", "Affine", "SumPool2d", "AvgPool2d", "Flatten", "Scale")


def _pair(value, name: str, field: str) -> int:
    """A square integer parameter (stride, padding, groups, dilation) of a NIR node as one int."""
    if isinstance(value, str):
        raise NirError(f"node '{name}' (Conv2d): padding '{value}' is not supported (give the number of pixels)")
    array = np.asarray(value).reshape(-1)
    if array.size == 0 or len(set(array.tolist())) != 1:
        raise NirError(f"node '{name}' (Conv2d): only square {field} is supported, got {array.tolist()}")
    return int(array[0])


def _node_matrix(name: str, node, shape: tuple[int, ...]) -> tuple[sparse.csr_matrix, np.ndarray | None,
                                                                     tuple[int, ...]]:
    """One NIR node as (matrix (out, in), bias or None, output shape) for an input of ``shape``."""
    kind = type(node).__name__
    size = int(np.prod(shape))
    if kind == "Flatten":
        return sparse.identity(size, format="csr"), None, (size,)
    if kind == "Scale":
        scale = np.broadcast_to(np.asarray(node.scale, dtype=np.float64), shape).reshape(-1)
        return sparse.diags(scale, format="csr"), None, tuple(shape)
    if kind in ("Linear", "Affine"):
        weight = np.asarray(node.weight, dtype=np.float64)
        if weight.ndim != 2 or weight.shape[1] != size:
            raise NirError(f"shape mismatch at '{name}' ({kind}): weight {list(weight.shape)} takes "
                           f"{weight.shape[-1]} inputs, the chain delivers {size}")
        bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if kind == "Affine" else None
        return sparse.csr_matrix(weight), bias, (weight.shape[0],)
    if len(shape) != 3:
        raise NirError(f"node '{name}' ({kind}) needs a (C, H, W) input, the chain delivers {list(shape)}")
    if kind in ("SumPool2d", "AvgPool2d"):
        k = nir_pool_size(name, node)
        value = 1.0 if kind == "SumPool2d" else 1.0 / (k * k)
        return pool_matrix(shape, k, value), None, (shape[0], shape[1] // k, shape[2] // k)
    weight = np.asarray(node.weight, dtype=np.float64)  # Conv2d
    if _pair(node.dilation, name, "dilation") != 1:
        raise NirError(f"node '{name}' (Conv2d): dilation other than 1 is not supported")
    stride, padding = _pair(node.stride, name, "stride"), _pair(node.padding, name, "padding")
    groups = int(node.groups)
    if weight.ndim != 4 or weight.shape[1] * groups != shape[0]:
        raise NirError(f"shape mismatch at '{name}' (Conv2d): weight {list(weight.shape)} with {groups} group(s) "
                       f"takes {weight.shape[1] * groups if weight.ndim == 4 else '?'} channels, the chain delivers "
                       f"{shape[0]}")
    matrix = conv_matrix(weight, shape, padding, stride, groups)
    out_h = (shape[1] + 2 * padding - weight.shape[2]) // stride + 1
    out_w = (shape[2] + 2 * padding - weight.shape[3]) // stride + 1
    bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if node.bias is not None else None
    if bias is not None and bias.size:
        bias = np.repeat(bias, out_h * out_w)
    else:
        bias = None
    return matrix, bias, (weight.shape[0], out_h, out_w)


class LinearChain(Synapse):
    """A chain of linear NIR nodes as one sparse (destination, source) matrix plus a bias per destination neuron
    (see the module docstring)."""

    def __init__(self, matrix: sparse.csr_matrix, bias: np.ndarray | None, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...], nodes: list[tuple[str, object]]) -> None:
        super().__init__()
        matrix = sparse.csr_matrix(matrix)
        matrix.eliminate_zeros()
        self.matrix = matrix
        self.in_shape, self.out_shape = tuple(in_shape), tuple(out_shape)
        self.nir_chain = nodes  # (kind-suffix, node) pairs it was read from, written back by nir_nodes
        coo = matrix.tocoo()
        self.register_buffer("indices", torch.as_tensor(np.vstack([coo.row, coo.col]), dtype=torch.int64))
        self.register_buffer("values", torch.as_tensor(coo.data, dtype=torch.float32))
        has_bias = bias is not None and np.any(bias != 0)
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32) if has_bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        weight = torch.sparse_coo_tensor(self.indices, self.values.to(x.dtype), self.matrix.shape)
        out = torch.sparse.mm(weight, x.reshape(x.shape[0], -1).T).T
        if self.bias is not None:
            out = out + self.bias.to(x.dtype)
        return out.reshape(x.shape[0], *self.out_shape)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.out_shape

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        pattern = (abs(self.matrix) > 0).astype(np.float64)
        counts = pattern.T @ dst.double().cpu().numpy().reshape(-1)
        return torch.as_tensor(counts, dtype=torch.float32).reshape(in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.as_tensor(np.diff(self.matrix.indptr), dtype=torch.float32).reshape(self.out_shape)

    def maps_zero_to_zero(self) -> bool:
        return self.bias is None

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        return [(f"{prefix}.{suffix}", copy.deepcopy(node)) for suffix, node in self.nir_chain]

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "LinearChain | None":
        if not chain or any(kind not in CHAIN_NODES for kind in kinds):
            return None
        shape = tuple(source_shape)
        matrix = sparse.identity(int(np.prod(shape)), format="csr")
        bias = np.zeros(int(np.prod(shape)))
        for name in chain:
            step, step_bias, shape = _node_matrix(name, nodes[name], shape)
            matrix = (step @ matrix).tocsr()
            bias = step @ bias + (step_bias if step_bias is not None else 0.0)
        own = [(f"{i}_{kind.lower()}", nodes[name]) for i, (name, kind) in enumerate(zip(chain, kinds))]
        return cls(matrix, bias, tuple(source_shape), shape, own)

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        values = torch.as_tensor(self.matrix.data, dtype=torch.float64)
        _, mantissa, exponent = quantised_weights(values, fmt, where)
        integer = sparse.csr_matrix((mantissa, self.matrix.indices, self.matrix.indptr), shape=self.matrix.shape)
        bias = self.bias.double().numpy() if self.bias is not None else None
        return Lowered("matrix", self.matrix.astype(np.float64), integer, exponent, 0, bias)
