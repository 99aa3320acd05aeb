"""Multi-fidelity refinement: the cheap signal picks the K best candidates, a short real training picks the winner.

A proxy at initialisation may rank cells no better than chance on small spiking networks (``hwnas
proxy-check`` measures it). Refinement keeps the zero-cost score for what it is cheap at, discarding most of
the space, and then trains the K best-fitness candidates for a few epochs each; the winner maximises

    refined fitness = 100 * validation accuracy - w * log2(energy / 1 uJ)

with the same energy weight w as the search's fitness (one doubling of energy costs w accuracy points).
The prune strategy scores only its final cell, so its pool is padded with that cell's single-edge neighbours.
"""

from __future__ import annotations

import math

from .space import Cell, SearchSpace, cell_key
from .strategies import usable

ENERGY_UNIT_J = 1e-6


def neighbours(space: SearchSpace, cell: Cell) -> list[Cell]:
    """Every valid cell that differs from ``cell`` on exactly one node pair, in a fixed order."""
    found = []
    for index, edge in enumerate(cell):
        for option in space.choices[(edge.src, edge.dst)]:
            if option != edge:
                new = cell[:index] + (option,) + cell[index + 1:]
                if space.is_valid(new):
                    found.append(new)
    return found


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


def pad_with_neighbours(rows: list[dict], space: SearchSpace, cell: Cell, k: int, score_row) -> list[dict]:
    """Score ``cell``'s neighbours with ``score_row(cell, index) -> row`` until the pool can hold ``k`` cells."""
    seen = {row["cell"] for row in rows if row["kind"] in ("cell", "final")}
    added = []
    for neighbour in neighbours(space, cell):
        if len(refine_pool(rows + added, k)) >= k:
            break
        if cell_key(neighbour) not in seen:
            added.append(score_row(neighbour, len(rows) + len(added)))
    return added
