"""A whole search run: data, strategy, refinement, checkpoint/resume, and the run folder's files.

The driver here wires the parts together: :mod:`.config` (what determines the result), :mod:`.candidates`
(scoring through the cache), :mod:`.strategies` and :mod:`.refine` (what is scored, who wins) and :mod:`.results`
(what is written). Files written (atomically) to the run folder (:class:`~hwnas.run_folder.RunFolder`):
``checkpoint.json`` (configuration and every scored result, rewritten as the search goes; what ``--resume``
reads), ``search.csv`` (one row per scored evaluation), ``architecture.json`` (the winner) and ``report.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..version import __version__
from ..arch.dense import XYLO_NEURON, DenseArchitecture
from ..arch.genotype import Architecture, Edge, cell_key, default_width
from ..cache import ResultCache
from ..data import load_dataset
from ..data.splits import DatasetSplits, balanced_subset, encode_batch
from ..errors import ArchitectureError, OptionError, ResumeError, SearchError
from ..hw_models import load_target
from ..hw_models.fitness import hardware_terms
from ..io_utils import check_writable
from ..run_folder import RunFolder
from ..sim.neuron import NeuronParams
from ..sim.xylo_neuron import dashes
from ..sim.ops.base import pooled_shape
from ..sim.seeding import computing_threads, resolve_device
from .candidates import CandidateMeasurer, CandidateScorer, restore_scores, stored_result
from .config import STEM_POOL_AUTO, SearchConfig
from .evaluate import Evaluator, ScoreConfig
from .preflight import (DENSE_WIDTHS, LIGHTEST_CELL, STEM_TWIN, choose_dense_width, choose_skeletons,
                        heaviest_cell_of)
from .refine import preselection_signal, refine
from .results import rank_candidates, write_report
from .rows import Row
from .space import SearchSpace
from .evolution import evolve
from .strategies import run_prune_each, run_random

CHECKPOINT_FORMAT = "hwnas.search-checkpoint"
CHECKPOINT_EVERY_S = 5.0


@dataclass
class SearchOutcome:
    """What a finished search produced."""

    out_dir: Path
    architecture: Architecture
    winner: Row
    rows: list[Row]
    report: dict
    splits: DatasetSplits | None = None  # the data it searched on


def scoring_batches(config: SearchConfig, splits) -> list[torch.Tensor]:
    """The fixed batches every candidate is scored on: ``repeats`` draws of ``batch_size`` training samples."""
    x, _ = splits.split("train")
    if x.shape[0] < config.batch_size:
        raise OptionError(f"--batch-size {config.batch_size} exceeds the {x.shape[0]} training samples of {config.dataset}")
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    batches = []
    for _ in range(config.repeats):
        index = torch.from_numpy(rng.choice(x.shape[0], config.batch_size, replace=False))
        batches.append(encode_batch(x[index], splits.kind, config.timesteps, config.encoding, generator))
    return batches


def primary_stem_pool(config: SearchConfig) -> int:
    """The stem pooling of the search's primary skeleton: ``--stem-pool``, or 1 with ``auto`` (whose stride-2
    twins the pre-flight adds)."""
    return 1 if config.stem_pool == STEM_POOL_AUTO else config.stem_pool


def template_architecture(config: SearchConfig, splits, timing: str,
                          network: str = "conv") -> "Architecture | DenseArchitecture":
    """The architecture every candidate shares (data shapes, width, timesteps, neuron, timing; the skeleton the
    configuration fixes, else the input-size defaults); its cell is a placeholder that ``with_cell`` replaces.
    :func:`hwnas.nas.preflight.choose_skeletons` fits the skeletons to a target. ``network`` ``dense``: a network
    of dense populations (a Xylo core's; its neuron Xylo's bit-shift decays unless --du/--dv are given)."""
    if network == "dense":
        neuron = XYLO_NEURON if (config.du, config.dv) == (SearchConfig.du, SearchConfig.dv) else \
            NeuronParams(du=config.du, dv=config.dv, theta=config.theta)
        try:
            dashes(neuron)  # before anything is scored: decays a Xylo core cannot hold
        except ArchitectureError as exc:
            raise OptionError(f"--du/--dv: {exc}") from None
        return DenseArchitecture(
            cell=tuple(Edge(e.src, e.dst, "linear" if e.op != "zero" else "zero") for e in LIGHTEST_CELL),
            input_channels=int(np.prod(splits.input_shape)), num_classes=splits.num_classes,
            width=config.width or DENSE_WIDTHS[0], timesteps=config.timesteps, timing=timing,
            encoding=config.encoding, neuron=replace(neuron, theta=config.theta))
    return Architecture(
        cell=(Edge(0, 1, "conv3x3"), Edge(0, 2, "zero"), Edge(0, 3, "zero"), Edge(1, 2, "zero"),
              Edge(1, 3, "conv3x3"), Edge(2, 3, "zero")),
        input_shape=splits.input_shape, num_classes=splits.num_classes,
        width=config.width or default_width(pooled_shape(splits.input_shape, primary_stem_pool(config))),
        timesteps=config.timesteps,
        downsample=config.downsample, timing=timing, encoding=config.encoding,
        neuron=NeuronParams(du=config.du, dv=config.dv, theta=config.theta),
        stages=config.stages or 2, head_pool=config.head_pool or 1, stem_pool=primary_stem_pool(config),
    )


def validation_subset(splits: DatasetSplits, count: int | None, seed: int) -> DatasetSplits:
    """``splits`` with its validation split cut to ``count`` class-balanced samples drawn with ``seed`` (the
    search's ``val_samples``); the same splits when ``count`` is None or covers the split."""
    x, y = splits.split("val")
    if count is None or count >= y.numel():
        return splits
    index = balanced_subset(y, count, seed)
    return replace(splits, val_x=x[index], val_y=y[index])


def open_checkpoint(folder: RunFolder, config: SearchConfig, resume: bool) -> ResultCache:
    """The search's result cache: read back from the folder to resume (its configuration wins), else new
    (refusing a folder that already holds a search)."""
    extra = lambda: {"hwnas": __version__, "complete": False}  # noqa: E731
    if resume:
        if not folder.path.is_dir():
            raise ResumeError(f"cannot resume: {folder.path} is not a folder")
        if not folder.checkpoint.is_file():
            raise ResumeError(f"cannot resume: {folder.checkpoint} does not exist (is {folder.path} a search run "
                              "directory?)")
        stored, results, others = ResultCache.read(folder.checkpoint, CHECKPOINT_FORMAT, well_formed=stored_result,
                                           what="an hwnas search checkpoint")
        config = SearchConfig.from_dict(stored)
        if "stages" not in stored:
            raise ResumeError(f"cannot resume: {folder.checkpoint} was written before the skeleton was fitted to "
                              "the target (no 'stages'); its results would mix two skeletons: start a new search")
        cache = ResultCache(folder.checkpoint, config.to_dict(), restore_scores(results), CHECKPOINT_FORMAT,
                            extra=extra, every_s=CHECKPOINT_EVERY_S)
        estimate = others.get("time_estimate")
        if isinstance(estimate, dict):  # the estimate made before the search first started
            cache.fields["time_estimate"] = estimate
        skeletons = others.get("skeletons")
        if isinstance(skeletons, list) and all(isinstance(key, str) for key in skeletons):
            cache.fields["skeletons"] = skeletons  # --width-choices: the widths it started with
        return cache
    if folder.checkpoint.exists():
        raise OptionError(f"{folder.path} already holds a search; resume it with --resume {folder.path} or choose "
                          "another --out")
    return ResultCache(folder.checkpoint, config.to_dict(), {}, CHECKPOINT_FORMAT, extra=extra,
                       every_s=CHECKPOINT_EVERY_S)


def run_search(config: SearchConfig, out_dir: str | Path, resume: bool = False,
               progress: Callable[[int, int | None, str], None] | None = None,
               splits: "DatasetSplits | None" = None, workers: int | None = None,
               ray_address: str | None = None, notes: Callable[[str], None] | None = None) -> SearchOutcome:
    """Run (or resume) a search and write its files to ``out_dir``.

    ``progress(done, total, message)`` is called after each scored evaluation; ``notes(line)``, when given, gets
    the estimate of the search's time before it starts (:mod:`.budget`; measured, so only with ``notes`` or
    ``config.budget_minutes``). On Ctrl-C the checkpoint is saved
    before ``KeyboardInterrupt`` propagates, so ``resume=True`` continues without re-scoring anything.
    ``splits`` supplies data in memory instead of loading ``config.dataset`` (benchmarks, notebooks).
    ``workers`` (a local Ray cluster of that many processes) or ``ray_address`` (a running cluster) spread the
    scoring and the refinement trainings over Ray tasks (:mod:`.distributed`); the results are the same.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise OptionError(f"--workers must be a positive integer, got {workers!r}")
    folder = RunFolder(out_dir)
    if not resume:
        resolve_device(config.device)  # a device this machine lacks is refused before anything is written
        check_writable(folder.path, "--out", folder=True)
    cache = open_checkpoint(folder, config, resume)
    config = SearchConfig(**cache.config)
    if resume:
        resolve_device(config.device)  # the recorded one, before the data is loaded
    with computing_threads(config.threads):
        return _prepare_and_search(config, folder, cache, resume, progress, splits, workers, ray_address, notes)


def _prepare_and_search(config: SearchConfig, folder: RunFolder, cache: ResultCache, resume: bool, progress,
                        splits, workers: int | None = None, ray_address: str | None = None,
                        notes=None) -> SearchOutcome:
    """Check everything that can be checked before scoring (target, data, skeleton, memory), then search while
    holding the run folder."""
    target = load_target(config.target)
    timing = config.timing or target.timing
    if not target.is_hardware and (config.max_cores is not None or config.max_energy is not None):
        raise OptionError(f"--max-cores and --max-energy need a hardware target; '{target.name}' has no cores")
    if splits is None:
        splits = load_dataset(config.dataset, config.data_dir, config.timesteps, config.seed, config.max_samples)
    if splits.kind == "frames" and config.encoding != "rate":
        raise OptionError("event datasets are spikes already: --encoding applies to static images only")
    dense = target.network == "dense"
    if dense:
        fixed = [name for name, value in (("--widths", config.widths), ("--stages", config.stages),
                                          ("--head-pool", config.head_pool), ("--skeletons", config.skeletons > 1),
                                          ("--width-choices", config.width_choices),
                                          ("--stem-pool", config.stem_pool != 1),
                                          ("--deployable", config.deployable != "any")) if value]
        if fixed:
            raise OptionError(f"{fixed[0]} shapes convolutional networks; {target.name} holds dense populations "
                              "(choose their size with --width)")
    space = SearchSpace(allow_backward=config.allow_backward, chains_only=config.deployable == "netx", dense=dense)
    template = template_architecture(config, splits, timing, target.network)
    if config.widths:  # before the pre-flight builds networks of the widths asked for
        check_search_memory(config, [replace(template, width=config.widths[0], stages=len(config.widths),
                                             widths=config.widths if len(set(config.widths)) > 1 else ())])
    elif config.width:
        check_search_memory(config, [template])
    if dense:
        templates, preflight = choose_dense_width(template, target, config.width)
    else:
        templates, preflight = choose_skeletons(template, target, config.width, config.stages, config.head_pool,
                                                config.max_cores, heaviest_cell_of(template, space.chains_only),
                                                config.widths, config.skeletons,
                                                STEM_TWIN if config.stem_pool == STEM_POOL_AUTO else None,
                                                config.width_choices)
    if config.width_choices:  # which widths fit memory may change between a start and a resume: the first holds
        templates, preflight = widths_in_memory(config, templates, preflight,
                                                cache.fields.get("skeletons") if resume else None)
        cache.fields["skeletons"] = [template.skeleton_key for template in templates]
    else:  # widths_in_memory checked each width it kept
        check_search_memory(config, templates)
    with folder.writing("search"):
        if not resume and folder.checkpoint.exists():  # written by a search that ran while this one started
            open_checkpoint(folder, config, resume)
        return _search(config, folder, cache, resume, target, timing, splits, space, templates, preflight, progress,
                       workers, ray_address, notes)


def widths_in_memory(config: SearchConfig, templates: list[Architecture], preflight: dict,
                     resumed: list[str] | None = None) -> tuple[list[Architecture], dict]:
    """With ``--width-choices``: the skeletons (one per width) whose search fits in memory
    (:func:`check_search_memory`), the pre-flight's report without the others and its verdict naming them; when no
    width fits, the narrowest one's refusal. A resumed search keeps the skeletons it started with (``resumed``,
    their keys: the checkpoint's keys of the first name none), refusing in one line when one is no longer kept or
    no longer fits."""
    keys = [template.skeleton_key for template in templates]
    if resumed is not None:
        missing = [key for key in resumed if key not in keys]
        if missing:
            raise ResumeError(f"cannot resume: the search started with skeleton '{missing[0]}', which the pre-flight "
                              "no longer keeps; start a new search")
        kept = [keys.index(key) for key in resumed]
        check_search_memory(config, [templates[index] for index in kept])
    else:
        kept, refusals = [], []
        for index, template in enumerate(templates):
            try:
                check_search_memory(config, [template])
            except OptionError as exc:
                refusals.append(exc)
            else:
                kept.append(index)
        if not kept:
            raise refusals[-1]
    if len(kept) == len(templates):
        return templates, preflight
    skeletons = [preflight["skeletons"][index] for index in kept]
    verdict = preflight["verdict"] + "".join(f"; width {template.width}: left out, its search would not fit in memory"
                                             for index, template in enumerate(templates) if index not in kept)
    return [templates[index] for index in kept], {**preflight, "skeleton": skeletons[0], "skeletons": skeletons,
                                                  "verdict": verdict}


def check_search_memory(config: SearchConfig, templates: list[Architecture]) -> None:
    """Refuse (one line, before anything is allocated) a search whose scoring or trainings would not fit in memory:
    the scoring batches and one scoring pass of the heaviest cell, and its training when candidates are trained."""
    from ..arch.footprint import check_network_memory
    from ..limits import FLOAT_BYTES
    from ..training.loop import SHORT_TRAINING_BATCH

    for template in templates:
        heaviest = template.with_cell(heaviest_cell_of(template))
        widths = getattr(template, "widths", ())
        width = "/".join(map(str, widths)) if widths else str(template.width)
        batches = FLOAT_BYTES * config.repeats * config.batch_size * config.timesteps * int(np.prod(template.input_shape))
        check_network_memory(heaviest, config.batch_size, False, f"scoring at width {width} with "
                             f"--timesteps {config.timesteps}, --batch-size {config.batch_size}",
                             "lower --timesteps, --batch-size or --width", batches)
        if config.refine or config.strategy == "evolution":
            batch = max(SHORT_TRAINING_BATCH, config.batch_size if config.strategy == "evolution" else 0)
            check_network_memory(heaviest, batch, True, f"training candidates at width {width} "
                                 f"with --timesteps {config.timesteps}", "lower --timesteps or --width")


def _search(config, folder, cache, resume, target, timing, splits, space, templates, preflight,
            progress, workers=None, ray_address=None, notes=None) -> SearchOutcome:
    """The search proper, while this process holds the run folder."""
    score_config = ScoreConfig(config.score, config.batch_size, config.repeats, config.bn_mode, config.reset_state)
    device = resolve_device(config.device)
    evaluator = Evaluator(scoring_batches(config, splits), score_config, device)
    time_estimate = cache.fields.get("time_estimate")  # a resumed search keeps the estimate made at its start
    fit_share = None
    if not resume and (notes is not None or config.budget_minutes is not None):
        from .budget import plan

        # on a cluster (ray_address) its size is unknown: one at a time
        config, found, refit = plan(config, CandidateMeasurer(config, target, templates, evaluator), space, splits,
                                    notes, workers or 1)
        cache.config, time_estimate = config.to_dict(), found.to_dict()  # a budget's share is recorded
        cache.fields["time_estimate"] = time_estimate
        if config.budget_minutes is not None and config.refine:
            from .budget import ShareRefit

            fit_share = ShareRefit(config, refit, cache, notes)
    if not resume:
        cache.save()
    # what the trainings validate on (a last rung that continues another: splits, refine's whole)
    ranking = validation_subset(splits, config.val_samples, config.seed)
    totals = {"random": min(config.candidates, space.size()),
              "evolution": min(config.population * (config.generations + 1), space.size())}
    total = totals.get(config.strategy)  # prune: the rounds vary
    pool = None
    if workers is not None or ray_address is not None:
        from .distributed import WorkerPool, new_job

        pool = WorkerPool(workers, ray_address, config.threads, device)
        try:
            pool.share(new_job(config, target, templates, evaluator, ranking, None if ranking is splits else splits))
        except BaseException:
            pool.close()
            raise
    scorer = CandidateScorer(config, target, templates, evaluator, cache, space, total, progress, pool)
    started = time.perf_counter()
    try:
        if config.strategy == "random":
            skeleton_rng = np.random.default_rng([config.seed, 2])
            result = run_random(space, config.candidates, np.random.default_rng(config.seed), scorer.cell_row,
                                lambda count: scorer.draw_skeletons(count, skeleton_rng), scorer.prefetch_cells)
        elif config.strategy == "evolution":
            result, supernet_log = evolve(config, space, scorer, ranking, folder.supernet, scorer.announce)
        else:
            result = run_prune_each(space, list(scorer.measurer.templates), scorer.prune_callbacks)
        signal = {"chosen_by": preselection_signal(config), "refine": 0}
        if config.refine:
            result, signal = refine(config, space, result, scorer, ranking, folder, fit_share, splits)
            if fit_share is not None:
                config = fit_share.config  # the share the trainings used
        if config.strategy == "evolution":
            signal["supernet"] = supernet_log
    except BaseException:
        cache.save()
        raise
    finally:
        if pool is not None:
            pool.close()
    cache.save(complete=True)
    elapsed = time.perf_counter() - started

    rows = result.rows
    rank_candidates(rows)
    winner_key, skeleton = cell_key(result.cell), result.skeleton or scorer.primary
    winner = next(r for r in rows if r.is_candidate and (r.cell, r.skeleton) == (winner_key, skeleton))
    architecture = scorer.architecture(result.cell, skeleton)

    def hardware_estimate():
        net = scorer.build_cell(result.cell, skeleton)
        activity = evaluator.evaluate(net)["activity"]
        _, mapping, estimate = hardware_terms(net, activity, target, config.max_cores, config.max_energy)
        return estimate, mapping

    try:
        report = write_report(folder, config, target, timing, splits, device, space.size(), rows, winner,
                              architecture, signal, elapsed, hardware_estimate, preflight, time_estimate)
    except OSError as exc:  # the scored results are safe in the checkpoint: say how to get the files
        raise SearchError(f"could not write the search's files ({exc.strerror or exc}: {exc.filename}); every "
                          f"result is kept in {folder.checkpoint}: hwnas search --resume {folder.path} writes them "
                          "without scoring again") from None
    return SearchOutcome(folder.path, architecture, winner, rows, report, splits)
