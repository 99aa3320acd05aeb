"""Synaptic connections of the spiking network. Each maps the spikes of a source population to input current
of a destination population, and knows its exact non-zero fan-out per source neuron (for synaptic-op counts).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Synapse(nn.Module):
    """Base class: ``forward(spikes) -> current``; ``fanout(in_shape)`` counts non-zero targets per source neuron."""

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        raise NotImplementedError

    def maps_zero_to_zero(self) -> bool:
        """True when silent input gives exactly zero current (no bias term), in the module's current mode."""
        return True


class ConvBN(Synapse):
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

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        mask = (self.conv.weight.detach() != 0).float()
        out = torch.ones(1, mask.shape[0], in_shape[1], in_shape[2], device=mask.device)
        return F.conv_transpose2d(out, mask, padding=self.conv.padding)[0]


class Identity(Synapse):
    """One-to-one connection with weight 1 (the ``skip`` op)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.ones(in_shape)


class SumPool(Synapse):
    """Non-overlapping k x k sum-pooling with weight 1 (into OR neurons, this is max-pooling on spikes)."""

    def __init__(self, kernel_size: int = 2) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        return F.avg_pool2d(x, k) * float(k * k)

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return _pooled_region(in_shape, self.kernel_size)


class AvgPoolThen(Synapse):
    """Average pooling folded into the following connection (linear, so the chip needs no extra layer)."""

    def __init__(self, inner: Synapse, kernel_size: int = 2) -> None:
        super().__init__()
        self.inner = inner
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(F.avg_pool2d(x, self.kernel_size))

    def maps_zero_to_zero(self) -> bool:
        return self.inner.maps_zero_to_zero()

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        k = self.kernel_size
        pooled = (in_shape[0], in_shape[1] // k, in_shape[2] // k)
        inner = self.inner.fanout(pooled).to(torch.float32)
        full = inner.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)
        result = torch.zeros(in_shape)
        result[:, : full.shape[1], : full.shape[2]] = full
        return result


class FlattenLinear(Synapse):
    """Flatten a feature map and apply a dense layer (the classifier)."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x.flatten(1))

    def fanout(self, in_shape: tuple[int, ...]) -> torch.Tensor:
        return (self.linear.weight.detach() != 0).sum(0).float().reshape(in_shape)


def _pooled_region(in_shape: tuple[int, ...], k: int) -> torch.Tensor:
    """1 where a neuron lies inside the floor-divided pooling grid (its spike reaches one pool neuron), else 0."""
    result = torch.zeros(in_shape)
    result[:, : (in_shape[1] // k) * k, : (in_shape[2] // k) * k] = 1.0
    return result
