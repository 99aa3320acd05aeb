"""Event-camera datasets read with tonic from a local folder and binned to frames (never downloaded).

Expected layout (tonic's own, under ``--data-dir``):

* NMNIST: ``NMNIST/Train/<digit>/*.bin`` and ``NMNIST/Test/<digit>/*.bin`` (N-MNIST 40-bit event files)
* DVSGesture: ``DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy`` and ``.../ibmGestureTest/...``
  (tonic's preprocessed format: rows of x, y, polarity, time in ms)
* POKERDVS: ``POKERDVS/pips_train/<cl|he|di|sp>/*.npy`` and ``POKERDVS/pips_test/...`` (the card pips, 35x35
  sensor; rows of time, x, y, polarity)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .splits import DatasetSplits, with_validation_holdout

VAL_FRACTION = 0.1


def _tonic_classes():
    """Subclasses of tonic's datasets that read the local folder and refuse to download.

    They keep tonic's class names, so tonic's own ``location_on_system`` (``root/<ClassName>``) applies.
    """
    import tonic

    class NMNIST(tonic.datasets.NMNIST):
        def _check_exists(self) -> bool:
            return _has_files(Path(self.location_on_system, self.folder_name), ".bin")

        def download(self) -> None:
            raise DataError(_missing_message(Path(self.location_on_system, self.folder_name),
                                             "<digit>/*.bin N-MNIST event files"))

    class DVSGesture(tonic.datasets.DVSGesture):
        def _check_exists(self) -> bool:
            return _has_files(Path(self.location_on_system, self.folder_name), ".npy")

        def download(self) -> None:
            raise DataError(_missing_message(Path(self.location_on_system, self.folder_name),
                                             "userNN_<lighting>/<label>.npy event files"))

    class POKERDVS(tonic.datasets.POKERDVS):
        def _check_exists(self) -> bool:
            return _has_files(Path(self.location_on_system, self.folder_name), ".npy")

        def _copy_and_extract_local_data(self) -> None:
            raise DataError(_missing_message(Path(self.location_on_system, self.folder_name),
                                             "<cl|he|di|sp>/*.npy event files (rows of t, x, y, p)"))

    return {"nmnist": NMNIST, "dvsgesture": DVSGesture, "pokerdvs": POKERDVS}


def _has_files(folder: Path, suffix: str) -> bool:
    return folder.is_dir() and any(folder.rglob(f"*{suffix}"))


def _missing_message(folder: Path, what: str) -> str:
    return f"no dataset at {folder}: expected {what} there (hwnas never downloads; point --data-dir at the folder that holds it)"


def load_event_splits(name: str, root: str | Path, timesteps: int, seed: int = 0,
                      spatial_factor: float | None = None, max_samples: int | None = None) -> DatasetSplits:
    """Load an event dataset from ``root`` and bin every sample into ``timesteps`` binary frames.

    ``spatial_factor`` downsamples the sensor (default 1 for NMNIST, 0.25 for DVSGesture's 128x128 sensor);
    ``max_samples`` caps the samples read per split (reading tens of thousands of files takes minutes).
    The validation split is 10% of the training files, drawn with ``seed``.
    """
    import tonic.transforms as T

    classes = _tonic_classes()
    if name not in classes:
        raise DataError(f"unknown event dataset '{name}' (choose {', '.join(classes)})")
    if root is None:
        raise DataError(f"dataset '{name}' needs --data-dir, the folder that holds {classes[name].__name__}/")
    if timesteps < 1:
        raise DataError("timesteps must be at least 1")
    cls = classes[name]
    factor = spatial_factor if spatial_factor is not None else (0.25 if name == "dvsgesture" else 1.0)
    sensor = cls.sensor_size
    small = (max(1, int(sensor[0] * factor)), max(1, int(sensor[1] * factor)), sensor[2])
    transform = T.Compose([T.Downsample(spatial_factor=factor), T.ToFrame(sensor_size=small, n_time_bins=timesteps)])

    def read(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        dataset = cls(str(root), train=train, transform=transform)
        count = len(dataset) if max_samples is None else min(len(dataset), max_samples)
        if count == 0:
            raise DataError(f"dataset '{name}' at {root} has no {'train' if train else 'test'} samples")
        order = np.random.default_rng(seed).permutation(len(dataset))[:count] if max_samples else range(count)
        frames, labels = [], []
        for index in order:
            try:
                events, label = dataset[int(index)]
            except (ValueError, OSError, IndexError) as exc:
                raise DataError(f"cannot read {dataset.data[int(index)]}: {exc}") from None
            frames.append(np.minimum(np.asarray(events), 1).astype(np.uint8))
            labels.append(int(label))
        # tonic's frames are (T, polarity, H, W) already in channel-first order
        return torch.from_numpy(np.stack(frames)), torch.tensor(labels, dtype=torch.long)

    return with_validation_holdout(name, "frames", read(True), read(False), len(cls.classes), VAL_FRACTION, seed)
