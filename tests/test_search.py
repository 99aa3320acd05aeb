import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
from conftest import FAST_SEARCH, small_arch

from hwnas.arch.genotype import PAIRS, Architecture, cell_key
from hwnas.errors import OptionError, ResumeError, SearchError
from hwnas.nas import runner
from hwnas.nas.evaluate import Evaluator
from hwnas.nas.runner import SearchConfig, run_search
from hwnas.nas.space import SearchSpace


def read_csv(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_random_search_is_reproducible_and_ranks_best_first(tmp_path):
    config = SearchConfig(strategy="random", candidates=6, **FAST_SEARCH)
    a = run_search(config, tmp_path / "a")
    b = run_search(config, tmp_path / "b")
    rows_a, rows_b = read_csv(tmp_path / "a" / "search.csv"), read_csv(tmp_path / "b" / "search.csv")
    assert [(r["cell"], r["score"]) for r in rows_a] == [(r["cell"], r["score"]) for r in rows_b]
    assert a.architecture == b.architecture
    assert len({r["cell"] for r in rows_a}) == 6
    healthy = [r for r in a.rows if not r.degenerate]
    assert a.winner.fitness == max(r.fitness for r in healthy)
    assert a.winner.rank == 1
    assert a.architecture == Architecture.load(tmp_path / "a" / "architecture.json")
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["timing"] == "pipelined" and report["target"]["name"] == "loihi2"
    assert report["winner"]["cell"] == a.architecture.key
    assert 0.0 <= report["degenerate_share"] <= 1.0
    assert report["winner"]["latency_steps"] >= 5  # at least stem, two cell nodes, pool, classifier


def test_prune_search_ends_with_one_valid_op_per_pair(tmp_path):
    outcome = run_search(SearchConfig(strategy="prune", **FAST_SEARCH), tmp_path)
    cell = outcome.architecture.cell
    assert [(e.src, e.dst) for e in cell] == list(PAIRS)
    assert SearchSpace().is_valid(cell)
    kinds = [r.kind for r in outcome.rows]
    assert kinds[0] == "supernet" and kinds[-1] == "final" and "ablation" in kinds
    ablations = [r for r in outcome.rows if r.kind == "ablation"]
    assert all(r.importance is not None for r in ablations)


def test_interrupted_search_resumes_without_rescoring(tmp_path, monkeypatch):
    config = SearchConfig(strategy="random", candidates=8, **FAST_SEARCH)
    reference = run_search(config, tmp_path / "ref")

    calls = []
    original = Evaluator.evaluate

    def counting(self, net):
        calls.append(1)
        return original(self, net)

    monkeypatch.setattr(Evaluator, "evaluate", counting)
    monkeypatch.setattr(runner, "CHECKPOINT_EVERY_S", 0.0)

    def interrupt_after_three(done, total, message):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(config, tmp_path / "run", progress=interrupt_after_three)
    assert len(calls) == 3
    assert not (tmp_path / "run" / "search.csv").exists()
    saved = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert len(saved["results"]) == 3 and saved["complete"] is False

    resumed = run_search(SearchConfig(), tmp_path / "run", resume=True)  # options come from the checkpoint
    # only the 5 unscored candidates were evaluated, plus one run of the winner for report.json's energy estimate
    assert len(calls) == 3 + 5 + 1
    assert resumed.architecture == reference.architecture
    assert [r.score for r in resumed.rows] == [r.score for r in reference.rows]


def test_existing_run_folder_is_not_overwritten(tmp_path):
    config = SearchConfig(strategy="random", candidates=2, **FAST_SEARCH)
    run_search(config, tmp_path)
    before = (tmp_path / "search.csv").read_bytes()
    with pytest.raises(OptionError, match="already holds a search"):
        run_search(config, tmp_path)
    assert (tmp_path / "search.csv").read_bytes() == before


@pytest.mark.parametrize("content,message", [
    ("{broken", "not valid JSON"),
    ('{"format": "something-else"}', "not an hwnas search checkpoint"),
    ('{"format": "hwnas.search-checkpoint", "config": {"strategy": "random"}, "results": []}', "malformed"),
    ('{"format": "hwnas.search-checkpoint", "config": {"stratgy": 1}, "results": {}}', "unknown fields"),
])
def test_malformed_checkpoint_is_a_resume_error(tmp_path, content, message):
    (tmp_path / "checkpoint.json").write_text(content)
    with pytest.raises(ResumeError, match=message):
        run_search(SearchConfig(), tmp_path, resume=True)


def test_silent_candidates_are_degenerate_and_reported(tmp_path):
    # threshold far above any input: every candidate is silent, so every kernel is singular
    config = SearchConfig(strategy="random", candidates=3, theta=1000.0, **FAST_SEARCH)
    with pytest.raises(SearchError, match="every candidate was degenerate"):
        run_search(config, tmp_path)
    rows = read_csv(tmp_path / "search.csv")
    assert len(rows) == 3
    assert all(r["degenerate"] == "1" and r["score"] == "-inf" for r in rows)
    assert all(float(r["firing_rate"]) == 0.0 for r in rows)
    assert not (tmp_path / "architecture.json").exists()


def test_identity_bn_mode_is_quieter_than_batch_mode(tmp_path):
    common = dict(strategy="random", candidates=3, **FAST_SEARCH)
    batch = run_search(SearchConfig(bn_mode="batch", **common), tmp_path / "b")
    identity = run_search(SearchConfig(bn_mode="identity", **common), tmp_path / "i")
    rate = lambda rows: sum(r.firing_rate for r in rows) / len(rows)
    assert rate(batch.rows) > rate(identity.rows)


@pytest.mark.parametrize("field,value,message", [
    ("timesteps", 0, "--timesteps"), ("candidates", -1, "--candidates"), ("strategy", "grid", "--strategy"),
    ("bn_mode", "none", "--bn-mode"), ("score", "snip", "unknown score"), ("batch_size", 1, "--batch-size"),
])
def test_config_validation(field, value, message):
    with pytest.raises(OptionError, match=message):
        SearchConfig(**{field: value})


def test_hardware_terms_enter_rows_report_and_plot(tmp_path):
    outcome = run_search(SearchConfig(strategy="random", candidates=5, **FAST_SEARCH), tmp_path)
    rows = read_csv(tmp_path / "search.csv")
    for row in rows:
        energy = float(row["energy_j"])
        assert energy > 0 and int(row["cores"]) >= 1 and row["feasible"] == "1"
        assert float(row["fitness"]) == pytest.approx(float(row["score"]) - 4.0 * math.log2(energy / 1e-6), rel=1e-5)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["estimate"]["totals"]["energy_j"] == pytest.approx(outcome.winner.energy_j)
    assert report["mapping"]["cores"] == outcome.winner.cores
    assert {row["layer"] for row in report["estimate"]["layers"]} >= {"input", "stem", "output"}
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_energy_weight_trades_score_for_energy(tmp_path):
    common = dict(strategy="random", candidates=8, **FAST_SEARCH)
    by_score = run_search(SearchConfig(energy_weight=0.0, **common), tmp_path / "a")
    by_energy = run_search(SearchConfig(energy_weight=1000.0, **common), tmp_path / "b")
    assert by_score.winner.score == max(r.score for r in by_score.rows)
    assert by_energy.winner.energy_j == min(r.energy_j for r in by_energy.rows)
    assert by_energy.winner.energy_j <= by_score.winner.energy_j


def test_budgets_reject_candidates_with_the_rule(tmp_path):
    # the lightest cell fits one core, so the pre-flight lets the search run; every candidate needs two
    with pytest.raises(SearchError, match="no feasible candidate: 3 of 3 break a rule, e.g. max-cores: network needs"):
        run_search(SearchConfig(target="loihi", strategy="random", candidates=3, max_cores=1, **FAST_SEARCH),
                   tmp_path / "a")
    rows = read_csv(tmp_path / "a" / "search.csv")
    assert all(r["feasible"] == "0" and r["rule"] == "max-cores" for r in rows)
    assert (tmp_path / "a" / "pareto.png").exists() and not (tmp_path / "a" / "architecture.json").exists()
    # an energy budget some candidates meet rejects the others with the rule
    everything = run_search(SearchConfig(strategy="random", candidates=3, **FAST_SEARCH), tmp_path / "all")
    energies = sorted(r.energy_j for r in everything.rows)
    budget = energies[1] * 1.0001  # keeps the two cheapest candidates
    outcome = run_search(SearchConfig(strategy="random", candidates=3, max_energy=budget, **FAST_SEARCH), tmp_path / "b")
    assert outcome.report["infeasible"] == 1 and outcome.report["broken_rules"] == {"max-energy": 1}
    assert outcome.winner.energy_j <= budget


def test_software_target_has_no_hardware_terms(tmp_path):
    outcome = run_search(SearchConfig(target="software", strategy="random", candidates=3, **FAST_SEARCH), tmp_path)
    assert outcome.report["timing"] == "zero-delay" and "estimate" not in outcome.report
    assert outcome.winner.fitness == outcome.winner.score and outcome.winner.latency_steps == 0
    with pytest.raises(OptionError, match="need a hardware target"):
        run_search(SearchConfig(target="software", max_cores=4, **FAST_SEARCH), tmp_path / "x")


def test_interrupted_prune_search_resumes_to_the_same_cell(tmp_path, monkeypatch):
    config = SearchConfig(strategy="prune", **FAST_SEARCH)
    reference = run_search(config, tmp_path / "ref")
    monkeypatch.setattr(runner, "CHECKPOINT_EVERY_S", 0.0)

    def interrupt(done, total, message):
        if done == 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(config, tmp_path / "run", progress=interrupt)
    resumed = run_search(config, tmp_path / "run", resume=True)
    assert resumed.architecture == reference.architecture
    assert [(r.kind, r.score, r.importance) for r in resumed.rows] == \
        [(r.kind, r.score, r.importance) for r in reference.rows]


def test_refine_halves_the_field_and_lets_short_training_choose(tmp_path):
    import json

    from hwnas.nas.refine import halving_rungs
    from hwnas.nas.runner import SearchConfig, run_search

    assert halving_rungs(8, 1) == [(8, 1), (4, 2), (2, 4)]
    assert halving_rungs(5, 2) == [(5, 2), (3, 4), (2, 8)]
    assert halving_rungs(2, 1) == [(2, 1)]
    config = SearchConfig(strategy="random", candidates=6, max_samples=200, seed=1,
                          **{**FAST_SEARCH, "refine": 3, "screen": 0})
    messages = []
    outcome = run_search(config, tmp_path / "run", progress=lambda done, total, message: messages.append(message))
    assert sum(message.startswith("refine: training") for message in messages) == 5  # 3 + 2 trainings announced
    signal = outcome.report["signal"]
    assert signal["chosen_by"].startswith("short training") and signal["preselected_by"] == "sahd"
    # the pool is the three highest-fitness candidates the search scored
    scored = sorted((r for r in outcome.rows if r.kind == "cell"), key=lambda r: -r.fitness)
    assert [row["cell"] for row in signal["pool"]] == [r.cell for r in scored[:3]]
    first, last = signal["rungs"]
    assert (first["epochs"], len(first["cells"])) == (1, 3) and (last["epochs"], len(last["cells"])) == (2, 2)
    # the two best of the first rung by refined fitness go on; the best of the last rung wins
    ranked = sorted(first["cells"], key=lambda c: -c["refine_fitness"])
    assert {c["cell"] for c in last["cells"]} == {c["cell"] for c in ranked[:2]}
    assert outcome.winner.cell == max(last["cells"], key=lambda c: c["refine_fitness"])["cell"]
    # energy in the refined fitness comes from the trained network's activity, and the report carries the winner's
    chosen = max(last["cells"], key=lambda c: c["refine_fitness"])
    assert outcome.report["refined_estimate"]["energy_j"] == chosen["energy_j"] > 0
    assert outcome.report["refined_estimate"]["training_epochs"] == 2
    untrained = next(r.energy_j for r in outcome.rows if r.cell == chosen["cell"])
    assert chosen["energy_j"] != untrained
    assert all(0.0 <= c["val_accuracy"] <= 1.0 for rung in signal["rungs"] for c in rung["cells"])
    # how far the winner leads the last rung's runner-up, against the sampling noise of the validation it used
    separation, runner = signal["separation"], min(last["cells"], key=lambda c: c["refine_fitness"])
    samples = outcome.report["dataset"]["val"]
    assert separation["runner_up"]["cell"] == runner["cell"] and separation["val_samples"] == samples
    assert separation["margin"] == pytest.approx(chosen["refine_fitness"] - runner["refine_fitness"])
    p, q = chosen["val_accuracy"], runner["val_accuracy"]
    assert separation["noise"] == pytest.approx(196 * ((p * (1 - p) + q * (1 - q)) / samples) ** 0.5)
    assert separation["separated"] == (separation["margin"] > separation["noise"])
    # the paired noise too: from the validation samples only one of the two classified, kept in the checkpoint
    checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    kept = [checkpoint["results"][f"refine|{c['cell']}|2"]["val_correct"].split(":") for c in (chosen, runner)]
    assert [int(count) for count, _ in kept] == [samples, samples]
    classified = [np.unpackbits(np.frombuffer(bytes.fromhex(bits), np.uint8))[:samples].astype(bool) for _, bits in kept]
    assert [a.mean() for a in classified] == pytest.approx([chosen["val_accuracy"], runner["val_accuracy"]])
    only = [int((a & ~b).sum()) for a, b in (classified, classified[::-1])]
    d = (only[0] - only[1]) / samples
    assert separation["discordant"] == sum(only)
    assert separation["paired_noise"] == pytest.approx(196 * ((sum(only) / samples - d * d) / samples) ** 0.5)
    assert sorted(k.rsplit("|", 1)[1] for k in checkpoint["results"] if k.startswith("refine|")) == \
        ["1", "1", "1", "2", "2"]
    header = (tmp_path / "run" / "search.csv").read_text().splitlines()[0]
    assert "refine_accuracy" in header and "refine_epochs" in header
    # pareto.png has the refinement's two panels (energy, latency) beside the score's: 17.4 x 4.4 inches at 120 dpi
    png = (tmp_path / "run" / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 2088
    # ranks follow the choice: the winner first, then the rest of the last rung, then the first rung's others
    ranks = {r.cell: r.rank for r in outcome.rows if r.is_candidate}
    assert ranks[outcome.winner.cell] == 1
    assert {ranks[c["cell"]] for c in last["cells"]} == {1, 2}
    assert {ranks[c["cell"]] for c in first["cells"]} == {1, 2, 3}
    # preselect_rank keeps the fitness order that chose the pool: the three refined are its first three
    preselected = {r.cell: r.preselect_rank for r in outcome.rows if r.is_candidate}
    assert {preselected[c["cell"]] for c in first["cells"]} == {1, 2, 3}
    assert "preselect_rank" in header
    assert all(r.refine_latency_s > 0 for r in outcome.rows if r.refine_accuracy is not None)
    # resuming the finished search trains nothing again and picks the same winner
    again = run_search(config, tmp_path / "run", resume=True)
    assert again.winner.cell == outcome.winner.cell and again.report["signal"]["rungs"] == signal["rungs"]
    # the second rung continued the first's trainings: each survivor's kept state counts 2 epochs, not 1 + 2
    import io

    import torch

    from hwnas.run_folder import RunFolder
    from hwnas.nas.refine import refine_key

    folder = RunFolder(tmp_path / "run")
    for rung in signal["rungs"]:
        for entry in rung["cells"]:
            row = next(r for r in outcome.rows if (r.cell, r.skeleton) == (entry["cell"], entry["skeleton"]))
            key = refine_key(row, rung["epochs"], row.skeleton)  # one skeleton: every row's is the primary one
            state = torch.load(io.BytesIO(folder.refine_state(key).read_bytes()), weights_only=True)
            assert state["epochs"] == rung["epochs"] and state["best_accuracy"] == entry["val_accuracy"]


def test_the_screening_rung_chooses_the_refined_candidates_by_a_brief_training(tmp_path):
    """--screen 5 of 6 candidates: the five best by fitness each train on half an epoch; the two best by screened
    fitness (validation accuracy less the energy term) are the first halving rung; a resumed search trains none
    of them again."""
    from hwnas.arch.builder import build_network
    from hwnas.arch.genotype import parse_cell_key
    from hwnas.data import load_dataset
    from hwnas.hw_models import load_target
    from hwnas.hw_models.fitness import hardware_terms
    from hwnas.nas.refine import refined_fitness
    from hwnas.training import short_training

    config = SearchConfig(strategy="random", candidates=6, max_samples=200, seed=1,
                          **{**FAST_SEARCH, "refine": 2, "screen": 5, "screen_fraction": 0.5})
    messages = []
    outcome = run_search(config, tmp_path / "run", progress=lambda done, total, message: messages.append(message))
    signal = outcome.report["signal"]
    record = signal["screen"]
    assert (record["screened"], record["fraction"], record["kept"]) == (5, 0.5, 2)
    assert signal["preselected_by"].startswith("screening (0.5 of an epoch of training") and "the 5 best by sahd" in \
        signal["preselected_by"]
    scored = sorted((r for r in outcome.rows if r.kind == "cell"), key=lambda r: (-r.fitness, r.index))
    assert [c["cell"] for c in record["cells"]] == [r.cell for r in scored[:5]]
    assert scored[5].screen_accuracy is None  # the sixth was not screened
    weight = signal["refine_energy_weight"]
    for entry in record["cells"]:
        row = next(r for r in outcome.rows if r.cell == entry["cell"])
        assert row.screen_accuracy == entry["val_accuracy"] and row.screen_fitness == entry["screen_fitness"]
        assert entry["screen_fitness"] < 100 * entry["val_accuracy"]  # the energy term counts (weight 1, > 1 uJ)
    ranked = sorted(record["cells"], key=lambda c: -c["screen_fitness"])
    assert {c["cell"] for c in signal["rungs"][0]["cells"]} == {c["cell"] for c in ranked[:2]}
    assert [c["kept"] for c in ranked] == [True, True, False, False, False]
    # a screening is one pass over half the training split from the candidate's seeded weights, the search's seed
    splits = load_dataset("digits", timesteps=4, seed=1, max_samples=200)
    first = scored[0]
    arch = outcome.architecture.with_cell(parse_cell_key(first.cell))
    screened = short_training(arch, splits, 1, 1, "val", fraction=0.5)
    accuracy, activity = screened.accuracy, screened.activity
    assert accuracy == first.screen_accuracy
    energy = hardware_terms(build_network(arch), activity, load_target("loihi2"))[2].energy_j
    assert first.screen_fitness == refined_fitness(accuracy, energy, weight)
    assert sum(message.startswith("screen: training 5 candidates on 0.5 of an epoch each") for message in messages) == 5
    # preselect_rank is the screening's order; the csv carries the screened accuracy
    preselected = sorted((r for r in outcome.rows if r.screen_fitness is not None), key=lambda r: r.preselect_rank)
    assert [r.cell for r in preselected] == [c["cell"] for c in ranked] and scored[5].preselect_rank == 6
    header = (tmp_path / "run" / "search.csv").read_text().splitlines()[0].split(",")
    assert "screen_accuracy" in header and "screen_fitness" in header
    checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert sum(key.startswith("screen|") for key in checkpoint["results"]) == 5
    again = run_search(config, tmp_path / "run", resume=True,
                       progress=lambda done, total, message: messages.append("again " + message))
    assert not any(message.startswith("again screen") or message.startswith("again refine: training")
                   for message in messages)
    assert again.winner.cell == outcome.winner.cell and again.report["signal"]["screen"] == record


def test_a_whole_epoch_screening_is_the_first_rungs_training(tmp_path):
    """With --screen-fraction 1 (the default) the screening trains exactly what the first halving rung would: it is
    cached under the rung's key with its state, so the kept candidates go on to the second rung without
    training again, and that rung continues from the screening's weights."""
    config = SearchConfig(strategy="random", candidates=4, max_samples=200, seed=1,
                          **{**FAST_SEARCH, "refine": 3, "screen": 4})
    assert config.screen_fraction == 1.0
    messages = []
    outcome = run_search(config, tmp_path / "run", progress=lambda done, total, message: messages.append(message))
    signal = outcome.report["signal"]
    assert signal["screen"]["screened"] == 4 and signal["screen"]["kept"] == 3
    checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    trained = sorted(key.rsplit("|", 1)[1] for key in checkpoint["results"] if key.startswith("refine|"))
    assert trained == ["1", "1", "1", "1", "2", "2"] and not any(k.startswith("screen|") for k in checkpoint["results"])
    assert sum(m.startswith("screen: training 4 candidates on one epoch each") for m in messages) == 4
    refined = [m for m in messages if m.startswith("refine: training")]
    assert len(refined) == 2 and all("for 1 more epoch(s), 2 in all: " in m for m in refined)  # rung 2 only
    # the second says how long the rung has left, from the first's time
    assert refined[0].endswith(": 1/2") and ": 2/2, about " in refined[1] and refined[1].endswith(" left")
    # each screening is a first-rung training: a 1-epoch short training's accuracy, its state kept for rung 2
    import io

    import torch

    from hwnas.arch.genotype import parse_cell_key
    from hwnas.data import load_dataset
    from hwnas.run_folder import RunFolder
    from hwnas.nas.refine import refine_key
    from hwnas.training import short_training

    splits = load_dataset("digits", timesteps=4, seed=1, max_samples=200)
    folder = RunFolder(tmp_path / "run")
    for entry in signal["screen"]["cells"]:
        row = next(r for r in outcome.rows if r.cell == entry["cell"])
        state = torch.load(io.BytesIO(folder.refine_state(refine_key(row, 1, row.skeleton)).read_bytes()),
                           weights_only=True)
        assert state["epochs"] == 1 and state["best_accuracy"] == entry["val_accuracy"]
    top = max(signal["screen"]["cells"], key=lambda c: c["screen_fitness"])
    arch = outcome.architecture.with_cell(parse_cell_key(top["cell"]))
    assert short_training(arch, splits, 1, 1, "val").accuracy == top["val_accuracy"]
    assert {c["cell"]: c["val_accuracy"] for c in signal["rungs"][0]["cells"]} == \
        {c["cell"]: c["val_accuracy"] for c in signal["screen"]["cells"] if c["kept"]}
    again = run_search(config, tmp_path / "run", resume=True,
                       progress=lambda done, total, message: messages.append("again " + message))
    assert not any(m.startswith(("again screen", "again refine: training")) for m in messages)
    assert again.winner.cell == outcome.winner.cell


def test_a_checkpoint_from_before_the_screening_resumes_without_it(tmp_path):
    """A checkpoint without the screening's fields was written when the refined candidates were the best by
    fitness: resuming it keeps that (no screening), so nothing is trained again and the winner stays."""
    config = SearchConfig(strategy="random", candidates=3, max_samples=200, seed=1,
                          **{**FAST_SEARCH, "refine": 2, "screen": 0})
    first = run_search(config, tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.json"
    data = json.loads(path.read_text())
    del data["config"]["screen"], data["config"]["screen_fraction"]
    path.write_text(json.dumps(data))
    messages = []
    again = run_search(SearchConfig(), tmp_path / "run", resume=True,
                       progress=lambda done, total, message: messages.append(message))
    assert again.report["config"]["screen"] == 0 and "screen" not in again.report["signal"]
    assert not any(m.startswith(("screen", "refine: training")) for m in messages)
    assert again.winner.cell == first.winner.cell


def test_a_training_subset_is_a_seeded_share_of_the_training_split():
    from hwnas.data import load_dataset
    from hwnas.errors import OptionError
    from hwnas.training import training_subset

    splits = load_dataset("digits", timesteps=4, seed=0, max_samples=200)
    size = splits.train_x.shape[0]
    assert training_subset(splits, 1.0, 3) is splits
    half = training_subset(splits, 0.5, 3)
    assert half.train_x.shape[0] == math.ceil(0.5 * size) and torch_equal(half.val_x, splits.val_x)
    assert torch_equal(training_subset(splits, 0.5, 3).train_x, half.train_x)  # the seed decides which
    assert not torch_equal(training_subset(splits, 0.5, 4).train_x, half.train_x)
    rows = {tuple(row.flatten().tolist()) for row in splits.train_x}
    assert all(tuple(row.flatten().tolist()) in rows for row in half.train_x)
    assert training_subset(splits, 1e-6, 0).train_x.shape[0] == 2  # batch-norm trains on two samples at least
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(OptionError, match="training fraction must be a share in"):
            training_subset(splits, bad, 0)


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and bool(torch.equal(a, b))


def test_a_continued_training_starts_as_a_short_training_and_keeps_its_best_epoch():
    """Rung 1 is exactly a short training (what proxy-check measures); rung 2 continues it (epochs 2..2, a
    warm-restarted cosine) and reports the best epoch so far; the same state continued twice gives one result."""
    import io

    import torch

    from hwnas.data import load_dataset
    from hwnas.training import short_training

    splits = load_dataset("digits", timesteps=4, seed=0, max_samples=150)
    arch = small_arch()
    kept = short_training(arch, splits, 1, 0, "val", torch.device("cpu"), keep=True)
    first_accuracy, first = kept.accuracy, kept.state
    short = short_training(arch, splits, 1, 0, "val", torch.device("cpu"))
    assert first_accuracy == short.accuracy and short.state is None
    assert kept.activity.totals_per_sample() == short.activity.totals_per_sample()
    second = [short_training(arch, splits, 2, 0, "val", torch.device("cpu"), previous=first, keep=True)
              for _ in range(2)]
    assert second[0].accuracy == second[1].accuracy >= first_accuracy
    state = torch.load(io.BytesIO(second[0].state), weights_only=True)
    before = torch.load(io.BytesIO(first), weights_only=True)
    assert state["epochs"] == 2 and state["best_accuracy"] == second[0].accuracy and before["epochs"] == 1
    # the added epoch trained: its weights moved at the restarted learning rate (Adam's moments carried over)
    assert state["optimizer"]["param_groups"][0]["lr"] < 2e-3  # the restarted cosine ran over the added epoch
    moved = [name for name, weight in state["model"].items()
             if weight.is_floating_point() and not torch.equal(weight, before["model"][name])]
    assert any(name.endswith("weight") and "bn" not in name for name in moved), moved
    assert all(int(s["step"]) > int(b["step"]) for s, b in zip(state["optimizer"]["state"].values(),
                                                                 before["optimizer"]["state"].values()))
    # a best recorded on other validation samples is not compared with this call's (the last rung's whole split):
    # with best_from_here the result is the added epoch's own, however high the state's recorded best
    flattering = dict(before, best_accuracy=2.0)
    buffer = io.BytesIO()
    torch.save(flattering, buffer)
    kept_best = short_training(arch, splits, 2, 0, "val", torch.device("cpu"), previous=buffer.getvalue(), keep=True)
    # the earlier best stands (its epoch's model, evaluated again) unless asked to start from here
    assert torch.load(io.BytesIO(kept_best.state), weights_only=True)["best_accuracy"] == 2.0
    assert kept_best.accuracy == first_accuracy
    own = short_training(arch, splits, 2, 0, "val", torch.device("cpu"), previous=buffer.getvalue(), keep=True,
                         best_from_here=True)
    assert torch.load(io.BytesIO(own.state), weights_only=True)["best_accuracy"] == own.accuracy <= 1.0
    assert max(own.accuracy, first_accuracy) == second[0].accuracy  # the added epoch's, as continued above
    assert own.correct.float().mean().item() == pytest.approx(own.accuracy)


def test_refine_after_prune_draws_its_pool_from_the_whole_space(tmp_path):
    from hwnas.nas.refine import pool_sample_size
    from hwnas.nas.runner import SearchConfig, run_search

    assert pool_sample_size(2) == 6 and pool_sample_size(2, 8) == 7 and pool_sample_size(8, 25) == 24
    assert pool_sample_size(2, 2) == 6  # no screening: 3K
    # --refine 1 --screen 5: the pool holds the final cell and 4 random ones (not 3K = 3), all screened
    config = SearchConfig(strategy="prune", max_samples=200, seed=2,
                          **{**FAST_SEARCH, "refine": 1, "screen": 5, "screen_fraction": 0.5})
    outcome = run_search(config, tmp_path / "run")
    kinds = outcome.report["evaluations_of"]
    assert kinds["supernets"] == sum(not r.is_candidate for r in outcome.rows) > 0
    assert kinds["cells"] + kinds["supernets"] == outcome.report["evaluations"] == len(outcome.rows)
    drawn = [r for r in outcome.rows if r.kind == "cell"]
    assert len(drawn) == 4
    final = next(r for r in outcome.rows if r.kind == "final")
    candidates = sorted(drawn + [final], key=lambda r: (-r.fitness, r.index))
    usable = [r.cell for r in candidates if r.usable]
    assert [row["cell"] for row in outcome.report["signal"]["screen"]["cells"]] == usable and len(usable) > 1
    kept = sorted((r for r in candidates if r.usable), key=lambda r: (-r.screen_fitness, r.index))[:1]
    assert [row["cell"] for row in outcome.report["signal"]["pool"]] == [r.cell for r in kept]


def test_a_stem_pool_searches_behind_a_strided_stem_and_exports(tmp_path):
    """--stem-pool 2: every candidate's stem takes the input 2x2 average-pooled (a stride-2 convolution on the
    chip), so every later layer is a quarter the size; the winner keeps it through architecture.json and NIR."""
    import torch

    from hwnas.arch.builder import build_network
    from hwnas.formats.nir import load, to_nir

    outcome = run_search(SearchConfig(strategy="random", candidates=3, stem_pool=2, **FAST_SEARCH), tmp_path)
    arch = Architecture.load(tmp_path / "architecture.json")
    assert arch.stem_pool == 2 and arch == outcome.architecture and arch.skeleton_key.startswith("stem2 ")
    net = build_network(arch)
    assert net.populations["stem"].shape == (4, 4, 4)  # digits 8x8 halved
    assert all(row.skeleton.startswith("stem2 ") for row in outcome.rows if row.is_candidate)
    net.eval()
    net.fold_batchnorm()
    x = (torch.rand(4, 2, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    with torch.no_grad():
        assert torch.equal(load(to_nir(net, arch))(x, timing="pipelined").output_spikes, net(x).output_spikes)
    with pytest.raises(OptionError, match="--stem-pool must be a positive integer"):
        SearchConfig(stem_pool=0)


def test_stem_pool_auto_searches_each_skeleton_behind_both_stems(tmp_path):
    """--stem-pool auto: the pre-flight keeps the skeleton and its twin behind a stride-2 stem (same widths,
    stages and head pooling), candidates are drawn in both, and the report names the skeletons kept."""
    outcome = run_search(SearchConfig(strategy="random", candidates=6, stem_pool="auto", **FAST_SEARCH), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["preflight"]["skeletons"] == [{"width": 4, "stages": 2, "head_pool": 1},
                                                {"width": 4, "stages": 2, "head_pool": 1, "stem_pool": 2}]
    assert {row.skeleton for row in outcome.rows if row.is_candidate} == {"4/4 pool1", "stem2 4/4 pool1"}
    assert report["skeleton"]["stem_pool"] == outcome.architecture.stem_pool
    assert report["config"]["stem_pool"] == "auto"
    with pytest.raises(OptionError, match="--stem-pool must be a positive integer or 'auto'"):
        SearchConfig(stem_pool="twice")
    assert SearchConfig(stem_pool="AUTO").stem_pool == "auto"
    with pytest.raises(OptionError, match="--stem-pool auto needs two"):
        SearchConfig(strategy="evolution", stem_pool="auto")


def test_width_choices_search_cells_at_each_width(tmp_path):
    """--width-choices: the pre-flight keeps a skeleton at each width (widest first, the primary one), candidates are
    drawn at every width, and the winner is one of them."""
    fast = {key: value for key, value in FAST_SEARCH.items() if key != "width"}
    outcome = run_search(SearchConfig(strategy="random", candidates=6, width_choices=(4, 8), **fast), tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["preflight"]["skeletons"] == [{"width": 8, "stages": 2, "head_pool": 1},
                                                {"width": 4, "stages": 2, "head_pool": 1}]
    assert report["preflight"]["verdict"] == "width 8: every cell fits; width 4: every cell fits"
    assert {row.skeleton for row in outcome.rows if row.is_candidate} == {"8/8 pool1", "4/4 pool1"}
    winner = next(row for row in outcome.rows if row.is_candidate and row.rank == 1)
    assert outcome.architecture.skeleton_key == winner.skeleton and report["config"]["width_choices"] == [8, 4]


def test_width_choices_prune_a_supernet_at_each_width(tmp_path):
    """--width-choices with the prune strategy: a supernet is pruned at each width, each pruning the one a search at
    that width alone runs (same final cell and score), and the better final cell wins."""
    fast = {key: value for key, value in FAST_SEARCH.items() if key != "width"}
    both = run_search(SearchConfig(strategy="prune", width_choices=(4, 8), **fast), tmp_path / "both")
    finals = {row.skeleton: row for row in both.rows if row.kind == "final"}
    assert set(finals) == {"8/8 pool1", "4/4 pool1"}
    for width, skeleton in ((8, "8/8 pool1"), (4, "4/4 pool1")):
        alone = run_search(SearchConfig(strategy="prune", width=width, **fast), tmp_path / str(width))
        final = next(row for row in alone.rows if row.kind == "final")
        assert (finals[skeleton].cell, finals[skeleton].score) == (final.cell, final.score)
        pruned = [row for row in both.rows if row.skeleton == skeleton and row.kind != "cell"]
        assert [(r.kind, r.cell, r.score) for r in pruned] == [(r.kind, r.cell, r.score) for r in alone.rows]
    assert sorted(row.index for row in both.rows) == list(range(len(both.rows)))
    best = max(finals.values(), key=lambda row: row.fitness)
    assert (cell_key(both.architecture.cell), both.architecture.skeleton_key) == (best.cell, best.skeleton)


def test_width_choices_prune_with_refinement_resumes_inside_the_second_width(tmp_path, monkeypatch):
    """A prune search over two widths with trainings, interrupted while it prunes at the second width, resumes to
    the rows and winner of an uninterrupted one; each width's pruning ends in a final cell, a candidate."""
    fast = {key: value for key, value in FAST_SEARCH.items() if key not in ("width", "refine")}
    config = SearchConfig(strategy="prune", width_choices=(4, 8), refine=2, screen=3, max_samples=120, **fast)
    reference = run_search(config, tmp_path / "ref")
    finals = [row for row in reference.rows if row.kind == "final"]
    assert [row.skeleton for row in finals] == ["8/8 pool1", "4/4 pool1"] and all(r.is_candidate for r in finals)
    first_width = sum(row.skeleton == "8/8 pool1" and row.kind != "cell" for row in reference.rows)
    monkeypatch.setattr(runner, "CHECKPOINT_EVERY_S", 0.0)

    def interrupt(done, total, message):
        if done == first_width + 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(config, tmp_path / "run", progress=interrupt)
    resumed = run_search(config, tmp_path / "run", resume=True)
    assert (resumed.architecture, resumed.winner.refine_accuracy) == (reference.architecture,
                                                                      reference.winner.refine_accuracy)
    assert [(r.kind, r.cell, r.skeleton, r.score) for r in resumed.rows] == \
        [(r.kind, r.cell, r.skeleton, r.score) for r in reference.rows]


def test_width_choices_leave_out_a_width_whose_search_would_not_fit_in_memory(tmp_path, monkeypatch):
    """A width whose scoring or trainings would not fit in the memory available is left out (named in the
    pre-flight's verdict) rather than refusing the search; when no width fits, the narrowest one's refusal."""
    from hwnas import limits
    from hwnas.arch import footprint

    fast = {key: value for key, value in FAST_SEARCH.items() if key != "width"}
    config = SearchConfig(strategy="random", candidates=3, width_choices=(4, 32), **fast)
    needed = []
    measure = footprint.check_memory
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: math.inf)
    monkeypatch.setattr(footprint, "check_memory", lambda need, what, remedy: (needed.append((need, what)),
                                                                               measure(need, what, remedy)))
    run_search(config, tmp_path / "measured")
    wide = max(need for need, what in needed if "width 32" in what)
    narrow = max(need for need, what in needed if "width 4" in what)
    assert narrow < wide
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: (narrow + wide) / 2)
    outcome = run_search(config, tmp_path / "fits")
    report = json.loads((tmp_path / "fits" / "report.json").read_text())
    assert report["preflight"]["skeletons"] == [{"width": 4, "stages": 2, "head_pool": 1}]
    assert report["preflight"]["verdict"].endswith("; width 32: left out, its search would not fit in memory")
    assert {row.skeleton for row in outcome.rows if row.is_candidate} == {"4/4 pool1"}
    # a resume keeps the widths the search started with, however much memory is free by then
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: math.inf)
    resumed = run_search(config, tmp_path / "fits", resume=True)
    assert [(r.cell, r.skeleton, r.score) for r in resumed.rows] == [(r.cell, r.skeleton, r.score) for r in outcome.rows]
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: narrow / 2)
    with pytest.raises(OptionError, match="at width 4 .* would need about"):
        run_search(config, tmp_path / "fits", resume=True)
    with pytest.raises(OptionError, match="at width 4 .* would need about"):
        run_search(config, tmp_path / "none")


def test_width_choices_leave_out_widths_no_cell_fits_and_are_checked():
    from hwnas.hw_models import load_target
    from hwnas.nas.preflight import LIGHTEST_CELL, choose_skeletons

    base = Architecture(cell=LIGHTEST_CELL, input_shape=(1, 16, 16), num_classes=2, width=16, timesteps=2)
    templates, report = choose_skeletons(base, load_target("loihi"), None, None, None, max_cores=2,
                                         width_choices=(4, 2))
    assert [t.skeleton_key for t in templates] == ["2/2 pool1"]  # at width 4 not even the lightest cell fits
    assert report["verdict"] == ("width 2: the lightest cell fits; heavier cells may not; width 4: not even the "
                                 "lightest cell fits")
    # --stem-pool auto: the width left out at full resolution is searched behind the stride-2 stem when it fits there
    templates, report = choose_skeletons(base, load_target("loihi"), None, None, None, max_cores=2,
                                         width_choices=(4, 2), stem_twin=2)
    assert [t.skeleton_key for t in templates] == ["2/2 pool1", "stem2 2/2 pool1", "stem2 4/4 pool1"]
    assert report["verdict"] == ("width 2: the lightest cell fits; heavier cells may not; width 4, only behind a "
                                 "stride-2 stem: every cell fits")
    assert report["skeletons"][-1] == {"width": 4, "stages": 2, "head_pool": 1, "stem_pool": 2}
    _, report = choose_skeletons(base, load_target("loihi"), None, None, None, max_cores=2, width_choices=(16, 2),
                                 stem_twin=2)
    assert report["verdict"].endswith("width 16: not even the lightest cell fits, nor behind a stride-2 stem")
    with pytest.raises(SearchError, match=r"no skeleton fits loihi .* with width 4, .* breaks max-cores"):
        choose_skeletons(base, load_target("loihi"), None, None, None, max_cores=2, width_choices=(16, 4))
    assert SearchConfig(width_choices=[8, 16, 12]).width_choices == (16, 12, 8)
    for bad in ((8,), (8, 8), (8, 0), "8,16"):
        with pytest.raises(OptionError, match="--width-choices must be two or more distinct positive widths"):
            SearchConfig(width_choices=bad)
    with pytest.raises(OptionError, match="--width-choices and --width both choose the widths"):
        SearchConfig(width=8, width_choices=(8, 16))
    with pytest.raises(OptionError, match="--width-choices and --skeletons both"):
        SearchConfig(skeletons=2, width_choices=(8, 16))
    with pytest.raises(OptionError, match="--width-choices needs several"):
        SearchConfig(strategy="evolution", width_choices=(8, 16))


def test_the_command_line_says_how_many_skeletons_it_searched(tmp_path, capsys):
    from conftest import SMALL_SEARCH

    from hwnas.cli import main

    assert main(["search", *SMALL_SEARCH, "--stem-pool", "auto", "--out", str(tmp_path / "run")]) == 0
    assert "(pre-flight: every cell fits; 2 skeletons searched, " in capsys.readouterr().out


def test_stem_pool_auto_leaves_out_a_twin_the_input_is_too_small_for():
    """A twin whose input would shrink below a pixel is rejected by the pre-flight, with the reason reported; the
    twin of widths the pre-flight chose is twice as wide."""
    from hwnas.hw_models import load_target
    from hwnas.nas.preflight import LIGHTEST_CELL, STEM_TWIN, choose_skeletons

    base = Architecture(cell=LIGHTEST_CELL, input_shape=(1, 4, 4), num_classes=2, width=4, timesteps=2, stages=3)
    templates, report = choose_skeletons(base, load_target("loihi2"), 4, 3, 1, stem_twin=STEM_TWIN)
    assert [t.stem_pool for t in templates] == [1]
    assert report["rejected"][-1]["skeleton"]["stem_pool"] == 2
    assert "shrink" in report["rejected"][-1]["violation"]
    # no skeleton fits at full resolution within 2 cores: the stride-2 stem's own skeleton is the search's
    small = replace(base, input_shape=(1, 16, 16), stages=2, width=16)
    with pytest.raises(SearchError, match="no skeleton fits loihi"):
        choose_skeletons(small, load_target("loihi"), None, None, None, max_cores=2)
    templates, report = choose_skeletons(small, load_target("loihi"), None, None, None, max_cores=2,
                                         stem_twin=STEM_TWIN)
    assert [t.skeleton_key for t in templates] == ["stem2 4/4 pool1"]
    assert report["verdict"] == "every cell fits; only behind a stride-2 stem"
    # widths the pre-flight chose: the twin is twice as wide (the same convolution work, half the neurons)
    digits = replace(base, input_shape=(1, 8, 8), stages=2, width=16)
    templates, report = choose_skeletons(digits, load_target("loihi2"), None, None, None, stem_twin=STEM_TWIN)
    assert [(t.stem_pool, t.width) for t in templates] == [(1, 16), (2, 32)]
    assert report["skeletons"][1] == {"width": 32, "stages": 2, "head_pool": 1, "stem_pool": 2}


def test_each_skeletons_best_candidate_reaches_the_rungs():
    """The screening keeps the best k by screened fitness, except that a skeleton none of whose cells made it
    sends its best one (in the place of the last kept): with one skeleton, the first k as ever."""
    from hwnas.nas.refine import best_of_each_skeleton
    from hwnas.nas.rows import Row

    ranked = [Row(index=i, kind="cell", cell=f"c{i}", score=0.0, degenerate=False, fitness=-i, skeleton=skeleton)
              for i, skeleton in enumerate(["8/8 pool1"] * 5 + ["stem2 8/8 pool1"] * 3)]
    assert [r.index for r in best_of_each_skeleton(ranked, 3)] == [0, 1, 5]
    assert [r.index for r in best_of_each_skeleton(ranked[:5], 3)] == [0, 1, 2]
    assert [r.index for r in best_of_each_skeleton(ranked, 8)] == list(range(8))
    assert [r.index for r in best_of_each_skeleton(ranked, 1)] == [0]  # more skeletons than places: the best


def test_time_left_is_estimated_from_the_trainings_run_so_far():
    from hwnas.nas.refine import TimeLeft

    ticks = iter([0.0, 20.0, 20.0, 80.0])
    clock = TimeLeft(4, now=lambda: next(ticks))
    assert clock.text() == ""  # nothing has run: no estimate
    assert clock.run(lambda: {"val_accuracy": 0.5}) == {"val_accuracy": 0.5}
    assert clock.text() == ", about 60 s left"  # 20 s each, 3 to go
    clock.run(dict)
    assert clock.text() == ", about 80 s left" and clock.remaining == 2  # (20 + 60) / 2 = 40 s each, 2 to go
    assert TimeLeft(3, now=iter([0.0, 60.0]).__next__).text() == ""
    slow = TimeLeft(200, now=iter([0.0, 60.0]).__next__)
    slow.run(dict)
    assert slow.text() == ", about 3.3 h left"  # 60 s each, 199 to go


def test_a_short_training_measures_its_best_epoch_once_as_a_second_evaluation_would():
    """The validation accuracy and activity a short training returns are those of its best epoch, measured at that
    epoch's end; evaluating the best state again gives the same numbers (so the search skips that second pass)."""
    import io

    import torch

    from hwnas.arch.builder import build_network
    from hwnas.data import load_dataset
    from hwnas.sim.seeding import build_seeded
    from hwnas.training import evaluate, short_training

    splits = load_dataset("digits", timesteps=4, seed=0, max_samples=150)
    arch = small_arch()
    trained = short_training(arch, splits, 2, 0, "val", torch.device("cpu"), keep=True)
    net = build_seeded(lambda: build_network(arch), 0, arch.key)
    net.pool_batchnorm_steps()  # as training leaves it
    net.load_state_dict(torch.load(io.BytesIO(trained.state), weights_only=True)["best_model"])
    classified = []
    accuracy, activity = evaluate(net, splits, "val", arch, 0, per_sample=classified)
    assert accuracy == trained.accuracy
    assert activity.totals_per_sample() == trained.activity.totals_per_sample()
    assert activity.per_sample() == trained.activity.per_sample()
    # which samples it classified: the best epoch's, in the split's order, as the second evaluation finds them
    assert torch.equal(torch.cat(classified), trained.correct) and trained.correct.shape == splits.val_y.shape
    assert trained.correct.double().mean().item() == pytest.approx(trained.accuracy)
    # continued with no epoch to add, the kept best state is evaluated again: the same samples come back
    again = short_training(arch, splits, 2, 0, "val", torch.device("cpu"), previous=trained.state)
    assert again.accuracy == trained.accuracy and torch.equal(again.correct, trained.correct)
