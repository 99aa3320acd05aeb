"""The Xylo flow (issue 34): row-sequential data, the xylo-audio3 target, the search of dense cells fitted to its
core, training in Xylo's integers, the rockpool export and `hwnas run --target xylo-audio3` ending in the trained
model = hwnas' twin = SynSense's XyloSim (the last without rockpool: the twin only)."""

import json

import pytest
import torch

from hwnas.arch.builder import build_network
from hwnas.arch.dense import DenseArchitecture
from hwnas.arch.genotype import parse_cell_key
from hwnas.cli import main
from hwnas.data import load_dataset
from hwnas.errors import DataError, TargetError
from hwnas.hw_models import load_target
from hwnas.hw_models.mapping import map_network

HEAVIEST = "0-1:linear 0-2:linear 0-3:linear 1-2:linear 1-3:linear 2-3:linear"
FAST = ["--timesteps", "8", "--batch-size", "16", "--repeats", "1", "--quiet"]


def test_rows_read_an_image_one_row_per_step_as_spike_counts(tmp_path):
    from test_data import make_idx_dataset

    digits = load_dataset("digits")
    rows = load_dataset("digits-rows")
    assert rows.kind == "frames" and rows.input_shape == (8, 1, 1) and rows.frames == 8
    # row t of an 8x8 digit is step t, its 8 pixels the 8 channels, intensity 0..1 as 0..15 spikes
    expected = torch.round(digits.train_x[:5, 0] * 15).to(torch.uint8)
    assert torch.equal(rows.train_x[:5, :, :, 0, 0], expected) and torch.equal(rows.train_y, digits.train_y)
    make_idx_dataset(tmp_path, "MNIST")
    mnist = load_dataset("mnist-rows", tmp_path, timesteps=16)
    assert mnist.input_shape == (16, 1, 1) and mnist.frames == 16 and int(mnist.train_x.max()) <= 15


def test_only_one_channel_images_read_as_rows():
    from hwnas.data.rows import row_sequential
    from hwnas.data.splits import DatasetSplits

    colour = torch.zeros(4, 3, 8, 8)
    splits = DatasetSplits("colour", "static", colour, torch.zeros(4), colour, torch.zeros(4), colour,
                           torch.zeros(4), 2)
    with pytest.raises(DataError, match="colour cannot be read row by row: it is not a one-channel image dataset"):
        row_sequential(splits, 8)


def test_the_xylo_target_describes_one_dense_core():
    target = load_target("xylo-audio3")
    assert (target.network, target.arithmetic, target.timing) == ("dense", "xylo", "xylo")
    assert (target.dense.inputs, target.dense.hidden_neurons, target.dense.outputs) == (16, 992, 16)
    assert (target.dense.input_expansion_neurons, target.dense.output_expansion_neurons) == (128, 128)
    assert any("proxy" in source for source in target.sources)


def test_a_dense_target_without_its_core_sizes_is_refused(tmp_path):
    from hwnas.hw_models.targets import builtin_target_text

    full = builtin_target_text("xylo-audio3")
    text = full.split("[dense]")[0] + "[energy]" + full.split("[energy]")[1]
    path = tmp_path / "xylo.toml"
    path.write_text(text)
    with pytest.raises(TargetError, match="network 'dense' needs a '\\[dense\\]' table"):
        load_target(str(path))


@pytest.mark.parametrize("width, channels, rule", [(128, 16, None), (248, 16, "input-neurons"),
                                                   (256, 16, "hidden-neurons"), (8, 64, "inputs")])
def test_the_dense_core_holds_what_fits_its_sizes(width, channels, rule):
    arch = DenseArchitecture(parse_cell_key(HEAVIEST), channels, 10, width, 8)
    mapping = map_network(build_network(arch), load_target("xylo-audio3"))
    assert len(mapping.cores) == 1
    assert [v.rule for v in mapping.violations][:1] == ([rule] if rule else [])


def test_a_search_for_xylo_scores_dense_cells_fitted_to_the_core(tmp_path, capsys):
    out = tmp_path / "search"
    assert main(["search", "--target", "xylo-audio3", "--dataset", "digits-rows", "--strategy", "random",
                 "--candidates", "6", "--refine", "0", "--out", str(out), *FAST]) == 0
    arch = json.loads((out / "architecture.json").read_text())
    assert arch["family"] == "dense" and arch["width"] == 64 and arch["input_channels"] == 8
    assert {edge["op"] for edge in arch["cell"]} <= {"linear", "zero"}
    assert arch["neuron"]["du"] == 0.5 and arch["neuron"]["dv"] == 0.25  # Xylo's bit-shift decays by default
    report = json.loads((out / "report.json").read_text())
    assert report["preflight"]["verdict"] == "every cell fits" and report["winner"]["cores"] == 1


@pytest.mark.parametrize("argv, message", [
    (["--stages", "3"], "--stages shapes convolutional networks; xylo-audio3 holds dense populations"),
    (["--dataset", "digits", "--width", "8"], "no width fits xylo-audio3: even the lightest cell at width 8 breaks "
                                              "inputs: the network needs 64 input channels"),
])
def test_a_xylo_search_refuses_what_its_core_cannot_take_in_one_line(argv, message, tmp_path, capsys):
    args = ["search", "--target", "xylo-audio3", "--dataset", "digits-rows", "--out", str(tmp_path / "s"), *FAST]
    code = main(args + argv)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_hwnas_run_on_xylo_ends_with_the_trained_model_equal_to_the_core(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", "--target", "xylo-audio3", "--dataset", "digits-rows", "--out", str(out), "--samples", "60"])
    printed = capsys.readouterr().out
    assert code == 0
    validation = json.loads((out / "validation.json").read_text())
    assert validation["pairs"]["trained/hwnas_xylo"]["identical"]
    assert "trained model = hwnas' Xylo twin      identical" in printed
    trained = json.loads((out / "train.json").read_text())
    assert trained["arithmetic"] == "xylo" and trained["test_accuracy"] > 0.5
    try:
        import xylosim  # noqa: F401
    except ImportError:
        assert "xylosim" not in validation["accuracy"]
        return
    assert validation["pairs"]["hwnas_xylo/xylosim"]["identical"]
    assert validation["pairs"]["trained/xylosim"]["identical"]
    assert validation["accuracy"]["xylosim"] == validation["accuracy"]["trained"]
    assert validation["energy"]["measured_on"] == "xylosim" and validation["energy"]["measured_j"] > 0
    assert "hwnas' Xylo twin = XyloSim            identical" in printed
    # another export format is refused in one line
    assert main(["export", str(out), "--format", "onnx"]) == 2
    assert "exports as NIR for rockpool" in capsys.readouterr().err


def test_the_python_api_runs_the_xylo_flow_in_memory():
    import hwnas
    from hwnas.errors import OptionError

    found = hwnas.search("digits-rows", "xylo-audio3", candidates=4, refine=0, strategy="random", progress=False)
    assert isinstance(found.architecture, DenseArchitecture)
    trained = hwnas.train(found, epochs=1, qat_epochs=1, progress=False)
    with pytest.raises(OptionError, match="trained for a Xylo core: validate it with target='xylo-audio3'"):
        hwnas.validate(trained, target="loihi2", samples=20, progress=False)
    result = hwnas.validate(trained, samples=20, progress=False)  # the target: xylo-audio3
    assert result.pairs["trained/hwnas_xylo"]["identical"]
    assert len(set(result.accuracy.values())) == 1  # every backend classifies alike
