"""The Lava backend against hwnas' simulators: float Lava equals the float simulator, fixed-point Lava equals the
bit-exact integer twin, spike for spike, on networks with skip, feedback, max-pool and average-pool edges."""

import json
import multiprocessing
import os

import numpy as np
import pytest
import torch
from conftest import CHAIN, FEEDBACK, small_arch

pytest.importorskip("lava", reason="Lava is installed by hwnas' lava extra (Python 3.10)")

from hwnas.arch.builder import build_network  # noqa: E402 (after the skip)
from hwnas.cli import main
from hwnas.backends.registry import hwnas_rasters
from hwnas.backends.lava import lava_order, run_lava
from hwnas.errors import OptionError
from hwnas.formats.nir import load, recorded_layer_weight_bits, recorded_weight_format, to_nir
from hwnas.sim.integer import simulate_fixed
from hwnas.sim.lowering import LoweringError, lower
from hwnas.sim.ops import ConvBN
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded


def trained_like(cell, downsample="maxpool", scale=1.0, **skeleton):
    """A folded, 8-bit quantised network (as exported after training), loaded back from its NIR graph."""
    arch = small_arch(cell, width=6, downsample=downsample, **skeleton)
    net = build_seeded(lambda: build_network(arch), 0, "lava")
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.bn.running_var.fill_(0.05 / scale)
            module.bn.running_mean.fill_(0.02)
    net.eval()
    net.fold_batchnorm()
    net.set_weight_format(WeightFormat())
    graph = to_nir(net, arch)
    return load(graph, timing="pipelined"), arch, graph


def spikes(seed=0, samples=5, steps=5):
    return torch.bernoulli(torch.full((steps, samples, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell,downsample,skeleton", [
    (FEEDBACK, "maxpool", {}), (CHAIN, "avgpool", {}),
    # conv downsampling doubling the width, and head pooling behind it
    (FEEDBACK, "conv", {"stages": 2, "widths": (6, 12), "head_pool": 2, "scale": 4.0}),
])
def test_lava_float_and_fixed_reproduce_hwnas_exactly(cell, downsample, skeleton):
    net, _, _ = trained_like(cell, downsample, **skeleton)
    x = spikes()
    lowered = lower(net)
    reference = hwnas_rasters(net, x)
    twin = simulate_fixed(lowered, x.numpy())
    lava_float = run_lava(lowered, x.numpy(), "float", chunk=2)
    lava_fixed = run_lava(lowered, x.numpy(), "fixed", chunk=2)
    window = x.shape[0] + lowered.latency_steps
    for name in net.populations:
        assert lava_float.spikes[name].shape == (5, window, net.populations[name].neurons)
        assert np.array_equal(lava_float.spikes[name], reference.spikes[name]), name
        assert np.array_equal(lava_fixed.spikes[name], twin.spikes[name]), name
    busy = [name for name in net.populations if reference.spikes[name].sum() > 0]
    assert len(busy) >= len(net.populations) - 1  # the check is not vacuous: nearly every layer fires
    np.testing.assert_allclose(lava_float.output_current, reference.output_current)
    np.testing.assert_array_equal(lava_fixed.output_current, twin.output_current)
    assert multiprocessing.active_children() == []  # the runtime was stopped, no Lava process left behind


@pytest.mark.parametrize("cell,downsample", [(FEEDBACK, "maxpool"), (CHAIN, "avgpool")])
def test_connections_with_bits_of_their_own_compute_in_lava_what_the_twin_and_the_trained_net_compute(cell, downsample):
    # a compressed network: each weighted connection in its own precision (2..7 bits), one of them half pruned;
    # through NIR, Lava's fixed-point models, the integer twin and the network in Loihi arithmetic agree
    arch = small_arch(cell, width=6, downsample=downsample)
    net = build_seeded(lambda: build_network(arch), 0, "lava")
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.bn.running_var.fill_(0.02)
            module.bn.running_mean.fill_(0.02)
    net.eval()
    net.fold_batchnorm()
    net.set_arithmetic("loihi", WeightFormat())
    weighted = [key for key, synapse in net.synapses.items() if synapse.deployed_format(None) is not None]
    bits = {key: 2 + index % 6 for index, key in enumerate(weighted)}
    with torch.no_grad():
        first = net.synapses[weighted[1]].conv.weight
        first[first.abs() < first.abs().median()] = 0.0
    net.set_layer_weight_formats({key: WeightFormat(b) for key, b in bits.items()})
    graph = to_nir(net, arch)
    assert net.layer_weight_bits() == bits and recorded_layer_weight_bits(graph) == bits
    loaded = load(graph, timing="pipelined")
    lowered = lower(loaded, recorded_weight_format(graph))
    own_bits = {conn.label: conn.weight_bits for conn in lowered.connections}
    assert sorted(b for b in own_bits.values() if b != 8) == sorted(bits.values())
    x = spikes(seed=4)
    twin = simulate_fixed(lowered, x.numpy())
    lava_fixed = run_lava(lowered, x.numpy(), "fixed", chunk=3)
    trained = hwnas_rasters(net, x, "pipelined", torch.float32)
    for name in net.populations:
        assert np.array_equal(lava_fixed.spikes[name], twin.spikes[name]), name
        assert np.array_equal(trained.spikes[name], twin.spikes[name]), name
    assert sum(twin.spikes[name].sum() > 0 for name in net.populations) >= len(net.populations) - 1
    np.testing.assert_array_equal(lava_fixed.output_current, twin.output_current)


def test_integer_twin_differs_from_float_only_by_rounding():
    net, _, _ = trained_like(FEEDBACK)
    x = spikes(1, samples=8)
    reference, twin = hwnas_rasters(net, x), simulate_fixed(lower(net), x.numpy())
    busy = [name for name in net.populations if reference.spikes[name].sum() >= 100]
    assert len(busy) >= 5
    for name in busy:
        a, b = int(reference.spikes[name].sum()), int(twin.spikes[name].sum())
        assert abs(a - b) <= 0.05 * a, name
    # truncating decays makes a difference somewhere, so this twin is not the float simulator again
    assert any(not np.array_equal(reference.spikes[n], twin.spikes[n]) for n in busy)


def test_lava_order_permutes_channel_first_to_x_first():
    shape, perm = lava_order((2, 3, 4))
    assert shape == (4, 3, 2)
    values = np.arange(24).reshape(2, 3, 4)
    assert np.array_equal(values.ravel()[perm].reshape(shape), values.transpose(2, 1, 0))


def test_fixed_point_refuses_graded_input():
    net, _, _ = trained_like(CHAIN)
    with pytest.raises(OptionError, match="spike inputs"):
        simulate_fixed(lower(net), np.full((2, 1, 1, 8, 8), 0.3))


def test_weights_beyond_the_format_are_refused_naming_the_connection():
    net, _, _ = trained_like(CHAIN)
    conv = net.synapses[next(k for k in net.synapses if k.startswith("input"))]
    with torch.no_grad():
        conv.conv.weight.mul_(1e4)
    with pytest.raises(LoweringError, match=r"connection input -> stem: weights up to .* overflow the 8-bit"):
        lower(net)


def test_connection_bias_into_slow_current_is_refused():
    from hwnas.sim.neuron import NeuronParams

    net = build_network(small_arch(CHAIN, neuron=NeuronParams(du=0.5)))
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.bn.running_mean.fill_(0.1)
    net.eval()
    net.fold_batchnorm()
    with pytest.raises(LoweringError, match="du < 1"):
        lower(net)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    net, arch, graph = trained_like(FEEDBACK)
    arch.save(folder / "architecture.json")
    import nir

    nir.write(str(folder / "model.nir"), graph)
    return folder


def test_deploy_lava_cli_prints_identical_layers_and_saves_npz(run_folder, tmp_path, capsys):
    out = tmp_path / "lava.npz"
    code = main(["deploy", str(run_folder / "model.nir"), "--backend", "lava", "--samples", "4", "--save", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "in Lava (fixed)" in text
    table = [line for line in text.splitlines() if line.startswith(("stem", "cell", "down", "output"))]
    assert len(table) == 9 and all(line.rstrip().endswith("100.00%") for line in table)
    saved = np.load(out)
    assert saved["output_spikes"].shape[0] == 4 and saved["output_spikes"].shape[2] == 10
    assert "spikes_per_sample/stem" in saved.files


def test_validate_cli_writes_json_and_plot(run_folder, capsys):
    code = main(["validate", str(run_folder), "--samples", "4"])
    text = capsys.readouterr().out
    assert code == 0
    assert "hwnas/lava_float       IDENTICAL" in text
    assert "hwnas_int/lava_fixed   IDENTICAL" in text
    report = json.loads((run_folder / "validation.json").read_text())
    assert report["pairs"]["hwnas/lava_float"]["identical"] and report["pairs"]["hwnas_int/lava_fixed"]["identical"]
    assert report["pairs"]["norse"]["layers"]["stem"]["rate_cosine"] > 0.99
    assert report["energy"]["measured_lava_fixed_j"] > 0
    assert abs(report["energy"]["prediction_error"]) < 0.2
    assert (run_folder / "validation.png").stat().st_size > 1000


def test_a_trained_run_computes_what_lava_fixed_point_computes(tmp_path, capsys):
    # search, train with quantisation-aware fine-tuning (in Loihi's arithmetic), export, validate: the trained
    # model itself is a backend, and it equals Lava's fixed-point models spike for spike
    run = tmp_path / "run"
    assert main(["search", "--strategy", "random", "--candidates", "2", "--timesteps", "4", "--width", "4",
                 "--batch-size", "16", "--repeats", "1", "--refine", "0", "--quiet", "--out", str(run)]) == 0
    assert main(["train", str(run), "--epochs", "1", "--qat-epochs", "1", "--quiet"]) == 0
    assert json.loads((run / "train.json").read_text())["arithmetic"] == "loihi"
    assert main(["export", str(run)]) == 0
    capsys.readouterr()
    assert main(["validate", str(run), "--samples", "6", "--skip", "lava_float,norse"]) == 0
    text = capsys.readouterr().out
    assert "trained/lava_fixed     IDENTICAL" in text
    pair = json.loads((run / "validation.json").read_text())["pairs"]["trained/lava_fixed"]
    assert pair["identical"] and pair["check"] == "exact"
    assert sum(row["hwnas_spikes"] for row in pair["layers"].values()) > 0
    # a model trained again after the export is not what model.nir holds: said, not compared
    later = (run / "model.nir").stat().st_mtime + 10
    os.utime(run / "model.pt", (later, later))
    assert main(["validate", str(run), "--samples", "2", "--skip", "lava_float,norse"]) == 2
    assert "model.nir is older than" in capsys.readouterr().err


def test_validate_without_export_says_what_to_run(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert "hwnas export" in capsys.readouterr().err


def test_deploy_lava_refuses_graph_it_cannot_hold(run_folder, tmp_path, capsys):
    import nir

    graph = nir.read(str(run_folder / "model.nir"))
    conv = next(name for name, node in graph.nodes.items() if type(node).__name__ == "Conv2d")
    graph.nodes[conv].weight[...] = 1e5
    path = tmp_path / "big.nir"
    nir.write(str(path), graph)
    assert main(["deploy", str(path), "--backend", "lava", "--samples", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "overflow the 8-bit weight format" in err


@pytest.mark.parametrize("cell,skeleton,strided", [
    (CHAIN, {}, {4: (6, 6)}),
    # a skip edge into the chain (average pooling then identity: a 2x2 stride-2 conv) and avg-pool head pooling
    # (average pooling then a convolution into spiking neurons: a 6x6 stride-2 conv), as --deployable netx builds
    ("0-1:skip 0-2:zero 0-3:zero 1-2:zero 1-3:conv3x3 2-3:zero", {"head_pool": 2}, {3: (2, 2), 5: (6, 6)}),
])
def test_netx_export_loads_in_lava_and_matches_hwnas_integer_simulation(cell, skeleton, strided, tmp_path):
    from hwnas.backends.lava import run_netx
    from hwnas.formats.netx import netx_twin, write_netx

    net, _, _ = trained_like(cell, "avgpool", scale=4.0, **skeleton)
    layers = write_netx(net, tmp_path / "model.h5")
    convs = len(net.active_connections()) - 1
    assert [layer.kind for layer in layers] == ["conv"] * convs + ["dense"]
    for index, kernel in strided.items():  # avg-pool folded into a strided conv
        assert (layers[index].stride, layers[index].weight.shape[2:]) == (2, kernel), layers[index].population
    x = spikes(2, samples=4)
    expected = simulate_fixed(netx_twin(net, layers), x.numpy(), timing="zero-delay")
    measured = run_netx(str(tmp_path / "model.h5"), x.numpy(), [(l.population, int(np.prod(l.shape))) for l in layers])
    for layer in layers:
        assert np.array_equal(measured.spikes[layer.population], expected.spikes[layer.population]), layer.population
    assert sum(int(expected.spikes[l.population].sum()) > 0 for l in layers) >= len(layers) - 2
    # the file's coarser integer weights change little: spike counts stay close to the network's own
    reference = hwnas_rasters(net, x, timing="zero-delay")
    first = layers[0].population
    assert abs(int(reference.spikes[first].sum()) - int(expected.spikes[first].sum())) <= 0.05 * reference.spikes[first].sum()


@pytest.mark.parametrize("cell,downsample,message", [
    (CHAIN, "maxpool", r"layer cell1.n3 -> down is a pooling layer .* --deployable netx"),
    (FEEDBACK, "avgpool", r"feedback connection"),
    ("0-1:conv3x3 0-2:skip 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3", "avgpool", r"'stem' feeds 2 connections"),
])
def test_netx_refuses_what_it_cannot_hold(cell, downsample, message, tmp_path):
    from hwnas.formats.netx import NetxError, write_netx

    net, _, _ = trained_like(cell, downsample)
    with pytest.raises(NetxError, match=message):
        write_netx(net, tmp_path / "model.h5")
    assert not (tmp_path / "model.h5").exists()
