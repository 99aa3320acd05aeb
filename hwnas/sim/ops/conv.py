"""Convolutions: ``ConvBN`` (searched and trained: 3x3 convolution, no bias, then batch-norm) and ``Conv`` (the
same with batch-norm folded into weights and bias; what is quantised, exported and deployed)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import LoweringError, NirError
from ..batchnorm import StepBatchNorm2d
from ..quantize import deployed_weight, fake_quantize_bias, fake_quantize_weight, quantised_weights, shared_exponent
from .base import Lowered, NetxSpec, Synapse


class _Convolution(Synapse):
    """Connectivity of a stride-1, same-padding convolution held in ``self.conv``."""

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.conv.out_channels, in_shape[1], in_shape[2])

    def _nonzero(self) -> torch.Tensor:
        # synapses exist where the deployed weight is non-zero: quantisation rounds small weights to zero
        return deployed_weight(self.conv.weight, getattr(self, "weight_format", None)) != 0

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        nonzero = self._nonzero()
        if bool(nonzero.all()):
            # every tap non-zero (any untrained or dense kernel): each source channel gets the same count, the
            # destination summed over channels and spread by a kernel of ones; exact, and C_in x C_out cheaper
            out_channels, in_channels, kh, kw = nonzero.shape
            ones = torch.ones((1, 1, kh, kw))
            spread = F.conv_transpose2d(dst.float().cpu().sum(0, keepdim=True).unsqueeze(0), ones,
                                        padding=self.conv.padding)[0]
            return spread.expand(in_channels, -1, -1).contiguous()
        mask = nonzero.float()
        return F.conv_transpose2d(dst.float().to(mask.device).unsqueeze(0), mask, padding=self.conv.padding)[0].cpu()

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        mask = self._nonzero().float()
        ones = torch.ones((1, *in_shape), device=mask.device)
        return F.conv2d(ones, mask, padding=self.conv.padding)[0].cpu()

    def kernel_weights(self) -> int:
        return int(self._nonzero().sum())  # a pruned (or rounded-to-zero) tap is not stored

    def weight_module(self) -> nn.Module:
        return self.conv


class ConvBN(_Convolution):
    """3x3 convolution (stride 1, same padding, no bias) followed by batch-norm (:class:`~hwnas.sim.batchnorm.StepBatchNorm2d`);
    BN folds into the conv for export."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = StepBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def maps_zero_to_zero(self) -> bool:
        bn = self.bn
        offset = bn.bias.detach() if bn.bias is not None else torch.zeros(1)
        if (not bn.training or bn.renormalising) and bn.track_running_stats:
            scale = bn.weight.detach() if bn.weight is not None else 1.0
            offset = offset - scale * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
        return bool((offset == 0).all())

    @property
    def has_batchnorm(self) -> bool:
        return True

    def folded(self) -> "Conv":
        return Conv.from_conv_bn(self)

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        raise NirError("fold batch-norm before exporting")

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        raise LoweringError(f"connection {where}: batch-norm is not folded (export the trained network first)")


class Conv(_Convolution):
    """3x3 convolution with bias (a ConvBN whose batch-norm was folded in); optionally fake-quantised weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)
        self.weight_format = None  # a hwnas.sim.quantize.WeightFormat during quantisation-aware training

    @classmethod
    def from_conv_bn(cls, source: ConvBN) -> "Conv":
        """Fold batch-norm (running statistics) into the convolution: W' = W g / s, b' = beta - g mu / s."""
        conv, bn = source.conv, source.bn
        folded = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0])
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        with torch.no_grad():
            folded.conv.weight.copy_(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
            folded.conv.bias.copy_(bn.bias.detach() - scale * bn.running_mean)
        return folded.to(conv.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.conv.weight, self.conv.bias
        if self.weight_format is not None:
            weight, bias = fake_quantize_weight(weight, self.weight_format), fake_quantize_bias(bias)
        return F.conv2d(x, weight, bias, padding=self.conv.padding)

    def maps_zero_to_zero(self) -> bool:
        return bool((self.conv.bias.detach() == 0).all())

    def set_weight_format(self, weight_format) -> None:
        self.weight_format = weight_format

    def channel_bias(self) -> torch.Tensor:
        return self.conv.bias.detach()

    def chip_exact(self) -> bool:
        return True

    def chip_terms(self, src_shape: tuple[int, ...], fmt) -> tuple[int, torch.Tensor | None]:
        fmt = self.weight_format or fmt
        return shared_exponent(self.conv.weight, fmt), fake_quantize_bias(self.conv.bias.detach()).reshape(-1, 1, 1)

    @property
    def padding(self) -> int:
        return int(self.conv.padding[0])

    def nir_nodes(self, prefix: str, source_shape: tuple[int, ...]) -> list[tuple[str, object]]:
        import nir

        weight = deployed_weight(self.conv.weight, self.weight_format)
        bias = self.conv.bias.detach()
        if self.weight_format is not None:
            bias = fake_quantize_bias(bias)
        return [(prefix, nir.Conv2d(input_shape=(source_shape[1], source_shape[2]), weight=weight.numpy(),
                                    stride=1, padding=self.conv.padding[0], dilation=1, groups=1,
                                    bias=bias.cpu().numpy()))]

    @classmethod
    def read_nir(cls, kinds, chain, nodes, source_shape, where, read_chain) -> "Conv | None":
        if kinds != ["Conv2d"]:
            return None
        name, node = chain[0], nodes[chain[0]]
        weight = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
        if weight.dim() != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
            raise NirError(f"node '{name}' (Conv2d): only square odd kernels are supported, got {list(weight.shape)}")
        k = weight.shape[2]
        stride = np.asarray(node.stride).reshape(-1)
        dilation = np.asarray(node.dilation).reshape(-1)
        padding = node.padding
        if isinstance(padding, str):
            same = padding == "same"
        else:
            same = bool(np.all(np.asarray(padding).reshape(-1) == k // 2))
        if np.any(stride != 1) or np.any(dilation != 1) or node.groups != 1 or not same:
            raise NirError(f"node '{name}' (Conv2d): only stride 1, dilation 1, groups 1 and 'same' padding are "
                           "supported")
        if weight.shape[1] != source_shape[0]:
            raise NirError(f"shape mismatch at '{name}' (Conv2d): weight takes {weight.shape[1]} channels, input has "
                           f"{source_shape[0]}")
        conv = cls(weight.shape[1], weight.shape[0], k)
        with torch.no_grad():
            conv.conv.weight.copy_(weight)
            bias = np.asarray(node.bias) if node.bias is not None else np.zeros(weight.shape[0])
            conv.conv.bias.copy_(torch.as_tensor(np.broadcast_to(bias, (weight.shape[0],)).copy(), dtype=torch.float32))
        return conv

    def lower(self, src_shape: tuple[int, ...], fmt, where: str) -> Lowered:
        values, mantissa, exponent = quantised_weights(self.conv.weight, fmt, where)
        bias = self.conv.bias.detach()
        if self.weight_format is not None:  # what the trained forward adds: each connection's bias on the grid
            bias = fake_quantize_bias(bias)
        bias = bias.double().cpu().numpy()
        out_shape = self.output_shape(src_shape)
        per_neuron = np.repeat(bias, out_shape[1] * out_shape[2])
        return Lowered("conv", values, mantissa, exponent, self.padding, per_neuron)

    def netx_layer(self, src_shape: tuple[int, ...], where: str) -> NetxSpec:
        return NetxSpec("conv", self.conv.weight.detach(), 1, self.padding)
