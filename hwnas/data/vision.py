"""Image datasets read with torchvision from a local folder in torchvision's own layout (never downloaded).

Expected under ``--data-dir`` (what torchvision's ``download=True`` would have left there):

* mnist, fashionmnist, kmnist: ``MNIST/raw/``, ``FashionMNIST/raw/``, ``KMNIST/raw/`` holding the four
  uncompressed IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (``tools/fetch-mnist`` lays out MNIST)
* emnist: ``EMNIST/raw/emnist-balanced-{train,test}-{images-idx3,labels-idx1}-ubyte`` (the balanced split, 47
  classes; images as torchvision reads them, i.e. transposed like the original files)
* svhn: ``train_32x32.mat`` and ``test_32x32.mat`` (the cropped digits; needs scipy)
* cifar10, cifar100: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
  ``cifar-100-python/{train,test,meta}`` (the pickled batches of the official archives, as torchvision unpacks them)

Checksums of the official archives are not checked, so converted or subset copies load too; a file that is
present but unreadable is a one-line :class:`~hwnas.errors.DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .splits import DatasetSplits, with_validation_holdout

VAL_FRACTION = 0.1


def _idx_files(folder: str, prefixes: tuple[str, str] = ("train", "t10k")) -> tuple[str, ...]:
    return tuple(f"{folder}/{p}-{kind}" for p in prefixes for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))


@dataclass(frozen=True)
class ImageDataset:
    """How one torchvision image dataset is found and read."""

    torchvision_class: str
    files: tuple[str, ...]  # relative to --data-dir: what must exist
    classes: int
    layout: str             # the folder layout, as the error message states it
    options: dict = field(default_factory=dict)  # keyword arguments of the torchvision class


IMAGE_DATASETS = {
    "mnist": ImageDataset("MNIST", _idx_files("MNIST/raw"), 10, "MNIST/raw/ with the four IDX files "
                          "(tools/fetch-mnist DIR lays them out)"),
    "fashionmnist": ImageDataset("FashionMNIST", _idx_files("FashionMNIST/raw"), 10,
                                 "FashionMNIST/raw/ with the four IDX files"),
    "kmnist": ImageDataset("KMNIST", _idx_files("KMNIST/raw"), 10, "KMNIST/raw/ with the four IDX files"),
    "emnist": ImageDataset("EMNIST", _idx_files("EMNIST/raw", ("emnist-balanced-train", "emnist-balanced-test")),
                           47, "EMNIST/raw/ with emnist-balanced-{train,test}-* IDX files", {"split": "balanced"}),
    "svhn": ImageDataset("SVHN", ("train_32x32.mat", "test_32x32.mat"), 10, "train_32x32.mat and test_32x32.mat"),
    "cifar10": ImageDataset("CIFAR10", tuple(f"cifar-10-batches-py/{f}" for f in (
        *(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")), 10,
        "torchvision's unpacked 'cifar-10-batches-py' folder"),
    "cifar100": ImageDataset("CIFAR100", tuple(f"cifar-100-python/{f}" for f in ("train", "test", "meta")), 100,
                             "torchvision's unpacked 'cifar-100-python' folder"),
}


def _local_class(spec: ImageDataset):
    """torchvision's class for ``spec``, made to accept files that exist without checking the official MD5s."""
    import torchvision.datasets as tv

    base = getattr(tv, spec.torchvision_class)
    if spec.torchvision_class == "SVHN":
        class LocalSVHN(base):  # type: ignore[valid-type, misc]
            def _check_integrity(self) -> bool:
                return Path(self.root, self.filename).is_file()

        return LocalSVHN
    if spec.torchvision_class in ("CIFAR10", "CIFAR100"):
        class LocalCIFAR(base):  # type: ignore[valid-type, misc]
            def _check_integrity(self) -> bool:
                return all(Path(self.root, self.base_folder, f).is_file() for f, _ in self.train_list + self.test_list)

            def _load_meta(self) -> None:
                import pickle

                path = Path(self.root, self.base_folder, self.meta["filename"])
                with open(path, "rb") as handle:
                    self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
                self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

        return LocalCIFAR
    return base  # the MNIST family's own check is that the uncompressed files exist; its folder is its class name


def _as_images(data, name: str) -> torch.Tensor:
    """(N, C, H, W) intensities in [0, 1] of a torchvision dataset's ``data`` (uint8, HWC, CHW or HW)."""
    array = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    if array.ndim == 3:  # the MNIST family: (N, H, W)
        array = array[:, None]
    elif name.startswith("cifar"):  # CIFAR: (N, H, W, C)
        array = array.transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0


def load_image_splits(name: str, root: str | Path | None, seed: int = 0, max_samples: int | None = None) -> DatasetSplits:
    """Load image dataset ``name`` (see :data:`IMAGE_DATASETS`) from ``root`` as (N, C, H, W) intensities in [0, 1];
    10% of the training split, drawn with ``seed``, validates. ``max_samples`` caps each split (its first ones)."""
    if name not in IMAGE_DATASETS:
        raise DataError(f"unknown image dataset '{name}' (choose {', '.join(IMAGE_DATASETS)})")
    spec = IMAGE_DATASETS[name]
    if root is None:
        raise DataError(f"dataset '{name}' needs --data-dir, the folder that holds {spec.layout}")
    missing = [f for f in spec.files if not Path(root, f).is_file()]
    if missing:
        raise DataError(f"no {name} in {root}: missing {missing[0]} (expected {spec.layout}; hwnas never downloads)")
    cls = _local_class(spec)

    def read(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        split = {"split": "train" if train else "test"} if name == "svhn" else {"train": train}
        try:
            dataset = cls(str(root), download=False, **split, **spec.options)
            data = dataset.data
            labels = np.asarray(dataset.labels if name == "svhn" else dataset.targets)
        except Exception as exc:  # a corrupt file raises anything from UnpicklingError to ValueError
            raise DataError(f"cannot read {name} in {root}: {type(exc).__name__}: {exc}") from None
        if max_samples is not None:
            data, labels = data[:max_samples], labels[:max_samples]
        labels = torch.from_numpy(labels.astype(np.int64))
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= spec.classes):
            raise DataError(f"{name} in {root}: labels span {int(labels.min())}..{int(labels.max())}, expected "
                            f"0..{spec.classes - 1}")
        return _as_images(data, name), labels

    return with_validation_holdout(name, "static", read(True), read(False), spec.classes, VAL_FRACTION, seed)
