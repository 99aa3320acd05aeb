import json

import numpy as np
import pytest
import torch
from conftest import CHAIN, FAST_SEARCH, FEEDBACK, small_arch

from hwnas.arch.builder import build_network
from hwnas.arch.genotype import Architecture, parse_cell_key
from hwnas.cli import main
from hwnas.data import load_dataset
from hwnas.nas.runner import SearchConfig, run_search
from hwnas.sim.ops import Conv, ConvBN
from hwnas.sim.quantize import WeightFormat, fake_quantize_weight, weight_mantissas
from hwnas.sim.seeding import build_seeded
from hwnas.training import TrainConfig, evaluate, load_model, train_run


def test_weight_quantisation_follows_the_loihi_format():
    w = torch.tensor([0.5, -1.7, 0.013, 3.9, -4.0])
    mantissa, exponent = weight_mantissas(w, WeightFormat(8))
    assert exponent == 1  # 64 * 4.0 = 256 > 254, so one shift
    assert torch.all(mantissa % 2 == 0) and mantissa.min() >= -256 and mantissa.max() <= 254
    assert torch.allclose(mantissa * 2.0 ** exponent / 64, w, atol=2 * 2 / 64)
    x = w.clone().requires_grad_(True)
    fake_quantize_weight(x, WeightFormat(8)).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(w))  # straight-through


def test_folding_batchnorm_keeps_eval_outputs():
    arch = small_arch(FEEDBACK, timing="pipelined", downsample="avgpool")
    net = build_seeded(lambda: build_network(arch), 0, "fold")
    for module in net.modules():
        if isinstance(module, ConvBN):
            torch.nn.init.uniform_(module.bn.weight, 0.5, 1.5)
            torch.nn.init.uniform_(module.bn.bias, -0.2, 0.2)
            module.bn.running_mean.uniform_(-0.5, 0.5)
            module.bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.bernoulli(torch.full((4, 5, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        before = net(x, record=True)
        net.fold_batchnorm()
        after = net(x, record=True)
    assert net.is_folded and any(isinstance(m, Conv) for m in net.modules())
    assert torch.allclose(before.logits, after.logits, atol=1e-4)
    for name in before.codes:
        assert (before.codes[name] != after.codes[name]).float().mean() < 1e-3, name


def test_train_writes_a_model_that_reloads(tmp_path, capsys):
    searched = run_search(SearchConfig(strategy="random", candidates=2, **{**FAST_SEARCH, "width": 8}), tmp_path)
    # the accuracy check below needs a cell that learns in 4 short epochs (a random draw may not): two parallel
    # paths of convolutions (measured 51% test accuracy; a chain of three convolutions reaches 20%)
    cell = "0-1:conv3x3 0-2:zero 0-3:conv3x3 1-2:zero 1-3:conv3x3 2-3:zero"
    searched.architecture.with_cell(parse_cell_key(cell)).save(tmp_path / "architecture.json")
    outcome = train_run(tmp_path, TrainConfig(epochs=3, qat_epochs=1))
    report = json.loads((tmp_path / "train.json").read_text())
    assert report["quantized"] and report["weight_bits"] == 8 and report["timing"] == "pipelined"
    assert 0.3 < report["test_accuracy"] <= 1.0  # 10 classes: well above chance after 4 short epochs
    assert [h["phase"] for h in report["history"]] == ["float", "float", "float", "qat"]
    net, arch, checkpoint = load_model(tmp_path / "model.pt")
    assert checkpoint["folded"] and arch == outcome.architecture
    assert checkpoint["arithmetic"] == report["arithmetic"] == net.arithmetic == "loihi"  # the fine-tuning's
    splits = load_dataset("digits", seed=0)
    accuracy, _ = evaluate(net, splits, "test", arch, 0)
    assert accuracy == report["test_accuracy"]  # the reloaded model computes exactly what training measured

    # same seed, same result: training the same run again gives the same weights and the same numbers
    again = tmp_path / "again"
    again.mkdir()
    for name in ("architecture.json", "report.json"):
        (again / name).write_bytes((tmp_path / name).read_bytes())
    train_run(again, TrainConfig(epochs=3, qat_epochs=1))
    repeat = json.loads((again / "train.json").read_text())
    timeless = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert timeless(repeat) == timeless(report)
    first, second = torch.load(tmp_path / "model.pt"), torch.load(again / "model.pt")
    assert all(torch.equal(first["state_dict"][k], second["state_dict"][k]) for k in first["state_dict"])
    for module in net.modules():
        if isinstance(module, Conv):
            weight = fake_quantize_weight(module.conv.weight.detach(), WeightFormat(8))
            mantissa, exponent = weight_mantissas(module.conv.weight, WeightFormat(8))
            assert torch.allclose(weight, mantissa * 2.0 ** exponent / 64)


def test_train_command_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path)]) == 2
    assert "no architecture.json" in capsys.readouterr().err
    (tmp_path / "model.pt").write_bytes(b"garbage")
    with pytest.raises(Exception) as info:
        load_model(tmp_path / "model.pt")
    assert "cannot read model" in str(info.value)


def test_estimate_uses_trained_weights_when_present(tmp_path, capsys):
    run_search(SearchConfig(strategy="random", candidates=1, **{**FAST_SEARCH, "width": 8}), tmp_path)
    assert main(["estimate", str(tmp_path), "--samples", "8"]) == 0
    assert "untrained weights (no model.pt yet)" in capsys.readouterr().out
    train_run(tmp_path, TrainConfig(epochs=1, qat_epochs=0))
    assert main(["estimate", str(tmp_path), "--samples", "8"]) == 0
    assert "trained weights" in capsys.readouterr().out


def _search_folder_with_refined_rows(path, rows, signal=None):
    """A run folder as a search leaves it: the winner, the report's configuration (and ``signal``), search.csv's
    refined rows."""
    import csv as csv_module

    from hwnas.io_utils import write_json_atomic

    path.mkdir()
    small_arch(CHAIN).save(path / "architecture.json")
    write_json_atomic(path / "report.json", {"config": {"dataset": "digits", "seed": 0, "target": "loihi2"},
                                             "winner": {"cell": CHAIN, "skeleton": "4/4 pool1"},
                                             **({"signal": signal} if signal else {})})
    fields = ["index", "kind", "cell", "skeleton", "rank", "refine_epochs", "refine_accuracy", "refine_energy_j"]
    with open(path / "search.csv", "w", newline="") as handle:
        writer = csv_module.DictWriter(handle, fields)
        writer.writeheader()
        for index, (cell, skeleton, accuracy, energy) in enumerate(rows):
            writer.writerow({"index": index, "kind": "candidate", "cell": cell, "skeleton": skeleton,
                             "rank": index + 1, "refine_epochs": 2, "refine_accuracy": accuracy,
                             "refine_energy_j": energy})


def test_pick_trains_a_point_of_the_refined_front(tmp_path, capsys):
    from hwnas.run_folder import RunFolder
    from hwnas.nas.front import picked_architecture, recorded_pick, refined_front

    cheap = "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero"
    dominated = "0-1:zero 0-2:zero 0-3:skip 1-2:zero 1-3:zero 2-3:zero"
    run = tmp_path / "run"
    _search_folder_with_refined_rows(run, [(CHAIN, "4/4 pool1", 0.9, 3e-5), (cheap, "stem2 4/4 pool1", 0.7, 1e-5),
                                           (dominated, "4/4 pool1", 0.6, 2e-5)])
    assert [row["cell"] for row in refined_front(RunFolder(run))] == [cheap, CHAIN]  # cheapest first, no dominated
    arch, row = picked_architecture(RunFolder(run), 1)
    assert arch.key == cheap and arch.stem_pool == 2 and arch.width == 4 and row["refine_accuracy"] == "0.7"
    assert main(["train", str(run), "--pick", "3"]) == 2
    assert "--pick must be 1..2 (the front, cheapest first: 1: 70.0% at 10.0 uJ; 2: 90.0% at 30.0 uJ)" in \
        capsys.readouterr().err
    assert main(["train", str(run), "--pick", "1", "--epochs", "1", "--qat-epochs", "0", "--quiet"]) == 0
    report = json.loads((run / "train.json").read_text())
    assert report["picked"]["cell"] == cheap and report["picked"]["skeleton"] == "stem2 4/4 pool1"
    assert load_model(run / "model.pt")[1] == arch  # the model is the picked candidate's, not the winner's
    # --out trains another point in a new folder beside the search's; the run folder keeps its model
    first = (run / "model.pt").read_bytes()
    second = tmp_path / "second"
    assert main(["train", str(run), "--pick", "2", "--out", str(second), "--epochs", "1", "--qat-epochs", "0",
                 "--quiet"]) == 0
    assert f"model in {second}/model.pt" in capsys.readouterr().out
    assert (run / "model.pt").read_bytes() == first
    assert load_model(second / "model.pt")[1].key == CHAIN == Architecture.load(second / "architecture.json").key
    assert json.loads((second / "train.json").read_text())["picked"]["cell"] == CHAIN
    assert (second / "report.json").read_bytes() == (run / "report.json").read_bytes()
    assert (second / "search.csv").read_bytes() == (run / "search.csv").read_bytes()
    for argv, message in ((["--out", str(second)], f"{second} already holds a run (model.pt): name a new folder"),
                          (["--from", "x.nir", "--out", str(tmp_path / "third")], "with --from, DIR is the new folder")):
        assert main(["train", str(run), *argv, "--epochs", "1"]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "third").exists()
    # a branch --pick 1 --out left before its model (interrupted), trained again without --pick: still the pick
    RunFolder(run).branch(tmp_path / "pick1", arch)
    capsys.readouterr()
    assert main(["train", str(tmp_path / "pick1"), "--epochs", "1", "--qat-epochs", "0", "--quiet"]) == 0
    assert f"picked point of the front this folder was made for: {cheap} (stem2 4/4 pool1), 70.0% validation " \
        "after 2 epoch(s), 10.0 uJ" in capsys.readouterr().err
    assert json.loads((tmp_path / "pick1" / "train.json").read_text())["picked"]["skeleton"] == "stem2 4/4 pool1"
    assert recorded_pick(RunFolder(run), small_arch(CHAIN)) is None  # the search's winner is no pick


def test_a_branch_refuses_another_run_and_continues_its_own(tmp_path):
    from hwnas.errors import OptionError
    from hwnas.run_folder import RunFolder

    run = tmp_path / "run"
    _search_folder_with_refined_rows(run, [(CHAIN, "4/4 pool1", 0.9, 3e-5)])
    search, winner = RunFolder(run), small_arch(CHAIN)
    new = search.branch(tmp_path / "new", winner)
    assert new.load_architecture() == winner and (tmp_path / "new" / "report.json").read_bytes() == \
        (run / "report.json").read_bytes()
    # what a refused or interrupted training leaves (the same architecture, no model) is branched again
    assert search.branch(tmp_path / "new", winner).path == tmp_path / "new"
    with pytest.raises(OptionError, match=r"new already holds a run \(architecture.json\): name a new folder"):
        search.branch(tmp_path / "new", small_arch(FEEDBACK))  # another architecture's folder
    (tmp_path / "searching").mkdir()
    (tmp_path / "searching" / "checkpoint.json").write_text("{}")  # a search's folder, even unfinished
    with pytest.raises(OptionError, match=r"already holds a run \(checkpoint.json\)"):
        search.branch(tmp_path / "searching", winner)
    with pytest.raises(OptionError, match="is the search's own folder"):
        search.branch(run, winner)


def test_a_tied_runner_up_on_the_front_is_listed_once_and_a_malformed_signal_changes_nothing(tmp_path):
    from hwnas.nas.front import refined_front
    from hwnas.run_folder import RunFolder

    cheap = "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero"
    rows = [(cheap, "4/4 pool1", 0.80, 1e-5), (CHAIN, "4/4 pool1", 0.81, 3e-5)]  # each on the front
    tied = {"separated": False, "runner_up": {"cell": CHAIN, "skeleton": "4/4 pool1"}}
    _search_folder_with_refined_rows(tmp_path / "a", rows, {"separation": tied})
    assert [row["cell"] for row in refined_front(RunFolder(tmp_path / "a"))] == [cheap, CHAIN]
    for number, signal in enumerate(({"separation": {"separated": False, "runner_up": None}},
                                     {"separation": {"separated": False}}, {"separation": "tied"})):
        _search_folder_with_refined_rows(tmp_path / f"b{number}", rows[:1] + [(CHAIN, "4/4 pool1", 0.7, 3e-5)], signal)
        assert [row["cell"] for row in refined_front(RunFolder(tmp_path / f"b{number}"))] == [cheap]


def test_a_runner_up_the_last_rung_could_not_separate_stays_pickable(tmp_path):
    from hwnas.nas.front import refined_front, separation_line
    from hwnas.nas.refine import packed_samples, rung_separation
    from hwnas.nas.rows import Row
    from hwnas.run_folder import RunFolder

    wide = "0-1:zero 0-2:zero 0-3:conv3x3 1-2:zero 1-3:zero 2-3:zero"

    def finalist(index, cell, accuracy, energy):
        row = Row(index=index, kind="cell", cell=cell, score=0.0, degenerate=False, fitness=0.0, skeleton="4/4 pool1")
        row.refine_accuracy, row.refine_energy_j, row.refine_fitness = accuracy, energy, 100 * accuracy
        return row

    # the measured MNIST width search's last rung: 95.80 against 95.70 % on 2,000 validation samples
    chosen, runner = finalist(0, CHAIN, 0.958, 2.67e-5), finalist(1, wide, 0.957, 5.12e-5)
    separation = rung_separation([runner, chosen], chosen, 2000)
    assert separation["runner_up"]["cell"] == wide and separation["margin"] == pytest.approx(0.1)
    assert separation["noise"] == pytest.approx(1.2503, abs=1e-4)  # 1.96 * sqrt((.958 * .042 + .957 * .043) / 2000)
    assert not separation["separated"]
    assert rung_separation([chosen], chosen, 2000) is None  # no runner-up, nothing to separate
    assert rung_separation([runner, chosen], chosen, 2_000_000)["separated"]  # the same lead, 1,000 times the samples
    assert "paired_noise" not in separation  # no samples kept
    # with which samples each classified, the paired noise too: only the 30 samples the two disagree on count
    both = np.ones(2000, dtype=bool)
    mine, theirs = both.copy(), both.copy()
    mine[:100], theirs[:86], theirs[100:116] = False, False, False  # 95.0 and 94.9 %: 16 against 14 alone
    assert (mine.mean(), theirs.mean()) == (0.95, 0.949)
    chosen.refine_accuracy, runner.refine_accuracy = 0.95, 0.949
    packed = {id(chosen): packed_samples(torch.from_numpy(mine)), id(runner): packed_samples(theirs)}
    paired = rung_separation([runner, chosen], chosen, 2000, packed)
    assert paired["discordant"] == 30 and paired["margin"] == separation["margin"]
    assert paired["paired_noise"] == pytest.approx(0.5368, abs=1e-4)  # 1.96 * sqrt((30/2000 - (2/2000)**2) / 2000)
    # the independent noise decides: the lead of 0.1 points stays inside it
    assert paired["noise"] == pytest.approx(196 * ((.95 * .05 + .949 * .051) / 2000) ** 0.5)
    assert not paired["separated"]
    assert "; paired 0.54" in separation_line(paired, [], tmp_path)
    for other in (1999, 1990):  # another split's samples, in as many bytes or fewer
        assert "paired_noise" not in rung_separation([runner, chosen], chosen, other, packed)
    chosen.refine_accuracy, runner.refine_accuracy = 0.958, 0.957
    # the winner beats the runner-up on both accuracy and energy, yet the runner-up stays a point to pick
    run = tmp_path / "run"
    _search_folder_with_refined_rows(run, [(CHAIN, "4/4 pool1", 0.958, 2.67e-5), (wide, "4/4 pool1", 0.957, 5.12e-5)],
                                     {"separation": separation})
    front = refined_front(RunFolder(run))
    assert [row["cell"] for row in front] == [CHAIN, wide]
    line = separation_line(separation, front, run)
    assert line == (f"not separated from the last rung's runner-up {wide} in 4/4 pool1: 0.10 points of refined "
                    "fitness apart, inside the validation's sampling noise (1.25 points at 95 % on 2,000 samples); the "
                    f"short trainings cannot rank the two: hwnas train {run} --pick 2 --out {run}-pick2 trains it beside "
                    "the winner")
    separated = {**separation, "separated": True}
    (run / "report.json").write_text(json.dumps({"config": {}, "signal": {"separation": separated}}))
    assert [row["cell"] for row in refined_front(RunFolder(run))] == [CHAIN]  # a runner-up left behind is not
    assert separation_line(separated, front, run).startswith(
        f"ahead of the last rung's runner-up {wide} in 4/4 pool1: 0.10 points of refined fitness apart, beyond ")
