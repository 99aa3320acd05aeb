"""Datasets: the embedded default ``digits``, tonic event datasets and torchvision CIFAR, all from local disk.

Every loader returns a :class:`hwnas.data.splits.DatasetSplits`; :func:`hwnas.data.splits.encode_batch` turns a
batch of it into spikes over time. This package imports torch only when data is loaded.
"""

from .registry import DATASETS, load_dataset

__all__ = ["DATASETS", "load_dataset"]
