"""Timestep search (LitE-SNN's compressive timestep search, Liu et al., IJCAI 2024): learnable weights over the
candidate numbers of timesteps, decoded to one T.

The weights are a softmax over one logit per candidate T; compression weighs each candidate's loss (cross-entropy
plus its bit-weighted synaptic operations) by them, so the weight moves to the T whose accuracy and cost balance
best. The authors' code keeps the weights uniform for warm-up epochs and uses the softmax the same way; hwnas
decodes the arg-max (ties: the larger T, so an untrained choice keeps the trained T).
"""

from __future__ import annotations

import torch
from torch import nn

from .compconv import decode_choice


class TimestepChoice(nn.Module):
    """Softmax weights over the candidate timesteps ``candidates`` (increasing)."""

    def __init__(self, candidates) -> None:
        super().__init__()
        self.candidates = tuple(int(t) for t in candidates)
        if not self.candidates or list(self.candidates) != sorted(set(self.candidates)) or self.candidates[0] < 1:
            raise ValueError(f"timestep candidates must be increasing positive integers, got {self.candidates}")
        self.logits = nn.Parameter(torch.zeros(len(self.candidates)))

    def probabilities(self) -> torch.Tensor:
        """The weight of each candidate T."""
        return torch.softmax(self.logits, 0)

    def decoded(self) -> int:
        """The chosen T: the candidate of largest weight (ties: the larger T)."""
        return decode_choice(self.logits, self.candidates, prefer="largest")
