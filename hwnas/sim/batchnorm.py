"""Batch-norm for a network simulated step by step: the training forward computes what evaluation and the
folded, deployed convolution compute.

Plain ``nn.BatchNorm2d`` called once per step does not. While training it normalises each step's batch by that
step's own statistics (after the input ends, in the network's latency steps, a convolution of silent input has zero
variance and maps to ``beta``); its running statistics are updated at every call with momentum 0.1, so they are
weighted towards the last steps of every batch, the latency steps, whose zeros pull the mean and the variance down.
Evaluation normalises every step by those running statistics, and the chip adds one affine map (the folded
batch-norm) at every step: neither computes what training computed. On 28x28 MNIST (issue 30) the float network's
validation accuracy fell while its training loss kept falling, and it scored well again once its batch-norm was
folded into the convolutions.

:class:`StepBatchNorm2d` keeps ``nn.BatchNorm2d``'s parameters and state (checkpoints, folding and the supernet's
re-estimation read it as before) and changes two things:

* Its running statistics are the pooled statistics of all the steps of one forward pass (every element of every
  step weighs the same), committed once per pass (:meth:`StepBatchNorm2d.commit`, called by
  :class:`~hwnas.sim.network.SpikingNetwork` at the end of a training pass); the first pass sets them.
* Once running statistics exist, the training forward normalises by them: batch renormalisation (Ioffe,
  "Batch Renormalization", NeurIPS 2017) with its correction factors r and d unclipped, so the forward equals the
  evaluation's and the folded convolution's at every step while the gradient still flows through the step's batch
  statistics. The first pass of a fresh layer normalises by each step's batch statistics, as plain batch-norm does.

Both are switched on by :meth:`StepBatchNorm2d.pool_steps` (``hwnas train``, the search's short trainings:
:func:`hwnas.training.loop.train_epochs`, through :meth:`~hwnas.sim.network.SpikingNetwork.pool_batchnorm_steps`); until
then the module is ``nn.BatchNorm2d`` exactly, so an untrained network scored by the search, and the supernet's
re-estimated statistics, compute what they computed before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import fused


class StepBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training forward normalises by the pooled running statistics of earlier forward
    passes (see the module docstring); evaluation is ``nn.BatchNorm2d``'s."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.pooled = False  # see pool_steps
        self.start_pass()

    def pool_steps(self) -> None:
        """From now on: running statistics pooled per forward pass, and a training forward that normalises by them
        once they exist (see the module docstring)."""
        self.pooled = True

    def start_pass(self) -> None:
        """Forget the statistics gathered since the last commit (a pass that did not finish)."""
        self._count = 0
        self._sum: torch.Tensor | None = None
        self._sum_of_squares: torch.Tensor | None = None

    @property
    def renormalising(self) -> bool:
        """True when a training forward normalises by the running statistics (a pass has been committed)."""
        return self.pooled and self.track_running_stats and int(self.num_batches_tracked) > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if not self.training or not self.pooled:
            return super().forward(x)
        if self.renormalising:
            y, mean, var = _Renormalised.apply(x, self.weight, self.bias, self.running_mean, self.running_var,
                                               self.eps)
        else:
            y, mean, invstd = torch.native_batch_norm(x, self.weight, self.bias, None, None, True, 0.0, self.eps)
            var = invstd.detach().double() ** -2 - self.eps
        self._gather(mean.detach(), var.detach(), x.numel() // x.shape[1])
        return y

    def _gather(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """Add one step's batch statistics (biased variance) to this pass's sums."""
        step_sum = mean.double() * count
        step_squares = (var.double() + mean.double() ** 2) * count
        self._count += count
        self._sum = step_sum if self._sum is None else self._sum + step_sum
        self._sum_of_squares = step_squares if self._sum_of_squares is None else self._sum_of_squares + step_squares

    def commit(self) -> None:
        """Fold the statistics of the pass that just ended into the running statistics (momentum per pass; a
        cumulative average when ``momentum`` is None; the first pass sets them)."""
        if self._count == 0 or not self.track_running_stats:
            self.start_pass()
            return
        with torch.no_grad():
            mean = self._sum / self._count
            var = (self._sum_of_squares / self._count - mean ** 2).clamp_min(0.0)
            if self._count > 1:
                var = var * (self._count / (self._count - 1))  # unbiased, as nn.BatchNorm2d keeps it
            tracked = int(self.num_batches_tracked)
            factor = 1.0 / (tracked + 1) if self.momentum is None or tracked == 0 else self.momentum
            self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1 - factor).add_(var.to(self.running_var.dtype), alpha=factor)
            self.num_batches_tracked.add_(1)
        self.start_pass()


class _Renormalised(torch.autograd.Function):
    """Batch renormalisation with unclipped r and d: the output is ``weight * (x - running mean) / running std +
    bias`` (one multiply-add per element), the gradient that of batch-norm with scale ``weight * r`` and shift
    ``bias + weight * d`` (r, d held constant), computed by ATen's fused batch-norm backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):  # type: ignore[override]
        var, mean = batch_statistics(x)
        running_std = torch.sqrt(running_var + eps)
        r = torch.sqrt(var + eps) / running_std
        d = (mean - running_mean) / running_std
        scale = weight / running_std
        y = x * scale.reshape(1, -1, 1, 1) + (bias - scale * running_mean).reshape(1, -1, 1, 1)
        ctx.save_for_backward(x, weight, mean, torch.rsqrt(var + eps), r, d)
        ctx.eps = eps
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, grad_y, _grad_mean, _grad_var):  # type: ignore[override]
        x, weight, mean, invstd, r, d = ctx.saved_tensors
        layout = torch.channels_last if not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last) \
            else torch.contiguous_format
        grad_x, grad_scale, grad_shift = torch.ops.aten.native_batch_norm_backward(
            grad_y.contiguous(memory_format=layout), x, weight * r, None, None, mean, invstd, True, ctx.eps,
            [True, True, True])
        return grad_x, r * grad_scale + d * grad_shift, grad_shift, None, None, None


def batch_statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Biased variance and mean per channel of ``x`` (N, C, H, W), from sums accumulated in float64. On the CPU
    ``torch.var_mean`` over these dimensions takes as long as the convolution before it (measured by
    bench/train_speed.py); two float64 sums take a twentieth of that, and one pass of a fused kernel
    (:func:`hwnas.sim.fused.channel_sums`, whose squares are exact) less again, without a float64 copy of ``x``.
    float64 keeps ``E[x^2] - mean^2`` exact to float32's precision of ``x^2``."""
    count = x.numel() // x.shape[1]
    if fused.applies(x):
        total, squares = fused.channel_sums(x)
    else:
        total = torch.sum(x, dim=(0, 2, 3), dtype=torch.float64)
        squares = torch.sum(x * x, dim=(0, 2, 3), dtype=torch.float64)
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0.0)
    return var.to(x.dtype), mean.to(x.dtype)
