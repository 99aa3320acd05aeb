"""Event-camera datasets read with tonic from a local folder and binned to frames (never downloaded).

Expected layout (tonic's own, under ``--data-dir``):

* NMNIST: ``NMNIST/Train/<digit>/*.bin`` and ``NMNIST/Test/<digit>/*.bin`` (N-MNIST 40-bit event files)
* DVSGesture: ``DVSGesture/ibmGestureTrain/userNN_<lighting>/<label>.npy`` and ``.../ibmGestureTest/...``
  (tonic's preprocessed format: rows of x, y, polarity, time in ms)
* POKERDVS: ``POKERDVS/pips_train/<cl|he|di|sp>/*.npy`` and ``POKERDVS/pips_test/...`` (the card pips, 35x35
  sensor; rows of time, x, y, polarity)
* NCALTECH101: ``NCALTECH101/Caltech101/<category>/image_NNNN.bin`` (N-Caltech101's 40-bit event files, as its
  archive unpacks; every category folder is a class, ``BACKGROUND_Google`` included if present). The dataset
  ships no test split: 20% of the recordings test and 10% validate, drawn with the seed. Recordings differ in size
  (up to 240x180 pixels, each shifted to its own corner by tonic): they are framed on a 240x180 sensor.
* CIFAR10DVS: ``CIFAR10DVS/<class>/*.aedat4`` (the ten CIFAR-10 classes, ``airplane`` .. ``truck``, as tonic unpacks
  the dataset's archives: AEDAT 4.0 files of a 128x128 DVS, read with the ``aedat`` package). The dataset ships no
  test split: 10% of each class's recordings test (the 900 / 100 recordings per class SNN papers commonly train and
  test on), drawn with the seed, and 10% of the rest validate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .splits import DatasetSplits, split_indices, stratified_split, with_validation_holdout

VAL_FRACTION = 0.1
NCALTECH101_SENSOR = (240, 180, 2)  # the largest N-Caltech101 recording (width, height, polarities)
TEST_FRACTIONS = {"ncaltech101": 0.2, "cifar10dvs": 0.1}  # of the datasets that ship no test split
STRATIFIED_TEST = ("cifar10dvs",)  # the test split drawn class by class
DEFAULT_FACTORS = {"dvsgesture": 0.25, "ncaltech101": 0.25, "cifar10dvs": 0.25}  # large sensors, downsampled


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

    class NCALTECH101(tonic.datasets.NCALTECH101):
        sensor_size = NCALTECH101_SENSOR  # tonic leaves it None: recordings differ in size

        def _check_exists(self) -> bool:
            return _has_files(Path(self.location_on_system, "Caltech101"), ".bin")

        def download(self) -> None:
            raise DataError(_missing_message(Path(self.location_on_system, "Caltech101"),
                                             "<category>/image_NNNN.bin N-Caltech101 event files"))

    class CIFAR10DVS(tonic.datasets.CIFAR10DVS):
        def _check_exists(self) -> bool:
            return _has_files(Path(self.location_on_system), ".aedat4")

        def download(self) -> None:
            raise DataError(_missing_message(Path(self.location_on_system),
                                             "<class>/*.aedat4 CIFAR10-DVS event files (airplane .. truck)"))

        def __init__(self, save_to: str, transform=None):
            try:
                super().__init__(save_to, transform=transform)
            except KeyError as exc:  # tonic labels a recording by its folder's name
                where = f"a folder {exc}" if exc.args[0] else "no class folder"
                raise DataError(f"{Path(save_to, 'CIFAR10DVS')} holds .aedat4 files in {where}: their folder must be "
                                f"one of CIFAR10-DVS's classes ({', '.join(self.classes)})") from None
            # macOS's resource-fork companions (._name.aedat4) are not recordings
            kept = [not Path(path).name.startswith("._") for path in self.data]
            self.data = [path for path, keep in zip(self.data, kept) if keep]
            self.targets = [label for label, keep in zip(self.targets, kept) if keep]

        def __getitem__(self, index):
            """tonic's reading of one recording, with the decoder's failures as ValueError (a file hwnas cannot
            read) and a missing ``aedat`` package as a DataError."""
            from tonic.io import read_aedat4

            try:
                events = read_aedat4(self.data[index])
            except ImportError:
                raise DataError("CIFAR10-DVS's .aedat4 files are read with the 'aedat' package: pip install aedat") \
                    from None
            except Exception as exc:  # aedat's RuntimeError; tonic's bare Exception for a file without events
                raise ValueError(str(exc) or type(exc).__name__) from None
            events.dtype.names = ["t", "x", "y", "p"]
            return (self.transform(events) if self.transform else events), self.targets[index]

    return {"nmnist": NMNIST, "dvsgesture": DVSGesture, "pokerdvs": POKERDVS, "ncaltech101": NCALTECH101,
            "cifar10dvs": CIFAR10DVS}


def _has_files(folder: Path, suffix: str) -> bool:
    return folder.is_dir() and any(folder.rglob(f"*{suffix}"))


def _missing_message(folder: Path, what: str) -> str:
    return f"no dataset at {folder}: expected {what} there (hwnas never downloads; point --data-dir at the folder that holds it)"


def load_event_splits(name: str, root: str | Path, timesteps: int, seed: int = 0,
                      spatial_factor: float | None = None, max_samples: int | None = None) -> DatasetSplits:
    """Load an event dataset from ``root`` and bin every sample into ``timesteps`` binary frames.

    ``spatial_factor`` downsamples the sensor (default 1 for NMNIST, 0.25 for the 128x128 sensors of DVSGesture and
    CIFAR10-DVS and for N-Caltech101's frame);
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
    factor = spatial_factor if spatial_factor is not None else DEFAULT_FACTORS.get(name, 1.0)
    sensor = cls.sensor_size
    small = (max(1, int(sensor[0] * factor)), max(1, int(sensor[1] * factor)), sensor[2])
    transform = T.Compose([_on_sensor(sensor), T.Downsample(spatial_factor=factor),
                           T.ToFrame(sensor_size=small, n_time_bins=timesteps)])

    def read(dataset, indices, label_of, what: str) -> tuple[torch.Tensor, torch.Tensor]:
        if len(indices) == 0:
            raise DataError(f"dataset '{name}' at {root} has no {what} samples")
        frames, labels = [], []
        for index in indices:
            try:
                events, label = dataset[int(index)]
            except (ValueError, OSError, IndexError) as exc:
                raise DataError(f"cannot read {dataset.data[int(index)]}: {exc}") from None
            if getattr(events, "dtype", None) is not None and events.dtype.names:
                # no event on the sensor: tonic's transforms hand the empty recording back unframed
                events = np.zeros((timesteps, small[2], small[1], small[0]), np.uint8)
            frames.append(np.minimum(np.asarray(events), 1).astype(np.uint8))
            labels.append(label_of(label))
        # tonic's frames are (T, polarity, H, W) already in channel-first order
        return torch.from_numpy(np.stack(frames)), torch.tensor(labels, dtype=torch.long)

    def capped(count: int) -> np.ndarray:
        order = np.random.default_rng(seed).permutation(count)  # a seeded subset when capped
        return order[:max_samples] if max_samples is not None else np.arange(count)

    if name in TEST_FRACTIONS:  # one pool of recordings: the test and validation splits are drawn from it
        dataset = _in_path_order(cls(str(root), transform=transform))
        categories = sorted(set(dataset.targets))
        if len(categories) < 2:
            raise DataError(f"dataset '{name}' at {root} needs at least 2 category folders, found "
                            f"{len(categories)}")
        if name in STRATIFIED_TEST:
            rest, test_index = stratified_split(dataset.targets, TEST_FRACTIONS[name], seed)
            keep, val, _ = split_indices(len(rest), (VAL_FRACTION, 0.0), seed)
            train_index, val_index = rest[keep], rest[val]
        else:
            train_index, val_index, test_index = split_indices(len(dataset), (VAL_FRACTION, TEST_FRACTIONS[name]),
                                                               seed)
        found = name == "ncaltech101"  # its classes are the categories found; CIFAR10-DVS's ten are tonic's numbers
        label_of = categories.index if found else int
        cap = (lambda index: index) if max_samples is None else (lambda index: index[:max_samples])
        train = read(dataset, cap(train_index), label_of, "train")
        val = read(dataset, cap(val_index), label_of, "validation")
        test = read(dataset, cap(test_index), label_of, "test")
        return DatasetSplits(name=name, kind="frames", train_x=train[0], train_y=train[1], val_x=val[0],
                             val_y=val[1], test_x=test[0], test_y=test[1],
                             num_classes=len(categories) if found else len(cls.classes))
    train_set, test_set = (_in_path_order(cls(str(root), train=train, transform=transform)) for train in (True, False))
    return with_validation_holdout(name, "frames", read(train_set, capped(len(train_set)), int, "train"),
                                   read(test_set, capped(len(test_set)), int, "test"), len(cls.classes),
                                   VAL_FRACTION, seed)


def _in_path_order(dataset):
    """``dataset`` with its recordings sorted by path: tonic lists a folder's files in the file system's order, which
    differs between machines, and the seed's splits and ``max_samples`` subsets are drawn by position. (tonic's
    POKERDVS keeps the recordings themselves, not their paths: it stays in tonic's order.)"""
    if not all(isinstance(entry, str) for entry in dataset.data):
        return dataset
    pairs = sorted(zip(dataset.data, dataset.targets), key=lambda pair: str(pair[0]))
    dataset.data, dataset.targets = [path for path, _ in pairs], [label for _, label in pairs]
    return dataset


def _on_sensor(sensor: tuple[int, int, int]):
    """A tonic transform that drops events outside ``sensor`` (width, height, polarities): a recording larger than
    the frame keeps what falls inside it."""
    width, height, _ = sensor

    def keep_inside(events: np.ndarray) -> np.ndarray:
        return events[(events["x"] >= 0) & (events["x"] < width) & (events["y"] >= 0) & (events["y"] < height)]
    return keep_inside
