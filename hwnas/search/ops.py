"""Synaptic connections of the spiking network. Each maps the spikes of a source population to input current
of a destination population, and knows its connectivity: ``transpose_count(dst)`` gives, for every source
neuron, the number of non-zero synapses it has onto the destination neurons weighted by ``dst`` (a 0/1 mask or
all ones). That one operation yields fan-out per neuron (synaptic-op counts), and, for a block of destination
neurons placed on one core, its input axons and synapse count (the core mapper).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Synapse(nn.Module):
    """Base class: ``forward(spikes) -> current`` plus the connectivity queries below."""

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


class _Convolution(Synapse):
    """Connectivity of a stride-1, same-padding convolution held in ``self.conv``."""

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.conv.out_channels, in_shape[1], in_shape[2])

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        mask = (self.conv.weight.detach() != 0).float()
        return F.conv_transpose2d(dst.float().to(mask.device).unsqueeze(0), mask, padding=self.conv.padding)[0].cpu()

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        mask = (self.conv.weight.detach() != 0).float()
        ones = torch.ones((1, *in_shape), device=mask.device)
        return F.conv2d(ones, mask, padding=self.conv.padding)[0].cpu()


class ConvBN(_Convolution):
    """3x3 convolution (stride 1, same padding, no bias) followed by batch-norm; BN folds into the conv for export."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def maps_zero_to_zero(self) -> bool:
        bn = self.bn
        offset = bn.bias.detach() if bn.bias is not None else torch.zeros(1)
        if not bn.training and bn.track_running_stats:
            scale = bn.weight.detach() if bn.weight is not None else 1.0
            offset = offset - scale * bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
        return bool((offset == 0).all())


class Conv(_Convolution):
    """3x3 convolution with bias (a ConvBN whose batch-norm was folded in); optionally fake-quantised weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)
        self.weight_format = None  # a hwnas.quantize.WeightFormat during quantisation-aware training

    @classmethod
    def from_conv_bn(cls, source: "ConvBN") -> "Conv":
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
            from ..quantize import fake_quantize_bias, fake_quantize_weight

            weight, bias = fake_quantize_weight(weight, self.weight_format), fake_quantize_bias(bias)
        return F.conv2d(x, weight, bias, padding=self.conv.padding)

    def maps_zero_to_zero(self) -> bool:
        return bool((self.conv.bias.detach() == 0).all())


class Identity(Synapse):
    """One-to-one connection with weight 1 (the ``skip`` op)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        return dst.float().cpu().reshape(in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.ones(in_shape)


class SumPool(Synapse):
    """Non-overlapping k x k sum-pooling with weight 1 (into OR neurons, this is max-pooling on spikes)."""

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.avg_pool2d(x, k) * float(k * k)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (in_shape[0], in_shape[1] // self.kernel_size, in_shape[2] // self.kernel_size)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        return _unpool(dst.float().cpu(), in_shape, self.kernel_size)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.full(self.output_shape(in_shape), float(self.kernel_size ** 2))


class AvgPoolThen(Synapse):
    """Average pooling folded into the following connection (linear, so the chip needs no extra layer)."""

    def __init__(self, inner: Synapse, kernel_size: int = 2) -> None:
        super().__init__()
        self.inner = inner
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(F.avg_pool2d(x, self.kernel_size))

    def _pooled(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (in_shape[0], in_shape[1] // self.kernel_size, in_shape[2] // self.kernel_size)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.inner.output_shape(self._pooled(in_shape))

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        # pooling windows do not overlap, so each source neuron reaches exactly what its pooled position reaches
        return _unpool(self.inner.transpose_count(dst, self._pooled(in_shape)), in_shape, self.kernel_size)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        # each pooled source position stands for a k x k window of source neurons, all with non-zero weight
        return self.inner.fanin(self._pooled(in_shape)) * float(self.kernel_size ** 2)

    def maps_zero_to_zero(self) -> bool:
        return self.inner.maps_zero_to_zero()


class FlattenLinear(Synapse):
    """Flatten a feature map and apply a dense layer (the classifier)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)
        self.weight_format = None  # a hwnas.quantize.WeightFormat during quantisation-aware training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.linear.weight
        if self.weight_format is not None:
            from ..quantize import fake_quantize_weight

            weight = fake_quantize_weight(weight, self.weight_format)
        return F.linear(x.flatten(1), weight)

    def output_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.linear.out_features,)

    def transpose_count(self, dst: torch.Tensor, in_shape: tuple[int, ...]) -> torch.Tensor:
        mask = (self.linear.weight.detach() != 0).float().cpu()
        return (dst.float().cpu().flatten() @ mask).reshape(in_shape)

    def fanin(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return (self.linear.weight.detach() != 0).sum(1).float().cpu()


def _unpool(pooled: torch.Tensor, in_shape: tuple[int, ...], k: int) -> torch.Tensor:
    """Spread per-pooled-position values back onto the k x k windows; the floor-cut border gets 0."""
    full = pooled.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
    result = torch.zeros(in_shape)
    result[:, : full.shape[1], : full.shape[2]] = full
    return result
