"""Multi-fidelity refinement: a brief screening training preselects K candidates, short real trainings pick the
winner.

A proxy at initialisation may rank cells no better than chance on small spiking networks, or the wrong way on
event data (``hwnas proxy-check`` measures it). Refinement keeps the zero-cost score plus the hardware terms for
what they are cheap at, discarding most of the space: the ``--screen`` best-fitness candidates go on to a
screening rung, where each trains on ``--screen-fraction`` of an epoch; the K (``--refine``) best by screened
fitness go on to successive halving (Jamieson & Talwalkar, AISTATS 2016): every candidate of a rung is trained
for the rung's epochs, the better half by refined fitness goes on to a rung with twice the epochs, until two are
left; the best of the last rung wins. With ``--screen 0`` (or any S <= K) the K best-fitness candidates go to
halving directly. With ``--screen-fraction 1`` and ``--refine-epochs 1`` the screening is the first rung's training.

    refined fitness = 100 * validation accuracy - w * log2(energy / 1 uJ)

where w (``--refine-energy-weight``) is the accuracy points one doubling of energy per inference costs (the
screening rung ranks by the same formula, with its own accuracy and trained energy). The prune strategy scores a
final cell per skeleton, so its pool also draws random cells from the whole space, scored like any candidate.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from ..arch.genotype import cell_key, parse_cell_key
from ..errors import ResumeError
from ..io_utils import write_bytes_atomic
from ..run_folder import RunFolder
from .rows import Row, skeleton_suffix
from .strategies import StrategyResult, random_cells

ENERGY_UNIT_J = 1e-6
SEPARATION_Z = 1.96  # the two-sided 95 % quantile of the normal distribution
WHOLE_VALIDATION_KEY = "|whole-val"  # the checkpoint key's suffix of a last rung validated on the whole split


def refined_fitness(val_accuracy: float, energy_j: float | None, energy_weight: float) -> float:
    """Short-training accuracy in points minus the energy term of the search's fitness."""
    if energy_j is None or energy_j <= 0 or energy_weight == 0:
        return 100.0 * val_accuracy
    return 100.0 * val_accuracy - energy_weight * math.log2(energy_j / ENERGY_UNIT_J)


def rung_separation(field: list[Row], chosen: Row, val_samples: int,
                    correct: dict[int, str | None] | None = None) -> dict | None:
    """How far the last rung's ``chosen`` candidate leads its runner-up in refined fitness, against the noise of
    their two validation accuracies on ``val_samples`` samples (None with no runner-up).

    ``noise``, which decides ``separated``, is 1.96 standard errors of the difference of two independent accuracy
    estimates, in points. Both candidates are judged on the same samples, so the sampling error of their difference
    proper is the paired one: with which samples each classified (``correct``, by ``id`` of the row:
    :func:`packed_samples`) it is reported too, as ``paired_noise``, from the samples only one of them classified
    (as McNemar's test counts them). The wider figure decides on purpose: neither counts what the rung cannot
    measure (how the order of two networks after a few short epochs holds after full training, and the trainings'
    seeds), and on full MNIST a lead of 0.65 points beyond the paired noise (0.56) but inside the independent one
    (1.09) was reversed by full training (docs/measurements.md). A lead inside the noise says the rung could not
    tell the two apart, not that they are equal."""
    others = [row for row in field if row is not chosen and row.refine_fitness is not None]
    if not others or val_samples < 1:
        return None
    runner = max(others, key=lambda r: (r.refine_fitness, -r.index))
    variance = sum(a * (1.0 - a) for a in (chosen.refine_accuracy, runner.refine_accuracy)) / val_samples
    margin = chosen.refine_fitness - runner.refine_fitness
    noise = 100.0 * SEPARATION_Z * math.sqrt(variance)
    paired = {}
    pair = [unpacked_samples((correct or {}).get(id(row)), val_samples) for row in (chosen, runner)]
    if pair[0] is not None and pair[1] is not None:
        only_chosen, only_runner = int(np.sum(pair[0] & ~pair[1])), int(np.sum(~pair[0] & pair[1]))
        difference = (only_chosen - only_runner) / val_samples
        paired_variance = max((only_chosen + only_runner) / val_samples - difference ** 2, 0.0) / val_samples
        paired = {"paired_noise": 100.0 * SEPARATION_Z * math.sqrt(paired_variance),
                  "discordant": only_chosen + only_runner}
    return {"runner_up": {"cell": runner.cell, "skeleton": runner.skeleton, "val_accuracy": runner.refine_accuracy,
                          "energy_j": runner.refine_energy_j, "refine_fitness": runner.refine_fitness},
            "margin": margin, "noise": noise, **paired, "val_samples": val_samples, "separated": margin > noise}


def packed_samples(correct) -> str:
    """A boolean tensor of which samples a network classified, for the checkpoint: their count, a colon, and hex of
    their bits (eight samples a byte)."""
    flags = np.asarray(correct, dtype=bool).reshape(-1)
    return f"{flags.size}:{np.packbits(flags).tobytes().hex()}"


def unpacked_samples(packed: str | None, samples: int) -> np.ndarray | None:
    """:func:`packed_samples`' booleans, when they are ``samples`` samples' (None otherwise: none kept, or kept for
    a split of another size)."""
    count, _, bits = packed.partition(":") if isinstance(packed, str) else ("", "", "")
    if count != str(samples) or len(bits) != 2 * math.ceil(samples / 8):
        return None
    try:
        return np.unpackbits(np.frombuffer(bytes.fromhex(bits), dtype=np.uint8))[:samples].astype(bool)
    except ValueError:
        return None


def refine_pool(rows: list[Row], k: int) -> list[Row]:
    """The ``k`` usable (non-degenerate, feasible) candidate rows of highest fitness, one per cell and skeleton,
    each skeleton's best among them."""
    best: dict[tuple[str, str], Row] = {}
    for row in rows:
        if row.is_candidate and row.usable:
            key = (row.cell, row.skeleton)
            if key not in best or row.fitness > best[key].fitness:
                best[key] = row
    return best_of_each_skeleton(sorted(best.values(), key=lambda r: (-r.fitness, r.index)), k)


def best_of_each_skeleton(ranked: list[Row], k: int) -> list[Row]:
    """The first ``k`` of ``ranked`` (best first, order kept), except that each skeleton's best row is among them
    (the best ``k`` skeletons' when there are more): a skeleton whose cells all learn more slowly in a short
    training (a stride-2 stem's, measured on MNIST-saccades) still reaches the rungs and the refined front. With
    one skeleton, the first ``k``."""
    firsts: dict[str, Row] = {}
    for row in ranked:
        firsts.setdefault(row.skeleton, row)
    reserved = {id(row) for row in list(firsts.values())[:k]}
    kept, room = [], k - len(reserved)
    for row in ranked:
        if id(row) in reserved:
            kept.append(row)
        elif room > 0:
            kept.append(row)
            room -= 1
    return kept


def halving_rungs(k: int, epochs: int) -> list[tuple[int, int]]:
    """(candidates, epochs) per rung of successive halving from ``k`` candidates at ``epochs``: halve the field
    and double the epochs until two or fewer are left."""
    rungs = [(k, epochs)]
    while rungs[-1][0] > 2:
        rungs.append((math.ceil(rungs[-1][0] / 2), rungs[-1][1] * 2))
    return rungs


def continued_last_rung(k: int, epochs: int) -> tuple[int, int] | None:
    """The last rung of :func:`halving_rungs` from ``k`` candidates at ``epochs`` when it continues an earlier rung,
    as (candidates, epochs it adds); None when the first rung is the last. Only such a rung validates on the whole
    validation split (:func:`refine`), and the budget counts its passes (:mod:`hwnas.nas.budget`)."""
    rungs = halving_rungs(k, epochs)
    return (rungs[-1][0], rungs[-1][1] - rungs[-2][1]) if len(rungs) > 1 else None


def pool_sample_size(k: int, screen: int = 0) -> int:
    """Random cells a prune search adds to its pool of ``k`` (the winner alone is no choice to refine): 3k, or
    enough for a screening of ``screen`` candidates (its final cell one of them, with one skeleton) when it screens
    more."""
    return max(3 * k, screen - 1) if screen > k else 3 * k


def refine_key(row: Row, epochs: int, primary: str) -> str:
    """The checkpoint key of ``row``'s candidate trained for ``epochs`` (its skeleton named unless primary)."""
    return f"refine|{row.cell}|{epochs}" + skeleton_suffix(row.skeleton, primary)


def screen_key(row: Row, fraction: float, primary: str) -> str:
    """The checkpoint key of ``row``'s candidate screened on ``fraction`` (< 1, or with --refine-epochs > 1) of an
    epoch."""
    return f"screen|{row.cell}|{fraction:g}" + skeleton_suffix(row.skeleton, primary)


def epoch_share(fraction: float) -> str:
    """``fraction`` of an epoch in words."""
    return "one epoch" if fraction == 1 else f"{fraction:g} of an epoch"


class TimeLeft:
    """The time the rest of a phase's trainings will take (``remaining`` of them, of equal length), estimated from
    the ones this process has run so far; shown in the progress messages."""

    def __init__(self, remaining: int, now: Callable[[], float] = time.perf_counter) -> None:
        self.remaining = remaining
        self.now = now
        self.seconds = 0.0
        self.runs = 0

    def text(self) -> str:
        """``, about 3 min left`` once a training has run, else nothing."""
        if not self.runs or not self.remaining:
            return ""
        left = self.seconds / self.runs * self.remaining
        return f", about {left:.0f} s left" if left < 90 else f", about {left / 60:.0f} min left" if left < 5400 \
            else f", about {left / 3600:.1f} h left"

    def run(self, compute: Callable[[], dict]) -> dict:
        """``compute()``, timed."""
        started = self.now()
        result = compute()
        self.seconds += self.now() - started
        self.runs += 1
        self.remaining = max(self.remaining - 1, 0)
        return result


def cached_training(scorer, key: str, message: str, compute: Callable[[], dict],
                    clock: TimeLeft | None = None) -> dict:
    """The checkpoint's entry ``key``, trained (``compute()``, announced with ``message`` and the phase's time
    left by ``clock``) and saved when missing."""
    cache = scorer.cache
    if key not in cache.results:
        scorer.announce(message + (clock.text() if clock else ""))
        cache.results[key] = clock.run(compute) if clock else compute()
        cache.save()
    return cache.results[key]


def preselection_signal(config) -> str:
    """What ranked the candidates before any refinement training."""
    if config.strategy == "evolution":
        return f"spike-aware fitness with supernet weights (lambda {config.spike_lambda:g})"
    return config.score


def screen(config, pool: list[Row], scorer, splits, weight: float, keep: Callable[[str, dict], dict],
           share: float) -> tuple[list[Row], dict]:
    """Train every row of ``pool`` on ``config.screen_fraction`` of an epoch over ``share`` of the training split
    (the search's ``train_fraction``; cached in the checkpoint) and keep
    the ``config.refine`` of highest screened fitness, each skeleton's best among them
    (:func:`best_of_each_skeleton`). Returns them and the screening's record for the report.

    A whole epoch when the first halving rung trains one epoch (``--refine-epochs 1``) is that rung's training (the
    same seeded weights and data order): it is cached under the rung's key with its state (``keep(key, result)``
    writes it), so the kept candidates' first rung trains nothing again."""
    fraction = config.screen_fraction
    first_rung = fraction == 1 and config.refine_epochs == 1
    if first_rung:
        keys = {id(row): refine_key(row, 1, scorer.primary) for row in pool}
        tasks = {id(row): ("refine", row.cell, row.skeleton, 1, share, None, False) for row in pool}
    else:
        keys = {id(row): screen_key(row, fraction, scorer.primary) for row in pool}
        tasks = {id(row): ("screen", row.cell, row.skeleton, fraction * share) for row in pool}
    what = f"screen: training {len(pool)} candidates on {epoch_share(fraction)} each"
    scorer.prefetch([(keys[id(row)], tasks[id(row)]) for row in pool], what, save_each=True,
                    keep=keep if first_rung else None)
    clock = TimeLeft(sum(keys[id(row)] not in scorer.cache.results for row in pool))
    for number, row in enumerate(pool, start=1):
        key, cell = keys[id(row)], parse_cell_key(row.cell)
        cached = cached_training(scorer, key, f"{what}: {number}/{len(pool)}", lambda: (
            keep(key, scorer.measurer.refine_training(cell, row.skeleton, 1, splits, share)) if first_rung
            else scorer.measurer.screen_training(cell, row.skeleton, fraction * share, splits)), clock)
        row.screen_accuracy = cached["val_accuracy"]
        row.screen_fitness = refined_fitness(row.screen_accuracy, cached.get("energy_j") or row.energy_j, weight)
    kept = best_of_each_skeleton(sorted(pool, key=lambda r: (-r.screen_fitness, r.index)), config.refine)
    record = {"screened": len(pool), "fraction": fraction, "kept": len(kept),
              "cells": [{"cell": r.cell, "skeleton": r.skeleton, "fitness": r.fitness,
                         "val_accuracy": r.screen_accuracy, "screen_fitness": r.screen_fitness,
                         "kept": any(r is k for k in kept)} for r in pool]}
    return kept, record


def refine(config, space, result: StrategyResult, scorer, splits, folder: RunFolder,
           fit_share: Callable[[list[Row]], float] | None = None, whole=None) -> tuple[StrategyResult, dict]:
    """Successive halving over the ``config.refine`` best candidates of ``result`` by screened fitness (the
    ``config.screen`` best by fitness screened, :func:`screen`; without a screening, ``config.screen <=
    config.refine``, the ``config.refine`` best by fitness), chosen by short-training accuracy plus the energy
    term of the trained network; ``scorer`` is the search's :class:`~hwnas.nas.candidates.CandidateScorer`.
    A rung continues each survivor's training from its state at the previous rung (kept in ``folder``'s
    ``refine/``), so a candidate trained to 4 epochs cost 4 epochs, not 1 + 2 + 4. Every training is cached in the
    checkpoint. Every training uses ``config.train_fraction`` of the training split, or, with ``fit_share``, the
    share it returns for the pool about to be trained (a budget's re-fit, :mod:`hwnas.nas.budget`). ``splits``'
    validation split ranks the trainings (``val_samples``' subset); when ``whole`` (the same splits with the whole
    validation split) has more, the last rung, when it continues an earlier one, validates on ``whole``: it decides
    between the finalists, whose accuracies lie closer together than a subset resolves (on full MNIST, 2,000 samples
    ranked two finalists in the order 6,000 reversed twice, as full training did; docs/measurements.md). Returns the
    result with the winner and the signal that chose it (for ``report.json``)."""
    rows = list(result.rows)
    if config.strategy == "prune":  # prune scores a final cell per skeleton: random cells join the pool (a cell
        # already scored in the skeleton drawn for it is not scored again)
        seen = {(row.cell, row.skeleton) for row in rows if row.is_candidate}
        rng = np.random.default_rng([config.seed, 1])
        cells = random_cells(space, pool_sample_size(config.refine, config.screen), rng)
        drawn = scorer.draw_skeletons(len(cells), np.random.default_rng([config.seed, 3]))
        fresh = [(cell, skeleton) for cell, skeleton in zip(cells, drawn) if (cell_key(cell), skeleton) not in seen]
        scorer.prefetch_cells([cell for cell, _ in fresh], [skeleton for _, skeleton in fresh])
        for cell, skeleton in fresh:
            rows.append(scorer.cell_row(cell, skeleton, {"index": len(rows), "kind": "cell"}))
    screening = config.screen > config.refine
    pool = refine_pool(rows, config.screen if screening else config.refine)
    if not pool:  # nothing usable to train: the checks after the search report why
        return StrategyResult(result.cell, rows, result.skeleton), {
            "chosen_by": preselection_signal(config), "refine": 0, "note": "no usable candidate to refine"}
    hardware = any(row.energy_j for row in pool)
    weight = config.refine_energy_weight if hardware else 0.0
    cache = scorer.cache

    def keep(key: str, result: dict) -> dict:
        """Write a training's state before the checkpoint names its entry; cache the rest."""
        write_bytes_atomic(folder.refine_state(key), result.pop("state"))
        return result

    share = fit_share(pool) if fit_share is not None else config.train_fraction
    screened = None
    if screening and len(pool) > config.refine:
        pool, screened = screen(config, pool, scorer, splits, weight, keep, share)
    field, rungs, correct = pool, [], {}
    if whole is not None and (int(whole.val_y.shape[0]) <= int(splits.val_y.shape[0])  # the subset is whole already
                              or continued_last_rung(len(pool), config.refine_epochs) is None):
        whole = None
    plan = halving_rungs(len(pool), config.refine_epochs)

    for rung_number, (count, epochs) in enumerate(plan):
        field = sorted(field, key=lambda r: (-(r.refine_fitness if r.refine_fitness is not None else r.fitness),
                                             r.index))[:count]
        before = rungs[-1]["epochs"] if rungs else None
        on_whole = whole is not None and rung_number == len(plan) - 1
        rung_splits = whole if on_whole else splits
        keys = {id(row): refine_key(row, epochs, scorer.primary) + (WHOLE_VALIDATION_KEY if on_whole else "")
                for row in field}

        def previous_state(row: Row) -> bytes | None:
            """The row's state at the last rung (None at the first); a missing one is a one-line error, since
            training over again would not give what continuing gives."""
            if not before:
                return None
            path = folder.refine_state(refine_key(row, before, scorer.primary))
            if not path.is_file():
                raise ResumeError(f"cannot continue the refinement: {path} (the training state of {row.cell} after "
                                  f"{before} epoch(s)) is missing; start a new search")
            return path.read_bytes()

        added = f"{epochs - before} more epoch(s), {epochs} in all" if before else f"{epochs} epoch(s)"
        scorer.prefetch([(keys[id(row)], ("refine", row.cell, row.skeleton, epochs, share, previous_state(row),
                                           on_whole))
                         for row in field if keys[id(row)] not in cache.results],
                        f"refine: training {len(field)} candidates for {added}", save_each=True, keep=keep)
        clock = TimeLeft(sum(keys[id(row)] not in cache.results for row in field))
        for number, row in enumerate(field, start=1):
            primary = row.skeleton == scorer.primary
            cache_key = keys[id(row)]
            cached = cached_training(
                scorer, cache_key, f"refine: training {row.cell}{'' if primary else ' in ' + row.skeleton} for "
                f"{added}: {number}/{len(field)}", lambda: keep(cache_key, scorer.measurer.refine_training(
                    parse_cell_key(row.cell), row.skeleton, epochs, rung_splits, share, previous_state(row),
                    best_from_here=on_whole)), clock)
            row.refine_epochs = epochs
            row.refine_accuracy = cached["val_accuracy"]
            row.refine_energy_j = cached.get("energy_j") or row.energy_j
            row.refine_latency_s = cached.get("inference_time_s")  # absent from checkpoints before it was kept
            row.refine_fitness = refined_fitness(row.refine_accuracy, row.refine_energy_j, weight)
            correct[id(row)] = cached.get("val_correct")  # absent from checkpoints before it was kept
        rungs.append({"epochs": epochs, "val_samples": int(rung_splits.val_y.shape[0]),
                      "cells": [{"cell": r.cell, "skeleton": r.skeleton, "val_accuracy": r.refine_accuracy,
                                 "energy_j": r.refine_energy_j, "inference_time_s": r.refine_latency_s,
                                 "refine_fitness": r.refine_fitness} for r in field]})
    chosen = max(field, key=lambda r: (r.refine_fitness, -r.index))
    last = (f"; the last rung on the whole validation split, {rungs[-1]['val_samples']:,} samples"
            if whole is not None else "")
    signal = {"chosen_by": f"short training (successive halving up to {rungs[-1]['epochs']} epoch(s), validation "
                           f"accuracy{last})",
              "refine": config.refine, "refine_epochs": config.refine_epochs,
              "refine_energy_weight": weight, "rungs": rungs,
              "preselected_by": (f"screening ({epoch_share(config.screen_fraction)} of training each, validation "
                                 f"accuracy; the {screened['screened']} best by {preselection_signal(config)})"
                                 if screened else preselection_signal(config)),
              **({"screen": screened} if screened else {}),
              "pool": [{"cell": r.cell, "skeleton": r.skeleton, "fitness": r.fitness, "energy_j": r.energy_j,
                        "refine_epochs": r.refine_epochs, "refine_accuracy": r.refine_accuracy,
                        "refine_energy_j": r.refine_energy_j, "refine_fitness": r.refine_fitness} for r in pool]}
    separation = rung_separation(field, chosen, rungs[-1]["val_samples"], correct)
    if separation is not None:
        signal["separation"] = separation
    return StrategyResult(parse_cell_key(chosen.cell), rows, chosen.skeleton), signal
