"""The search space over cells: sampling, mutation, enumeration and validity, each random function taking an
explicit ``numpy.random.Generator`` (the genotype itself is :mod:`hwnas.arch.genotype`)."""

from __future__ import annotations

import itertools

import numpy as np

from ..arch.genotype import PAIRS, Cell, check_cell, forward_reachable, pair_choices
from ..errors import ArchitectureError


class SearchSpace:
    """The cell space: sampling, mutation, enumeration and validity, each random function taking a Generator."""

    def __init__(self, allow_backward: bool = True) -> None:
        self.allow_backward = allow_backward
        self.choices = {pair: pair_choices(pair, allow_backward) for pair in PAIRS}

    def is_valid(self, cell: Cell) -> bool:
        """True when the cell passes :func:`check_cell` and uses only this space's edges."""
        try:
            check_cell(cell)
        except ArchitectureError:
            return False
        return all(edge in self.choices[(edge.src, edge.dst)] for edge in cell)

    def sample(self, rng: np.random.Generator) -> Cell:
        """A uniformly random valid cell (rejection sampling over the per-pair choices)."""
        while True:
            cell = tuple(self.choices[pair][rng.integers(len(self.choices[pair]))] for pair in PAIRS)
            if 3 in forward_reachable(cell):
                return cell

    def mutate(self, cell: Cell, rng: np.random.Generator) -> Cell:
        """A new valid cell that differs from ``cell`` on exactly one pair."""
        while True:
            index = int(rng.integers(len(PAIRS)))
            options = [e for e in self.choices[PAIRS[index]] if e != cell[index]]
            new = cell[:index] + (options[rng.integers(len(options))],) + cell[index + 1:]
            if 3 in forward_reachable(new):
                return new

    def enumerate(self) -> list[Cell]:
        """Every valid cell of the space, in a fixed order."""
        cells = (tuple(combo) for combo in itertools.product(*(self.choices[pair] for pair in PAIRS)))
        return [cell for cell in cells if 3 in forward_reachable(cell)]

    def size(self) -> int:
        """Number of valid cells."""
        return len(self.enumerate())
