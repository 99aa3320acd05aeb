"""Compressible weights (LitE-SNN's CompConv, in hwnas' terms): one shared weight tensor per connection with a
learnable pruning mask and a learnable choice among the target's weight precisions.

LitE-SNN (Liu et al., IJCAI 2024, arXiv:2401.14652) shares one weight tensor and one mask among all bit-width
candidates of a convolution and mixes the candidates' quantised weights by softmax-normalised architecture
weights; the authors' code decodes each layer's precision as the arg-max (their candidates 1, 2 and 4 bits). hwnas
keeps that structure and differs where the chip asks for it:

* the quantiser of a candidate b is the chip's own b-bit format (:func:`~hwnas.sim.quantize.fake_quantize_weight`:
  shared exponent, even mantissas, what Lava stores), so the decoded connection is exactly what is deployed;
* the mask is learnt as one magnitude threshold per connection (t = rho * std(W) at the start), the hard mask
  ``|W| > t`` in the forward pass and the gradient of a sigmoid around the threshold (straight through), so how
  much to prune is learnt per connection (LitE-SNN's code keeps a fixed share of weights by learnt scores).

:class:`CompressedWeight` is a ``torch.nn.utils.parametrize`` parametrisation of an op's weight
(:meth:`~hwnas.sim.ops.base.Synapse.weight_module`), so every op computes with it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..sim.quantize import WeightFormat, fake_quantize_weight

MASK_SOFTNESS = 0.1  # width of the mask's sigmoid, in units of the weight's standard deviation at the start


class CompressedWeight(nn.Module):
    """The weight as compressed: ``sum_b p_b Q_b(W * mask)``, p = softmax of the precision logits."""

    def __init__(self, weight: torch.Tensor, bit_choices: tuple[int, ...]) -> None:
        super().__init__()
        self.bit_choices = tuple(int(b) for b in bit_choices)
        self.formats = [WeightFormat(bits=b) for b in self.bit_choices]
        self.bit_logits = nn.Parameter(torch.zeros(len(self.bit_choices), device=weight.device))
        self.threshold = nn.Parameter(torch.zeros((), device=weight.device))  # rho: t = rho * scale
        nonzero = weight.detach()[weight.detach() != 0]
        scale = nonzero.std() if nonzero.numel() > 1 else weight.detach().abs().max()
        self.register_buffer("scale", scale.clamp(min=1e-8).reshape(()))

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        """1 where a weight is kept (``|W| > t``), with the sigmoid's gradient towards the threshold and weights."""
        margin = (weight.abs() - self.threshold * self.scale) / (MASK_SOFTNESS * self.scale)
        soft = torch.sigmoid(margin)
        hard = (margin > 0).to(weight.dtype)
        return hard + soft - soft.detach()

    def probabilities(self) -> torch.Tensor:
        """The weight of each precision candidate (softmax of the logits)."""
        return torch.softmax(self.bit_logits, 0)

    def expected_bits(self) -> torch.Tensor:
        """Bits per weight under the candidates' weights (differentiable)."""
        return (self.probabilities() * torch.tensor(self.bit_choices, dtype=self.bit_logits.dtype,
                                                    device=self.bit_logits.device)).sum()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        masked = weight * self.mask(weight)
        p = self.probabilities()
        return sum(p[i] * fake_quantize_weight(masked, fmt) for i, fmt in enumerate(self.formats))

    def decoded_bits(self) -> int:
        """The chosen precision: the candidate of largest weight (ties: the most bits)."""
        return decode_choice(self.bit_logits, self.bit_choices, prefer="largest")

    def decoded_mask(self, weight: torch.Tensor) -> torch.Tensor:
        """The kept weights (``|W| > t``) as booleans."""
        return weight.detach().abs() > self.threshold.detach() * self.scale


def decode_choice(logits: torch.Tensor, values: tuple[int, ...], prefer: str) -> int:
    """The value of largest logit; ties go to the ``largest`` or ``smallest`` value."""
    logits = logits.detach().cpu().tolist()
    best = max(logits)
    tied = [value for value, logit in zip(values, logits) if logit == best]
    return max(tied) if prefer == "largest" else min(tied)


def attach(net, bit_choices: tuple[int, ...]) -> dict[str, CompressedWeight]:
    """Parametrise the weight of every active weighted connection of ``net`` (folded) with a
    :class:`CompressedWeight`; returns them by module key."""
    attached = {}
    for conn in net.weighted_connections():
        module = net.synapses[conn.module_key].weight_module()
        parametrization = CompressedWeight(module.weight, bit_choices)
        parametrize.register_parametrization(module, "weight", parametrization)
        attached[conn.module_key] = parametrization
    return attached


def detach_decoded(net, attached: dict[str, CompressedWeight]) -> tuple[dict[str, int], dict[str, torch.Tensor]]:
    """Remove the parametrisations, leaving each connection's original weights with the pruned ones set to zero;
    returns the decoded bits and masks by module key (the caller gives the network those formats)."""
    bits, masks = {}, {}
    for key, parametrization in attached.items():
        module = net.synapses[key].weight_module()
        original = module.parametrizations.weight.original
        mask = parametrization.decoded_mask(original)
        bits[key], masks[key] = parametrization.decoded_bits(), mask.cpu()
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
        with torch.no_grad():
            module.weight.mul_(mask.to(module.weight.dtype))
    net.weights_changed()
    return bits, masks


def keep_pruned_at_zero(net, masks: dict[str, torch.Tensor]) -> list:
    """Zero the gradient of pruned weights during fine-tuning (Adam then never moves them); returns the hooks'
    handles."""
    handles = []
    for key, mask in masks.items():
        weight = net.synapses[key].weight_module().weight
        kept = mask.to(weight.device, weight.dtype)
        handles.append(weight.register_hook(lambda grad, kept=kept: grad * kept))
    return handles
