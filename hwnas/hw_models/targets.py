"""Target descriptions. A target is data: a TOML file (``targets/*.toml`` or the user's own) with a ``[target]``
table and, for a chip, the ``[chip]``, ``[core]``, ``[energy]`` and ``[time]`` tables below. A software target
has only ``[target]``: no limits, no energy model.

Every problem with a file (missing field, typo'd key, wrong type, negative value) raises :class:`TargetError`
naming the field, e.g. ``target loihi2.toml: field 'energy.synop_j' must be a non-negative number``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

from ..errors import TargetError
from ..sim.graph import TIMINGS

MAX_COUNT = 2 ** 31 - 1  # largest count (chips, cores, neurons, bits) a target file may give


@dataclass(frozen=True)
class ChipSpec:
    """How many cores there are and how they sit on the mesh (for hop counts)."""

    chips: int
    cores_per_chip: int
    cores_per_tile: int
    mesh_tiles_x: int
    mesh_tiles_y: int

    @property
    def cores(self) -> int:
        return self.chips * self.cores_per_chip


@dataclass(frozen=True)
class CoreSpec:
    """Per-core limits: neurons, input and output axons, synaptic memory, and bits one synapse occupies."""

    neurons: int
    fanin_axons: int
    fanout_axons: int
    synapse_memory_bits: int
    synapse_bits: int
    # True when a core stores a convolution's kernel once and shares it among the neurons it holds, instead of
    # one synapse per connection (optional in a target file; default false)
    shared_conv_weights: bool = False


@dataclass(frozen=True)
class EnergySpec:
    """Joules per event: synaptic op, active and inactive neuron update, spike within a tile, mesh hop."""

    synop_j: float
    update_active_j: float
    update_inactive_j: float
    spike_in_tile_j: float
    hop_ew_j: float
    hop_ns_j: float


@dataclass(frozen=True)
class TimeSpec:
    """Seconds per event on one core, per mesh hop, and the barrier synchronisation closing every step."""

    synop_s: float
    update_active_s: float
    update_inactive_s: float
    spike_in_tile_s: float
    hop_ew_s: float
    hop_ns_s: float
    step_sync_s: float


@dataclass(frozen=True)
class DenseCoreSpec:
    """A core of dense populations (a Xylo core): input channels, hidden neurons and output neurons it holds, and
    how many hidden neurons the input may feed and may feed the output (Xylo's input and output expansion
    neurons)."""

    inputs: int
    hidden_neurons: int
    outputs: int
    input_expansion_neurons: int
    output_expansion_neurons: int


_INT_TABLES = {"chip": ChipSpec, "core": CoreSpec}
_FLOAT_TABLES = {"energy": EnergySpec, "time": TimeSpec}
_TARGET_FIELDS = {"name": str, "description": str, "timing": str, "weight_bits": int, "weight_bit_choices": list,
                  "sources": list, "network": str, "arithmetic": str, "rockpool_module": str}
NETWORKS = ("conv", "dense")        # what the search builds: convolutional cells, or dense populations (a Xylo core)
QAT_ARITHMETICS = ("loihi", "xylo")  # the arithmetic quantisation-aware training runs in
_TARGET_REQUIRED = ("name", "description", "timing")
_OPTIONAL_FLAGS = {"core": ("shared_conv_weights",)}  # true/false fields that may be left out


@dataclass(frozen=True)
class Target:
    """A hardware (or software) target. ``chip``/``core``/``energy``/``time`` are None for a software target."""

    name: str
    description: str
    timing: str
    weight_bits: int | None
    sources: tuple[str, ...]
    path: str
    chip: ChipSpec | None = None
    core: CoreSpec | None = None
    energy: EnergySpec | None = None
    time: TimeSpec | None = None
    # the weight precisions a connection may be stored in (compression chooses among them); empty: weight_bits only
    weight_bit_choices: tuple[int, ...] = ()
    network: str = "conv"       # the networks the search builds (NETWORKS)
    dense: DenseCoreSpec | None = None  # a dense core's limits (the optional [dense] table; network "dense" needs it)
    rockpool_module: str | None = None  # a Xylo core: rockpool's package that maps it (rockpool.devices.xylo.<it>)
    arithmetic: str = "loihi"   # the integer arithmetic of quantisation-aware training (QAT_ARITHMETICS)

    @property
    def is_hardware(self) -> bool:
        """True when the target has cores, limits and an energy model."""
        return self.chip is not None

    def to_dict(self) -> dict:
        data = {"name": self.name, "description": self.description, "timing": self.timing,
                "network": self.network, "arithmetic": self.arithmetic, "rockpool_module": self.rockpool_module,
                "weight_bits": self.weight_bits, "weight_bit_choices": list(self.weight_bit_choices),
                "sources": list(self.sources), "path": self.path}
        for table in ("chip", "core", "energy", "time", "dense"):
            spec = getattr(self, table)
            data[table] = None if spec is None else {f.name: getattr(spec, f.name) for f in fields(spec)}
        return data


def _targets_folder():
    return resources.files("hwnas.hw_models") / "targets"


def builtin_targets() -> list[str]:
    """Names of the targets shipped with hwnas."""
    return sorted(p.name[:-5] for p in _targets_folder().iterdir() if p.name.endswith(".toml"))


def builtin_target_text(name: str) -> str:
    """The TOML text of a built-in target (with its source comments)."""
    path = _targets_folder() / f"{name}.toml"
    if not path.is_file():
        raise TargetError(f"unknown target '{name}' (built-in: {', '.join(builtin_targets())})")
    return path.read_text(encoding="utf-8")


def load_target(name_or_path: str) -> Target:
    """Load a built-in target by name, or a TOML file by path; any problem raises :class:`TargetError`."""
    try:
        import tomllib as toml  # Python 3.11+
    except ModuleNotFoundError:
        import tomli as toml  # Python 3.10: tomllib's own backport

    builtin = _targets_folder() / f"{name_or_path}.toml"
    if builtin.is_file():
        text, label = builtin.read_text(encoding="utf-8"), f"{name_or_path}.toml"
    else:
        candidate = Path(name_or_path)
        if candidate.is_dir():
            raise TargetError(f"target '{name_or_path}' is a folder: give a built-in name "
                              f"({', '.join(builtin_targets())}) or a .toml file")
        if not candidate.is_file():
            raise TargetError(f"unknown target '{name_or_path}' (built-in: {', '.join(builtin_targets())}; "
                              "or a path to a .toml file)")
        try:
            text, label = candidate.read_text(encoding="utf-8"), str(candidate)
        except (OSError, UnicodeDecodeError) as exc:
            raise TargetError(f"cannot read target file {candidate}: {exc}") from None
    try:
        data = toml.loads(text)
    except toml.TOMLDecodeError as exc:
        raise TargetError(f"target {label} is not valid TOML: {exc}") from None
    return _parse(data, label, "builtin:" + name_or_path if builtin.is_file() else label)


def _parse(data: dict, label: str, path: str) -> Target:
    known_tables = {"target", "dense", *_INT_TABLES, *_FLOAT_TABLES}
    for key in data:
        if key not in known_tables:
            raise TargetError(f"target {label}: unknown table '[{key}]' (known: {', '.join(sorted(known_tables))})")
    table = data.get("target")
    if not isinstance(table, dict):
        raise TargetError(f"target {label}: missing table '[target]'")
    for key in table:
        if key not in _TARGET_FIELDS:
            raise TargetError(f"target {label}: unknown field 'target.{key}' (known: {', '.join(_TARGET_FIELDS)})")
    for key in _TARGET_REQUIRED:
        if key not in table:
            raise TargetError(f"target {label}: missing field 'target.{key}'")
    for key, kind in _TARGET_FIELDS.items():
        if key in table and (isinstance(table[key], bool) or not isinstance(table[key], kind)):
            raise TargetError(f"target {label}: field 'target.{key}' must be a {kind.__name__}, got {table[key]!r}")
    if table["timing"] not in TIMINGS:
        raise TargetError(f"target {label}: field 'target.timing' must be one of {', '.join(TIMINGS)}, "
                          f"got '{table['timing']}'")
    for key, allowed in (("network", NETWORKS), ("arithmetic", QAT_ARITHMETICS)):
        if key in table and table[key] not in allowed:
            raise TargetError(f"target {label}: field 'target.{key}' must be one of {', '.join(allowed)}, "
                              f"got '{table[key]}'")
    bits = table.get("weight_bits")
    if bits is not None and not 2 <= bits <= 32:  # mixed-sign weights: one bit is the sign
        raise TargetError(f"target {label}: field 'target.weight_bits' must lie in 2..32, got {bits}")
    choices = table.get("weight_bit_choices", [])
    if choices and (bits is None or any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= bits
                                        for b in choices)):
        raise TargetError(f"target {label}: field 'target.weight_bit_choices' must list whole numbers of bits in "
                          f"1..weight_bits, got {choices!r}")

    hardware_tables = [*_INT_TABLES, *_FLOAT_TABLES]
    present = [name for name in hardware_tables if name in data]
    specs: dict = {}
    if present:
        missing = [name for name in hardware_tables if name not in data]
        if missing:
            raise TargetError(f"target {label}: missing table '[{missing[0]}]' (a hardware target needs "
                              f"{', '.join('[' + n + ']' for n in hardware_tables)})")
        for name, cls in {**_INT_TABLES, **_FLOAT_TABLES}.items():
            specs[name] = _spec(cls, data[name], name, label, integer=name in _INT_TABLES)
    if "dense" in data:
        if not present:
            raise TargetError(f"target {label}: table '[dense]' needs the hardware tables ([chip], [core], ...)")
        specs["dense"] = _spec(DenseCoreSpec, data["dense"], "dense", label, integer=True)
    if table.get("network") == "dense" and "dense" not in specs:
        raise TargetError(f"target {label}: network 'dense' needs a '[dense]' table (inputs, hidden_neurons, outputs, "
                          "input_expansion_neurons, output_expansion_neurons)")
    return Target(table["name"], table["description"], table["timing"], bits,
                  tuple(str(s) for s in table.get("sources", [])), path, **specs,
                  weight_bit_choices=tuple(sorted(set(choices))), network=table.get("network", "conv"),
                  arithmetic=table.get("arithmetic", "loihi"), rockpool_module=table.get("rockpool_module"))


def _spec(cls, table, section: str, label: str, integer: bool):
    if not isinstance(table, dict):
        raise TargetError(f"target {label}: '{section}' must be a table")
    flags = _OPTIONAL_FLAGS.get(section, ())
    names = [f.name for f in fields(cls) if f.name not in flags]
    for key in table:
        if key not in names and key not in flags:
            raise TargetError(f"target {label}: unknown field '{section}.{key}' (known: {', '.join(names + list(flags))})")
    values = {}
    for key in flags:
        if key in table:
            if not isinstance(table[key], bool):
                raise TargetError(f"target {label}: field '{section}.{key}' must be true or false, got {table[key]!r}")
            values[key] = table[key]
    for key in names:
        if key not in table:
            raise TargetError(f"target {label}: missing field '{section}.{key}'")
        value = table[key]
        if integer:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
                raise TargetError(f"target {label}: field '{section}.{key}' must be a positive integer up to "
                                  f"{MAX_COUNT}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise TargetError(f"target {label}: field '{section}.{key}' must be a finite non-negative number, "
                              f"got {value!r}")
        values[key] = value if integer else float(value)
    spec = cls(**values)
    if isinstance(spec, ChipSpec) and spec.cores_per_chip > spec.cores_per_tile * spec.mesh_tiles_x * spec.mesh_tiles_y:
        raise TargetError(f"target {label}: chip.cores_per_chip {spec.cores_per_chip} exceeds cores_per_tile x "
                          f"mesh_tiles_x x mesh_tiles_y")
    return spec
