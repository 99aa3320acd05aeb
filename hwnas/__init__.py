"""hwnas: hardware-aware architecture search for spiking neural networks, carried onto neuromorphic chips.

The verbs of the Python API are plain functions of :mod:`hwnas.api`, re-exported here::

    import hwnas
    found = hwnas.search("digits", target="loihi2")
    trained = hwnas.train(found)

They are imported on first use, never at import time, so that ``import hwnas`` (and the command line's help) stays
free of torch and Lava. The modules are nouns: :mod:`hwnas.nas` (the search), :mod:`hwnas.training`,
:mod:`hwnas.compression`, :mod:`hwnas.formats` (NIR, ONNX, netx), :mod:`hwnas.backends` (Lava, Norse),
:mod:`hwnas.html_report`; docs/ARCHITECTURE.md draws their layers. No module of hwnas imports this one.
"""

import importlib

from .version import __version__

_API = ("search", "train", "compress", "export", "deploy", "validate", "report", "neurobench_model", "as_splits",
        "SearchResult", "TrainResult", "SpikingClassifier")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module("hwnas.api"), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
