"""NIR both ways: other tools' graphs run in hwnas' simulator and in Lava, and hwnas' portable export runs in
snnTorch; each against the producer's own simulation."""

import sys
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import CHAIN, small_arch

from hwnas.arch.builder import build_network
from hwnas.cli import main
from hwnas.data import load_dataset
from hwnas.data.splits import encode_batch
from hwnas.backends.compare import compare
from hwnas.backends.lava import lava_missing
from hwnas.formats.nir import load
from hwnas.formats.portable import PORTABLE_DT_S, to_portable_nir
from hwnas.sim.ops import LinearChain, synapse_from_nir
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded
from hwnas.training import train_epochs

LAVA = lava_missing() is None

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from interop import norse_network, snntorch_network  # noqa: E402 (the networks bench/interop.py measures)


def _spikes(shape, steps, batch, p, seed):
    return torch.bernoulli(torch.full((steps, batch, *shape), p), generator=torch.Generator().manual_seed(seed))


def test_a_chain_of_linear_nodes_computes_what_torch_computes():
    g = torch.Generator().manual_seed(0)
    conv = nir.Conv2d(input_shape=(8, 8), weight=torch.randn((6, 2, 3, 3), generator=g).numpy(), stride=2,
                      padding=1, dilation=1, groups=2, bias=torch.randn(6, generator=g).numpy())
    pool = nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    scale = nir.Scale(scale=np.full((6, 2, 2), 0.5, dtype=np.float32))
    flatten = nir.Flatten(input_type={"input": np.array([6, 2, 2])}, start_dim=0, end_dim=-1)
    affine = nir.Affine(weight=torch.randn((5, 24), generator=g).numpy(), bias=torch.randn(5, generator=g).numpy())
    nodes = {"conv": conv, "pool": pool, "scale": scale, "flatten": flatten, "affine": affine}
    synapse = synapse_from_nir(list(nodes), nodes, (4, 8, 8), "input -> out")
    assert isinstance(synapse, LinearChain) and synapse.output_shape((4, 8, 8)) == (5,)
    x = _spikes((4, 8, 8), 1, 3, 0.5, 1)[0]
    expected = F.conv2d(x, torch.as_tensor(conv.weight), torch.as_tensor(conv.bias), stride=2, padding=1, groups=2)
    expected = F.avg_pool2d(expected, 2) * 4 * 0.5
    expected = expected.flatten(1) @ torch.as_tensor(affine.weight).T + torch.as_tensor(affine.bias)
    assert torch.allclose(synapse(x), expected, atol=1e-5)
    # its synapses: the source neurons each output depends on (torch's Jacobian of the same ops, bias-free)
    def ops(flat):
        y = F.conv2d(flat.reshape(1, 4, 8, 8), torch.as_tensor(conv.weight).double(), stride=2, padding=1, groups=2)
        return (F.avg_pool2d(y, 2) * 4 * 0.5).flatten() @ torch.as_tensor(affine.weight).double().T
    jacobian = torch.autograd.functional.jacobian(ops, torch.zeros(256, dtype=torch.float64))
    assert torch.equal(synapse.fanin((4, 8, 8)), (jacobian != 0).sum(1).float())


def _conv_sum_pool_threshold() -> nir.NIRGraph:
    weight = torch.randn((4, 1, 3, 3), generator=torch.Generator().manual_seed(2)).numpy()
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
               "conv": nir.Conv2d(input_shape=(8, 8), weight=weight, stride=1, padding=1, dilation=1, groups=1,
                                  bias=np.zeros(4, dtype=np.float32)),
               "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                                     padding=np.array([0, 0])),
               "th": nir.Threshold(threshold=np.full((4, 4, 4), 1.5, dtype=np.float32)),
               "output": nir.Output(output_type={"output": np.array([4, 4, 4])})},
        edges=[("input", "conv"), ("conv", "pool"), ("pool", "th"), ("th", "output")],
        metadata={"hwnas.dt_s": 0.001})


def test_conv_then_sum_pool_then_threshold_runs_in_hwnas_and_in_lava():
    graph = _conv_sum_pool_threshold()
    net = load(graph)
    x = _spikes((1, 8, 8), 5, 6, 0.5, 3)
    with torch.no_grad():
        spikes = net(x, record=True).codes["th"].reshape(5, 6, 4, 4, 4)
    current = F.avg_pool2d(F.conv2d(x.flatten(0, 1), torch.as_tensor(graph.nodes["conv"].weight), padding=1), 2) * 4
    assert torch.equal(spikes, (current > 1.5).float().reshape(5, 6, 4, 4, 4))  # memoryless: this step's input
    assert 0 < float(spikes.mean()) < 1
    if LAVA:
        for backend in ("lava_fixed", "lava_float"):
            layer = compare(graph, x, None, 0.001, backend).layers["th"]
            assert layer["identical"] and layer["hwnas_spikes"] > 0, backend


def _snntorch_run(module, x, step):
    """Spikes per sample of every snnTorch neuron layer and of the output, one sample at a time (snnTorch's
    modules keep their state inside: reset between samples)."""
    import snntorch as snn
    from snntorch import utils

    layers = [m for m in module.modules() if isinstance(m, snn.SpikingNeuron)]
    counts = {i: [] for i in range(len(layers))}
    record = {}
    hooks = [m.register_forward_hook(lambda m, i, o, k=k: record.__setitem__(k, o[0] if isinstance(o, tuple) else o))
             for k, m in enumerate(layers)]
    outputs = []
    with torch.no_grad():
        for b in range(x.shape[1]):
            utils.reset(module)
            totals, out = [0.0] * len(layers), 0.0
            state = None
            for t in range(x.shape[0]):
                result, state = step(module, x[t, b:b + 1], state)
                out = out + result
                totals = [total + float(record[k].sum()) for k, total in enumerate(totals)]
            outputs.append(out.reshape(-1))
            for k, total in enumerate(totals):
                counts[k].append(total)
    for hook in hooks:
        hook.remove()
    return torch.stack(outputs), [float(np.sum(c)) for c in counts.values()]


def test_an_snntorch_graph_runs_in_hwnas_as_snntorch_runs_it():
    pytest.importorskip("snntorch")
    from snntorch.export_nir import export_to_nir

    net = snntorch_network()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])
    hwnas_net = load(graph, dt_s=PORTABLE_DT_S, timing="zero-delay")  # snnTorch writes time constants for 1e-4 s
    x = _spikes((1, 8, 8), 6, 10, 0.4, 1)
    with torch.no_grad():
        out = hwnas_net(x, record=True)
    theirs, layers = _snntorch_run(net, x, lambda m, xt, s: (m(xt)[0], None))
    assert torch.equal(out.output_spikes, theirs) and float(theirs.sum()) > 0
    mine = [float(out.codes[name].sum()) for name in ("1", "3", "6")]  # snnTorch names its nodes by position
    assert mine == layers
    if LAVA:  # the chip's timing: Lava fixed-point against the integer twin, spike for spike
        assert all(row["identical"] for row in compare(graph, x, None, PORTABLE_DT_S, "lava_fixed").layers.values())


@pytest.fixture(scope="module")
def trained_chains():
    """A chain cell with max-pool and one with average-pool downsampling, each trained 2 epochs on digits and
    quantised to 8 bits: activity like a real network's."""
    splits = load_dataset("digits", None, 4, 0)
    networks = {}
    for downsample in ("maxpool", "avgpool"):
        arch = small_arch(CHAIN, downsample=downsample, timing="zero-delay", width=8)
        net = build_seeded(lambda: build_network(arch), 0, arch.key)
        train_epochs(net, arch, splits, 2, 0.01, 64, 0)
        net.eval()
        net.fold_batchnorm()
        net.set_weight_format(WeightFormat(bits=8))
        networks[downsample] = (net, arch)
    x = encode_batch(splits.test_x[:16], "static", 4, "rate", torch.Generator().manual_seed(0))
    return networks, x


@pytest.mark.parametrize("downsample", ["maxpool", "avgpool"])
def test_snntorch_reads_the_portable_export_and_computes_the_same_spikes(trained_chains, tmp_path, downsample):
    pytest.importorskip("snntorch")
    from snntorch.import_nir import import_from_nir

    (net, arch), x = trained_chains[0][downsample], trained_chains[1]
    graph = to_portable_nir(net, arch)
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert kinds <= {"Input", "Output", "LIF", "Conv2d", "Flatten", "Linear"}  # what snnTorch 1.0 imports
    assert all(name.replace("_", "").isalnum() for name in graph.nodes)
    nir.write(tmp_path / "portable.nir", graph)
    with torch.no_grad():
        reference = net(x, record=True)
        again = load(tmp_path / "portable.nir", timing="zero-delay")(x, record=True)
    assert all(torch.equal(again.codes[name.replace(".", "_")], codes) for name, codes in reference.codes.items())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = import_from_nir(nir.read(tmp_path / "portable.nir"))
    # snnTorch 1.0 turns NIR's Flatten (start_dim 0, no batch) into torch's Flatten(0): one sample at a time
    theirs, layers = _snntorch_run(module, x, lambda m, xt, s: m(xt, s))
    assert torch.equal(theirs, reference.output_spikes) and float(theirs.sum()) > 0
    assert sorted(layers) == sorted(float(codes.sum()) for codes in reference.codes.values())


def test_profile_applies_to_nir_only(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "onnx", "--profile", "portable"]) == 2
    assert "--profile applies to --format nir" in capsys.readouterr().err


def _one_population(neuron, size: int = 4) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([size])}),
               "dense": nir.Linear(weight=np.eye(size, dtype=np.float32) * np.arange(1, size + 1, dtype=np.float32)),
               "neurons": neuron, "output": nir.Output(output_type={"output": np.array([size])})},
        edges=[("input", "dense"), ("dense", "neurons"), ("neurons", "output")], metadata={"hwnas.dt_s": 0.001})


def test_integrate_and_fire_neurons_integrate_without_leak():
    graph = _one_population(nir.IF(r=np.full(4, 1000.0), v_threshold=np.full(4, 2.5)))  # gain r dt = 1
    x = torch.ones((6, 1, 4))
    with torch.no_grad():
        spikes = load(graph)(x, record=True).codes["neurons"][:, 0]
    # neuron i adds i + 1 per step, fires above 2.5 and restarts from zero
    expected, v = [], np.zeros(4)
    for _ in range(6):
        v = v + np.arange(1, 5)
        fired = v > 2.5
        expected.append(fired.astype(np.float32))
        v[fired] = 0.0
    assert torch.equal(spikes, torch.as_tensor(np.array(expected)))
    if LAVA:
        assert compare(graph, x, None, 0.001, "lava_fixed").layers["neurons"]["identical"]
    # Norse runs IF too (its integrate-and-fire cell fed r dt I), spike for spike
    norse = compare(graph, x, None, 0.001, "norse").layers["neurons"]
    assert norse["identical"] and norse["backend_spikes"] == float(spikes.sum())
    # r dt = 0.5: the gain is folded into the connection, which then needs weights twice as large to match
    halved = _one_population(nir.IF(r=np.full(4, 500.0), v_threshold=np.full(4, 2.5)))
    halved.nodes["dense"] = nir.Linear(weight=np.asarray(graph.nodes["dense"].weight) * 2.0)
    with torch.no_grad():
        assert torch.equal(load(halved)(x, record=True).codes["neurons"][:, 0], spikes)
    # and it is written back as IF: read again, the same spikes
    from hwnas.formats.nir import to_nir
    with torch.no_grad():
        assert torch.equal(load(to_nir(load(graph)))(x, record=True).codes["neurons"][:, 0], spikes)


def test_a_neuron_type_hwnas_cannot_run_is_named_in_one_line():
    from hwnas.errors import NirError

    graph = _one_population(nir.LI(tau=np.full(4, 2e-3), r=np.ones(4), v_leak=np.zeros(4)))
    with pytest.raises(NirError, match="unsupported NIR node 'neurons' of type LI") as raised:
        load(graph)
    assert "\n" not in str(raised.value)


def test_a_norse_graph_runs_in_hwnas_as_norse_runs_it():
    from norse.torch.utils.export_nir import to_nir as norse_to_nir

    net = norse_network()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = norse_to_nir(net, torch.zeros(1, 1, 8, 8))  # dt 1e-3; batch in the input type, scalar parameters
    # Norse writes tau = dt / tau_mem_inv (dt times its time constant) and r = 1 (input gain dt / tau, folded into
    # the connections): read at dt^2 it is the network Norse simulates
    hwnas_net = load(graph, dt_s=1e-6, timing="zero-delay")
    assert hwnas_net.input_shape == (1, 8, 8) and hwnas_net.populations["3"].shape == (8, 4, 4)
    x = _spikes((1, 8, 8), 6, 10, 0.4, 1)
    with torch.no_grad():
        out = hwnas_net(x, record=True)
        state, theirs = None, 0.0
        for t in range(x.shape[0]):
            spikes, state = net(x[t], state)
            theirs = theirs + spikes
    assert torch.equal(out.output_spikes, theirs.flatten(1)) and float(theirs.sum()) > 0
    if LAVA:
        assert all(row["identical"] for row in compare(graph, x, None, 1e-6, "lava_fixed").layers.values())


def test_an_input_gain_other_than_one_is_folded_into_the_connection():
    g = torch.Generator().manual_seed(4)
    weight = torch.rand((6, 10), generator=g).numpy()

    def graph(r, w):
        return nir.NIRGraph(
            nodes={"input": nir.Input(input_type={"input": np.array([10])}), "dense": nir.Linear(weight=w),
                   "lif": nir.LIF(tau=np.full(6, 2e-3), r=np.full(6, r), v_leak=np.zeros(6), v_threshold=np.ones(6),
                                  v_reset=np.zeros(6)),
                   "output": nir.Output(output_type={"output": np.array([6])})},
            edges=[("input", "dense"), ("dense", "lif"), ("lif", "output")], metadata={"hwnas.dt_s": 1e-3})

    x = _spikes((10,), 8, 5, 0.5, 2)
    with torch.no_grad():
        gain_one = load(graph(2.0, weight * 0.5))(x).output_spikes  # r * dv = 2 * 0.5 = 1
        folded = load(graph(1.0, weight))(x).output_spikes  # r * dv = 0.5: the weights are halved on reading
    assert torch.equal(folded, gain_one) and float(folded.sum()) > 0


def test_malformed_chains_are_one_line_errors_and_grouped_convolutions_load_from_files(tmp_path):
    from hwnas.errors import NirError

    bad = {"affine": nir.Affine(weight=np.ones((3, 4), dtype=np.float32), bias=np.ones(2, dtype=np.float32)),
           "scale": nir.Scale(scale=np.ones(3, dtype=np.float32))}
    with pytest.raises(NirError, match="node 'affine' \\(Affine\\): 2 biases for 3 outputs"):
        synapse_from_nir(["affine", "scale"], bad, (4,), "a -> b")
    # Conv refuses stride 2 first; LinearChain, which reads strides, names the real problem
    strided = {"conv": nir.Conv2d(input_shape=(8, 8), weight=np.ones((2, 3, 3, 3), dtype=np.float32), stride=2,
                                  padding=1, dilation=1, groups=1, bias=np.zeros(2, dtype=np.float32))}
    with pytest.raises(NirError, match="does not take the chain's 1 channels"):
        synapse_from_nir(["conv"], strided, (1, 8, 8), "a -> b")
    tiny = {"conv": nir.Conv2d(input_shape=(3, 3), weight=np.ones((2, 1, 5, 5), dtype=np.float32), stride=1,
                               padding=0, dilation=1, groups=1, bias=np.zeros(2, dtype=np.float32))}
    with pytest.raises(NirError, match="leaves no output"):
        synapse_from_nir(["conv"], tiny, (1, 3, 3), "a -> b")
    weight = torch.randn((4, 1, 3, 3), generator=torch.Generator().manual_seed(6)).numpy()
    grouped = nir.NIRGraph(
        nodes={"input": nir.Input(input_type={"input": np.array([2, 6, 6])}),
               "conv": nir.Conv2d(input_shape=(6, 6), weight=weight, stride=1, padding=1, dilation=1, groups=2,
                                  bias=np.zeros(4, dtype=np.float32)),
               "th": nir.Threshold(threshold=np.full((4, 6, 6), 0.5, dtype=np.float32)),
               "output": nir.Output(output_type={"output": np.array([4, 6, 6])})},
        edges=[("input", "conv"), ("conv", "th"), ("th", "output")], metadata={"hwnas.dt_s": 0.001},
        type_check=False)  # NIR 1.0's type inference takes groups=2 for a 1-channel input
    nir.write(tmp_path / "grouped.nir", grouped)
    net = load(tmp_path / "grouped.nir")
    x = _spikes((2, 6, 6), 3, 4, 0.5, 7)
    with torch.no_grad():
        spikes = net(x, record=True).codes["th"].reshape(3, 4, 4, 6, 6)
    expected = F.conv2d(x.flatten(0, 1), torch.as_tensor(weight), padding=1, groups=2) > 0.5
    assert torch.equal(spikes, expected.float().reshape(3, 4, 4, 6, 6))


def test_a_graph_without_a_time_step_is_told_which_dt_to_give(tmp_path, capsys):
    """sinabs and snnTorch write graphs in per-step units and record no dt: one line saying so, no traceback."""
    from hwnas.cli import main

    graph = _one_population(nir.IF(r=np.full(4, 1.0), v_threshold=np.full(4, 2.5)))
    graph.metadata = {}
    nir.write(tmp_path / "per_step.nir", graph)
    for command in (["deploy", str(tmp_path / "per_step.nir"), "--backend", "norse"],
                    ["estimate", str(tmp_path / "per_step.nir"), "--steps", "4"]):
        assert main(command) == 2
        err = capsys.readouterr().err.strip()
        assert "records no time step" in err and "need --dt 1" in err and len(err.splitlines()) == 1
