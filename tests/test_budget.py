"""The search's time estimate and --budget-minutes (hwnas.nas.budget): what it counts, what a budget chooses,
and that neither changes a search's result beyond the training share it records."""

import csv
import json
import math
from dataclasses import replace

import pytest

from hwnas.cli import main
from hwnas.nas.budget import evaluation_counts, training_plan
from hwnas.nas.config import SearchConfig
from hwnas.nas.runner import run_search
from hwnas.nas.space import SearchSpace

TINY = ["--strategy", "random", "--candidates", "4", "--timesteps", "4", "--width", "4", "--batch-size", "16",
        "--repeats", "1", "--refine", "2", "--screen", "3", "--max-samples", "300", "--quiet"]


def results(folder) -> list[dict]:
    """search.csv's rows without the times they took."""
    return [{key: value for key, value in row.items() if "seconds" not in key}
            for row in csv.DictReader(open(folder / "search.csv"))]


def test_the_plan_counts_what_the_default_search_trains():
    config = SearchConfig()  # prune; 25 screened on one epoch each, 8 refined over 1, 2, 4 epochs
    assert training_plan(config, 25) == (25 + 4 * 1 + 2 * 2, 25 + 4 * 1 + 2 * 2)  # the first rung is the screening
    assert training_plan(SearchConfig(screen_fraction=0.5), 25) == (12.5 + 8 + 4 + 4, 25 + 8 + 4 + 4)
    assert training_plan(SearchConfig(refine=0), 25) == (0.0, 0)
    assert training_plan(SearchConfig(screen=0), 25) == (8 + 4 + 4, 8 + 4 + 4)
    assert evaluation_counts(SearchConfig(strategy="random", candidates=30), SearchSpace()) == (30, 0)
    cells, supernets = evaluation_counts(config, SearchSpace())
    assert cells == 1 + 24 and supernets > 0  # the final cell and the random pool; the rounds' supernets
    assert evaluation_counts(config, SearchSpace(), skeletons=3) == (3 + 24, 3 * supernets)  # pruned in each


def test_a_budget_keeps_its_share_and_its_minimum_at_every_size():
    """The share is three significant digits rounded down (never 0 on a large split), the estimate with it fits
    the budget, and workers share the trainings."""
    from hwnas.nas.budget import Costs, estimate, fitted_fraction

    costs = Costs((0.1, 0.2), (0.001, 0.004), (0.0005, 0.001))
    config = SearchConfig(budget_minutes=10)
    for size in (50_000, 400_000):
        share = fitted_fraction(config, SearchSpace(), costs, 0.5, size, 1000)
        assert 0 < share < 1 and float(f"{share:.3g}") == share and share * size >= 256
        total = estimate(config, SearchSpace(), costs, 0.5, size, 1000, share).total_s
        assert sum(total) / 2 <= 600
    one, two = (estimate(config, SearchSpace(), costs, 0.5, 10_000, 1000, 1.0, workers).training_s for workers in (1, 2))
    assert two[1] == one[1] / 2
    assert training_plan(SearchConfig(screen=8, refine=4, screen_fraction=0.5), 3) == (5.0, 5)  # no screening


def test_the_share_is_fitted_again_to_the_pool_the_scores_chose():
    """Once the pool is known, the share fills what is left of the budget by the pool's own cells (the rungs' at the
    mean of the pool's 8 heaviest): lighter cells and less time spent leave a larger share; the share found fits,
    the next one up (three significant digits) does not; it never trains the shortest training on fewer than
    MIN_TRAINING_SAMPLES samples, nor on more than the split."""
    from hwnas.nas.budget import (MIN_TRAINING_SAMPLES, Costs, Refit, cell_position, refitted_fraction,
                                  training_plan)
    from hwnas.nas.preflight import HEAVIEST_CELL, LIGHTEST_CELL

    from hwnas.arch.genotype import parse_cell_key

    assert cell_position(LIGHTEST_CELL, LIGHTEST_CELL, HEAVIEST_CELL) == 0.0
    assert cell_position(HEAVIEST_CELL, LIGHTEST_CELL, HEAVIEST_CELL) == 1.0
    chain = parse_cell_key("0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:skip 2-3:conv3x3")
    assert cell_position(chain, LIGHTEST_CELL, HEAVIEST_CELL) == 0.4  # 3 convolutions: 2 of the 5 between
    costs = Costs((0.1, 0.2), (0.001, 0.006), (0.0005, 0.001))
    refit = Refit(costs, (LIGHTEST_CELL, HEAVIEST_CELL), 0.0, 50_000, 2000)
    config = SearchConfig(budget_minutes=20)  # 25 screened on one epoch each (the first rung), 8 refined

    def seconds(share: float, positions: list[float]) -> float:  # the trainings the re-fit counts, at a share
        mean = sum(sorted(positions)[-8:]) / 8
        epochs, passes = training_plan(config, len(positions))
        train = lambda p: costs.train_sample_s[0] + p * (costs.train_sample_s[1] - costs.train_sample_s[0])
        val = lambda p: costs.val_sample_s[0] + p * (costs.val_sample_s[1] - costs.val_sample_s[0])
        return (share * 50_000 * (sum(train(p) for p in positions) + (epochs - len(positions)) * train(mean))
                + 2000 * (sum(val(p) for p in positions) + (passes - len(positions)) * val(mean)))

    light, heavy = [0.0] * 20 + [0.2] * 5, [1.0] * 25
    shares = {name: refitted_fraction(config, refit, pool, 100.0)[0]
              for name, pool in (("light", light), ("heavy", heavy))}
    assert shares["light"] > 3 * shares["heavy"] > 0
    # the same mean, its weight in a few heavy cells: the rungs count those, a smaller share
    assert refitted_fraction(config, refit, [0.04] * 25, 0.0) > refitted_fraction(
        config, refit, [0.2] * 5 + [0.0] * 20, 0.0)
    for name, pool in (("light", light), ("heavy", heavy)):
        share = shares[name]
        step = 10 ** (math.floor(math.log10(share)) - 2)
        assert seconds(share, pool) <= 1200 - 100 < seconds(share + step, pool)
    assert refitted_fraction(config, refit, light, 600.0) < (shares["light"], False)  # less left, a smaller share
    least, floored = refitted_fraction(config, refit, light, 1199.0)  # nothing left: the least share, said
    assert floored and least * 50_000 >= MIN_TRAINING_SAMPLES > (least - 1e-5) * 50_000
    assert refitted_fraction(config, replace(refit, train_size=500), light, 0.0) == (1.0, False)


def test_the_refit_places_each_candidate_between_its_own_skeletons_costs():
    """With several skeletons, each candidate's cost is its own skeleton's (the primary one's when not measured):
    a pool in a skeleton that trains and validates at half the cost gets at least twice the share (its validation
    leaves more of the budget, too)."""
    from hwnas.nas.budget import Costs, Refit, refitted_fraction
    from hwnas.nas.preflight import HEAVIEST_CELL, LIGHTEST_CELL

    costs = Costs((0.1, 0.2), (0.002, 0.012), (0.0005, 0.001))
    half = Costs((0.1, 0.2), (0.001, 0.006), (0.00025, 0.0005))
    refit = Refit(costs, (LIGHTEST_CELL, HEAVIEST_CELL), 0.0, 50_000, 2000, skeleton_costs={"4/4 pool1": half})
    config = SearchConfig(budget_minutes=20)
    pool = [0.0, 0.2, 0.5, 1.0] * 6
    primary = refitted_fraction(config, refit, pool, 0.0)
    assert refitted_fraction(config, refit, pool, 0.0, ["8/8 pool1"] * 24) == primary  # not measured: the primary's
    narrow = refitted_fraction(config, refit, pool, 0.0, ["4/4 pool1"] * 24)
    assert 2 * primary[0] <= narrow[0] < 2.2 * primary[0] and not narrow[1]
    mixed = refitted_fraction(config, refit, pool, 0.0, ["4/4 pool1", "8/8 pool1"] * 12)
    assert primary[0] < mixed[0] < narrow[0]


def test_a_budgeted_search_over_several_widths_times_each(tmp_path, monkeypatch):
    """--width-choices with a budget: the two cells are timed in every skeleton kept, for the re-fit."""
    from hwnas.nas import budget

    measured, placed = [], []
    measure, refit = budget.measure_costs, budget.refitted_fraction
    monkeypatch.setattr(budget, "measure_costs", lambda measurer, splits, cells, skeleton=None: (
        measured.append(skeleton), measure(measurer, splits, cells, skeleton))[1])
    monkeypatch.setattr(budget, "refitted_fraction", lambda config, found, positions, spent, skeletons=None: (
        placed.append((found, skeletons)), refit(config, found, positions, spent, skeletons))[1])
    config = SearchConfig(strategy="random", candidates=4, timesteps=4, width_choices=(4, 8), batch_size=16,
                          repeats=1, refine=2, screen=3, max_samples=300, budget_minutes=60)
    outcome = run_search(config, tmp_path / "run")
    assert measured == [None, "4/4 pool1"]  # the primary (8 channels), then the other width
    assert outcome.report["time_estimate"]["refit"]["candidates"] == 3
    (found, skeletons), = placed  # the re-fit placed each of the 3 candidates in its own skeleton's costs
    assert list(found.skeleton_costs) == ["4/4 pool1"] and len(skeletons) == 3
    screened = outcome.report["signal"]["screen"]["cells"]
    assert skeletons == [cell["skeleton"] for cell in screened]


def test_the_estimate_is_a_range_even_when_the_lightest_cell_timed_slower():
    from hwnas.nas.budget import Costs, estimate

    inverted = Costs((0.3, 0.1), (0.012, 0.002), (0.001, 0.0005))
    found = estimate(SearchConfig(budget_minutes=20), SearchSpace(), inverted, 0.5, 50_000, 2000, 0.1)
    for pair in (found.zero_cost_s, found.training_s, found.validation_s, found.total_s):
        assert pair[0] < pair[1]


@pytest.mark.parametrize("options", [{}, {"screen_fraction": 0.5}, {"screen": 0}, {"refine_epochs": 2},
                                     {"strategy": "random", "candidates": 40}])
@pytest.mark.parametrize("workers", [1, 3])
def test_a_refit_of_the_pool_the_first_fit_assumed_gives_its_share(options, workers):
    """Fitted again to the pool the first fit counted (every candidate halfway between the two cells) after the
    zero-cost time it estimated, the share is the first one (to the last of its three digits): the two count the
    same trainings, screening, rungs, workers and all."""
    from hwnas.nas.budget import Costs, Refit, estimate, evaluation_counts, fitted_fraction, refitted_fraction
    from hwnas.nas.preflight import HEAVIEST_CELL, LIGHTEST_CELL

    config = SearchConfig(budget_minutes=20, **options)
    space = SearchSpace()
    costs = Costs((0.1, 0.3), (0.002, 0.012), (0.0005, 0.001))
    first = fitted_fraction(config, space, costs, 0.5, 50_000, 2000, workers)
    zero_cost = estimate(config, space, costs, 0.5, 50_000, 2000, first, workers).zero_cost_s
    cells, _ = evaluation_counts(config, space)
    refit = Refit(costs, (LIGHTEST_CELL, HEAVIEST_CELL), 0.0, 50_000, 2000, workers)
    again, floored = refitted_fraction(config, refit, [0.5] * cells, sum(zero_cost) / 2)
    step = 10 ** (math.floor(math.log10(first)) - 2)
    assert 0 < first < 1 and not floored and abs(again - first) <= step * 1.001


def test_the_refit_is_recorded_in_the_checkpoint_and_said(tmp_path):
    """What a resume continues with (the checkpoint's configuration) is the re-fitted share, and the user reads it."""
    import time

    from hwnas.cache import ResultCache
    from hwnas.nas.budget import Costs, Refit, ShareRefit
    from hwnas.nas.preflight import HEAVIEST_CELL, LIGHTEST_CELL
    from hwnas.nas.rows import Row

    config = SearchConfig(budget_minutes=20, train_fraction=0.05)
    cache = ResultCache(tmp_path / "checkpoint.json", config.to_dict())
    cache.fields["time_estimate"] = {"train_fraction": 0.05}
    said = []
    refit = Refit(Costs((0.1, 0.2), (0.001, 0.006), (0.0005, 0.001)), (LIGHTEST_CELL, HEAVIEST_CELL),
                  time.perf_counter() - 60, 50_000, 2000)
    fit = ShareRefit(config, refit, cache, said.append)
    pool = [Row(0, "cell", "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero", 0.0, False, 0.0)] * 25
    share = fit(pool)
    assert share > 0.05 and fit.config.train_fraction == share
    stored = json.loads((tmp_path / "checkpoint.json").read_text())
    assert stored["config"]["train_fraction"] == share
    assert stored["time_estimate"]["refit"]["candidates"] == 25
    assert stored["time_estimate"]["train_fraction"] == 0.05  # the first fit, as it was printed
    assert len(said) == 1 and said[0].startswith("re-fitted to the 25 candidates to train, 1.0 of 20 minutes spent")
    assert f"--train-fraction {share:g})" in said[0]


def test_the_estimate_counts_the_prune_rounds_at_most(tmp_path, capsys):
    """The evaluations the estimate counts bound what the prune strategy ran, and the report keeps the estimate
    beside the time the search took."""
    out = tmp_path / "run"
    config = SearchConfig(timesteps=4, width=4, batch_size=16, repeats=1, refine=0)
    lines = []
    outcome = run_search(config, out, notes=lines.append)
    estimate = outcome.report["time_estimate"]
    assert len(lines) == 1 and lines[0].startswith("estimated on this machine: ")
    assert outcome.report["evaluations"] <= estimate["evaluations"]
    assert estimate["training_s"] == [0.0, 0.0] and estimate["train_fraction"] == 1.0
    assert estimate["total_s"][0] <= estimate["total_s"][1]


def test_a_budget_trains_on_a_recorded_share_that_repeats_the_search(tmp_path, capsys):
    # a budget this machine fills with about 40 % of the split (a fixed one would give the whole split on a fast
    # machine and less than the 256-sample minimum on a slow one)
    # (without a budget the estimate is made only for someone who reads it: notes)
    run_search(SearchConfig(strategy="random", candidates=4, timesteps=4, width=4, batch_size=16, repeats=1, refine=2,
                            screen=3, max_samples=300), tmp_path / "measured", notes=lambda line: None)
    found = json.loads((tmp_path / "measured" / "report.json").read_text())["time_estimate"]
    middle = {phase: sum(found[phase]) / 2 for phase in ("zero_cost_s", "training_s", "validation_s")}
    minutes = f"{(middle['zero_cost_s'] + middle['validation_s'] + 0.4 * middle['training_s']) / 60:.4f}"
    budgeted = tmp_path / "budget"
    assert main(["search", *TINY, "--budget-minutes", minutes, "--out", str(budgeted)]) == 0
    report = json.loads((budgeted / "report.json").read_text())
    fraction = report["config"]["train_fraction"]
    assert 0 < fraction < 1 and report["config"]["budget_minutes"] == float(minutes)
    # fitted first before anything was scored, then again to the pool the screening trains: that share is the one
    # recorded, and the one the trainings used
    refit = report["time_estimate"]["refit"]
    assert refit["train_fraction"] == fraction and refit["candidates"] == 3 and refit["after_s"] > 0
    # (the first fit counted the 4 cells of the random strategy, the re-fit the 3 the screening trains)
    assert 0 < report["time_estimate"]["train_fraction"] < 1 and report["time_estimate"]["train_fraction"] != fraction
    checkpoint = json.loads((budgeted / "checkpoint.json").read_text())
    assert checkpoint["config"]["train_fraction"] == fraction  # what a resume continues with
    assert checkpoint["time_estimate"] == report["time_estimate"]
    # a resumed search keeps the estimate made at its start and refuses options that would change it
    assert main(["search", "--resume", str(budgeted), "--quiet"]) == 0
    assert json.loads((budgeted / "report.json").read_text())["time_estimate"] == report["time_estimate"]
    capsys.readouterr()
    assert main(["search", "--resume", str(budgeted), "--width", "8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--width cannot change them" in err and err.count("\n") == 1
    again = tmp_path / "again"
    assert main(["search", *TINY, "--train-fraction", str(fraction), "--out", str(again)]) == 0
    rows = [results(folder) for folder in (budgeted, again)]
    # the same results, trainings included (which cells the screening refines depends on the share this machine's
    # speed gave: search.csv's first row need not be one)
    assert rows[0] == rows[1] and any(row["refine_accuracy"] for row in rows[0])
    whole = tmp_path / "whole"
    assert main(["search", *TINY, "--out", str(whole)]) == 0
    assert results(whole) != rows[0]  # the share changed what was trained


def test_a_budget_ranks_on_a_validation_subset_and_val_samples_sets_it(tmp_path):
    from hwnas.nas.budget import BUDGET_VALIDATION_SAMPLES, validation_samples

    budget = SearchConfig(budget_minutes=20)
    assert validation_samples(budget, 6000) == BUDGET_VALIDATION_SAMPLES == 2000
    assert validation_samples(budget, 270) is None  # a small split stays whole
    assert validation_samples(SearchConfig(), 6000) is None  # no budget: the whole split
    assert validation_samples(SearchConfig(budget_minutes=20, val_samples=500), 6000) == 500
    # --val-samples: the trainings are ranked on that many class-balanced validation samples, recorded; the run's
    # dataset stays whole, so that hwnas train reads the data it recorded
    subset = tmp_path / "subset"
    assert main(["search", *TINY, "--val-samples", "40", "--out", str(subset)]) == 0
    report = json.loads((subset / "report.json").read_text())
    assert report["config"]["val_samples"] == 40 and report["dataset"]["val"] == 270
    accuracies = [float(row["refine_accuracy"]) for row in results(subset) if row["refine_accuracy"]]
    assert accuracies and all(abs(a * 40 - round(a * 40)) < 1e-9 for a in accuracies)
    whole = tmp_path / "whole"
    assert main(["search", *TINY, "--out", str(whole)]) == 0
    assert [float(row["refine_accuracy"]) for row in results(whole) if row["refine_accuracy"]] != accuracies


def test_the_last_rung_validates_on_the_whole_split_and_the_budget_counts_it(tmp_path, capsys):
    """With a validation subset, the last rung (it continues an earlier one) ranks the finalists on the whole
    validation split: its accuracies, kept samples and separation count every validation sample, its checkpoint
    entries a key of their own; the earlier rung stays on the subset. The estimate counts the last rung's passes
    at the whole split's size."""
    from hwnas.nas.budget import Costs, Refit, estimate, refitted_fraction, whole_validation_rounds
    from hwnas.nas.preflight import HEAVIEST_CELL, LIGHTEST_CELL

    run = tmp_path / "run"
    told = [option for option in TINY if option != "--quiet"]  # the estimate's line, with a budget the split fits
    assert main(["search", *told, "--refine", "3", "--val-samples", "40", "--budget-minutes", "30",
                 "--out", str(run)]) == 0
    said = capsys.readouterr()
    assert "; validation on 40 samples (--val-samples), the last rung's on all 270" in said.out + said.err
    report = json.loads((run / "report.json").read_text())
    assert report["config"]["train_fraction"] == 1.0
    signal, val = report["signal"], report["dataset"]["val"]
    first, last = signal["rungs"]
    assert (first["val_samples"], last["val_samples"], val) == (40, 270, 270)
    assert all(abs(c["val_accuracy"] * 40 - round(c["val_accuracy"] * 40)) < 1e-9 for c in first["cells"])
    assert all(abs(c["val_accuracy"] * 270 - round(c["val_accuracy"] * 270)) < 1e-9 for c in last["cells"])
    assert signal["separation"]["val_samples"] == 270
    assert signal["chosen_by"].endswith("; the last rung on the whole validation split, 270 samples)")
    checkpoint = json.loads((run / "checkpoint.json").read_text())["results"]
    assert sorted(key.split("|", 2)[2] for key in checkpoint if key.startswith("refine|")) == \
        ["1", "1", "1", "2|whole-val", "2|whole-val"]
    assert {entry["val_correct"].split(":")[0] for key, entry in checkpoint.items() if key.endswith("|whole-val")} \
        == {"270"}
    # the budget: 8 refined, rungs of 8, 4 and 2 at 1, 2 and 4 epochs: the last makes 2 x 2 passes on the whole split
    config, costs = SearchConfig(budget_minutes=20), Costs((0.1, 0.2), (0.001, 0.006), (0.0005, 0.001))
    assert whole_validation_rounds(config, 25) == 4 and whole_validation_rounds(SearchConfig(refine=2), 25) == 0
    subset, whole = (estimate(config, SearchSpace(), costs, 0.5, 50_000, 2000, 0.1, whole_val_size=size)
                     for size in (None, 6000))
    assert [b - a for a, b in zip(subset.validation_s, whole.validation_s)] == pytest.approx(
        [4 * 4000 * per_sample for per_sample in costs.val_sample_s])
    # on workers the last rung runs its two candidates at once, not --refine's eight
    one, four = (estimate(config, SearchSpace(), costs, 0.5, 50_000, 2000, 0.1, workers, whole_val_size=6000)
                 for workers in (1, 4))
    subset_four = estimate(config, SearchSpace(), costs, 0.5, 50_000, 2000, 0.1, 4)
    assert [b - a for a, b in zip(subset_four.validation_s, four.validation_s)] == pytest.approx(
        [4 * 4000 * per_sample / 2 for per_sample in costs.val_sample_s])
    refit = Refit(costs, (LIGHTEST_CELL, HEAVIEST_CELL), 0.0, 50_000, 2000)
    pool = [0.5] * 25
    assert refitted_fraction(config, replace(refit, whole_val_size=6000), pool, 100.0)[0] < \
        refitted_fraction(config, refit, pool, 100.0)[0]


def test_the_estimate_leaves_the_result_as_it_is(tmp_path):
    config = SearchConfig(strategy="random", candidates=4, timesteps=4, width=4, batch_size=16, repeats=1, refine=2,
                          screen=3, max_samples=300)
    quiet = run_search(config, tmp_path / "quiet")
    told = run_search(config, tmp_path / "told", notes=lambda line: None)
    assert [r.refine_accuracy for r in quiet.rows] == [r.refine_accuracy for r in told.rows]
    assert [r.score for r in quiet.rows] == [r.score for r in told.rows]


@pytest.mark.parametrize("options, message", [
    (["--budget-minutes", "0.0001"], "--budget-minutes 0.0001 cannot hold this search"),
    (["--budget-minutes", "1", "--train-fraction", "0.5"], "not both"),
    (["--budget-minutes", "0"], "must be positive"),
    (["--train-fraction", "0"], "--train-fraction"),
])
def test_a_budget_that_cannot_work_is_one_line(tmp_path, capsys, options, message):
    try:
        code = main(["search", *TINY, *options, "--out", str(tmp_path / "run")])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run" / "search.csv").exists()
