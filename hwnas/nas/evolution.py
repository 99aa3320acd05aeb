"""AutoSNN's spike-aware evolutionary search (Na et al., ICML 2022) over hwnas' cell space.

A one-shot supernet (:mod:`.supernet`) is trained first; then an evolution scores candidates with the weights
they inherit from it: ``population`` random distinct canonical cells, then ``generations`` rounds in which the
``population // 2`` best candidates so far are the parents of ``population`` new ones, each made by mutation
(one pair's op changed, :meth:`SearchSpace.mutate`) or by crossover (each pair's edge from one of two parents),
never a cell already seen (canonical keys). A candidate's score is AutoSNN's spike-aware fitness in accuracy
points, 100 x Acc x (N / N_avg)^lambda (Acc and N, spikes per sample, on the validation split; N_avg from the
supernet's training log); on a hardware target the feasibility rules and the energy term join it as in the
other strategies, with the refinement's weight (accuracy points per doubling of energy).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..arch.genotype import PAIRS, Cell, canonical_cell, cell_key
from .rows import sort_key
from .space import SearchSpace
from .strategies import CellScorer, StrategyResult, random_cells
from .supernet import Supernet, describe_log, spike_aware_fitness

MAX_DRAWS_PER_CHILD = 50


def crossover(first: Cell, second: Cell, rng: np.random.Generator, space: SearchSpace) -> Cell | None:
    """A child taking each pair's edge from one of the two parents at random, canonical; None when it is not a
    cell of ``space`` (e.g. node 3 unreachable, or not a chain in a space of chains)."""
    by_pair = [{(e.src, e.dst): e for e in parent} for parent in (first, second)]
    child = tuple(by_pair[int(rng.integers(2))][pair] for pair in PAIRS)
    return canonical_cell(child) if space.is_valid(child) else None


def run_evolution(space: SearchSpace, rng: np.random.Generator, cell_row: CellScorer, population: int,
                  generations: int) -> StrategyResult:
    """The evolution of the module docstring; ``cell_row`` scores a cell (through the search's cache)."""
    rows, cells, seen = [], {}, set()

    def add(cell: Cell, generation: int) -> None:
        seen.add(cell_key(cell))
        row = cell_row(cell, None, {"index": len(rows), "kind": "cell", "round": generation})
        cells[row.index] = cell
        rows.append(row)

    for cell in random_cells(space, population, rng):
        add(cell, 0)
    parents_count = max(2, population // 2)
    for generation in range(1, generations + 1):
        parents = [cells[row.index] for row in sorted(rows, key=sort_key)[:parents_count]]
        children: list[Cell] = []
        draws = 0
        while len(children) < population and draws < MAX_DRAWS_PER_CHILD * population:
            draws += 1
            if len(parents) > 1 and rng.random() < 0.5:
                a, b = rng.choice(len(parents), size=2, replace=False)
                child = crossover(parents[int(a)], parents[int(b)], rng, space)
            else:
                child = space.mutate(parents[int(rng.integers(len(parents)))], rng)
            if child is None or cell_key(child) in seen or child in children:
                continue
            children.append(child)
        if not children:
            break  # every cell the parents can reach has been scored
        for child in children:
            add(child, generation)
    best = min(rows, key=sort_key)
    return StrategyResult(cells[best.index], rows)


def evolve(config, space: SearchSpace, scorer, splits, supernet_path,
           say: Callable[[str], None]) -> tuple[StrategyResult, dict]:
    """Train (or resume) the supernet, then run the evolution; returns the result and the supernet's log."""
    from ..training.loop import evaluate

    supernet = Supernet(scorer.template, space, config.seed, scorer.evaluator.device)
    supernet.train(splits, config.supernet_epochs, 2e-3, config.batch_size, supernet_path, say)
    spikes_avg = supernet.spikes_avg

    def measure(cell: Cell) -> dict:
        started = time.perf_counter()
        net = supernet.candidate(cell, splits, config.batch_size)
        accuracy, activity = evaluate(net, splits, "val", scorer.template.with_cell(cell), config.seed)
        totals = activity.totals_per_sample()
        result = {
            "score": 100.0 * spike_aware_fitness(accuracy, totals["spikes"], spikes_avg, config.spike_lambda),
            "accuracy": accuracy, "degenerate": totals["spikes"] == 0,
            "reason": "silent: no spike on the validation split" if totals["spikes"] == 0 else "",
            "firing_rate": totals["firing_rate"], "spikes_per_sample": totals["spikes"],
            "synops_per_sample": totals["synops"], "neurons": totals["neurons"],
            "latency_steps": net.latency_steps,
        }
        result.update(scorer.hardware_fields(net, activity))
        result["seconds"] = time.perf_counter() - started
        return result

    scorer.cell_measure = measure
    result = run_evolution(space, np.random.default_rng(config.seed), scorer.cell_row, config.population,
                           config.generations)
    return result, describe_log(supernet.log)
