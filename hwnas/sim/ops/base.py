"""The base of every synaptic connection (an *op*). An op maps the spikes of a source population to input
current of a destination population, knows its connectivity, and answers for itself wherever the network goes:
its NIR nodes (:meth:`Synapse.nir_nodes`, and :meth:`Synapse.read_nir` back), its Loihi lowering
(:meth:`Synapse.lower`) and its netx layer (:meth:`Synapse.netx_layer`). A new op is one file in this package,
registered in ``OPS`` of :mod:`hwnas.sim.ops`.

Connectivity: ``transpose_count(dst)`` gives, for every source neuron, the number of non-zero synapses it has
onto the destination neurons weighted by ``dst`` (a 0/1 mask or all ones). That one operation yields fan-out
per neuron (synaptic-op counts), and, for a block of destination neurons placed on one core, its input axons
and synapse count (the core mapper).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ...errors import NetxError, NirError


class Lowered(NamedTuple):
    """An op in the chip's terms: ``kind`` ``conv`` (weight (C_out, C_in, k, k), same padding) or ``matrix`` (a
    (dst, src) CSR matrix in hwnas' flat order); float weights, integer mantissas, shared exponent, padding, and
    the bias it adds to each destination neuron (flat) or None."""

    kind: str
    weight: object
    mantissa: object
    exponent: int
    padding: int
    bias: np.ndarray | None


class NetxSpec(NamedTuple):
    """An op as one netx layer: ``conv`` (weight (C_out, C_in, k, k)) or ``dense`` (weight (out, in)), float
    weights before netx's integer rounding, stride and padding."""

    kind: str
    weight: torch.Tensor
    stride: int
    padding: int


class Synapse(nn.Module):
    """Base class: ``forward(spikes) -> current`` plus the connectivity and deployment queries below."""

    # ----- connectivity -------------------------------------------------------------------------------------
    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the destination population for a source of shape ``in_shape``."""
        return tuple(in_shape)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Per source neuron (shape ``in_shape``): sum over destination neurons j of dst[j] * [w_ij != 0]."""
        raise NotImplementedError

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Non-zero fan-out of every source neuron."""
        return self.transpose_count(torch.ones(self.output_shape(in_shape)), in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        """Number of non-zero synapses into every destination neuron (shape ``output_shape(in_shape)``)."""
        raise NotImplementedError

    def maps_zero_to_zero(self) -> bool:
        """True when silent input gives exactly zero current (no bias term), in the module's current mode."""
        return True

    def kernel_weights(self) -> int | None:
        """Weights a chip with shared convolution weights stores once per core for this op (a convolution's
        kernel), or None when every synapse is stored with its destination neuron."""
        return None

    # ----- training to deployment ---------------------------------------------------------------------------
    @property
    def has_batchnorm(self) -> bool:
        """True while a batch-norm is left to fold."""
        return False

    def folded(self) -> "Synapse":
        """This op with batch-norm (running statistics) folded into its weights and bias."""
        return self

    def set_weight_format(self, weight_format) -> None:
        """Fake-quantise the op's weights to ``weight_format`` (a :class:`~hwnas.sim.quantize.WeightFormat`, or
        None for float weights); ops without weights ignore it."""

    def weight_module(self) -> nn.Module | None:
        """The module whose ``weight`` holds this op's synaptic weights (what compression prunes and quantises), or
        None for an op without weights of its own."""
        return None

    def deployed_format(self, fmt):
        """The weight format the chip stores this op's weights in: the op's own (set by quantisation-aware
        training or by compression, which may give each connection its own bits), else ``fmt``."""
        return getattr(self, "weight_format", None) or fmt

    def channel_bias(self) -> torch.Tensor | None:
        """The per-output-channel bias the op adds (a folded batch-norm), or None."""
        return None

    def chip_exact(self) -> bool:
        """True when :meth:`forward`, with a weight format set, adds exactly the weights the chip stores (so
        that rounding its sum recovers the chip's mantissa sum); ops that keep float weights answer False."""
        return False

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        """What Loihi arithmetic needs to put this op's current on the chip's grid: the exponent by which the chip
        shifts the summed mantissas (a negative one rounds towards minus infinity), and the bias that
        :meth:`forward` adds to them, shaped like one sample's output (None: no bias). By default read from
        :meth:`lower`; ops with a quantised forward answer directly."""
        lowered = self.lower(src_shape, fmt, "Loihi arithmetic")
        bias = None if lowered.bias is None else torch.as_tensor(np.asarray(lowered.bias), dtype=torch.float32)
        return lowered.exponent, None if bias is None else bias.reshape(self.output_shape(src_shape))

    # ----- deployment ---------------------------------------------------------------------------------------
    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        """The chain of NIR nodes (name, node) that computes this op; an empty chain is a plain edge."""
        raise NirError(f"no NIR mapping for connection type {type(self).__name__}")

    @classmethod
    def read_nir(cls, kinds: list[str], chain: list[str], nodes: dict, source_shape: tuple[int, ...],
                 where: str, read_chain) -> "Synapse | None":
        """The op a chain of NIR nodes (``kinds`` their type names) computes, or None when this op class does not
        read it; ``read_chain(chain, source_shape)`` reads a sub-chain (for ops that wrap another)."""
        return None

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        """The op in the chip's terms with weights in ``fmt`` (see :class:`Lowered`)."""
        from ...errors import LoweringError

        raise LoweringError(f"connection {where}: {type(self).__name__} has no Loihi mapping")

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        """The op as one netx layer, or :class:`NetxError` naming why netx cannot hold it."""
        raise NetxError(f"layer {where}: {type(self).__name__} has no netx layer")


def pooled_shape(in_shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Shape after non-overlapping k x k pooling (floor-cut border)."""
    return (in_shape[0], in_shape[1] // k, in_shape[2] // k)


def unpool(pooled: torch.Tensor, in_shape: tuple[int, ...], k: int) -> torch.Tensor:
    """Spread per-pooled-position values back onto the k x k windows; the floor-cut border gets 0."""
    full = pooled.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
    result = torch.zeros(in_shape)
    result[:, : full.shape[1], : full.shape[2]] = full
    return result


def nir_pool_size(name: str, node) -> int:
    """Kernel size of a square, non-overlapping, unpadded NIR pooling node, else :class:`NirError`."""
    kernel = np.asarray(node.kernel_size).reshape(-1)
    stride = np.asarray(node.stride).reshape(-1)
    padding = np.asarray(node.padding).reshape(-1)
    if len(set(kernel.tolist())) != 1 or not np.array_equal(kernel, stride) or np.any(padding != 0) or kernel[0] < 1:
        raise NirError(f"node '{name}' ({type(node).__name__}): only square, non-overlapping, unpadded pooling "
                       "is supported")
    return int(kernel[0])


def nir_pool_node(kind: str, k: int):
    """A NIR ``SumPool2d`` or ``AvgPool2d`` node over k x k windows with stride k."""
    import nir

    cls = getattr(nir, kind)
    return cls(kernel_size=np.array([k, k]), stride=np.array([k, k]), padding=np.array([0, 0]))
