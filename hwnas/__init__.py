"""hwnas: hardware-aware training-free architecture search for spiking neural networks.

The package is importable without Lava; everything that needs Lava lives in ``hwnas.deploy`` and imports
it lazily.
"""

__version__ = "0.1.0"

import importlib
import sys
import types

# The Python API (hwnas.api) under the package's name: hwnas.search(...), hwnas.train(...), hwnas.export(...).
# It is imported by name on first use, never at import time: `import hwnas` (and the command line's help) stays
# free of torch, and the package root stays in the base layer that every module may import.
_API = ("search", "train", "compress", "export", "deploy", "validate", "report", "neurobench_model", "as_splits",
        "SearchResult", "TrainResult", "SpikingClassifier")
_CALLABLE_MODULES = ("search", "train", "compress", "export", "deploy", "report")  # also modules of hwnas: see CallableModule
__all__ = ["__version__", *_API]


class CallableModule(types.ModuleType):
    """A module of hwnas that is also the API function of its name: Python's import system puts the module
    ``hwnas.search`` on the package as ``hwnas.search`` once anything imports it, so the module itself answers
    ``hwnas.search(...)`` by calling :func:`hwnas.api.search` (likewise ``train``, ``export``, ``deploy`` and ``report``)."""

    def __call__(self, *args, **kwargs):
        return getattr(importlib.import_module("hwnas.api"), self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def make_callable(module_name: str) -> None:
    """Make the module ``module_name`` (one of hwnas.search, hwnas.train, hwnas.export, hwnas.deploy, hwnas.report) a :class:`CallableModule`."""
    sys.modules[module_name].__class__ = CallableModule


def __getattr__(name: str):
    if name in _CALLABLE_MODULES:
        return importlib.import_module(f"hwnas.{name}")
    if name in _API:
        return getattr(importlib.import_module("hwnas.api"), name)
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
