"""What a finished search writes: ``search.csv`` (every row, ranked), ``pareto.png``, the winner's
``architecture.json`` and ``report.json`` (configuration, target, winner, the signal that chose it, counts, and
on a hardware target the winner's energy estimate and mapping)."""

from __future__ import annotations

import math
from pathlib import Path

from ..version import __version__
from ..errors import SearchError
from ..io_utils import write_bytes_atomic, write_csv_atomic, write_json_atomic
from ..run_folder import RunFolder
from .rows import CSV_COLUMNS, Row, sort_key

WINNER_FIELDS = ("cell", "skeleton", "score", "accuracy", "fitness", "energy_j", "cores", "step_time_s", "firing_rate", "silent_share",
                 "spikes_per_sample", "synops_per_sample", "neurons", "latency_steps")


def rank_candidates(rows: list[Row]) -> None:
    """Number the candidate rows best first, as the search chose: rows the refinement trained come first (those
    that reached a later rung first, then by refined fitness), so that its winner has rank 1; the others follow by
    :func:`~hwnas.nas.rows.sort_key`. ``preselect_rank`` numbers them in the order that chose which candidates
    to refine (the screened ones first, by screened fitness; the rest by that key; with several skeletons each
    skeleton's best is refined whatever its place), so a winner's place before its refinement shows."""
    def final_key(row: Row) -> tuple:
        if row.usable and row.refine_fitness is not None:
            return (0, -(row.refine_epochs or 0), -row.refine_fitness, row.index)
        return (1, *sort_key(row))

    candidates = [r for r in rows if r.is_candidate]
    for rank, row in enumerate(sorted(candidates, key=final_key), start=1):
        row.rank = rank
    def preselect_key(row: Row) -> tuple:
        if row.usable and row.screen_fitness is not None:
            return (0, -row.screen_fitness, row.index)
        return (1, *sort_key(row))

    for rank, row in enumerate(sorted(candidates, key=preselect_key), start=1):
        row.preselect_rank = rank


def write_report(folder: RunFolder, config, target, timing: str, splits, device, space_size: int, rows: list[Row],
                 winner: Row, architecture, signal: dict, elapsed: float, hardware_estimate, preflight: dict,
                 time_estimate: dict | None = None) -> dict:
    """Write every output of a finished search into ``folder`` and return the report; a winner that is degenerate
    or breaks a rule raises :class:`SearchError` after ``search.csv`` is written (naming it).

    ``hardware_estimate()`` returns the winner's (estimate, mapping) on a hardware target; ``preflight`` is the
    report of the skeleton's choice (:func:`hwnas.nas.preflight.choose_skeletons`); ``time_estimate`` what
    :mod:`hwnas.nas.budget` estimated before the search started (None when it did not: recorded as it was)."""
    write_csv_atomic(folder.search_csv, CSV_COLUMNS, (r.csv_fields() for r in rows))
    candidates = [r for r in rows if r.is_candidate]
    scanned = [r for r in rows if r.kind != "final"] if config.strategy == "prune" else rows
    degenerate_share = sum(bool(r.degenerate) for r in scanned) / max(len(scanned), 1)
    infeasible = [r for r in candidates if r.feasible is False]
    broken_rules: dict[str, int] = {}
    for row in infeasible:
        broken_rules[row.rule] = broken_rules.get(row.rule, 0) + 1

    def draw_pareto() -> None:
        if target.is_hardware:
            evolution = config.strategy == "evolution"
            write_pareto(folder.pareto, candidates, winner, target.name,
                         config.refine_energy_weight if evolution else config.energy_weight,
                         "spike-aware fitness (accuracy points, supernet weights)" if evolution else
                         "score (log |det K|)")

    if winner.degenerate or winner.feasible is False:
        draw_pareto()  # the figure shows why no winner stands
    if winner.degenerate:
        raise SearchError(f"every candidate was degenerate ({winner.reason}); results are in {folder.search_csv}; "
                          f"try --bn-mode batch, more --timesteps or --encoding direct")
    if winner.feasible is False:
        raise SearchError(f"no feasible candidate: {len(infeasible)} of {len(candidates)} break a rule, e.g. "
                          f"{infeasible[0].violation}; results are in {folder.search_csv}")
    architecture.save(folder.architecture)
    report = {
        "hwnas": __version__,
        "config": config.to_dict(),
        "target": target.to_dict(),
        "timing": timing,
        "dataset": splits.summary(),
        "device": str(device),
        "winner": {key: getattr(winner, key) for key in WINNER_FIELDS},
        "skeleton": {"width": architecture.width, "stages": architecture.stages, "head_pool": architecture.head_pool,
                     "widths": list(architecture.stage_widths), "downsample": architecture.downsample,
                     "stem_pool": architecture.stem_pool},
        "preflight": preflight,
        "signal": signal,
        "evaluations": len(rows),
        "evaluations_of": {"cells": sum(row.is_candidate for row in rows),
                           "supernets": sum(not row.is_candidate for row in rows)},
        "candidates": len(candidates),
        "degenerate_share": degenerate_share,
        "infeasible": len(infeasible),
        "broken_rules": broken_rules,
        "search_seconds": elapsed,
        **({"time_estimate": time_estimate} if time_estimate else {}),
        "space_size": space_size,
        "files": {"architecture": folder.architecture.name, "search": folder.search_csv.name,
                  "report": folder.report.name, "checkpoint": folder.checkpoint.name},
    }
    if target.is_hardware:
        estimate, mapping = hardware_estimate()
        report["estimate"] = {**estimate.to_dict(), "note": "activity of the untrained network on the scoring "
                              f"batches ({config.bn_mode} batch-norm), per inference"}
        report["mapping"] = mapping.summary()
        report["files"]["pareto"] = folder.pareto.name
        refined = next((c for c in signal.get("rungs", [{}])[-1].get("cells", [])
                        if (c["cell"], c["skeleton"]) == (winner.cell, winner.skeleton)), None)
        if refined and refined.get("energy_j"):
            report["refined_estimate"] = {"energy_j": refined["energy_j"], "training_epochs": signal["rungs"][-1]["epochs"],
                                          "note": "activity of the winner after its refinement training, on the "
                                                  "validation split, per inference"}
    write_json_atomic(folder.report, report)
    draw_pareto()  # last: the winner and the report stand even if the figure cannot be drawn
    return report


def write_pareto(path: Path, rows: list[Row], winner: Row, target: str, weight: float,
                 score_label: str = "score (log |det K|)") -> None:
    """Score versus energy of every candidate, feasible and infeasible marked, the winner circled; when short
    trainings chose, two more panels: every refined candidate's validation accuracy versus the energy and versus
    the time per inference of its trained activity, by rung, with their Pareto fronts and the winner."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if not r.degenerate and r.energy_j and 0 < r.energy_j < math.inf
              and math.isfinite(r.score)]
    refined = [r for r in rows if r.refine_accuracy is not None and r.refine_energy_j]
    costs = ["energy", "latency"] if any(r.refine_latency_s for r in refined) else ["energy"]
    panels_wide = 1 + len(costs) if refined else 1
    figure, panels = plt.subplots(1, panels_wide, figsize=(5.8 * panels_wide if refined else 6.4, 4.4), dpi=120,
                                  squeeze=False)
    axes = panels[0][0]
    for feasible, marker, label in ((True, "o", "feasible"), (False, "x", "infeasible")):
        chosen = [r for r in points if (r.feasible is not False) == feasible]
        if chosen:
            axes.scatter([r.energy_j * 1e6 for r in chosen], [r.score for r in chosen], marker=marker,
                         s=18, alpha=0.7, label=f"{label} ({len(chosen)})")
    front, best = [], -math.inf
    for r in sorted((r for r in points if r.feasible is not False), key=lambda r: r.energy_j):
        if r.score > best:
            best = r.score
            front.append(r)
    if front:
        axes.step([r.energy_j * 1e6 for r in front], [r.score for r in front], where="post", color="gray",
                  linewidth=1, label="Pareto front")
    if any(r is winner for r in points):
        chosen_by = "chosen by short trainings, right" if refined else f"energy weight {weight:g}"
        axes.scatter([winner.energy_j * 1e6], [winner.score], s=160, facecolors="none", edgecolors="red",
                     linewidths=1.5, label=f"winner ({chosen_by})")
    if points:
        axes.set_xscale("log")
        _plain_ticks(axes)
    axes.set_xlabel(f"energy per inference on {target} (uJ, untrained activity)")
    axes.set_ylabel(score_label)
    axes.set_title("hwnas search: score versus energy")
    if points:
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no candidate with a finite score", ha="center", va="center", transform=axes.transAxes)
    if refined:
        for column, cost in enumerate(costs, start=1):
            _refined_panel(panels[0][column], refined, winner, target, cost)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_bytes_atomic(path, buffer.getvalue())


def _plain_ticks(axes) -> None:
    """Plain numbers on a log x axis (20, 50, not 2x10^1)."""
    from matplotlib.ticker import FuncFormatter

    formatter = FuncFormatter(lambda value, _: f"{value:g}")
    axes.xaxis.set_major_formatter(formatter)
    axes.xaxis.set_minor_formatter(formatter)
    axes.tick_params(axis="x", which="minor", labelsize=7)


def _refined_panel(axes, refined: list[Row], winner: Row, target: str, cost: str) -> None:
    """Validation accuracy after the refinement's trainings versus a cost of the trained activity on the target:
    ``cost`` ``energy`` (uJ per inference) or ``latency`` (us per inference)."""
    field, unit, what = ("refine_energy_j", "uJ", "energy") if cost == "energy" else \
        ("refine_latency_s", "us", "time")
    refined = [r for r in refined if getattr(r, field)]
    for epochs in sorted({r.refine_epochs for r in refined}):
        rung = [r for r in refined if r.refine_epochs == epochs]
        axes.scatter([getattr(r, field) * 1e6 for r in rung], [100 * r.refine_accuracy for r in rung], s=22,
                     alpha=0.8, label=f"last trained to {epochs} epoch(s) ({len(rung)})")
    front, best = [], -math.inf
    for r in sorted(refined, key=lambda r: getattr(r, field)):
        if r.refine_accuracy > best:
            best = r.refine_accuracy
            front.append(r)
    axes.step([getattr(r, field) * 1e6 for r in front], [100 * r.refine_accuracy for r in front], where="post",
              color="gray", linewidth=1, label="Pareto front")
    if winner.refine_accuracy is not None and getattr(winner, field):
        axes.scatter([getattr(winner, field) * 1e6], [100 * winner.refine_accuracy], s=160, facecolors="none",
                     edgecolors="red", linewidths=1.5, label="winner (refined fitness)")
    axes.set_xscale("log")
    _plain_ticks(axes)
    axes.set_xlabel(f"{what} per inference on {target} ({unit}, trained activity)")
    axes.set_ylabel("validation accuracy after short training (%)")
    axes.set_title(f"refinement: accuracy versus {cost}")
    axes.legend(fontsize=8)
