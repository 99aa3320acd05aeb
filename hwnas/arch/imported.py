"""``ImportedArchitecture``: a network read from another tool's NIR graph (``hwnas train --from MODEL.nir``), as the
later steps see it: the data it takes (input shape, classes, timesteps, encoding), its timing, and the time step
its source graph was read with. Its structure is the graph itself, which ``model.pt`` keeps beside the trained
weights (:mod:`hwnas.training.imported`). ``architecture_from_dict`` and ``load_architecture`` read either kind of
architecture file: a search's winner or an imported graph."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import ArchitectureError
from ..io_utils import write_json_atomic
from .choices import ENCODINGS, TIMINGS
from .dense import FAMILY as DENSE_FAMILY
from .dense import DenseArchitecture
from .genotype import Architecture, read_architecture_json

FORMAT = "hwnas.imported"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ImportedArchitecture:
    """What a trained network read from a NIR graph is trained and deployed with (see the module docstring)."""

    source: str                   # the graph's file name, for the record
    input_shape: tuple[int, ...]
    num_classes: int
    timesteps: int
    dt_s: float                   # seconds per step the graph's time constants were read with
    encoding: str = "rate"
    timing: str = "pipelined"
    from_scratch: bool = False    # True: trained from new weights, not the graph's

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))
        if not self.input_shape or any(d < 1 for d in self.input_shape):
            raise ArchitectureError(f"input_shape must be positive sizes, got {list(self.input_shape)}")
        for name in ("num_classes", "timesteps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ArchitectureError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.dt_s, bool) or not isinstance(self.dt_s, (int, float)) or not \
                (math.isfinite(self.dt_s) and self.dt_s > 0):
            raise ArchitectureError(f"dt_s must be a positive number of seconds, got {self.dt_s!r}")
        for name, allowed in (("timing", TIMINGS), ("encoding", ENCODINGS)):
            if getattr(self, name) not in allowed:
                raise ArchitectureError(f"{name} '{getattr(self, name)}' is unknown (choose {', '.join(allowed)})")

    @property
    def key(self) -> str:
        """How reports name it: the source graph's file name."""
        return f"imported {self.source}"

    @property
    def skeleton_key(self) -> str:
        return "imported"

    def to_dict(self) -> dict:
        """JSON-ready dict (see :meth:`from_dict`)."""
        return {"format": FORMAT, "version": FORMAT_VERSION, "source": self.source,
                "input_shape": list(self.input_shape), "num_classes": self.num_classes, "timesteps": self.timesteps,
                "dt_s": float(self.dt_s), "encoding": self.encoding, "timing": self.timing,
                "from_scratch": self.from_scratch}

    @classmethod
    def from_dict(cls, data: dict) -> "ImportedArchitecture":
        """Build from :meth:`to_dict`'s form; anything malformed raises :class:`ArchitectureError`."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ArchitectureError("not an imported network's description")
        if data.get("version") != FORMAT_VERSION:
            raise ArchitectureError(f"imported network version {data.get('version')} is not supported (this hwnas "
                                    f"reads {FORMAT_VERSION})")
        fields = ("source", "input_shape", "num_classes", "timesteps", "dt_s", "encoding", "timing", "from_scratch")
        missing = [name for name in fields if name not in data]
        if missing:
            raise ArchitectureError(f"imported network is missing field '{missing[0]}'")
        unknown = sorted(set(data) - {*fields, "format", "version"})
        if unknown:
            raise ArchitectureError(f"imported network has unknown field '{unknown[0]}'")
        if not isinstance(data["input_shape"], list) or not all(isinstance(d, int) for d in data["input_shape"]):
            raise ArchitectureError("imported network 'input_shape' must be a list of integers")
        if not isinstance(data["source"], str) or not isinstance(data["from_scratch"], bool):
            raise ArchitectureError("imported network 'source' must be a name and 'from_scratch' true or false")
        return cls(**{name: data[name] for name in fields})

    def save(self, path: str | Path) -> None:
        """Write as JSON, atomically."""
        write_json_atomic(path, self.to_dict())


def architecture_from_dict(data) -> Architecture | DenseArchitecture | ImportedArchitecture:
    """A searched architecture (convolutional or dense) or an imported network's description, by the dict's
    ``format`` and ``family``."""
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return ImportedArchitecture.from_dict(data)
    if isinstance(data, dict) and data.get("family") == DENSE_FAMILY:
        return DenseArchitecture.from_dict(data)
    return Architecture.from_dict(data)


def load_architecture(path: str | Path) -> Architecture | DenseArchitecture | ImportedArchitecture:
    """Read an architecture file of either kind; unreadable or malformed files raise :class:`ArchitectureError`."""
    data = read_architecture_json(path)
    try:
        return architecture_from_dict(data)
    except ArchitectureError as exc:
        raise ArchitectureError(f"{path}: {exc}") from None


def is_imported(arch) -> bool:
    """True for a network read from another tool's graph."""
    return isinstance(arch, ImportedArchitecture)
