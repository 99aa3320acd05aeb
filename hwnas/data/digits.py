"""The embedded default dataset: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import torch

from .splits import DatasetSplits, split_indices

# Fractions of the 1,797 images held out for validation and test; the rest trains.
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15


def load_digits_splits(seed: int = 0) -> DatasetSplits:
    """Load ``sklearn.datasets.load_digits`` as (N, 1, 8, 8) intensities in [0, 1], split with ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    train, val, test = split_indices(len(labels), (VAL_FRACTION, TEST_FRACTION), seed)
    return DatasetSplits(
        name="digits", kind="static",
        train_x=images[train], train_y=labels[train],
        val_x=images[val], val_y=labels[val],
        test_x=images[test], test_y=labels[test],
        num_classes=10,
    )
