"""``LinearChain``: any chain of linear NIR nodes that no other op reads (a convolution then sum pooling, a scale
after a linear layer, strided or grouped convolutions, ...), composed into one sparse (destination, source)
matrix and a bias per destination neuron: exactly what the chip stores for a connection, so it runs in hwnas'
simulators and in Lava. Written back to NIR as the nodes it was read from. ``Scaled``: an op times an input gain."""

from __future__ import annotations

import copy

import numpy as np
import scipy.sparse as sparse
import torch

from ...errors import NirError, first_line
from ..quantize import quantised_weights
from .base import Lowered, Synapse, nir_pool_size
from .matrices import conv_matrix, pool_matrix



def _pair(value, name: str, field: str) -> int:
    """A square integer parameter (stride, padding, groups, dilation) of a NIR node as one int."""
    if isinstance(value, str):
        raise NirError(f"node '{name}' (Conv2d): padding '{value}' is not supported (give the number of pixels)")
    array = np.asarray(value).reshape(-1)
    if array.size == 0 or len(set(array.tolist())) != 1:
        raise NirError(f"node '{name}' (Conv2d): only square {field} is supported, got {array.tolist()}")
    return int(array[0])


def _needs_map(name: str, node, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise NirError(f"node '{name}' ({type(node).__name__}) needs a (C, H, W) input, the chain delivers "
                       f"{list(shape)}")


def _pool_shape(name: str, node, shape: tuple[int, ...]) -> tuple[int, ...]:
    _needs_map(name, node, shape)
    k = nir_pool_size(name, node)
    if shape[1] < k or shape[2] < k:
        raise NirError(f"node '{name}' ({type(node).__name__}): a {k}x{k} window on a {shape[1]}x{shape[2]} input "
                       "leaves no output")
    return (shape[0], shape[1] // k, shape[2] // k)


def _pool_matrix(name: str, node, shape, out_shape):
    k = nir_pool_size(name, node)
    return pool_matrix(shape, k, 1.0 if type(node).__name__ == "SumPool2d" else 1.0 / (k * k)), None


def _dense_matrix(name: str, node, shape, out_shape):
    kind = type(node).__name__
    weight = np.asarray(node.weight, dtype=np.float64)
    size = int(np.prod(shape))
    if weight.ndim != 2 or weight.shape[1] != size:
        raise NirError(f"shape mismatch at '{name}' ({kind}): weight {list(weight.shape)} takes "
                       f"{weight.shape[-1]} inputs, the chain delivers {size}")
    bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if kind == "Affine" else None
    if bias is not None and bias.size != weight.shape[0]:
        raise NirError(f"node '{name}' (Affine): {bias.size} biases for {weight.shape[0]} outputs")
    return sparse.csr_matrix(weight), bias


def _conv_shape(name: str, node, shape: tuple[int, ...]) -> tuple[int, ...]:
    _needs_map(name, node, shape)
    weight = np.asarray(node.weight)
    stride, padding = _pair(node.stride, name, "stride"), _pair(node.padding, name, "padding")
    if stride < 1 or padding < 0 or weight.ndim != 4:
        raise NirError(f"node '{name}' (Conv2d): needs a 4-d weight, stride >= 1 and padding >= 0")
    out = (int(weight.shape[0]), (shape[1] + 2 * padding - weight.shape[2]) // stride + 1,
           (shape[2] + 2 * padding - weight.shape[3]) // stride + 1)
    if min(out) < 1:
        raise NirError(f"node '{name}' (Conv2d): a {weight.shape[2]}x{weight.shape[3]} kernel with padding {padding} "
                       f"on a {shape[1]}x{shape[2]} input leaves no output")
    return out


def _conv_matrix(name: str, node, shape, out_shape):
    weight = np.asarray(node.weight, dtype=np.float64)
    if _pair(node.dilation, name, "dilation") != 1:
        raise NirError(f"node '{name}' (Conv2d): dilation other than 1 is not supported")
    groups = int(node.groups)
    if groups < 1 or weight.shape[0] % groups or weight.shape[1] * groups != shape[0]:
        raise NirError(f"shape mismatch at '{name}' (Conv2d): weight {list(weight.shape)} with {groups} group(s) "
                       f"does not take the chain's {shape[0]} channels")
    matrix = conv_matrix(weight, shape, _pair(node.padding, name, "padding"), _pair(node.stride, name, "stride"),
                         groups)
    bias = np.asarray(node.bias, dtype=np.float64).reshape(-1) if node.bias is not None else np.zeros(0)
    if bias.size not in (0, 1, out_shape[0]):
        raise NirError(f"node '{name}' (Conv2d): {bias.size} biases for {out_shape[0]} output channels")
    bias = np.repeat(np.broadcast_to(bias, (out_shape[0],)), out_shape[1] * out_shape[2]) if bias.size else None
    return matrix, bias


# NIR node type -> (output shape for an input shape, (matrix (out, in), bias or None) for an input shape): the one
# table that reads a linear NIR node
CHAIN_READERS = {
    "Conv2d": (_conv_shape, _conv_matrix),
    "Linear": (lambda name, node, shape: (int(np.asarray(node.weight).shape[0]),), _dense_matrix),
    "Affine": (lambda name, node, shape: (int(np.asarray(node.weight).shape[0]),), _dense_matrix),
    "Flatten": (lambda name, node, shape: (int(np.prod(shape)),),
                lambda name, node, shape, out: (sparse.identity(int(np.prod(shape)), format="csr"), None)),
    "SumPool2d": (_pool_shape, _pool_matrix),
    "AvgPool2d": (_pool_shape, _pool_matrix),
    "Scale": (lambda name, node, shape: tuple(shape),
              lambda name, node, shape, out: (sparse.diags(np.broadcast_to(
                  np.asarray(node.scale, dtype=np.float64), shape).reshape(-1), format="csr"), None)),
}
CHAIN_NODES = tuple(CHAIN_READERS)


def node_output_shape(name: str, node, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape a linear NIR node delivers for an input of ``shape``."""
    return CHAIN_READERS[type(node).__name__][0](name, node, shape)


def _node_matrix(name: str, node, shape: tuple[int, ...]) -> tuple[sparse.csr_matrix, np.ndarray | None,
                                                                     tuple[int, ...]]:
    """One NIR node as (matrix (out, in), bias or None, output shape) for an input of ``shape``."""
    shape_of, matrix_of = CHAIN_READERS[type(node).__name__]
    out_shape = shape_of(name, node, shape)
    return (*matrix_of(name, node, shape, out_shape), out_shape)


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
            try:
                step, step_bias, shape = _node_matrix(name, nodes[name], shape)
            except (ValueError, ZeroDivisionError, IndexError) as exc:  # numpy's and scipy's refusals
                raise NirError(f"node '{name}' ({type(nodes[name]).__name__}): {first_line(exc)}") from None
            matrix = (step @ matrix).tocsr()
            bias = step @ bias + (step_bias if step_bias is not None else 0.0)
        own = [(f"{i}_{kind.lower()}", nodes[name]) for i, (name, kind) in enumerate(zip(chain, kinds))]
        return cls(matrix, bias, tuple(source_shape), shape, own)

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        matrix, integer, exponent = _quantised_matrix(self.matrix, fmt, where)
        bias = self.bias.double().numpy() if self.bias is not None else None
        return Lowered("matrix", matrix, integer, exponent, 0, bias)


class Scaled(Synapse):
    """An op whose output is multiplied by ``gain``: the input gain of a destination population whose NIR
    parameters give one other than 1 (``r * dv`` or ``w_in * du``: Norse writes ``r = 1``), which hwnas' neuron
    does not have. Same synapses as the op; on the chip its weights (and bias) times the gain. Written back to NIR
    as the op's nodes and a ``Scale``."""

    def __init__(self, inner: Synapse, gain: float) -> None:
        super().__init__()
        self.inner = inner
        self.gain = float(gain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.inner(x) * self.gain

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.inner.output_shape(in_shape)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        return self.inner.transpose_count(dst, in_shape)  # a positive gain keeps every synapse

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return self.inner.fanin(in_shape)

    def maps_zero_to_zero(self) -> bool:
        return self.inner.maps_zero_to_zero()

    def kernel_weights(self) -> int | None:
        return self.inner.kernel_weights()

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        import nir

        out_shape = self.inner.output_shape(source_shape)
        return [*self.inner.nir_nodes(prefix, source_shape),
                (f"{prefix}.gain", nir.Scale(scale=np.full(out_shape, self.gain, dtype=np.float32)))]

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        kind, values, _, _, padding, bias = self.inner.lower(src_shape, fmt, where)
        if kind == "conv":
            scaled, mantissa, exponent = quantised_weights(torch.as_tensor(np.asarray(values)) * self.gain, fmt, where)
        else:
            scaled = sparse.csr_matrix(values) * self.gain
            scaled.eliminate_zeros()
            scaled, mantissa, exponent = _quantised_matrix(scaled, fmt, where)
        return Lowered(kind, scaled, mantissa, exponent, padding, None if bias is None else np.asarray(bias) * self.gain)


def _quantised_matrix(matrix: sparse.csr_matrix, fmt, where: str):
    """A sparse float matrix, its integer mantissas in the same layout, and their shared exponent."""
    matrix = sparse.csr_matrix(matrix, dtype=np.float64)
    if matrix.nnz == 0:  # no synapse: nothing to scale
        return matrix, sparse.csr_matrix(matrix.shape, dtype=np.int64), 0
    _, mantissa, exponent = quantised_weights(torch.as_tensor(matrix.data), fmt, where)
    return matrix, sparse.csr_matrix((mantissa, matrix.indices, matrix.indptr), shape=matrix.shape), exponent
