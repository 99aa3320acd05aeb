"""Scoring candidates through the search's cache: every evaluation (a cell in a skeleton, a supernet, a supernet
with an op switched off) is measured once, stored under a text key in the checkpoint, and returned as a typed
:class:`~hwnas.nas.rows.Row` with its hardware-aware fitness.

A candidate is a cell in one of the skeletons the pre-flight kept (``--skeletons``); the first skeleton is the
primary one: its candidates' keys name no skeleton. The prune strategy prunes a supernet in each skeleton."""

from __future__ import annotations

import contextlib
import math
from typing import Callable

from ..arch.builder import build_network
from ..arch.genotype import Architecture, Cell, Edge, cell_key
from ..cache import ResultCache
from ..hw_models.fitness import fitness, hardware_terms
from ..sim.seeding import build_seeded
from .config import SearchConfig
from .evaluate import Evaluator
from .rows import MEASURED, ROW_FIELDS, Row, skeleton_suffix
from .space import SearchSpace

Progress = Callable[[int, "int | None", str], None]


class CandidateMeasurer:
    """What measuring a candidate takes, without the search's bookkeeping (cache, progress): the configuration,
    the target, the skeletons and the scoring batches. It pickles, so a worker process
    (:mod:`hwnas.nas.distributed`) measures exactly what the search's own process would."""

    def __init__(self, config: SearchConfig, target, templates: list[Architecture], evaluator: Evaluator) -> None:
        self.config = config
        self.target = target
        self.templates = {template.skeleton_key: template for template in templates}  # in order of preference
        self.primary = templates[0].skeleton_key
        self.evaluator = evaluator

    def architecture(self, cell: Cell, skeleton: str | None = None) -> Architecture:
        """``cell`` in ``skeleton`` (None: the primary one)."""
        return self.templates[skeleton or self.primary].with_cell(cell)

    def build_cell(self, cell: Cell, skeleton: str | None = None):
        """The candidate network of ``cell`` in ``skeleton``, with the weights its seed and key give."""
        return build_seeded(lambda: build_network(self.architecture(cell, skeleton)), self.config.seed,
                            cell_key(cell))

    def measure(self, net) -> dict:
        """Score ``net`` and, on a hardware target, map it and estimate its energy (the cached fields)."""
        result = self.evaluator.evaluate(net)
        result.update(self.hardware_fields(net, result.pop("activity")))
        return result

    def measure_cell(self, cell: Cell, skeleton: str | None = None) -> dict:
        """The cached fields of ``cell`` in ``skeleton``, scored at initialisation."""
        return self.measure(self.build_cell(cell, skeleton))

    def hardware_fields(self, net, activity) -> dict:
        """Energy, cores and feasibility of ``net`` running ``activity`` on the target (none without a hardware
        model), under the search's budgets."""
        if not self.target.is_hardware:
            return {}
        return hardware_terms(net, activity, self.target, self.config.max_cores, self.config.max_energy)[0]

    def trained_cost(self, cell: Cell, activity, skeleton: str | None = None) -> dict:
        """Energy and time per inference of ``activity`` (e.g. after a short training) of ``cell`` on the target
        (``energy_j``, ``inference_time_s``; None on a target without a hardware model)."""
        if not self.target.is_hardware:
            return {"energy_j": None, "inference_time_s": None}
        estimate = hardware_terms(self.build_cell(cell, skeleton), activity, self.target)[2]
        return {"energy_j": estimate.energy_j, "inference_time_s": estimate.inference_time_s}

    def refine_training(self, cell: Cell, skeleton: str | None, epochs: int, splits, share: float,
                        previous: bytes | None = None, best_from_here: bool = False) -> dict:
        """A refinement's cached fields: validation accuracy after ``epochs`` of short training on ``share`` of the
        training split (the search's ``train_fraction``, or what its budget re-fitted, :mod:`hwnas.nas.budget`)
        from the candidate's seeded weights (continuing the ``previous`` state of an earlier rung when given), and
        the energy and time per inference of the trained network's activity, which validation samples it
        classified (``"val_correct"``, :func:`~hwnas.nas.refine.packed_samples`); under ``"state"`` the bytes a
        later rung continues from. ``best_from_here``: the best epoch among this training's own (its ``splits``
        validate on other samples than the ``previous`` rung's: the last rung's whole validation split)."""
        from ..training.loop import short_training
        from .refine import packed_samples

        trained = short_training(self.architecture(cell, skeleton), splits, epochs, self.config.seed, "val",
                                 self.evaluator.device, share, previous, keep=True, best_from_here=best_from_here)
        correct = {} if trained.correct is None else {"val_correct": packed_samples(trained.correct)}
        return {"val_accuracy": trained.accuracy, **self.trained_cost(cell, trained.activity, skeleton), **correct,
                "state": trained.state}

    def screen_training(self, cell: Cell, skeleton: str | None, share: float, splits) -> dict:
        """A screening's cached fields: validation accuracy after one pass over ``share`` of the training split
        from the candidate's seeded weights, and the energy and time per inference of the trained activity."""
        from ..training.loop import short_training

        trained = short_training(self.architecture(cell, skeleton), splits, 1, self.config.seed, "val",
                                 self.evaluator.device, share)
        return {"val_accuracy": trained.accuracy, **self.trained_cost(cell, trained.activity, skeleton)}


class CandidateScorer:
    """Builds, evaluates and caches candidates of one search; counts evaluations for the progress callback.
    With a worker pool (:class:`hwnas.nas.distributed.WorkerPool`), :meth:`prefetch` measures many uncached
    evaluations at once; without one, everything is measured in this process, in order."""

    def __init__(self, config: SearchConfig, target, templates: list[Architecture], evaluator: Evaluator,
                 cache: ResultCache, space: SearchSpace, total: int | None, progress: Progress | None,
                 pool=None) -> None:
        self.config = config
        self.target = target
        self.measurer = CandidateMeasurer(config, target, templates, evaluator)
        self.template = templates[0]
        self.primary = self.measurer.primary
        self.evaluator = evaluator
        self.cache = cache
        self.space = space
        self.total = total
        self.progress = progress
        self.pool = pool
        self.done = 0
        self._supernet = None
        self.cell_measure: Callable[[Cell], dict] | None = None  # replaces the zero-cost measure (evolution)

    @property
    def energy_weight(self) -> float:
        """The weight of the energy term in the fitness (0 on a target without a hardware model); the evolution's
        scores are accuracy points, so it takes the refinement's weight (points per doubling of energy)."""
        if not self.target.is_hardware:
            return 0.0
        return self.config.refine_energy_weight if self.config.strategy == "evolution" else self.config.energy_weight

    def row(self, cache_key: str, compute: Callable[[], dict], extra: dict) -> Row:
        """The row of an evaluation: cached measurements (``compute()`` when not cached) plus ``extra`` fields."""
        cached = self.cache.results.get(cache_key)
        if cached is None:
            cached = compute()
            self.cache.put(cache_key, cached)
        self.done += 1
        self.announce(extra.get("kind", ""))
        fields = {k: v for k, v in cached.items() if k in MEASURED}
        value = fitness(fields["score"], fields.get("energy_j"), self.energy_weight)
        extra = {"skeleton": self.primary, **extra}
        return Row(**fields, **{k: v for k, v in extra.items() if k in ROW_FIELDS}, fitness=value)

    def cell_cache_key(self, cell: Cell, skeleton: str | None) -> str:
        """The checkpoint key of ``cell`` scored in ``skeleton`` (None: the primary one)."""
        return f"cell|{cell_key(cell)}" + skeleton_suffix(skeleton or self.primary, self.primary)

    def cell_row(self, cell: Cell, skeleton: str | None, extra: dict) -> Row:
        """The row of ``cell`` in ``skeleton`` (None: the primary one), scored when not cached."""
        skeleton = skeleton or self.primary
        return self.row(self.cell_cache_key(cell, skeleton), self.score_cell(cell, skeleton),
                        {**extra, "cell": cell_key(cell), "skeleton": skeleton})

    def prefetch_cells(self, cells: list[Cell], skeletons: list[str | None]) -> None:
        """Score the uncached ones of ``cells`` (each in its skeleton) on the worker pool, into the cache; nothing
        without a pool or when another measure replaces the zero-cost one (evolution)."""
        if self.pool is None or self.cell_measure is not None:
            return
        self.prefetch([(self.cell_cache_key(cell, skeleton), ("cell", cell_key(cell), skeleton or self.primary))
                       for cell, skeleton in zip(cells, skeletons)], "scoring")

    def prefetch(self, entries: list[tuple[str, tuple]], what: str, save_each: bool = False,
                 keep: Callable[[str, dict], dict] | None = None) -> None:
        """Compute the uncached ``(cache key, task)`` entries on the worker pool (a no-op without one), storing
        each result in the cache as it arrives (``keep(key, result)`` first, which returns what to cache; the
        checkpoint is written after each when ``save_each``)."""
        missing = [(key, task) for key, task in dict(entries).items() if key not in self.cache.results]
        if self.pool is None or not missing:
            return
        # closing the results cancels the tasks still pending when storing one fails (or on Ctrl-C)
        with contextlib.closing(self.pool.run([task for _, task in missing])) as results:
            for finished, (index, result) in enumerate(results, start=1):
                key = missing[index][0]
                self.cache.put(key, keep(key, result) if keep else result)
                if save_each:
                    self.cache.save()
                if self.progress:
                    self.progress(self.done, self.total,
                                  f"{what} on {self.pool.describe()}: {finished}/{len(missing)}")

    def draw_skeletons(self, count: int, rng) -> list[str]:
        """``count`` skeletons drawn uniformly from those kept (all the primary one when only one is kept, drawing
        nothing from ``rng``)."""
        keys = list(self.measurer.templates)
        if len(keys) == 1:
            return keys * count
        return [keys[int(i)] for i in rng.integers(len(keys), size=count)]

    def announce(self, message: str) -> None:
        """Pass a message to the progress callback with the evaluations done so far."""
        if self.progress:
            self.progress(self.done, self.total, message)

    def measure(self, net) -> dict:
        """:meth:`CandidateMeasurer.measure`."""
        return self.measurer.measure(net)

    def hardware_fields(self, net, activity) -> dict:
        """:meth:`CandidateMeasurer.hardware_fields`."""
        return self.measurer.hardware_fields(net, activity)

    def architecture(self, cell: Cell, skeleton: str | None = None) -> Architecture:
        """:meth:`CandidateMeasurer.architecture`."""
        return self.measurer.architecture(cell, skeleton)

    def build_cell(self, cell: Cell, skeleton: str | None = None):
        """:meth:`CandidateMeasurer.build_cell`."""
        return self.measurer.build_cell(cell, skeleton)

    def score_cell(self, cell: Cell, skeleton: str | None = None) -> Callable[[], dict]:
        """What :meth:`row` calls to measure ``cell`` in ``skeleton`` when it is not cached."""
        if self.cell_measure is not None:
            return lambda: self.cell_measure(cell)
        return lambda: self.measurer.measure_cell(cell, skeleton)

    def score_supernet(self, options: dict, ablated: Edge | None, skeleton: str | None = None) -> Callable[[], dict]:
        """What :meth:`row` calls to measure the supernet in ``skeleton`` (None: the primary one) holding
        ``options`` per pair, without ``ablated``."""
        skeleton = skeleton or self.primary

        def compute() -> dict:
            if self._supernet is None or self._supernet[0] != skeleton:  # one supernet held at a time
                every_edge = self.space.nonzero_edges()
                template = self.measurer.templates[skeleton]
                self._supernet = None
                self._supernet = (skeleton, build_seeded(lambda: build_network(template, every_edge),
                                                         self.config.seed, "supernet"))
            net = self._supernet[1]
            off = set()
            for edge, keys in net.edge_modules.items():
                if edge not in options[(edge.src, edge.dst)] or edge == ablated:
                    off.update(keys)
            net.set_disabled(off)
            return self.measure(net)
        return compute

    def prune_callbacks(self, skeleton: str, first_index: int) -> tuple[Callable, Callable, Callable]:
        """:func:`~hwnas.nas.strategies.run_prune`'s callbacks (supernet scorer, cell scorer, row maker) for a
        pruning in ``skeleton``, its rows numbered from ``first_index`` and its checkpoint keys naming the skeleton
        unless it is the primary one."""
        suffix = skeleton_suffix(skeleton, self.primary)

        def numbered(extra: dict) -> dict:
            return {**extra, "index": extra["index"] + first_index}

        def row(cache_key: str, compute: Callable[[], dict], extra: dict) -> Row:
            return self.row(cache_key + suffix, compute, {**numbered(extra), "skeleton": skeleton})

        def cell_row(cell: Cell, _skeleton, extra: dict) -> Row:
            return self.cell_row(cell, skeleton, numbered(extra))

        return (lambda options, ablated: self.score_supernet(options, ablated, skeleton)), cell_row, row


def stored_result(key: str, value) -> bool:
    """A well-formed checkpoint entry: a scored evaluation, or a screening's or refinement training's accuracy."""
    trained = key.startswith(("refine|", "screen|"))
    return isinstance(value, dict) and ("val_accuracy" in value if trained else "score" in value)


def restore_scores(results: dict) -> dict:
    """Scores as floats again (JSON stores -inf as null)."""
    for value in results.values():
        if "score" in value:
            value["score"] = -math.inf if value["score"] is None else float(value["score"])
    return results
