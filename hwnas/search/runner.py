"""A whole search run: configuration, data, strategy, checkpoint/resume and the files of the run directory.

Files written (atomically) to the run directory:
``checkpoint.json`` (configuration and every scored result, rewritten as the search goes; what ``--resume``
reads), ``search.csv`` (one row per scored evaluation), ``architecture.json`` (the winner) and ``report.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..data import load_dataset
from ..data.splits import ENCODINGS, DatasetSplits, encode_batch
from ..errors import OptionError, ResumeError, SearchError
from ..hw_models import load_target
from ..hw_models.fitness import fitness, hardware_terms
from ..io_utils import write_csv_atomic, write_json_atomic
from ..neuron import NeuronParams
from .evaluate import Evaluator, ScoreConfig, build_seeded, pick_device
from .network import build_network
from .space import (DOWNSAMPLES, TIMINGS, Architecture, Cell, Edge, SearchSpace, cell_key, default_width,
                    parse_cell_key)
from .names import BN_MODES, DEFAULT_REFINE_ENERGY_WEIGHT, STRATEGIES
from .strategies import run_prune, run_random, sort_key

CHECKPOINT = "checkpoint.json"
CSV_COLUMNS = ("index", "kind", "round", "cell", "ablated", "score", "degenerate", "reason", "energy_j", "cores",
               "feasible", "rule", "violation", "fitness", "importance", "firing_rate", "silent_share",
               "spikes_per_sample", "synops_per_sample", "neurons", "latency_steps", "step_time_s", "seconds", "rank",
               "refine_epochs", "refine_accuracy", "refine_energy_j", "refine_fitness")
# Default --energy-weight: score points per doubling of energy. Measured on digits/loihi2 (200 random cells, seed 0):
# SAHD scores spread over 39 points and energies over 3.6 doublings; the best-scoring cell stays the winner up
# to a weight of 6 and an all-skip cell with 0.22x its energy wins from 8 on. At 4 the prune strategy already
# trades 6.6 score points for 0.72x energy (bench/hw_fitness.py); energy does not decide alone.
DEFAULT_ENERGY_WEIGHT = 4.0
CHECKPOINT_EVERY_S = 5.0


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search's result (with the seed, the same config gives the same result)."""

    target: str = "loihi2"
    dataset: str = "digits"
    data_dir: str | None = None
    strategy: str = "prune"
    candidates: int = 100
    timesteps: int = 8
    width: int | None = None
    downsample: str = "maxpool"
    encoding: str = "rate"
    timing: str | None = None
    allow_backward: bool = True
    score: str = "sahd"
    batch_size: int = 64
    repeats: int = 2
    bn_mode: str = "batch"
    reset_state: bool = True
    du: float = 1.0
    dv: float = 0.75
    theta: float = 1.0
    seed: int = 0
    max_samples: int | None = None
    energy_weight: float = DEFAULT_ENERGY_WEIGHT
    max_cores: int | None = None
    max_energy: float | None = None
    refine: int = 0
    refine_epochs: int = 1
    refine_energy_weight: float = DEFAULT_REFINE_ENERGY_WEIGHT

    def __post_init__(self) -> None:
        positive = {"candidates": self.candidates, "timesteps": self.timesteps, "repeats": self.repeats}
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise OptionError(f"--{name} must be a positive integer, got {value!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            raise OptionError(f"--width must be a positive integer, got {self.width!r}")
        for name in ("energy_weight", "refine_energy_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise OptionError(f"--{name.replace('_', '-')} must be a non-negative number, got {value!r}")
        if self.max_cores is not None and (not isinstance(self.max_cores, int) or self.max_cores < 1):
            raise OptionError(f"--max-cores must be a positive integer, got {self.max_cores!r}")
        if self.max_energy is not None and not self.max_energy > 0:
            raise OptionError(f"--max-energy must be a positive number of joules, got {self.max_energy!r}")
        if self.refine < 0 or self.refine_epochs < 1:
            raise OptionError(f"--refine must be >= 0 and --refine-epochs >= 1, got {self.refine}, {self.refine_epochs}")
        if self.max_samples is not None and self.max_samples < 1:
            raise OptionError(f"--max-samples must be a positive integer, got {self.max_samples!r}")
        choices = {"strategy": STRATEGIES, "downsample": DOWNSAMPLES, "encoding": ENCODINGS, "bn_mode": BN_MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise OptionError(f"--{name.replace('_', '-')} '{getattr(self, name)}' is unknown (choose {', '.join(allowed)})")
        if self.timing is not None and self.timing not in TIMINGS:
            raise OptionError(f"--timing '{self.timing}' is unknown (choose {', '.join(TIMINGS)})")
        ScoreConfig(self.score, self.batch_size, self.repeats, self.bn_mode, self.reset_state)
        try:
            NeuronParams(du=self.du, dv=self.dv, theta=self.theta)
        except Exception as exc:  # ArchitectureError on a bad neuron parameter
            raise OptionError(str(exc)) from None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "SearchConfig":
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - names:
            raise ResumeError(f"checkpoint configuration has unknown fields {sorted(set(data) - names) if isinstance(data, dict) else data!r}")
        return cls(**data)


@dataclass
class SearchOutcome:
    """What a finished search produced."""

    out_dir: Path
    architecture: Architecture
    winner: dict
    rows: list[dict]
    report: dict


class _Checkpoint:
    """The result cache of a run, persisted atomically every few seconds and at the end."""

    def __init__(self, path: Path, config: SearchConfig, results: dict[str, dict] | None = None) -> None:
        self.path = path
        self.config = config
        self.results = results or {}
        self.dirty = False
        self.last_save = time.monotonic()

    @classmethod
    def load(cls, out_dir: Path) -> "_Checkpoint":
        path = out_dir / CHECKPOINT
        if not out_dir.is_dir():
            raise ResumeError(f"cannot resume: {out_dir} is not a folder")
        if not path.is_file():
            raise ResumeError(f"cannot resume: {path} does not exist (is {out_dir} a search run directory?)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ResumeError(f"cannot read {path}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise ResumeError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
        if not isinstance(data, dict) or data.get("format") != "hwnas.search-checkpoint":
            raise ResumeError(f"{path} is not an hwnas search checkpoint")
        results = data.get("results")
        def well_formed(key, value) -> bool:  # a scored evaluation, or a refinement training's accuracy
            return isinstance(value, dict) and ("val_accuracy" in value if key.startswith("refine|") else "score" in value)

        if not isinstance(results, dict) or not all(well_formed(k, v) for k, v in results.items()):
            raise ResumeError(f"{path}: 'results' is malformed")
        for value in results.values():
            if "score" in value:
                value["score"] = -math.inf if value["score"] is None else float(value["score"])
        return cls(path, SearchConfig.from_dict(data.get("config")), results)

    def save(self, complete: bool = False) -> None:
        write_json_atomic(self.path, {"format": "hwnas.search-checkpoint", "hwnas": __version__, "complete": complete,
                                      "config": self.config.to_dict(), "results": self.results})
        self.dirty = False
        self.last_save = time.monotonic()

    def maybe_save(self) -> None:
        if self.dirty and time.monotonic() - self.last_save >= CHECKPOINT_EVERY_S:
            self.save()


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


def template_architecture(config: SearchConfig, splits, timing: str) -> Architecture:
    """The architecture every candidate shares (data shapes, width, timesteps, neuron, timing); its cell is a
    placeholder that ``with_cell`` replaces."""
    return Architecture(
        cell=(Edge(0, 1, "conv3x3"), Edge(0, 2, "zero"), Edge(0, 3, "zero"), Edge(1, 2, "zero"),
              Edge(1, 3, "conv3x3"), Edge(2, 3, "zero")),
        input_shape=splits.input_shape, num_classes=splits.num_classes,
        width=config.width or default_width(splits.input_shape), timesteps=config.timesteps,
        downsample=config.downsample, timing=timing, encoding=config.encoding,
        neuron=NeuronParams(du=config.du, dv=config.dv, theta=config.theta),
    )


def run_search(config: SearchConfig, out_dir: str | Path, resume: bool = False,
               progress: Callable[[int, int | None, str], None] | None = None,
               splits: "DatasetSplits | None" = None) -> SearchOutcome:
    """Run (or resume) a search and write its files to ``out_dir``.

    ``progress(done, total, message)`` is called after each scored evaluation. On Ctrl-C the checkpoint is saved
    before ``KeyboardInterrupt`` propagates, so ``resume=True`` continues without re-scoring anything.
    ``splits`` supplies data in memory instead of loading ``config.dataset`` (benchmarks, notebooks).
    """
    out = Path(out_dir)
    if resume:
        checkpoint = _Checkpoint.load(out)
        config = checkpoint.config
    else:
        if (out / CHECKPOINT).exists():
            raise OptionError(f"{out} already holds a search; resume it with --resume {out} or choose another --out")
        checkpoint = _Checkpoint(out / CHECKPOINT, config)
    target = load_target(config.target)
    timing = config.timing or target.timing
    if not target.is_hardware and (config.max_cores is not None or config.max_energy is not None):
        raise OptionError(f"--max-cores and --max-energy need a hardware target; '{target.name}' has no cores")
    if splits is None:
        splits = load_dataset(config.dataset, config.data_dir, config.timesteps, config.seed, config.max_samples)
    if splits.kind == "frames" and config.encoding != "rate":
        raise OptionError("event datasets are spikes already: --encoding applies to static images only")
    template = template_architecture(config, splits, timing)
    score_config = ScoreConfig(config.score, config.batch_size, config.repeats, config.bn_mode, config.reset_state)
    device = pick_device()
    evaluator = Evaluator(scoring_batches(config, splits), score_config, device)
    space = SearchSpace(allow_backward=config.allow_backward)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        checkpoint.save()

    total = _expected_evaluations(config, space)
    done = [0]
    started = time.perf_counter()

    def scorer(cache_key: str, compute: Callable[[], dict], extra: dict) -> dict:
        cached = checkpoint.results.get(cache_key)
        if cached is None:
            cached = compute()
            checkpoint.results[cache_key] = cached
            checkpoint.dirty = True
            checkpoint.maybe_save()
        done[0] += 1
        if progress:
            progress(done[0], total, extra.get("kind", ""))
        row = {**cached, **extra}
        row["fitness"] = fitness(row["score"], row.get("energy_j"), config.energy_weight if target.is_hardware else 0.0)
        return row

    def measure(net) -> dict:
        result = evaluator.evaluate(net)
        activity = result.pop("activity")
        if target.is_hardware:
            terms, _, _ = hardware_terms(net, activity, target, config.max_cores, config.max_energy)
            result.update(terms)
        return result

    def build_cell(cell: Cell):
        return build_seeded(lambda: build_network(template.with_cell(cell)), config.seed, cell_key(cell))

    def score_cell(cell: Cell) -> Callable[[], dict]:
        return lambda: measure(build_cell(cell))

    def trained_energy(cell: Cell, activity) -> float | None:
        if not target.is_hardware:
            return None
        return hardware_terms(build_cell(cell), activity, target)[0]["energy_j"]

    supernet_holder: dict = {}

    def score_supernet(options: dict, ablated: Edge | None) -> Callable[[], dict]:
        def compute() -> dict:
            if "net" not in supernet_holder:
                every_edge = tuple(e for pair in options for e in space.choices[pair] if e.op != "zero")
                supernet_holder["net"] = build_seeded(lambda: build_network(template, every_edge), config.seed, "supernet")
            net = supernet_holder["net"]
            off = set()
            for edge, keys in net.edge_modules.items():
                if edge not in options[(edge.src, edge.dst)] or edge == ablated:
                    off.update(keys)
            net.set_disabled(off)
            return measure(net)
        return compute

    try:
        if config.strategy == "random":
            result = run_random(space, config.candidates, np.random.default_rng(config.seed), score_cell, scorer)
        else:
            result = run_prune(space, score_supernet, score_cell, scorer)
    except BaseException:
        checkpoint.save()
        raise
    signal = {"chosen_by": config.score, "refine": 0}
    if config.refine:
        try:
            def announce(message: str) -> None:
                if progress:
                    progress(done[0], total, message)

            result, signal = _refine(config, space, result, score_cell, scorer, template, splits, checkpoint,
                                     trained_energy, announce)
        except BaseException:
            checkpoint.save()
            raise
    checkpoint.save(complete=True)
    elapsed = time.perf_counter() - started

    rows = result.rows
    for rank, row in enumerate(sorted((r for r in rows if r["kind"] in ("cell", "final")), key=sort_key), start=1):
        row["rank"] = rank
    winner_key = cell_key(result.cell)
    winner = next(r for r in rows if r["kind"] in ("cell", "final") and r["cell"] == winner_key)
    architecture = template.with_cell(result.cell)
    write_csv_atomic(out / "search.csv", CSV_COLUMNS, (_csv_row(r) for r in rows))
    candidates = [r for r in rows if r["kind"] in ("cell", "final")]
    scanned = [r for r in rows if r["kind"] != "final"] if config.strategy == "prune" else rows
    degenerate_share = sum(bool(r["degenerate"]) for r in scanned) / max(len(scanned), 1)
    infeasible = [r for r in candidates if not r.get("feasible", True)]
    broken_rules: dict[str, int] = {}
    for row in infeasible:
        broken_rules[row["rule"]] = broken_rules.get(row["rule"], 0) + 1
    if target.is_hardware:
        _write_pareto(out / "pareto.png", candidates, winner, target.name, config.energy_weight)
    if winner["degenerate"]:
        raise SearchError(f"every candidate was degenerate ({winner['reason']}); results are in {out / 'search.csv'}; "
                          f"try --bn-mode batch, more --timesteps or --encoding direct")
    if not winner.get("feasible", True):
        raise SearchError(f"no feasible candidate: {len(infeasible)} of {len(candidates)} break a rule, e.g. "
                          f"{infeasible[0]['violation']}; results are in {out / 'search.csv'}")
    architecture.save(out / "architecture.json")
    report = {
        "hwnas": __version__,
        "config": config.to_dict(),
        "target": target.to_dict(),
        "timing": timing,
        "dataset": splits.summary(),
        "device": str(device),
        "winner": {key: winner.get(key) for key in ("cell", "score", "fitness", "energy_j", "cores", "step_time_s",
                                                    "firing_rate", "silent_share", "spikes_per_sample",
                                                    "synops_per_sample", "neurons", "latency_steps")},
        "signal": signal,
        "evaluations": len(rows),
        "candidates": len(candidates),
        "degenerate_share": degenerate_share,
        "infeasible": len(infeasible),
        "broken_rules": broken_rules,
        "search_seconds": elapsed,
        "space_size": space.size(),
        "files": {"architecture": "architecture.json", "search": "search.csv", "report": "report.json",
                  "checkpoint": CHECKPOINT},
    }
    if target.is_hardware:
        net = build_cell(result.cell)
        activity = evaluator.evaluate(net)["activity"]
        _, mapping, estimate = hardware_terms(net, activity, target, config.max_cores, config.max_energy)
        report["estimate"] = {**estimate.to_dict(), "note": "activity of the untrained network on the scoring "
                              f"batches ({config.bn_mode} batch-norm), per inference"}
        report["mapping"] = mapping.summary()
        report["files"]["pareto"] = "pareto.png"
        refined = next((c for c in signal.get("rungs", [{}])[-1].get("cells", []) if c["cell"] == winner_key), None)
        if refined and refined.get("energy_j"):
            report["refined_estimate"] = {"energy_j": refined["energy_j"], "training_epochs": signal["rungs"][-1]["epochs"],
                                          "note": "activity of the winner after its refinement training, on the "
                                                  "validation split, per inference"}
    write_json_atomic(out / "report.json", report)
    return SearchOutcome(out, architecture, winner, rows, report)


def _refine(config: SearchConfig, space: SearchSpace, result, score_cell, scorer, template: Architecture, splits,
            checkpoint: "_Checkpoint", trained_energy: Callable[[Cell, object], float | None],
            announce: Callable[[str], None]) -> tuple:
    """Successive halving over the ``config.refine`` best-fitness candidates, chosen by short-training accuracy
    plus the energy term of the trained network (see :mod:`hwnas.search.refine`); ``trained_energy(cell,
    activity)`` gives the energy per inference of that activity (None without a hardware model); ``announce``
    receives a line before each training. Every training is cached in the checkpoint."""
    from ..train import short_training
    from .refine import halving_rungs, pool_sample_size, refine_pool, refined_fitness
    from .strategies import StrategyResult, random_cells

    rows = list(result.rows)
    if config.strategy == "prune":  # prune scores one cell only: random cells from the whole space join the pool
        seen = {row["cell"] for row in rows if row["kind"] in ("cell", "final")}
        rng = np.random.default_rng([config.seed, 1])
        for cell in random_cells(space, pool_sample_size(config.refine), rng):
            key = cell_key(cell)
            if key not in seen:
                rows.append(scorer(f"cell|{key}", score_cell(cell), {"index": len(rows), "kind": "cell", "cell": key}))
    pool = refine_pool(rows, config.refine)
    if not pool:  # nothing usable to train: the checks after the search report why
        return StrategyResult(result.cell, rows), {"chosen_by": config.score, "refine": 0,
                                                   "note": "no usable candidate to refine"}
    hardware = any(row.get("energy_j") for row in pool)
    weight = config.refine_energy_weight if hardware else 0.0
    field, rungs = pool, []
    for count, epochs in halving_rungs(len(pool), config.refine_epochs):
        field = sorted(field, key=lambda r: (-r.get("refine_fitness", r["fitness"]), r["index"]))[:count]
        for row in field:
            cache_key = f"refine|{row['cell']}|{epochs}"
            if cache_key not in checkpoint.results:
                announce(f"refine: training {row['cell']} for {epochs} epoch(s)")
                cell = parse_cell_key(row["cell"])
                accuracy, activity = short_training(template.with_cell(cell), splits, epochs, config.seed, "val")
                checkpoint.results[cache_key] = {"val_accuracy": accuracy, "energy_j": trained_energy(cell, activity)}
                checkpoint.save()
            cached = checkpoint.results[cache_key]
            row["refine_epochs"] = epochs
            row["refine_accuracy"] = cached["val_accuracy"]
            row["refine_energy_j"] = cached.get("energy_j") or row.get("energy_j")
            row["refine_fitness"] = refined_fitness(row["refine_accuracy"], row["refine_energy_j"], weight)
        rungs.append({"epochs": epochs, "cells": [{"cell": r["cell"], "val_accuracy": r["refine_accuracy"],
                                                    "energy_j": r["refine_energy_j"], "refine_fitness": r["refine_fitness"]}
                                                   for r in field]})
    chosen = max(field, key=lambda r: (r["refine_fitness"], -r["index"]))
    signal = {"chosen_by": f"short training (successive halving up to {rungs[-1]['epochs']} epoch(s), validation "
                           "accuracy)",
              "refine": config.refine, "refine_epochs": config.refine_epochs,
              "refine_energy_weight": weight, "preselected_by": config.score, "rungs": rungs,
              "pool": [{"cell": r["cell"], "fitness": r["fitness"], "energy_j": r.get("energy_j"),
                        "refine_epochs": r["refine_epochs"], "refine_accuracy": r["refine_accuracy"],
                        "refine_energy_j": r["refine_energy_j"], "refine_fitness": r["refine_fitness"]} for r in pool]}
    return StrategyResult(parse_cell_key(chosen["cell"]), rows), signal


def _write_pareto(path: Path, rows: list[dict], winner: dict, target: str, weight: float) -> None:
    """Score versus energy of every candidate, feasible and infeasible marked, the winner circled."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io_utils import write_bytes_atomic

    points = [r for r in rows if not r["degenerate"] and r.get("energy_j")]
    figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    for feasible, marker, label in ((True, "o", "feasible"), (False, "x", "infeasible")):
        chosen = [r for r in points if bool(r.get("feasible", True)) == feasible]
        if chosen:
            axes.scatter([r["energy_j"] * 1e6 for r in chosen], [r["score"] for r in chosen], marker=marker,
                         s=18, alpha=0.7, label=f"{label} ({len(chosen)})")
    front, best = [], -math.inf
    for r in sorted((r for r in points if r.get("feasible", True)), key=lambda r: r["energy_j"]):
        if r["score"] > best:
            best = r["score"]
            front.append(r)
    if front:
        axes.step([r["energy_j"] * 1e6 for r in front], [r["score"] for r in front], where="post", color="gray",
                  linewidth=1, label="Pareto front")
    if winner.get("energy_j") and not winner["degenerate"]:
        axes.scatter([winner["energy_j"] * 1e6], [winner["score"]], s=160, facecolors="none", edgecolors="red",
                     linewidths=1.5, label=f"winner (energy weight {weight:g})")
    axes.set_xscale("log")
    axes.set_xlabel(f"energy per inference on {target} (uJ, untrained activity)")
    axes.set_ylabel("score (log |det K|)")
    axes.set_title("hwnas search: score versus energy")
    if points:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no candidate with a finite score", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def _expected_evaluations(config: SearchConfig, space: SearchSpace) -> int | None:
    if config.strategy == "random":
        return min(config.candidates, space.size())
    return None  # the number of pruning rounds depends on the scores


def _csv_row(row: dict) -> dict:
    formatted = dict(row)
    for key in ("score", "fitness", "importance", "energy_j", "step_time_s", "firing_rate", "silent_share",
                "spikes_per_sample", "synops_per_sample", "seconds", "refine_accuracy", "refine_energy_j",
                "refine_fitness"):
        value = formatted.get(key)
        if isinstance(value, float):
            formatted[key] = "-inf" if value == -math.inf else ("inf" if value == math.inf else f"{value:.6g}")
    formatted["degenerate"] = int(bool(formatted.get("degenerate")))
    if "feasible" in formatted:
        formatted["feasible"] = int(bool(formatted["feasible"]))
    return formatted
