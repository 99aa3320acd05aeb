"""One typed row per scored evaluation of a search: what ``search.csv`` holds and what the strategies rank.

A row is a candidate cell in one skeleton (``kind`` ``cell``, or ``final`` for the prune strategy's last cell), a supernet
(``supernet``) or a supernet with one op switched off (``ablation``). The measured fields come from the
evaluation (cached in the checkpoint), the hardware fields from the target's mapping and energy model (None on a
target without one), ``fitness`` from both; ``rank``, ``preselect_rank``, the ``screen_*`` and the ``refine_*`` fields are
filled in later.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

# What the evaluation of one network measures (the cached part of a row).
MEASURED = ("score", "accuracy", "degenerate", "reason", "silent_share", "firing_rate", "spikes_per_sample", "synops_per_sample",
            "neurons", "latency_steps", "seconds", "energy_j", "cores", "step_time_s", "feasible", "rule", "violation")
CSV_COLUMNS = ("index", "kind", "round", "cell", "skeleton", "ablated", "score", "accuracy", "degenerate", "reason", "energy_j", "cores",
               "feasible", "rule", "violation", "fitness", "importance", "firing_rate", "silent_share",
               "spikes_per_sample", "synops_per_sample", "neurons", "latency_steps", "step_time_s", "seconds", "rank",
               "preselect_rank", "screen_accuracy", "screen_fitness", "refine_epochs", "refine_accuracy", "refine_energy_j", "refine_latency_s",
               "refine_fitness")
_FLOAT_COLUMNS = ("score", "accuracy", "fitness", "importance", "energy_j", "step_time_s", "firing_rate", "silent_share",
                  "spikes_per_sample", "synops_per_sample", "seconds", "screen_accuracy", "screen_fitness",
                  "refine_accuracy", "refine_energy_j", "refine_latency_s", "refine_fitness")


@dataclass
class Row:
    """One scored evaluation (see the module docstring)."""

    index: int
    kind: str
    cell: str
    score: float
    degenerate: bool
    fitness: float
    skeleton: str = ""   # Architecture.skeleton_key of the skeleton the cell was built in
    accuracy: float | None = None  # validation accuracy with the supernet's weights (evolution)
    reason: str = ""
    round: int | None = None
    ablated: str | None = None
    silent_share: float | None = None
    firing_rate: float | None = None
    spikes_per_sample: float | None = None
    synops_per_sample: float | None = None
    neurons: int | None = None
    latency_steps: int | None = None
    seconds: float | None = None
    energy_j: float | None = None
    cores: int | None = None
    step_time_s: float | None = None
    feasible: bool | None = None
    rule: str | None = None
    violation: str | None = None
    importance: float | None = None
    rank: int | None = None  # the search's final order: the refinement's places first (its winner is 1)
    preselect_rank: int | None = None  # the order that chose which candidates to refine (screening, else fitness)
    screen_accuracy: float | None = None  # validation accuracy after the screening rung's fraction of an epoch
    screen_fitness: float | None = None
    refine_epochs: int | None = None
    refine_accuracy: float | None = None
    refine_energy_j: float | None = None
    refine_latency_s: float | None = None  # time per inference on the target with the trained activity
    refine_fitness: float | None = None

    @property
    def usable(self) -> bool:
        """A candidate that may win: its score is healthy and it fits the target (and the user's budgets)."""
        return not self.degenerate and self.feasible is not False

    @property
    def is_candidate(self) -> bool:
        """A cell (not a supernet evaluation)."""
        return self.kind in ("cell", "final")

    def to_dict(self) -> dict:
        """All fields, JSON-ready."""
        return asdict(self)

    def csv_fields(self) -> dict:
        """The CSV columns as text: floats with 6 significant digits, infinities spelled out, flags as 0/1."""
        formatted = {name: getattr(self, name) for name in CSV_COLUMNS}
        for key in _FLOAT_COLUMNS:
            value = formatted[key]
            if isinstance(value, float):
                formatted[key] = "-inf" if value == -math.inf else ("inf" if value == math.inf else f"{value:.6g}")
        formatted["degenerate"] = int(bool(self.degenerate))
        if self.feasible is not None:
            formatted["feasible"] = int(bool(self.feasible))
        return formatted


ROW_FIELDS = frozenset(f.name for f in fields(Row))


def skeleton_suffix(skeleton: str, primary: str) -> str:
    """What a checkpoint key adds for a candidate in ``skeleton``: nothing for the primary one."""
    return "" if skeleton == primary else f"|{skeleton}"


def sort_key(row: Row) -> tuple:
    """Rank rows best first: usable before unusable, then higher fitness, then earlier index."""
    return (not row.usable, -row.fitness if row.usable else 0.0, row.index)
