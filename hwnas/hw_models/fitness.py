"""The hardware-aware fitness of a search candidate.

    fitness = score - energy_weight * log2(energy per inference / 1 uJ)

so ``energy_weight`` is the number of score points one doubling of energy costs. Candidates that break a design
rule of the target, or the user's ``--max-cores`` / ``--max-energy`` budget, are infeasible: recorded with the
rule they broke, never chosen.
"""

from __future__ import annotations

import math

from ..sim.activity import ActivityStats
from .energy import Estimate, estimate_energy
from .mapping import Mapping, map_network
from .rules import ConstraintError
from .targets import Target

ENERGY_REFERENCE_J = 1e-6


def energy_penalty(energy_j: float, weight: float) -> float:
    """``weight * log2(energy_j / 1 uJ)``; 0 when the weight is 0."""
    if weight == 0:
        return 0.0
    return weight * math.log2(max(energy_j, 1e-30) / ENERGY_REFERENCE_J)


def fitness(score: float, energy_j: float | None, weight: float) -> float:
    """Score less the energy penalty (the score alone when no energy is known)."""
    if math.isinf(score) or energy_j is None:
        return score
    return score - energy_penalty(energy_j, weight)


def hardware_terms(net, activity: ActivityStats, target: Target, max_cores: int | None = None,
                   max_energy_j: float | None = None) -> tuple[dict, Mapping, Estimate]:
    """Map ``net`` onto ``target``, estimate the energy of ``activity`` and check every rule and budget.

    Returns the row fields (energy_j, cores, step_time_s, feasible, rule: the first rule broken, violation: every
    violation, separated by "; "), the mapping and the estimate.
    """
    mapping = map_network(net, target)
    estimate = estimate_energy(activity, mapping, target)
    broken = list(mapping.violations)
    for check in (lambda: mapping.check(max_cores) if mapping.feasible else None,
                  lambda: estimate.check_budget(max_energy_j)):
        try:
            check()
        except ConstraintError as exc:
            broken.append(exc)
    rule = broken[0].rule if broken else ""
    violation = "; ".join(str(exc) for exc in broken)
    terms = {
        "energy_j": estimate.energy_j,
        "cores": len(mapping.cores) if mapping.complete else None,
        "step_time_s": estimate.step_time_s,
        "feasible": not violation,
        "rule": rule,
        "violation": violation,
    }
    return terms, mapping, estimate
