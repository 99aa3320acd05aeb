"""Search strategies. A strategy only talks to the space (sample, choices, validity) and to scoring callbacks;
every result passes through a cache keyed by text, which is what makes a search resumable.

* ``random`` (SNASNet, Kim et al. ECCV 2022): sample N distinct canonical cells, each in a skeleton drawn from
  those the pre-flight kept, score each, keep the best.
* ``prune`` (LightSNN, Liu et al. 2025): start from a supernet holding every op on every pair; each round,
  score the supernet with each op ablated, and on every pair drop the op whose removal costs the least score
  (importance = fitness(supernet) - fitness(without op), where fitness is the score, less the energy penalty on a
  hardware target); repeat until one op per pair is left. With several skeletons kept, a supernet is pruned in
  each (:func:`run_prune_each`): an energy rule or term that rejects most cells in a wide skeleton would otherwise
  decide which ops survive in a narrow one too.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..arch.genotype import PAIRS, Cell, Edge, canonical_cell, cell_key, forward_reachable
from .rows import Row, sort_key
from .space import SearchSpace

# A scoring callback: cache key, a function that computes the measured fields when they are not cached, and the
# row's own fields (index, kind, cell, ...); it returns the row.
Scorer = Callable[[str, Callable[[], dict], dict], Row]
# Scores a cell in a skeleton (None: the primary one), with the row's own fields (index, kind, ...).
CellScorer = Callable[[Cell, "str | None", dict], Row]


@dataclass
class StrategyResult:
    """The chosen cell, its skeleton (None: the primary one) and the rows (one per scored evaluation)."""

    cell: Cell
    rows: list[Row] = field(default_factory=list)
    skeleton: str | None = None


def random_cells(space: SearchSpace, count: int, rng: np.random.Generator) -> list[Cell]:
    """``count`` distinct valid cells in random order (all of them, shuffled, when count >= the space's size)."""
    everything = space.enumerate()
    if count >= len(everything):
        order = rng.permutation(len(everything))
        return [everything[i] for i in order]
    seen: set[str] = set()
    cells = []
    while len(cells) < count:
        cell = space.sample(rng)
        key = cell_key(cell)
        if key not in seen:
            seen.add(key)
            cells.append(cell)
    return cells


def run_random(space: SearchSpace, count: int, rng: np.random.Generator, cell_row: CellScorer,
               skeletons: Callable[[int], list] = lambda count: [None] * count,
               prefetch: Callable[[list, list], None] | None = None) -> StrategyResult:
    """Score ``count`` random distinct cells, each in the skeleton ``skeletons(count)`` gives it; the best
    usable one wins. ``prefetch(cells, skeletons)``, when given, may score them all at once beforehand (workers)."""
    cells = random_cells(space, count, rng)
    drawn = skeletons(len(cells))
    if prefetch is not None:
        prefetch(cells, drawn)
    rows = [cell_row(cell, skeleton, {"index": index, "kind": "cell"})
            for index, (cell, skeleton) in enumerate(zip(cells, drawn))]
    best = min(rows, key=sort_key)
    return StrategyResult(cells[best.index], rows, drawn[best.index])


def _options_key(options: dict[tuple[int, int], list[Edge]]) -> str:
    return " ".join(cell_key(tuple(options[pair])) for pair in PAIRS)


def _importance(base: float, ablated: float) -> float:
    if math.isinf(base) and math.isinf(ablated):
        return 0.0  # both degenerate: the ablation tells nothing
    return base - ablated


def run_prune(space: SearchSpace, score_supernet: Callable[[dict, Edge | None], Callable[[], dict]],
              cell_row: CellScorer, scorer: Scorer) -> StrategyResult:
    """LightSNN-style pruning by importance; the zero op's ablation changes nothing, so its importance is 0."""
    options = {pair: list(space.choices[pair]) for pair in PAIRS}
    rows = []
    round_number = 0
    while any(len(options[pair]) > 1 for pair in PAIRS):
        round_number += 1
        state = _options_key(options)
        base = scorer(f"super|{state}|", score_supernet(options, None),
                      {"index": len(rows), "kind": "supernet", "round": round_number, "cell": state})
        rows.append(base)
        for pair in PAIRS:
            if len(options[pair]) == 1:
                continue
            ranked = []
            for position, edge in enumerate(options[pair]):
                if edge.op == "zero":
                    importance = 0.0
                else:
                    row = scorer(f"super|{state}|-{edge.key}", score_supernet(options, edge),
                                 {"index": len(rows), "kind": "ablation", "round": round_number, "cell": state,
                                  "ablated": edge.key})
                    importance = _importance(base.fitness, row.fitness)
                    row.importance = importance
                    rows.append(row)
                ranked.append((importance, position, edge))
            for importance, _, edge in sorted(ranked, key=lambda item: (item[0], item[1])):
                trial = {p: [e for e in options[p] if e != edge] for p in PAIRS}
                if _can_stay_valid(trial, space):
                    options = trial
                    break
    cell = canonical_cell(tuple(options[pair][0] for pair in PAIRS))
    final = cell_row(cell, None, {"index": len(rows), "kind": "final", "round": round_number})
    rows.append(final)
    return StrategyResult(cell, rows)


def run_prune_each(space: SearchSpace, skeletons: list[str],
                   callbacks: Callable[[str, int], tuple[Callable, CellScorer, Scorer]]) -> StrategyResult:
    """:func:`run_prune` in each of ``skeletons``, one after another; ``callbacks(skeleton, first_index)`` gives
    :func:`run_prune`'s three callbacks bound to the skeleton, its rows numbered from ``first_index``. The final
    cell that ranks first (:func:`~hwnas.nas.rows.sort_key`) wins; the rows of every pruning are kept."""
    rows: list[Row] = []
    finals = []
    for skeleton in skeletons:
        result = run_prune(space, *callbacks(skeleton, len(rows)))
        rows.extend(result.rows)
        finals.append((result.rows[-1], result.cell, skeleton))
    final, cell, skeleton = min(finals, key=lambda item: sort_key(item[0]))
    return StrategyResult(cell, rows, skeleton)


def _can_stay_valid(options: dict[tuple[int, int], list[Edge]], space: SearchSpace) -> bool:
    """True when some choice of one remaining op per pair is a cell of ``space`` (for the whole space: reaches
    node 3, and forward ops only help reachability; for chains only, at most 3^6 choices are tried)."""
    if not space.chains_only:
        return 3 in forward_reachable(tuple(edge for pair in PAIRS for edge in options[pair]))
    return any(space.admits(combo) for combo in itertools.product(*(options[pair] for pair in PAIRS)))
