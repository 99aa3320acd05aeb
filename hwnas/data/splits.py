"""The dataset container shared by all loaders, and spike encoding of its samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import OptionError

ENCODINGS = ("rate", "direct")


@dataclass
class DatasetSplits:
    """Train/validation/test tensors of one dataset.

    ``kind == "static"``: x has shape (N, C, H, W) with values in [0, 1], encoded to spikes per batch.
    ``kind == "frames"``: x has shape (N, T, C, H, W), already binned event frames (binary spikes, uint8).
    """

    name: str
    kind: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one input frame."""
        return tuple(int(d) for d in self.train_x.shape[-3:])  # type: ignore[return-value]

    @property
    def frames(self) -> int | None:
        """Number of time bins of an event dataset, None for static data."""
        return int(self.train_x.shape[1]) if self.kind == "frames" else None

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x, y)`` of the split ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise OptionError(f"unknown split '{name}' (choose train, val or test)")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def summary(self) -> dict:
        """Sizes and shapes, for reports."""
        return {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "train": int(self.train_x.shape[0]),
            "val": int(self.val_x.shape[0]),
            "test": int(self.test_x.shape[0]),
        }


def split_indices(n: int, fractions: tuple[float, float], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train/val/test by the val and test fractions."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(fractions[0] * n))
    n_test = int(round(fractions[1] * n))
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the rest and of ``fraction`` of each class's samples (rounded), drawn with ``seed``: a held-out
    split in the classes' proportions."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        held.append(members[:int(round(fraction * len(members)))])
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    return np.setdiff1d(np.arange(len(labels)), held), held


def with_validation_holdout(name: str, kind: str, train: tuple[torch.Tensor, torch.Tensor],
                            test: tuple[torch.Tensor, torch.Tensor], num_classes: int, fraction: float,
                            seed: int) -> DatasetSplits:
    """Splits of a dataset that ships train and test only: ``fraction`` of train, drawn with ``seed``, validates."""
    keep, val, _ = split_indices(len(train[1]), (fraction, 0.0), seed)
    return DatasetSplits(name=name, kind=kind, train_x=train[0][keep], train_y=train[1][keep],
                         val_x=train[0][val], val_y=train[1][val], test_x=test[0], test_y=test[1],
                         num_classes=num_classes)


def encode_batch(x: torch.Tensor, kind: str, timesteps: int, encoding: str,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Turn a batch into network input over time, shape (T, B, C, H, W).

    Static data: ``rate`` draws a Bernoulli spike per pixel and step with probability equal to the intensity;
    ``direct`` presents the analog image as input current at every step. Frame data is already spikes: its
    T bins are used as they are (``timesteps`` must equal the number of bins).
    """
    if kind == "frames":
        if x.shape[1] != timesteps:
            raise OptionError(f"event data was binned to {x.shape[1]} frames but {timesteps} timesteps were asked")
        return x.transpose(0, 1).float()
    if encoding == "direct":
        return x.float().unsqueeze(0).expand(timesteps, *x.shape).contiguous()
    if encoding == "rate":
        probs = x.float().clamp(0.0, 1.0).unsqueeze(0).expand(timesteps, *x.shape)
        return torch.bernoulli(probs, generator=generator)
    raise OptionError(f"unknown encoding '{encoding}' (choose {', '.join(ENCODINGS)})")


def balanced_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Indices (ascending) of ``count`` samples drawn with ``seed`` so that every class present is represented as
    evenly as its size allows: classes take turns, each giving a sample drawn at random from its own, until
    ``count`` are chosen. All indices when ``count`` covers the split. The first ``count`` samples would not do:
    N-MNIST's test folder, read in order, begins with a thousand zeros."""
    labels = torch.as_tensor(labels).reshape(-1)
    if count >= labels.numel():
        return torch.arange(labels.numel())
    generator = torch.Generator().manual_seed(seed + 15485863)
    queues = []
    for value in torch.unique(labels).tolist():
        members = torch.nonzero(labels == value).reshape(-1)
        queues.append(members[torch.randperm(members.numel(), generator=generator)].tolist())
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count:
        for queue in queues:
            if depth < len(queue) and len(chosen) < count:
                chosen.append(queue[depth])
        depth += 1
    return torch.tensor(sorted(chosen), dtype=torch.long)


def strictly_correct(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per sample, whether its label's score is strictly larger than every other class's: a tie (an output that
    never spikes, or never receives current) is wrong, not the first tied class."""
    scores = torch.as_tensor(scores)
    labels = torch.as_tensor(labels).reshape(-1).to(scores.device).long()
    own = scores.gather(1, labels.reshape(-1, 1))
    others = scores.scatter(1, labels.reshape(-1, 1), float("-inf"))
    return (own.reshape(-1) > others.amax(1)) if scores.shape[1] > 1 else torch.ones_like(labels, dtype=torch.bool)
