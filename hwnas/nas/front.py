"""The accuracy-energy front of a search's refined candidates, and the architecture of one of its points
(``hwnas train RUN --pick K``): the search returns its winner by the refined fitness, which trades accuracy for
energy at one fixed rate (``--refine-energy-weight``); the front lets the user choose another trade-off among the
candidates the search trained, without searching again."""

from __future__ import annotations

import csv
import math
import re
import shlex
from dataclasses import replace
from typing import Callable

from ..arch.genotype import Architecture, cell_key, parse_cell_key
from ..errors import OptionError
from ..run_folder import RunFolder

SKELETON_KEY = re.compile(r"^(?:stem(?P<stem>\d+) )?(?P<widths>\d+(?:/\d+)*) pool(?P<pool>\d+)$")


def refined_front(folder: RunFolder) -> list[dict]:
    """The refined candidates of ``search.csv`` that no other refined candidate beats on both validation accuracy
    (higher) and energy per inference (lower), cheapest first; each as its CSV row. The last rung's runner-up joins
    them when the rung could not separate it from the winner (``report.json``'s ``signal.separation``), even if the
    winner beats it on both: its deficit is inside the validation's sampling noise."""
    if not folder.search_csv.is_file():
        raise OptionError(f"no {folder.search_csv.name} in {folder.path}: --pick chooses among a search's refined "
                          "candidates")
    with folder.search_csv.open(newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("refine_accuracy") and row.get("refine_energy_j")]
    cost, accuracy = (lambda r: float(r["refine_energy_j"])), (lambda r: float(r["refine_accuracy"]))
    front = pareto_front(rows, cost, accuracy)
    tied = tied_runner_up(folder, rows)
    if tied is not None and all(row is not tied for row in front):
        front = sorted([*front, tied], key=lambda r: (cost(r), -accuracy(r)))
    return front


def tied_runner_up(folder: RunFolder, rows: list[dict]) -> dict | None:
    """The row of the last rung's runner-up when the rung could not separate it from the winner, else None."""
    separation = folder.search_report().get("signal", {}).get("separation")
    if not isinstance(separation, dict) or separation.get("separated", True):
        return None
    runner = separation.get("runner_up") or {}
    finalists = [row for row in rows if (row.get("cell"), row.get("skeleton")) == (runner.get("cell"),
                                                                                   runner.get("skeleton"))]
    return max(finalists, key=lambda r: int(r.get("refine_epochs") or 0), default=None)


def point_of(front: list[dict], candidate: dict) -> int | None:
    """The ``--pick`` number (1: the cheapest) of ``candidate`` (its cell and skeleton) on ``front``, or None."""
    return next((number for number, row in enumerate(front, 1)
                 if (row["cell"], row["skeleton"]) == (candidate["cell"], candidate["skeleton"])), None)


def recorded_pick(folder: RunFolder, architecture) -> dict | None:
    """The front's row of ``architecture`` when it is a point of the folder's refined front other than the search's
    winner (a folder ``hwnas train RUN --pick K --out NEW`` branched: training it again records the pick), else
    None."""
    cell = getattr(architecture, "cell", None)  # a searched network's (convolutional or dense), not an imported one
    if cell is None or not folder.search_csv.is_file():
        return None
    candidate = {"cell": cell_key(cell), "skeleton": architecture.skeleton_key}
    winner = folder.search_report().get("winner")
    if not isinstance(winner, dict) or (winner.get("cell"), winner.get("skeleton")) == tuple(candidate.values()):
        return None
    front = refined_front(folder)
    point = point_of(front, candidate)
    return front[point - 1] if point else None


def noise_figure(separation: dict) -> str:
    """The last rung's noise as the search reports it, e.g. ``1.09 points at 95 % on 2,000 samples; paired
    0.56``."""
    paired = separation.get("paired_noise")
    paired = f"; paired {paired:.2f}" if isinstance(paired, (int, float)) else ""
    return f"{separation['noise']:.2f} points at 95 % on {separation['val_samples']:,} samples{paired}"


def separation_line(separation: dict, front: list[dict], run_dir) -> str:
    """One sentence on whether the last rung told the winner from its runner-up (``signal.separation``), naming
    the ``--pick`` point that trains the runner-up when it could not."""
    runner = separation["runner_up"]
    where = f" in {runner['skeleton']}" if runner.get("skeleton") else ""
    noise = f"the validation's sampling noise ({noise_figure(separation)})"
    apart = f"{runner['cell']}{where}: {separation['margin']:.2f} points of refined fitness apart"
    if separation["separated"]:
        return f"ahead of the last rung's runner-up {apart}, beyond {noise}"
    point = point_of(front, runner)
    pick = (f": hwnas train {shlex.quote(str(run_dir))} --pick {point} --out {shlex.quote(f'{run_dir}-pick{point}')} "
            "trains it beside the winner") if point else ""
    return (f"not separated from the last rung's runner-up {apart}, inside {noise}; the short trainings cannot rank "
            f"the two{pick}")


def pareto_front(items: list, cost: Callable, accuracy: Callable) -> list:
    """The items no other beats on both ``accuracy`` (higher) and ``cost`` (lower), cheapest first (of equal
    costs, the more accurate)."""
    front, best = [], -math.inf
    for item in sorted(items, key=lambda i: (cost(i), -accuracy(i))):
        if accuracy(item) > best:
            best = accuracy(item)
            front.append(item)
    return front


def skeleton_choices(key: str) -> dict:
    """The macro choices a skeleton key names (``stem2 16/16 pool1``: stem pooling, widths per stage, head
    pooling; ``dense 64``: the width of a dense network), as the architecture's fields."""
    dense = re.fullmatch(r"dense (\d+)", key)
    if dense is not None:  # a network of dense populations (hwnas.arch.dense): its width only
        return {"width": int(dense[1])}
    match = SKELETON_KEY.match(key)
    if match is None:
        raise OptionError(f"cannot read the skeleton '{key}' of search.csv")
    widths = tuple(int(w) for w in match["widths"].split("/"))
    return {"width": widths[0], "stages": len(widths), "widths": widths if len(set(widths)) > 1 else (),
            "head_pool": int(match["pool"]), "stem_pool": int(match["stem"] or 1)}


def picked_architecture(folder: RunFolder, pick: int) -> tuple[Architecture, dict]:
    """Point ``pick`` (1: the cheapest) of the folder's refined front as an architecture (the winner's, with the
    point's cell and skeleton), and the point's row."""
    front = refined_front(folder)
    if not front:
        raise OptionError(f"{folder.path} has no refined candidates to pick from (search with --refine)")
    points = "; ".join(f"{n}: {100 * float(r['refine_accuracy']):.1f}% at {1e6 * float(r['refine_energy_j']):.1f} uJ"
                       for n, r in enumerate(front, 1))
    if not 1 <= pick <= len(front):
        raise OptionError(f"--pick must be 1..{len(front)} (the front, cheapest first: {points})")
    row = front[pick - 1]
    winner = folder.load_architecture()
    return replace(winner, cell=parse_cell_key(row["cell"]), **skeleton_choices(row["skeleton"])), row
