"""``hwnas train DIR --from MODEL.nir``: another tool's network (here shaped as the NIR paper's sinabs CNN) trained
in Loihi's fixed point into a run folder that export, estimate, report and validate read; what cannot be trained
is refused in one line."""

import json

import nir
import numpy as np
import pytest
import torch
from conftest import per_step_cnn, write_banded_nmnist

from hwnas.cli import main
from hwnas.data import load_dataset
from hwnas.formats.nir import load
from hwnas.training import evaluate, load_model

TRAIN = ["--dt", "1", "--dataset", "nmnist", "--timesteps", "6", "--epochs", "6", "--qat-epochs", "1",
         "--batch-size", "8", "--lr", "0.01", "--quiet"]


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    """A per-step CNN trained from its (random) weights on banded N-MNIST-format events."""
    root = tmp_path_factory.mktemp("imported")
    write_banded_nmnist(root / "data", per_class=20)
    nir.write(root / "cnn.nir", per_step_cnn(size=34, classes=10))
    run = root / "run"
    assert main(["train", str(run), "--from", str(root / "cnn.nir"), "--data-dir", str(root / "data"), *TRAIN]) == 0
    return run, root


def test_train_from_a_graph_learns_and_writes_a_run_folder(imported_run):
    run, root = imported_run
    report = json.loads((run / "train.json").read_text())
    assert report["arithmetic"] == "loihi" and report["weight_bits"] == 8
    assert report["imported"]["source"] == str(root / "cnn.nir")
    # the graph's random weights are near chance on 3 bands; training finds the bands
    assert report["val_accuracy"] >= report["imported"]["val_accuracy_before"] + 0.3
    architecture = json.loads((run / "architecture.json").read_text())
    assert architecture["format"] == "hwnas.imported" and architecture["timesteps"] == 6
    assert json.loads((run / "report.json").read_text())["config"]["dataset"] == "nmnist"
    net, arch, _ = load_model(run / "model.pt")
    splits = load_dataset("nmnist", root / "data", arch.timesteps, 0)
    assert evaluate(net, splits, "test", arch, 0)[0] == report["test_accuracy"]  # the model that scored it


def test_an_imported_run_exports_estimates_and_reports(imported_run, capsys):
    run, _ = imported_run
    assert main(["export", str(run)]) == 0
    exported = load(run / "model.nir")
    net, _, _ = load_model(run / "model.pt")
    assert sorted(exported.populations) == sorted(net.populations)
    x = (torch.rand(6, 3, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    with torch.no_grad():  # the file computes what the trained network computes
        assert torch.equal(exported(x, timing="pipelined").output_spikes, net(x).output_spikes)
    assert main(["estimate", str(run), "--samples", "4"]) == 0
    assert "imported cnn.nir" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    assert "<h2>Imported network</h2>" in page and "The graph as read per layer on the target" in page
    layers = json.loads((run / "report.json").read_text())["estimate"]["layers"]
    assert [row["layer"] for row in layers if row["neurons"]] == ["1", "3", "6", "10", "12"]
    assert all(row["cores"] >= 1 and row["energy_j"] > 0 for row in layers if row["neurons"])


def test_an_imported_run_equals_lava_fixed_point_layer_by_layer(imported_run):
    run, _ = imported_run
    assert main(["export", str(run)]) == 0
    assert main(["validate", str(run), "--samples", "6", "--skip", "norse"]) == 0
    pairs = json.loads((run / "validation.json").read_text())["pairs"]
    assert pairs["trained/lava_fixed"]["identical"] and pairs["trained/lava_fixed"]["check"] == "exact"


def test_from_scratch_draws_new_weights_from_the_seed(tmp_path):
    write_banded_nmnist(tmp_path / "data", per_class=3, test_per_class=2)
    nir.write(tmp_path / "cnn.nir", per_step_cnn(size=34, classes=10))
    weights = []
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert main(["train", str(tmp_path / name), "--from", str(tmp_path / "cnn.nir"), "--data-dir",
                     str(tmp_path / "data"), "--from-scratch", "--seed", seed, "--epochs", "1", "--qat-epochs", "0",
                     "--no-quantize", "--dt", "1", "--dataset", "nmnist", "--timesteps", "2", "--quiet"]) == 0
        weights.append(load_model(tmp_path / name / "model.pt")[0].synapses["input->1:0_0"].layer.weight)
    read = load(tmp_path / "cnn.nir", dt_s=1.0).synapses["input->1:0_0"].layer.weight
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    assert not torch.allclose(weights[0], read, atol=0.05)
    assert json.loads((tmp_path / "a" / "architecture.json").read_text())["from_scratch"] is True


def _graph_with_pooling_after_weights():
    weight = np.random.default_rng(0).normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32)
    return nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=weight, stride=1, padding=1, dilation=1, groups=1,
                           bias=np.zeros(2, np.float32)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "if": nir.IF(r=np.ones((2, 4, 4), np.float32), v_threshold=np.ones((2, 4, 4), np.float32)),
        "flat": nir.Flatten(input_type={"input": np.array([2, 4, 4])}, start_dim=0, end_dim=-1),
        "fc": nir.Linear(weight=np.ones((10, 32), np.float32)),
        "out": nir.IF(r=np.ones(10, np.float32), v_threshold=np.ones(10, np.float32)),
        "output": nir.Output(output_type={"output": np.array([10])})},
        edges=[("input", "conv"), ("conv", "pool"), ("pool", "if"), ("if", "flat"), ("flat", "fc"), ("fc", "out"),
               ("out", "output")])


@pytest.mark.parametrize("make,options,message", [
    (lambda: per_step_cnn(size=34, classes=10), [], "records no time step: pass --dt"),
    (lambda: per_step_cnn(size=34, classes=10), ["--dt", "1"], "takes input [2, 34, 34], dataset digits has [1, 8, 8]"),
    (lambda: per_step_cnn(size=34, classes=4), ["--dt", "1", "--dataset", "nmnist", "--data-dir", "DATA"],
     "has 4 outputs (node '12'), dataset nmnist has 10 classes"),
    (_graph_with_pooling_after_weights, ["--dt", "1"],
     "connection input -> if (nodes conv -> pool) cannot be trained: hwnas trains sum pooling"),
])
def test_what_cannot_be_trained_is_one_line(make, options, message, tmp_path, capsys):
    write_banded_nmnist(tmp_path / "data", per_class=1, test_per_class=1)
    nir.write(tmp_path / "graph.nir", make())
    options = [str(tmp_path / "data") if option == "DATA" else option for option in options]
    assert main(["train", str(tmp_path / "run"), "--from", str(tmp_path / "graph.nir"), *options]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "run" / "model.pt").exists()


def test_import_options_need_from_and_a_search_folder_is_not_overwritten(imported_run, tmp_path, capsys):
    run, root = imported_run
    assert main(["train", str(run), "--dataset", "nmnist"]) == 2
    assert "--dataset applies to train --from MODEL.nir" in capsys.readouterr().err
    assert main(["train", str(run), "--epochs", "1"]) == 2  # an imported run is trained again only with --from
    assert "holds a network read from cnn.nir: train it again into a new folder" in capsys.readouterr().err
    assert main(["train", str(run), "--from", str(root / "cnn.nir"), "--data-dir", str(root / "data"), *TRAIN]) == 2
    assert "already holds a run: give train --from a new folder" in capsys.readouterr().err


def test_norse_runs_a_sinabs_style_cnn_as_hwnas_does(tmp_path, capsys):
    write_banded_nmnist(tmp_path / "data", per_class=1, test_per_class=2)
    nir.write(tmp_path / "cnn.nir", per_step_cnn(size=34, classes=10))
    assert main(["deploy", str(tmp_path / "cnn.nir"), "--backend", "norse", "--dataset", "nmnist", "--data-dir",
                 str(tmp_path / "data"), "--samples", "6", "--steps", "6", "--dt", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:2].strip() in {"1", "3", "6", "10", "12"}]
    assert len(rows) == 5 and all(row[1] == row[2] and row[-1] == "100.00%" for row in rows)
    assert any(float(row[1]) > 0 for row in rows)


def test_a_graph_for_other_data_is_one_line_in_estimate(tmp_path, capsys):
    nir.write(tmp_path / "cnn.nir", per_step_cnn(size=34, classes=10))
    assert main(["estimate", str(tmp_path / "cnn.nir"), "--dt", "1", "--steps", "4"]) == 2
    assert "the samples have shape [1, 8, 8] per step, the network takes [2, 34, 34]" in capsys.readouterr().err


def test_an_imported_run_compresses_into_a_run_that_reloads(imported_run):
    run, _ = imported_run
    assert main(["compress", str(run), "--epochs", "1", "--qat-epochs", "0", "--out", str(run.parent / "small")]) == 0
    net, arch, checkpoint = load_model(run.parent / "small" / "model.pt")
    assert arch.key == "imported cnn.nir" and checkpoint["compressed"]
    bits = checkpoint["layer_weight_bits"]  # each connection in the bits compression chose for it
    assert bits and set(bits) == set(net.synapses) and net.layer_weight_bits() == bits
    assert main(["export", str(run.parent / "small")]) == 0


@pytest.mark.parametrize("producer", ["snntorch", "norse"])
def test_snntorch_and_norse_graphs_become_trainable_and_chip_exact(producer):
    import warnings

    from test_interop import norse_network, snntorch_network

    from hwnas.backends.registry import hwnas_rasters
    from hwnas.formats.portable import PORTABLE_DT_S
    from hwnas.formats.trainable import trainable_network
    from hwnas.sim.integer import simulate_fixed
    from hwnas.sim.lowering import lower
    from hwnas.sim.ops.chain import Scaled
    from hwnas.sim.quantize import WeightFormat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if producer == "snntorch":
            from snntorch.export_nir import export_to_nir

            graph, dt_s = export_to_nir(snntorch_network(), torch.zeros(1, 1, 8, 8), ignore_dims=[0]), PORTABLE_DT_S
        else:  # Norse writes r = 1: an input gain other than 1, which training multiplies into the weights
            from norse.torch.utils.export_nir import to_nir as norse_to_nir

            graph, dt_s = norse_to_nir(norse_network(), torch.zeros(1, 1, 8, 8)), 1e-6
    x = (torch.rand(6, 4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    read, net = load(graph, dt_s=dt_s, timing="pipelined"), trainable_network(graph, dt_s, "pipelined")
    assert (producer == "norse") == any(isinstance(s, Scaled) for s in read.synapses.values())
    assert not any(isinstance(s, Scaled) for s in net.synapses.values())
    with torch.no_grad():  # the gain moved into the weights: the same spikes
        assert torch.equal(read(x).output_spikes, net(x).output_spikes)
    assert all(s.weight_module() is not None for s in net.synapses.values())
    fmt = WeightFormat(8)
    net.set_weight_format(fmt)
    net.set_arithmetic("loihi", fmt)
    ours, twin = hwnas_rasters(net, x, dtype=torch.float32), simulate_fixed(lower(net, fmt), x.numpy())
    assert all(np.array_equal(ours.spikes[name], twin.spikes[name]) for name in net.populations)
    assert sum(float(twin.spikes[name].sum()) for name in net.populations) > 0


def test_an_snntorch_network_trained_from_digits_exports_to_netx_and_runs_in_lava(tmp_path, capsys):
    """A strided convolution read from another tool trains on the default data and holds as a netx layer."""
    import warnings

    from test_interop import snntorch_network

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from snntorch.export_nir import export_to_nir

        nir.write(tmp_path / "snn.nir", export_to_nir(snntorch_network(), torch.zeros(1, 1, 8, 8), ignore_dims=[0]))
    run = tmp_path / "run"
    assert main(["train", str(run), "--from", str(tmp_path / "snn.nir"), "--dt", "1e-4", "--epochs", "1",
                 "--qat-epochs", "1", "--quiet"]) == 0
    assert main(["export", str(run), "--format", "netx"]) == 0
    out = capsys.readouterr().out
    assert "3 layers (conv 1, conv 3, dense 6)" in out and "spikes match hwnas' integer simulation" in out
