"""CIFAR-10/100 read with torchvision from a local folder in torchvision's layout (never downloaded).

Expected under ``--data-dir``: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` or
``cifar-100-python/{train,test,meta}`` (the pickled batches of the official archives, as torchvision unpacks them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .splits import DatasetSplits, with_validation_holdout

VAL_FRACTION = 0.1


def _torchvision_class(name: str):
    """torchvision's CIFAR class whose integrity check only requires the files to exist.

    The MD5 check of the official archives is left out so that converted or subset copies load too; a file that
    is present but not a CIFAR pickle still fails, with a one-line error.
    """
    from torchvision.datasets import CIFAR10, CIFAR100

    base = {"cifar10": CIFAR10, "cifar100": CIFAR100}[name]

    class LocalCIFAR(base):  # type: ignore[valid-type, misc]
        def _check_integrity(self) -> bool:
            return all(Path(self.root, self.base_folder, f).is_file() for f, _ in self.train_list + self.test_list)

        def _load_meta(self) -> None:
            import pickle

            path = Path(self.root, self.base_folder, self.meta["filename"])
            if not path.is_file():
                raise DataError(f"no CIFAR metadata file at {path}")
            with open(path, "rb") as handle:
                self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    return LocalCIFAR


def load_cifar_splits(name: str, root: str | Path, seed: int = 0, max_samples: int | None = None) -> DatasetSplits:
    """Load CIFAR-10 or CIFAR-100 from ``root`` as (N, 3, 32, 32) intensities in [0, 1]; 10% of train validates."""
    if name not in ("cifar10", "cifar100"):
        raise DataError(f"unknown CIFAR dataset '{name}'")
    if root is None:
        raise DataError(f"dataset '{name}' needs --data-dir, the folder that holds the CIFAR batches")
    cls = _torchvision_class(name)
    folder = Path(root, cls.base_folder)
    missing = [f for f, _ in cls.train_list + cls.test_list + [(cls.meta["filename"], None)]
               if not Path(folder, f).is_file()]
    if missing:
        raise DataError(f"no {name} at {folder}: missing {missing[0]} (expected torchvision's unpacked "
                        f"'{cls.base_folder}' folder; hwnas never downloads)")

    def read(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            dataset = cls(str(root), train=train, download=False)
        except DataError:
            raise
        except Exception as exc:  # a corrupt pickle raises anything from UnpicklingError to KeyError
            raise DataError(f"cannot read {name} at {folder}: {type(exc).__name__}: {exc}") from None
        data = np.asarray(dataset.data)
        labels = np.asarray(dataset.targets)
        if max_samples is not None:
            data, labels = data[:max_samples], labels[:max_samples]
        images = torch.from_numpy(data).permute(0, 3, 1, 2).float() / 255.0
        return images, torch.from_numpy(labels).long()

    return with_validation_holdout(name, "static", read(True), read(False), 100 if name == "cifar100" else 10,
                                   VAL_FRACTION, seed)
