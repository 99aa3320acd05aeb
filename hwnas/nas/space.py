"""The search space over cells: sampling, mutation, enumeration and validity, each random function taking an
explicit ``numpy.random.Generator`` (the genotype itself is :mod:`hwnas.arch.genotype`)."""

from __future__ import annotations

import itertools

import numpy as np

from ..arch.dense import dense_pair_choices
from ..arch.genotype import PAIRS, Cell, canonical_cell, check_cell, forward_reachable, is_chain, pair_choices
from ..errors import ArchitectureError


class SearchSpace:
    """The cell space: sampling, mutation, enumeration and validity, each random function taking a Generator."""

    def __init__(self, allow_backward: bool = True, chains_only: bool = False, dense: bool = False) -> None:
        self.allow_backward = allow_backward and not chains_only
        self.chains_only = chains_only  # --deployable netx: cells whose edges form one path (see is_chain)
        self.dense = dense  # cells of dense populations (hwnas.arch.dense: linear edges) instead of convolutions
        choices = dense_pair_choices if dense else pair_choices
        self.choices = {pair: choices(pair, self.allow_backward) for pair in PAIRS}
        self._canonical: list[Cell] | None = None

    def nonzero_edges(self) -> Cell:
        """Every non-zero edge any pair can carry: the ops a supernet of this space holds."""
        return tuple(e for pair in PAIRS for e in self.choices[pair] if e.op != "zero")

    def admits(self, cell: Cell) -> bool:
        """True when a cell that reaches node 3 belongs to this space's kind (a chain, when chains only)."""
        return 3 in forward_reachable(cell) and (not self.chains_only or is_chain(cell))

    def is_valid(self, cell: Cell) -> bool:
        """True when the cell passes :func:`check_cell`, uses only this space's edges and is of its kind."""
        try:
            check_cell(cell)
        except ArchitectureError:
            return False
        return all(edge in self.choices[(edge.src, edge.dst)] for edge in cell) and self.admits(cell)

    def sample(self, rng: np.random.Generator) -> Cell:
        """A uniformly random canonical cell of the space."""
        cells = self.enumerate()
        return cells[int(rng.integers(len(cells)))]

    def mutate(self, cell: Cell, rng: np.random.Generator) -> Cell | None:
        """A new valid canonical cell made by changing one pair of ``cell`` (other edges may die with it); None when
        no change of one pair makes another valid cell (a dense cell of one linear edge: its only edge cannot go,
        and any edge added to it is dead)."""
        cell = canonical_cell(cell)
        if not any(self.admits(changed) and canonical_cell(changed) != cell
                   for index, pair in enumerate(PAIRS) for option in self.choices[pair] if option != cell[index]
                   for changed in [cell[:index] + (option,) + cell[index + 1:]]):
            return None
        while True:
            index = int(rng.integers(len(PAIRS)))
            options = [e for e in self.choices[PAIRS[index]] if e != cell[index]]
            new = cell[:index] + (options[rng.integers(len(options))],) + cell[index + 1:]
            if self.admits(new) and canonical_cell(new) != cell:
                return canonical_cell(new)

    def enumerate(self) -> list[Cell]:
        """Every canonical cell of the space once, in a fixed order."""
        if self._canonical is None:
            seen: dict[Cell, None] = {}
            for combo in itertools.product(*(self.choices[pair] for pair in PAIRS)):
                if self.admits(combo):
                    seen.setdefault(canonical_cell(tuple(combo)), None)
            self._canonical = list(seen)
        return list(self._canonical)

    def size(self) -> int:
        """Number of canonical cells (cells that differ in what they compute)."""
        return len(self.enumerate())
