"""Row-sequential images (issue 34): an image read one row per step, each column an input channel carrying the
pixel's intensity as a spike count (0..15, what one Xylo input channel delivers per step), the standard sequential
benchmark for a recurrent network on a chip with few inputs.

``<image dataset>-rows`` (``digits-rows``, ``mnist-rows``, ...) loads the image dataset and reads it so, in as many
rows as the run has timesteps (as an event dataset is binned into that many frames) and at most 16 columns, so
that a row fits Xylo's 16 input channels: an image of another size is resized (area averaging) to timesteps x
min(width, 16) first. 8x8 digits at 8 timesteps are read as they are; MNIST at 16 timesteps is 16x16. The result
is frame data (N, rows, columns, 1, 1): every simulator and backend of hwnas reads it as it reads event frames.
"""

from __future__ import annotations

import torch

from .splits import DatasetSplits

MAX_CHANNELS = 16
MAX_COUNT = 15
ROW_SOURCES = ("digits", "mnist", "fashionmnist", "kmnist")


def row_sequential(splits: DatasetSplits, steps: int) -> DatasetSplits:
    """``splits`` (static, one channel) read one row per step in ``steps`` rows: (N, steps, columns, 1, 1) uint8
    spike counts."""
    from ..errors import DataError

    if splits.kind != "static" or splits.input_shape[0] != 1:
        raise DataError(f"{splits.name} cannot be read row by row: it is not a one-channel image dataset")

    def rows(x: torch.Tensor) -> torch.Tensor:
        size = (steps, min(x.shape[-1], MAX_CHANNELS))
        if tuple(x.shape[-2:]) != size:
            x = torch.nn.functional.interpolate(x.float(), size=size, mode="area")
        counts = torch.round(x.float().clamp(0.0, 1.0) * MAX_COUNT).to(torch.uint8)
        return counts[:, 0].unsqueeze(-1).unsqueeze(-1)  # (N, rows, columns, 1, 1)

    return DatasetSplits(name=f"{splits.name}-rows", kind="frames", train_x=rows(splits.train_x),
                         train_y=splits.train_y, val_x=rows(splits.val_x), val_y=splits.val_y,
                         test_x=rows(splits.test_x), test_y=splits.test_y, num_classes=splits.num_classes)
