"""How long a search will take, estimated before it starts, and the share of the training split its trainings
can use within ``--budget-minutes``.

At real dataset sizes a search is bound by its trainings (the screening and the halving rungs), whose cost grows
with the training split, while its zero-cost part does not. Before the first candidate is scored, the search times
what it is made of on this machine, with the lightest and the heaviest cell of its first skeleton: one zero-cost
evaluation (scoring and mapping), a training step per sample and an evaluation per sample. Counted over what the
configuration will run, that is the estimate the search prints (a range: the candidates lie between the two
cells) and records in ``report.json`` beside the time the search took.

With a budget, the trainings use a seeded share of the training split (``train_fraction``; the same samples in
every rung, so that a rung continues what the last one trained) chosen so that the middle of the estimate fits,
and the validation that ranks them at most :data:`BUDGET_VALIDATION_SAMPLES` samples (a seeded, class-balanced
subset, ``val_samples``: at full size validation took most of a budget, 4 to 21 of 7 to 33 minutes on
MNIST-saccades, leaving the trainings 1.7 % of the split). Both are recorded in the configuration, so that the
search resumes, and runs again, with them. The last rung, which decides between the finalists, validates on the
whole split (:func:`whole_validation_rounds`: a few passes at the whole split's size, its two trainings at once on
workers).

The middle of the estimate assumes candidates halfway between the two cells and as many as the configuration may
screen. Once the zero-cost part has chosen the pool to train, the share is fitted again (:func:`refitted_fraction`)
to what is left of the budget, each candidate's cost placed between the two measured cells by its weighted edges
(convolutions, linear edges), the rungs' candidates (not yet known) at the mean of the pool's heaviest. With several
skeletons kept (``--width-choices``, ``--skeletons``), the two cells are timed in each, and each candidate is
placed between its own skeleton's costs (the first fit and the printed estimate use the first skeleton's, a ceiling
when it is the widest). On full
MNIST with a 20-minute budget and the first fit alone, the default search took 16.5 minutes (2026-12-06), and 8.6
when a max-energy rule left 17 light cells to train (2026-12-07, a slower day); re-fitted, the default search took
17.4 that day (first share 3.3 %, re-fitted 4.5 %; docs/measurements.md). When the zero-cost part took so long that
not even the least share (:data:`MIN_TRAINING_SAMPLES` in the shortest training) fits, the search says so and trains
that share. The re-fitted share is the one recorded in the configuration (the estimate keeps the first); a search
resumed before the re-fit keeps the first share.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

from ..errors import OptionError
from .refine import continued_last_rung, halving_rungs, pool_sample_size

MIN_TRAINING_SAMPLES = 256  # a budget that leaves fewer per training is refused: nothing would be learnt
# the validation subset a budget ranks trainings on: an accuracy near 90 % measured on it has a standard error of
# about 0.7 points, below the differences the rungs decide on
BUDGET_VALIDATION_SAMPLES = 2000


@dataclass(frozen=True)
class Costs:
    """Seconds measured on this machine, each (lightest cell, heaviest cell)."""

    evaluation_s: tuple[float, float]      # one zero-cost evaluation, mapping included
    train_sample_s: tuple[float, float]    # a training step, per sample
    val_sample_s: tuple[float, float]      # an evaluation, per sample


@dataclass(frozen=True)
class Estimate:
    """The search's phases in seconds, each (low, high), for a share ``train_fraction`` of the training split."""

    zero_cost_s: tuple[float, float]     # the strategy's evaluations (evolution: the supernet's training too)
    evaluations: int
    training_s: tuple[float, float]      # screening and rungs: the training steps
    validation_s: tuple[float, float]    # screening and rungs: the validation passes
    train_fraction: float

    @property
    def total_s(self) -> tuple[float, float]:
        """The whole search, (low, high)."""
        return tuple(a + b + c for a, b, c in zip(self.zero_cost_s, self.training_s, self.validation_s))

    def to_dict(self) -> dict:
        """What ``report.json`` records under ``time_estimate``."""
        return {"zero_cost_s": list(self.zero_cost_s), "evaluations": self.evaluations,
                "training_s": list(self.training_s), "validation_s": list(self.validation_s),
                "total_s": list(self.total_s), "train_fraction": self.train_fraction}


@dataclass(frozen=True)
class Refit:
    """What fitting the share again needs once the pool is known: the costs measured at the start (in the primary
    skeleton; ``skeleton_costs``: in each other skeleton kept, by its key, when they were measured), the lightest
    and the heaviest cell they were measured with, when the search started (``time.perf_counter``) and the split
    sizes its trainings and validations draw from."""

    costs: Costs
    cells: tuple
    started: float
    train_size: int
    val_size: int
    workers: int = 1
    skeleton_costs: dict = field(default_factory=dict)
    whole_val_size: int | None = None  # the whole validation split, which the last rung validates on

    def costs_in(self, skeleton: str | None) -> Costs:
        """The costs measured in ``skeleton`` (the primary skeleton's when it was not measured)."""
        return self.skeleton_costs.get(skeleton, self.costs)


def _middle(pair: tuple[float, float]) -> float:
    return (pair[0] + pair[1]) / 2


def _between(pair: tuple[float, float], position: float) -> float:
    return pair[0] + position * (pair[1] - pair[0])


def _three_digits(fraction: float, rounding=math.floor) -> float:
    """``fraction`` to three significant digits, rounded down (or by ``rounding``): the share recorded in the
    configuration."""
    if fraction <= 0:
        return 0.0
    scale = 10 ** (2 - math.floor(math.log10(fraction)))
    return rounding(fraction * scale) / scale


def weighted_edges(cell) -> int:
    """The edges of ``cell`` that carry weights (convolutions, linear edges): what a training's cost grows with."""
    return sum(1 for edge in cell if edge.op in ("conv3x3", "linear"))


def cell_position(cell, lightest, heaviest) -> float:
    """Where ``cell``'s cost lies between the ``lightest`` (0) and the ``heaviest`` cell (1), by weighted edges."""
    low, high = weighted_edges(lightest), weighted_edges(heaviest)
    return min(max((weighted_edges(cell) - low) / (high - low), 0.0), 1.0) if high > low else 0.0


def measure_costs(measurer, splits, cells, skeleton: str | None = None) -> Costs:
    """Time, with each of ``cells`` (the lightest and the heaviest) in ``skeleton`` (None: the primary one), a
    zero-cost evaluation, a training step and an evaluation, per sample (each after one untimed warm-up run)."""
    from ..arch.builder import build_network
    from ..arch.genotype import cell_key
    from ..sim.seeding import build_seeded
    from ..training.loop import SHORT_TRAINING_BATCH, SHORT_TRAINING_LR, evaluate, train_epochs

    x, y = splits.split("train")
    vx, vy = splits.split("val")
    train_count = min(x.shape[0], 2 * SHORT_TRAINING_BATCH)
    val_count = min(vx.shape[0], 256)
    few = replace(splits, train_x=x[:train_count], train_y=y[:train_count], val_x=vx[:2], val_y=vy[:2])
    some = replace(splits, val_x=vx[:val_count], val_y=vy[:val_count])
    evaluation, training, validation = [], [], []
    for cell in cells:
        for timed in (False, True):
            started = time.perf_counter()
            measurer.measure_cell(cell, skeleton)
            if timed:
                evaluation.append(time.perf_counter() - started)
        arch = measurer.architecture(cell, skeleton)
        net = build_seeded(lambda: build_network(arch), measurer.config.seed, cell_key(cell))
        net = net.to(measurer.evaluator.device)
        for timed in (False, True):
            started = time.perf_counter()
            train_epochs(net, arch, few, 1, SHORT_TRAINING_LR, SHORT_TRAINING_BATCH, measurer.config.seed)
            if timed:
                training.append((time.perf_counter() - started) / train_count)
        started = time.perf_counter()
        evaluate(net, some, "val", arch, measurer.config.seed)
        validation.append((time.perf_counter() - started) / val_count)
    return Costs(tuple(evaluation), tuple(training), tuple(validation))


def supernet_evaluation_s(measurer, space) -> float:
    """Seconds of one zero-cost evaluation of the prune strategy's supernet (every edge on), after a warm-up."""
    from ..arch.builder import build_network
    from ..sim.seeding import build_seeded

    template = measurer.templates[measurer.primary]
    net = build_seeded(lambda: build_network(template, space.nonzero_edges()), measurer.config.seed, "supernet")
    measurer.measure(net)
    started = time.perf_counter()
    measurer.measure(net)
    return time.perf_counter() - started


def evaluation_counts(config, space, skeletons: int = 1) -> tuple[int, int]:
    """(cell evaluations, supernet evaluations) the strategy runs, at most: the prune strategy's rounds are counted
    as if each removed a pair's zero op while it has one (the most ablations a round can then need), once in each
    of the ``skeletons`` the pre-flight kept (each pruning ends in a final cell)."""
    from ..arch.choices import PAIRS

    supernets = 0
    if config.strategy == "random":
        cells = min(config.candidates, space.size())
    elif config.strategy == "evolution":
        cells = min(config.population * (config.generations + 1), space.size())
    else:
        sizes = {pair: len(space.choices[pair]) for pair in PAIRS}
        nonzero = {pair: sum(edge.op != "zero" for edge in space.choices[pair]) for pair in PAIRS}
        while any(size > 1 for size in sizes.values()):
            open_pairs = [pair for pair in PAIRS if sizes[pair] > 1]
            supernets += 1 + sum(nonzero[pair] for pair in open_pairs)
            for pair in open_pairs:
                sizes[pair] -= 1
                nonzero[pair] = min(nonzero[pair], sizes[pair])
        supernets *= skeletons
        cells = skeletons + (pool_sample_size(config.refine, config.screen) if config.refine else 0)
    return cells, supernets


def training_plan(config, pool: int) -> tuple[float, int]:
    """(epochs of training, validation passes) over all screened and refined candidates of a search whose
    refinement draws from ``pool`` candidates: the screening's share of an epoch each, then every halving rung's
    added epochs (the first rung is the screening's training when that was a whole epoch of one-epoch rungs); one
    validation pass per epoch (a rung whose added epochs beat no earlier one evaluates once more: not counted)."""
    if not config.refine:
        return 0.0, 0
    epochs, passes = 0.0, 0
    screened = min(config.screen, pool) if config.screen > config.refine and pool > config.refine else 0
    first_rung_done = screened and config.screen_fraction == 1 and config.refine_epochs == 1
    if screened:
        epochs += screened * config.screen_fraction
        passes += screened  # one validation pass each: its epoch's end
    before = 0
    for number, (count, rung_epochs) in enumerate(halving_rungs(min(config.refine, pool), config.refine_epochs)):
        if not (number == 0 and first_rung_done):
            epochs += count * (rung_epochs - before)
            passes += count * (rung_epochs - before)
        before = rung_epochs
    return epochs, passes


def whole_validation_rounds(config, pool: int, workers: int = 1) -> float:
    """The validation passes among :func:`training_plan`'s that the last halving rung makes on the whole validation
    split (when it continues an earlier rung: :func:`hwnas.nas.refine.refine`; the others use ``val_samples``'),
    divided by how many of its trainings run at a time on ``workers`` (it trains two)."""
    last = continued_last_rung(min(config.refine, pool), config.refine_epochs) if config.refine else None
    if last is None:
        return 0.0
    count, added_epochs = last
    return count * added_epochs / max(1, min(workers, count))


def estimate(config, space, costs: Costs, supernet_s: float, train_size: int, val_size: int,
             train_fraction: float, workers: int = 1, skeletons: int = 1,
             whole_val_size: int | None = None) -> Estimate:
    """The search's time on this machine (see the module docstring) with ``train_fraction`` of the
    ``train_size`` training samples in every training, validating on ``val_size`` samples (the last rung on
    ``whole_val_size``, the whole split, when given); with ``workers`` (``--workers``) the cells of the random
    strategy and of the prune pool, the screening and the rungs run that many at a time (a rung of fewer
    candidates, fewer), the prune rounds and the evolution one at a time; the prune strategy prunes in each of
    ``skeletons``, every supernet timed at ``supernet_s`` (measured in the primary skeleton)."""
    cells, supernets = evaluation_counts(config, space, skeletons)
    epochs, passes = training_plan(config, cells)  # every scored cell may be refined (prune: its final and random)
    trained = math.ceil(train_fraction * train_size)
    parallel_cells = cells if config.strategy != "evolution" else 0
    cells_at_once = max(1, min(workers, parallel_cells))
    zero_cost = tuple((cells - parallel_cells) * evaluation + parallel_cells * evaluation / cells_at_once
                      + supernets * supernet_s for evaluation in costs.evaluation_s)
    if config.strategy == "evolution":  # the supernet trains on the whole split (as heavy as the heaviest cell at
        # least), then every candidate's accuracy with its weights takes a validation pass
        supernet_training = config.supernet_epochs * (train_size * costs.train_sample_s[1]
                                                      + val_size * costs.val_sample_s[1])
        zero_cost = tuple(z + supernet_training + cells * val_size * v
                          for z, v in zip(zero_cost, costs.val_sample_s))
    at_once = max(1, min(workers, config.refine or 1))  # rungs halve: the last ones run fewer at a time
    training = tuple(epochs * trained * per_sample / at_once for per_sample in costs.train_sample_s)
    whole = whole_validation_rounds(config, cells, workers) * max((whole_val_size or val_size) - val_size, 0)
    validation = tuple((passes * val_size / at_once + whole) * per_sample for per_sample in costs.val_sample_s)
    # a range, (low, high), even when a busy machine timed the lightest cell slower than the heaviest
    return Estimate(tuple(sorted(zero_cost)), cells + supernets, tuple(sorted(training)), tuple(sorted(validation)),
                    train_fraction)


def fitted_fraction(config, space, costs: Costs, supernet_s: float, train_size: int, val_size: int,
                    workers: int = 1, skeletons: int = 1, whole_val_size: int | None = None) -> float:
    """The share of the training split whose trainings keep the middle of the estimate within
    ``config.budget_minutes`` (1 when the whole split fits); a budget that cannot hold the search with at least
    :data:`MIN_TRAINING_SAMPLES` samples in its shortest training is a one-line :class:`OptionError`."""
    budget = 60.0 * config.budget_minutes
    whole = estimate(config, space, costs, supernet_s, train_size, val_size, 1.0, workers, skeletons, whole_val_size)
    if _middle(whole.total_s) <= budget:
        return 1.0
    fixed = _middle(whole.zero_cost_s) + _middle(whole.validation_s)
    if not _middle(whole.training_s):
        raise OptionError(f"--budget-minutes {config.budget_minutes:g} cannot hold this search on this machine: its "
                          f"zero-cost part alone takes about {fixed / 60:.1f} min; raise the budget or score fewer "
                          "candidates")
    # recorded in the configuration: three significant digits, rounded down so that the budget still holds
    fraction = _three_digits((budget - fixed) / _middle(whole.training_s))
    shortest = fraction * (config.screen_fraction if config.screen > config.refine else 1.0)
    if shortest * train_size < MIN_TRAINING_SAMPLES:
        raise OptionError(
            f"--budget-minutes {config.budget_minutes:g} cannot hold this search on this machine: its zero-cost part "
            f"and validation passes alone take about {fixed / 60:.1f} min, and its trainings would keep fewer than "
            f"{MIN_TRAINING_SAMPLES} samples; raise the budget, or lower --screen, --refine or --max-samples")
    return fraction


def refitted_fraction(config, refit: Refit, positions: list[float], spent_s: float,
                      skeletons: list[str | None] | None = None) -> tuple[float, bool]:
    """The share of the training split whose trainings of the pool about to be trained (each candidate at its
    :func:`cell_position`, between the costs measured in its skeleton, ``skeletons``, when given; the rungs'
    candidates, not yet known, at the mean of the pool's ``config.refine`` heaviest: a budget is a ceiling, and the
    trainings may well keep the heavier cells) take what ``spent_s`` seconds leave of ``config.budget_minutes``:
    three significant digits rounded down, at most 1, and never below what gives the shortest training
    :data:`MIN_TRAINING_SAMPLES` samples; and whether that minimum applied (the trainings then take longer than the
    budget leaves)."""
    if not positions:
        return config.train_fraction, False
    costs = [refit.costs_in(skeleton) for skeleton in (skeletons or [None] * len(positions))]
    train = [_between(c.train_sample_s, p) for c, p in zip(costs, positions)]
    val = [_between(c.val_sample_s, p) for c, p in zip(costs, positions)]
    screened = range(len(positions)) if config.screen > config.refine and len(positions) > config.refine else []
    epochs, passes = training_plan(config, len(positions))
    heaviest = sorted(range(len(positions)), key=lambda i: train[i], reverse=True)
    heaviest = heaviest[:max(1, min(config.refine, len(positions)))]
    mean_train = sum(train[i] for i in heaviest) / len(heaviest)
    mean_val = sum(val[i] for i in heaviest) / len(heaviest)
    rung_epochs = epochs - len(screened) * config.screen_fraction
    rung_passes = passes - len(screened)
    at_once = max(1, min(refit.workers, config.refine or 1))
    per_share = refit.train_size / at_once * (sum(config.screen_fraction * train[i] for i in screened)
                                              + rung_epochs * mean_train)
    fixed = refit.val_size / at_once * (sum(val[i] for i in screened) + rung_passes * mean_val)
    fixed += (whole_validation_rounds(config, len(positions), refit.workers) * mean_val
              * max((refit.whole_val_size or refit.val_size) - refit.val_size, 0))
    left = 60.0 * config.budget_minutes - spent_s - fixed
    fraction = _three_digits(left / per_share) if per_share > 0 else 1.0
    shortest = config.screen_fraction if screened else 1.0
    least = min(1.0, _three_digits(MIN_TRAINING_SAMPLES / (shortest * refit.train_size), math.ceil))
    return (least, True) if fraction < least else (min(1.0, fraction), False)


class ShareRefit:
    """Called by the refinement with the pool about to be trained (:func:`hwnas.nas.refine.refine`'s ``fit_share``):
    fits the budget's share again (:func:`refitted_fraction`), records it in the checkpoint's configuration and its
    estimate (``refit``), says it, and returns it; ``config`` is then the configuration with that share."""

    def __init__(self, config, refit: Refit, cache, say) -> None:
        self.config, self.refit, self.cache, self.say = config, refit, cache, say

    def __call__(self, pool: list) -> float:
        from ..arch.genotype import parse_cell_key

        spent = time.perf_counter() - self.refit.started
        share, least = refitted_fraction(self.config, self.refit,
                                         [cell_position(parse_cell_key(row.cell), *self.refit.cells) for row in pool],
                                         spent, [row.skeleton for row in pool])
        self.config = replace(self.config, train_fraction=share)
        self.cache.config = self.config.to_dict()
        self.cache.fields["time_estimate"]["refit"] = {"after_s": round(spent, 1), "candidates": len(pool),
                                                       "train_fraction": share, "at_least": least}
        self.cache.save()
        if self.say:
            self.say(f"re-fitted to the {len(pool)} candidates to train, {spent / 60:.1f} of "
                     f"{self.config.budget_minutes:g} minutes spent: the trainings use {100 * share:.1f}% of the "
                     f"training split ({math.ceil(share * self.refit.train_size):,} samples; --train-fraction "
                     f"{share:g})" + (f"; the least that trains {MIN_TRAINING_SAMPLES} samples, so the search will "
                                      "take longer than its budget" if least else ""))
        return share


def describe(found: Estimate, train_size: int, budget_minutes: float | None, refit: bool = False) -> str:
    """One line: the estimate, by phase, and what the budget chose (with ``refit``, a first share that is fitted
    again once the candidates to train are chosen)."""
    def duration(seconds: float) -> str:
        return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 \
            else f"{seconds / 3600:.1f} h"

    def span(pair) -> str:
        low, high = duration(pair[0]), duration(pair[1])
        return high if low == high else f"{low} to {high}"

    line = (f"estimated on this machine: {span(found.total_s)} (zero-cost {found.evaluations} evaluations "
            f"{span(found.zero_cost_s)}, trainings {span(found.training_s)}, validation {span(found.validation_s)})")
    if budget_minutes is not None:
        used = math.ceil(found.train_fraction * train_size)
        if refit:
            line += (f"; --budget-minutes {budget_minutes:g}: about {100 * found.train_fraction:.1f}% of the training "
                     f"split for the trainings ({used:,} of {train_size:,} samples), fitted again once the candidates "
                     "to train are chosen")
        else:
            line += (f"; --budget-minutes {budget_minutes:g}: the trainings use {100 * found.train_fraction:.1f}% of "
                     f"the training split ({used:,} of {train_size:,} samples; --train-fraction "
                     f"{found.train_fraction:g})")
    return line


def validation_samples(config, val_size: int) -> int | None:
    """The validation samples a search's trainings are ranked on: ``--val-samples`` when given, else, with a budget
    and a validation split larger than :data:`BUDGET_VALIDATION_SAMPLES`, that many; None: the whole split."""
    if config.val_samples is not None or config.budget_minutes is None or val_size <= BUDGET_VALIDATION_SAMPLES:
        return config.val_samples
    return BUDGET_VALIDATION_SAMPLES


def plan(config, measurer, space, splits, say, workers: int = 1) -> tuple[object, Estimate, Refit]:
    """Measure this machine's costs, fit ``train_fraction`` to ``config.budget_minutes`` when there is a budget,
    and say the estimate; returns the configuration the search runs with, the estimate and what fitting the share
    again needs (:func:`refitted_fraction`). The global random state is left as it was, so that a search with an
    estimate gives what it gives without one."""
    import torch

    from .preflight import LIGHTEST_CELL, LIGHTEST_DENSE_CELL, heaviest_cell_of

    template = measurer.templates[measurer.primary]
    heaviest = heaviest_cell_of(template, space.chains_only)
    lightest = LIGHTEST_DENSE_CELL if space.dense else LIGHTEST_CELL
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        costs = measure_costs(measurer, splits, (lightest, heaviest))
        supernet_s = supernet_evaluation_s(measurer, space) if config.strategy == "prune" else 0.0
        # the re-fit places each candidate between the costs of its own skeleton (a narrower width trains faster)
        skeleton_costs = {key: measure_costs(measurer, splits, (lightest, heaviest), key)
                          for key in measurer.templates if key != measurer.primary} \
            if config.budget_minutes is not None and config.refine else {}
    train_size, val_size = int(splits.split("train")[1].numel()), int(splits.split("val")[1].numel())
    skeletons = len(measurer.templates)
    config = replace(config, val_samples=validation_samples(config, val_size))
    whole_val_size, val_size = val_size, min(val_size, config.val_samples or val_size)
    if config.budget_minutes is not None:
        config = replace(config, train_fraction=fitted_fraction(config, space, costs, supernet_s, train_size,
                                                                val_size, workers, skeletons, whole_val_size))
    found = estimate(config, space, costs, supernet_s, train_size, val_size, config.train_fraction, workers,
                     skeletons, whole_val_size)
    if say:
        say(describe(found, train_size, config.budget_minutes, bool(config.refine))
            + (f" ({workers} workers)" if workers > 1 else "")
            + (f"; validation on {val_size:,} samples (--val-samples)" if config.val_samples else "")
            + (f", the last rung's on all {whole_val_size:,}" if val_size < whole_val_size
               and whole_validation_rounds(config, config.refine) else ""))
    return config, found, Refit(costs, (lightest, heaviest), started, train_size, val_size, workers, skeleton_costs,
                                whole_val_size)
