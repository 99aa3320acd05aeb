"""``PooledLayer``: zero or more sum poolings (and a flatten), then one weighted layer: a convolution of any
stride, padding and groups, or a dense layer with or without bias. This is how other tools write a layer
(sinabs, snnTorch and Norse put pooling after a neuron and before the next weights, and use strided
convolutions), read with its weights as trainable parameters and a convolution's weight sharing kept, so that
``hwnas train --from`` trains it.

The chip stores it as one (destination, source) matrix. Pooling windows do not overlap and pool with weight 1,
so every entry of that matrix is exactly one weight of the layer: the forward with fake-quantised weights adds
what the chip stores (the op is chip exact), and the lowering quantises the layer's own weights with one shared
exponent and places their mantissas in the matrix (:meth:`PooledLayer.tap_entries` says where each goes)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sparse
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import NetxError, NirError
from ..quantize import deployed_weight, fake_quantize_bias, fake_quantize_weight, quantised_weights, shared_exponent
from .base import Lowered, NetxSpec, Synapse, nir_pool_node, nir_pool_size, pooled_shape
from .chain import _pair
from .matrices import conv_matrix, pool_matrix

WEIGHTED_NODES = ("Conv2d", "Linear", "Affine")


class PooledLayer(Synapse):
    """Sum pooling by each of ``pools`` in turn, an optional flatten, then ``layer`` (``nn.Conv2d`` or
    ``nn.Linear``); see the module docstring."""

    def __init__(self, layer: nn.Module, pools: tuple[int, ...] = (), flatten: bool = False) -> None:
        super().__init__()
        self.layer = layer
        self.pools = tuple(int(k) for k in pools)
        self.flatten = bool(flatten)
        self.weight_format = None  # a hwnas.sim.quantize.WeightFormat during quantisation-aware training
        self._taps: dict[tuple[int, ...], tuple] = {}  # input shape -> tap_entries

    @property
    def is_conv(self) -> bool:
        return isinstance(self.layer, nn.Conv2d)

    # ----- computing ---------------------------------------------------------------------------------------------
    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        for k in self.pools:
            x = F.avg_pool2d(x, k, divisor_override=1)  # a sum over each window
        return x.flatten(1) if self.flatten or not self.is_conv else x

    def _weights(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        weight, bias = self.layer.weight, self.layer.bias
        if self.weight_format is not None:
            weight = fake_quantize_weight(weight, self.weight_format)
            bias = None if bias is None else fake_quantize_bias(bias)
        return weight, bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        weight, bias = self._weights()
        x = self._pooled(x)
        if self.is_conv:
            return F.conv2d(x, weight, bias, self.layer.stride, self.layer.padding, 1, self.layer.groups)
        return F.linear(x, weight, bias)

    def _pooled_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(in_shape)
        for k in self.pools:
            shape = pooled_shape(shape, k)
        return shape

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if not self.is_conv:
            return (self.layer.out_features,)
        _, height, width = self._pooled_shape(in_shape)
        kh, kw = self.layer.kernel_size
        (sh, _), (ph, _) = self.layer.stride, self.layer.padding
        return (self.layer.out_channels, (height + 2 * ph - kh) // sh + 1, (width + 2 * ph - kw) // sh + 1)

    # ----- connectivity ------------------------------------------------------------------------------------------
    def tap_entries(self, in_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
        """Where each layer weight sits in the composed (destination, source) matrix: rows, columns, the flat index
        of the weight each entry holds, and the matrix's shape (every weight counted, pruned or not); cached per
        input shape."""
        key = tuple(in_shape)
        if key not in self._taps:
            count = self.layer.weight.numel()
            tags = np.arange(1, count + 1, dtype=np.float64).reshape(tuple(self.layer.weight.shape))
            shape, matrix = key, sparse.identity(int(np.prod(key)), format="csr")
            for k in self.pools:
                matrix = pool_matrix(shape, k, 1.0) @ matrix
                shape = pooled_shape(shape, k)
            if self.is_conv:
                step = conv_matrix(tags, shape, int(self.layer.padding[0]), int(self.layer.stride[0]),
                                   int(self.layer.groups))
            else:
                step = sparse.csr_matrix(tags)
            composed = sparse.csr_matrix(step @ matrix).tocoo()  # each entry one tag: pooling windows are disjoint
            self._taps[key] = (composed.row, composed.col, np.rint(composed.data).astype(np.int64) - 1, composed.shape)
        return self._taps[key]

    def _matrix_of(self, values, in_shape: tuple[int, ...], keep: np.ndarray | None = None) -> sparse.csr_matrix:
        """The composed matrix holding ``values`` (one per layer weight) at each weight's places; only the layer
        weights where ``keep`` (flat, per weight) is true, when given."""
        rows, cols, index, shape = self.tap_entries(in_shape)
        if keep is not None:
            chosen = np.asarray(keep).reshape(-1)[index]
            rows, cols, index = rows[chosen], cols[chosen], index[chosen]
        return sparse.csr_matrix((np.asarray(values).reshape(-1)[index], (rows, cols)), shape=shape)

    def _synapses(self, in_shape: tuple[int, ...]) -> sparse.csr_matrix:
        """1 where the deployed weight is non-zero (quantisation rounds small weights to zero)."""
        nonzero = (deployed_weight(self.layer.weight, self.weight_format) != 0).numpy()
        return self._matrix_of(np.ones(nonzero.shape), in_shape, nonzero)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        counts = self._synapses(in_shape).T @ dst.double().cpu().numpy().reshape(-1)
        return torch.as_tensor(counts, dtype=torch.float32).reshape(in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        counts = np.diff(self._synapses(in_shape).indptr)
        return torch.as_tensor(counts, dtype=torch.float32).reshape(self.output_shape(in_shape))

    def maps_zero_to_zero(self) -> bool:
        return self.layer.bias is None or bool((self.layer.bias.detach() == 0).all())

    def kernel_weights(self) -> int | None:
        if not self.is_conv:
            return None
        # pooling then a convolution is one convolution with a larger kernel; a pruned tap is not stored
        taps = int((deployed_weight(self.layer.weight, self.weight_format) != 0).sum())
        return taps * int(np.prod([k * k for k in self.pools]))

    # ----- training to deployment ----------------------------------------------------------------------------
    def weight_module(self) -> nn.Module:
        return self.layer

    def set_weight_format(self, weight_format) -> None:
        self.weight_format = weight_format

    def channel_bias(self) -> torch.Tensor | None:
        return None if self.layer.bias is None else self.layer.bias.detach()

    def chip_exact(self) -> bool:
        return True

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        exponent = shared_exponent(self.layer.weight, self.weight_format or fmt)
        if self.layer.bias is None:
            return exponent, None
        bias = fake_quantize_bias(self.layer.bias.detach())
        out_shape = self.output_shape(src_shape)
        return exponent, bias.reshape(-1, 1, 1).expand(out_shape) if self.is_conv else bias

    # ----- deployment ------------------------------------------------------------------------------------------
    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        import nir

        nodes, shape = [], tuple(source_shape)
        for number, k in enumerate(self.pools):
            nodes.append((f"{prefix}.pool{number}", nir_pool_node("SumPool2d", k)))
            shape = pooled_shape(shape, k)
        weight, bias = (value.detach().cpu() if value is not None else None for value in self._weights())
        if self.is_conv:
            bias = bias if bias is not None else torch.zeros(weight.shape[0])
            nodes.append((prefix, nir.Conv2d(input_shape=(shape[1], shape[2]), weight=weight.numpy(),
                                             stride=int(self.layer.stride[0]), padding=int(self.layer.padding[0]),
                                             dilation=1, groups=int(self.layer.groups), bias=bias.numpy())))
            return nodes
        if self.flatten:
            nodes.append((f"{prefix}.flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0,
                                                           end_dim=-1)))
        if bias is None:
            nodes.append((prefix, nir.Linear(weight=weight.numpy())))
        else:
            nodes.append((prefix, nir.Affine(weight=weight.numpy(), bias=bias.numpy())))
        return nodes

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "PooledLayer | None":
        if not kinds or kinds[-1] not in WEIGHTED_NODES:
            return None
        head = kinds[:-1]
        flatten = bool(head) and head[-1] == "Flatten"
        pools_part = head[:-1] if flatten else head
        if any(kind != "SumPool2d" for kind in pools_part) or (flatten and kinds[-1] == "Conv2d"):
            return None
        pools = tuple(nir_pool_size(name, nodes[name]) for name in chain[:len(pools_part)])
        shape = tuple(source_shape)
        for name, k in zip(chain, pools):
            if len(shape) != 3 or shape[1] < k or shape[2] < k:
                raise NirError(f"node '{name}' (SumPool2d): a {k}x{k} window does not fit the input {list(shape)}")
            shape = pooled_shape(shape, k)
        name, node = chain[-1], nodes[chain[-1]]
        weight = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
        bias = getattr(node, "bias", None)
        bias = None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        if kinds[-1] == "Conv2d":
            layer = _conv_layer(name, node, weight, shape)
        else:
            size = int(np.prod(shape))
            if weight.dim() != 2 or weight.shape[1] != size:
                raise NirError(f"shape mismatch at '{name}' ({kinds[-1]}): weight {list(weight.shape)} takes "
                               f"{weight.shape[-1]} inputs, {where.split()[0]} delivers {size}")
            layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None and bool(np.any(bias != 0)))
        channels = int(weight.shape[0])
        if bias is not None and bias.size not in (1, channels):
            raise NirError(f"node '{name}' ({kinds[-1]}): {bias.size} biases for {channels} outputs")
        with torch.no_grad():
            layer.weight.copy_(weight)
            if layer.bias is not None:
                layer.bias.copy_(torch.as_tensor(np.broadcast_to(bias, (channels,)).copy(), dtype=torch.float32))
        return cls(layer, pools, flatten or (kinds[-1] != "Conv2d" and len(shape) > 1))

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        values, mantissa, exponent = quantised_weights(self.layer.weight, self.weight_format or fmt, where)
        # a pruned weight is no synapse; one rounded to a zero mantissa keeps its place
        stored = np.asarray(values) != 0
        matrix = self._matrix_of(values, src_shape, stored)
        integer = self._matrix_of(np.asarray(mantissa, dtype=np.int64), src_shape, stored)
        bias = None
        if self.layer.bias is not None:
            per_output = self.layer.bias.detach()
            if self.weight_format is not None:  # what the trained forward adds: the bias on the grid
                per_output = fake_quantize_bias(per_output)
            per_output = per_output.double().cpu().numpy()
            out_shape = self.output_shape(src_shape)
            bias = np.repeat(per_output, int(np.prod(out_shape[1:]))) if self.is_conv else per_output
        return Lowered("matrix", matrix, integer, exponent, 0, bias)

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        if self.pools:
            raise NetxError(f"layer {where}: netx holds no pooling before a layer")
        if self.is_conv:
            return NetxSpec("conv", self.layer.weight.detach(), int(self.layer.stride[0]), int(self.layer.padding[0]))
        return NetxSpec("dense", self.layer.weight.detach(), 1, 0)


def _conv_layer(name: str, node, weight: torch.Tensor, shape: tuple[int, ...]) -> nn.Conv2d:
    """An ``nn.Conv2d`` shaped as NIR ``Conv2d`` node ``name`` for an input of ``shape`` (weights not yet set)."""
    if weight.dim() != 4 or weight.shape[2] != weight.shape[3]:
        raise NirError(f"node '{name}' (Conv2d): only square kernels are supported, got {list(weight.shape)}")
    if len(shape) != 3:
        raise NirError(f"node '{name}' (Conv2d) needs a (C, H, W) input, the chain delivers {list(shape)}")
    stride, padding = _pair(node.stride, name, "stride"), _pair(node.padding, name, "padding")
    if _pair(node.dilation, name, "dilation") != 1:
        raise NirError(f"node '{name}' (Conv2d): dilation other than 1 is not supported")
    groups = int(node.groups)
    if stride < 1 or padding < 0 or groups < 1 or weight.shape[0] % groups or weight.shape[1] * groups != shape[0]:
        raise NirError(f"shape mismatch at '{name}' (Conv2d): weight {list(weight.shape)} with {groups} group(s), "
                       f"stride {stride} and padding {padding} does not take the chain's {shape[0]} channels")
    k = int(weight.shape[2])
    if min(shape[1], shape[2]) + 2 * padding < k:
        raise NirError(f"node '{name}' (Conv2d): a {k}x{k} kernel with padding {padding} on a {shape[1]}x{shape[2]} "
                       "input leaves no output")
    return nn.Conv2d(shape[0], int(weight.shape[0]), k, stride=stride, padding=padding, groups=groups,
                     bias=node.bias is not None and bool(np.any(np.asarray(node.bias) != 0)))

