"""Multi-fidelity refinement: the cheap signal preselects K candidates, short real trainings pick the winner.

A proxy at initialisation may rank cells no better than chance on small spiking networks (``hwnas
proxy-check`` measures it). Refinement keeps the zero-cost score plus the hardware terms for what they are cheap
at, discarding most of the space, then runs successive halving (Jamieson & Talwalkar, AISTATS 2016) on the K
best-fitness candidates: every candidate of a rung is trained for the rung's epochs, the better half by refined
fitness goes on to a rung with twice the epochs, until two are left; the best of the last rung wins.

    refined fitness = 100 * validation accuracy - w * log2(energy / 1 uJ)

where w (``--refine-energy-weight``) is the accuracy points one doubling of energy per inference costs. The
prune strategy scores a single final cell, so its pool also draws random cells from the whole space, scored
like any candidate.
"""

from __future__ import annotations

import math

from .strategies import usable

ENERGY_UNIT_J = 1e-6


def refined_fitness(val_accuracy: float, energy_j: float | None, energy_weight: float) -> float:
    """Short-training accuracy in points minus the energy term of the search's fitness."""
    if energy_j is None or energy_j <= 0 or energy_weight == 0:
        return 100.0 * val_accuracy
    return 100.0 * val_accuracy - energy_weight * math.log2(energy_j / ENERGY_UNIT_J)


def refine_pool(rows: list[dict], k: int) -> list[dict]:
    """The ``k`` usable (non-degenerate, feasible) candidate rows of highest fitness, one per cell."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["kind"] in ("cell", "final") and usable(row):
            if row["cell"] not in best or row["fitness"] > best[row["cell"]]["fitness"]:
                best[row["cell"]] = row
    return sorted(best.values(), key=lambda r: (-r["fitness"], r["index"]))[:k]


def halving_rungs(k: int, epochs: int) -> list[tuple[int, int]]:
    """(candidates, epochs) per rung of successive halving from ``k`` candidates at ``epochs``: halve the field
    and double the epochs until two or fewer are left."""
    rungs = [(k, epochs)]
    while rungs[-1][0] > 2:
        rungs.append((math.ceil(rungs[-1][0] / 2), rungs[-1][1] * 2))
    return rungs


def pool_sample_size(k: int) -> int:
    """Random cells a prune search adds to its pool of ``k`` (the winner alone is no choice to refine)."""
    return 3 * k
