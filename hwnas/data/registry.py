"""One entry point for every dataset hwnas can read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:
    from .splits import DatasetSplits

DATASETS = {
    "digits": "scikit-learn's bundled 8x8 digits (embedded, no files needed)",
    "mnist": "MNIST via torchvision, from --data-dir/MNIST/raw (tools/fetch-mnist DIR fetches it)",
    "fashionmnist": "Fashion-MNIST via torchvision, from --data-dir/FashionMNIST/raw",
    "kmnist": "Kuzushiji-MNIST via torchvision, from --data-dir/KMNIST/raw",
    "emnist": "EMNIST balanced (47 classes) via torchvision, from --data-dir/EMNIST/raw",
    "svhn": "SVHN cropped digits via torchvision, from --data-dir/{train,test}_32x32.mat",
    "cifar10": "CIFAR-10 via torchvision, from --data-dir/cifar-10-batches-py",
    "cifar100": "CIFAR-100 via torchvision, from --data-dir/cifar-100-python",
    "nmnist": "N-MNIST events via tonic, from --data-dir/NMNIST/{Train,Test}",
    "dvsgesture": "IBM DVS Gesture via tonic, from --data-dir/DVSGesture/ibmGesture{Train,Test}",
    "pokerdvs": "POKER-DVS card pips via tonic, from --data-dir/POKERDVS/pips_{train,test}",
    "ncaltech101": "N-Caltech101 events via tonic, from --data-dir/NCALTECH101/Caltech101/<category>",
    "cifar10dvs": "CIFAR10-DVS events via tonic, from --data-dir/CIFAR10DVS/<class>/*.aedat4",
    "digits-rows": "the digits read one row per step, intensities as spike counts 0..15 on 8 channels, resized to "
                   "--timesteps rows: for a Xylo core",
    "mnist-rows": "MNIST resized to --timesteps rows of 16 columns, read one row per step (16x16 at --timesteps "
                  "16): for a Xylo core",
    "fashionmnist-rows": "Fashion-MNIST as mnist-rows",
    "kmnist-rows": "Kuzushiji-MNIST as mnist-rows",
}
EVENT_DATASETS = ("nmnist", "dvsgesture", "pokerdvs", "ncaltech101", "cifar10dvs")


def load_dataset(name: str, data_dir: str | Path | None = None, timesteps: int = 8, seed: int = 0,
                 max_samples: int | None = None) -> "DatasetSplits":
    """Load dataset ``name`` (see :data:`DATASETS`); event data is binned into ``timesteps`` frames."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}' (choose {', '.join(DATASETS)})")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise DataError(f"--data-dir {data_dir} is not a folder")
    if name.endswith("-rows"):  # hwnas.data.rows: an image dataset read one row per step
        from .rows import row_sequential

        return row_sequential(load_dataset(name[:-len("-rows")], data_dir, timesteps, seed, max_samples), timesteps)
    if name == "digits":
        from .digits import load_digits_splits

        return load_digits_splits(seed)
    if name in EVENT_DATASETS:
        from .events import load_event_splits

        return load_event_splits(name, data_dir, timesteps, seed, max_samples=max_samples)
    from .vision import load_image_splits

    return load_image_splits(name, data_dir, seed, max_samples=max_samples)
