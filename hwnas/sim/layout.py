"""The memory layout a simulation runs in (issue 32).

On the CPU, oneDNN computes a convolution whose input is laid out ``channels_last`` (each pixel's channels side by
side) without converting it to and from its own blocked layout; in the standard layout every call pays those
copies, and a search's evaluation spent three times as long in its convolutions as the same calls take in
``channels_last`` (``bench/search_speed.py --conv-bound``). :class:`~hwnas.sim.network.SpikingNetwork` therefore
keeps image-shaped activity (input, currents, membranes, spikes) in ``channels_last`` on the CPU; the elementwise
operations, the fused neuron kernels (:mod:`hwnas.sim.fused`) and batch-norm follow the layout of what they are
given. Values are the same up to the order of a convolution's float sums: the Loihi arithmetic (whole numbers)
is unchanged, float networks round differently.

The standard layout remains on a GPU, while a graph is traced for ONNX export, and inside :func:`standard_layout`:
the search's zero-cost scores (:class:`hwnas.nas.evaluate.Evaluator`: ATen's channels_last batch-norm rounds batch
statistics otherwise, and by the thread count) and the benchmarks' comparisons.
"""

from __future__ import annotations

import torch

from .switch import ThreadSwitch, tracing

_standard = ThreadSwitch()


def standard_layout():
    """Within the block (``with standard_layout():``, this thread), simulate in the standard (contiguous) layout."""
    return _standard.setting()


def channels_last_applies(inputs: torch.Tensor) -> bool:
    """True when a simulation of ``inputs`` (T, B, C, H, W) runs in ``channels_last``: image-shaped input on the
    CPU, not while tracing a graph and not inside :func:`standard_layout`."""
    if _standard or tracing():
        return False
    return inputs.dim() == 5 and inputs.device.type == "cpu"


def steps_channels_last(inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` (T, B, C, H, W) with the same values, each step ``inputs[t]`` laid out ``channels_last``."""
    return inputs.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def zeros(shape: tuple[int, ...], like: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """Zeros of ``shape`` with ``like``'s dtype and device, laid out ``channels_last`` when asked and ``shape`` is
    four-dimensional."""
    if channels_last and len(shape) == 4:
        return torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=torch.channels_last).zero_()
    return like.new_zeros(shape)


def layout_of(t: torch.Tensor) -> torch.memory_format:
    """``torch.channels_last`` for a four-dimensional tensor laid out that way (and not also contiguous), else
    ``torch.contiguous_format``: the order in which its elements lie in memory (and the fused kernels walk them)."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def batch_rows(x: torch.Tensor) -> torch.Tensor:
    """``x`` (B, ...) as a (B, N) matrix, its neurons in memory order (a view of a ``channels_last`` tensor, not a
    transposing copy): for what does not depend on the neurons' order."""
    if layout_of(x) is torch.channels_last:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return x.reshape(x.shape[0], -1)
