"""Target descriptions. A target is data: a TOML file with a ``[target]`` table.

This module reads the part the search needs today (name, description, timing model, weight precision);
the per-core limits and energy coefficients are added by the hardware-model work (issue 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import TargetError

TIMINGS = ("zero-delay", "pipelined")
_FIELDS = {"name": str, "description": str, "timing": str, "weight_bits": int, "sources": list}
_REQUIRED = ("name", "description", "timing")


@dataclass(frozen=True)
class Target:
    """A hardware (or software) target: its name, timing model and weight precision (None: float weights)."""

    name: str
    description: str
    timing: str
    weight_bits: int | None
    sources: tuple[str, ...]
    path: str

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "timing": self.timing,
                "weight_bits": self.weight_bits, "sources": list(self.sources), "path": self.path}


def _targets_folder():
    return resources.files("hwnas.hw_models") / "targets"


def builtin_targets() -> list[str]:
    """Names of the targets shipped with hwnas."""
    return sorted(p.name[:-5] for p in _targets_folder().iterdir() if p.name.endswith(".toml"))


def load_target(name_or_path: str) -> Target:
    """Load a built-in target by name, or a TOML file by path; any problem raises :class:`TargetError`."""
    import tomli

    builtin = _targets_folder() / f"{name_or_path}.toml"
    if builtin.is_file():
        text, path = builtin.read_text(encoding="utf-8"), f"builtin:{name_or_path}"
    else:
        candidate = Path(name_or_path)
        if not candidate.is_file():
            raise TargetError(f"unknown target '{name_or_path}' (built-in: {', '.join(builtin_targets())}; or a path to a .toml file)")
        try:
            text, path = candidate.read_text(encoding="utf-8"), str(candidate)
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"cannot read target file {candidate}: {exc}") from None
    try:
        data = tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        raise TargetError(f"target {path} is not valid TOML: {exc}") from None
    table = data.get("target")
    if not isinstance(table, dict):
        raise TargetError(f"target {path} has no [target] table")
    for key in table:
        if key not in _FIELDS and not isinstance(table[key], dict):
            raise TargetError(f"target {path}: unknown field 'target.{key}' (known: {', '.join(_FIELDS)})")
    for key in _REQUIRED:
        if key not in table:
            raise TargetError(f"target {path}: missing field 'target.{key}'")
    for key, kind in _FIELDS.items():
        if key in table and not (isinstance(table[key], kind) and not isinstance(table[key], bool)):
            raise TargetError(f"target {path}: field 'target.{key}' must be a {kind.__name__}, got {table[key]!r}")
    if table["timing"] not in TIMINGS:
        raise TargetError(f"target {path}: field 'target.timing' must be one of {', '.join(TIMINGS)}, got '{table['timing']}'")
    bits = table.get("weight_bits")
    if bits is not None and not 1 <= bits <= 32:
        raise TargetError(f"target {path}: field 'target.weight_bits' must lie in 1..32, got {bits}")
    return Target(table["name"], table["description"], table["timing"], bits,
                  tuple(str(s) for s in table.get("sources", [])), path)
