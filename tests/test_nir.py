import h5py
import nir
import numpy as np
import pytest
import torch
from conftest import CHAIN, FEEDBACK, small_arch

from hwnas.arch.builder import build_network
from hwnas.cli import main
from hwnas.formats.nir import NirError, export, load, to_nir, write
from hwnas.sim.neuron import NeuronParams
from hwnas.sim.ops import ConvBN
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded

FEEDBACK_LOOP = "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:conv3x3< 2-3:conv3x3"

FIXTURES = [
    dict(cell=CHAIN, timing="pipelined"),
    dict(cell=FEEDBACK, timing="zero-delay", downsample="avgpool"),
    dict(cell=FEEDBACK_LOOP, timing="pipelined", neuron=NeuronParams(du=0.5, dv=0.25, theta=0.8)),
    dict(cell=FEEDBACK_LOOP, timing="zero-delay", quantize=True),
]


def trained_like(spec):
    spec = dict(spec)
    quantize = spec.pop("quantize", False)
    arch = small_arch(**spec)
    net = build_seeded(lambda: build_network(arch), 0, "nir")
    for module in net.modules():
        if isinstance(module, ConvBN):
            torch.nn.init.uniform_(module.bn.bias, -0.3, 0.3)
            module.bn.running_mean.uniform_(-0.3, 0.3)
    net.eval()
    net.fold_batchnorm()
    if quantize:
        net.set_weight_format(WeightFormat(8))
    return net, arch


def run(net, x):
    with torch.no_grad():
        return net(x, record=True)


@pytest.mark.parametrize("spec", FIXTURES, ids=["chain", "feedback-avgpool", "cuba-lif", "quantised"])
def test_round_trip_gives_identical_spikes_per_layer(tmp_path, spec):
    net, arch = trained_like(spec)
    path = tmp_path / "model.nir"
    export(net, path, arch, dt_s=1e-3)
    graph = nir.read(path)  # plain nir, type-checked
    assert graph.metadata["hwnas.dt_s"] == 1e-3 and graph.metadata["hwnas.timing"] == arch.timing
    kinds = {type(node).__name__ for node in graph.nodes.values()}
    assert {"Input", "Conv2d", "Flatten", "Linear", "Output"} <= kinds
    assert ("Threshold" in kinds) == (arch.downsample == "maxpool")
    assert ("CubaLIF" in kinds) == (arch.neuron.du != 1.0) and ("LIF" in kinds) == (arch.neuron.du == 1.0)
    loaded = load(path)
    x = torch.bernoulli(torch.full((4, 6, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(3))
    original, again = run(net, x), run(loaded, x)
    assert set(original.codes) == set(again.codes)
    for name in original.codes:
        assert torch.equal(original.codes[name], again.codes[name]), name
    assert torch.allclose(original.logits, again.logits, atol=1e-4)
    assert loaded.latency_steps == net.latency_steps


def test_feedback_edges_are_cycles():
    net, arch = trained_like(dict(cell=FEEDBACK_LOOP, timing="zero-delay"))
    graph = to_nir(net, arch)
    successors = {}
    for a, b in graph.edges:
        successors.setdefault(a, set()).add(b)

    def reaches(start, goal, seen=()):
        return any(n == goal or (n not in seen and reaches(n, goal, seen + (n,))) for n in successors.get(start, ()))

    assert reaches("cell1.n3", "cell1.n1") and reaches("cell1.n1", "cell1.n3")


def test_loader_finds_back_edges_without_hwnas_metadata(tmp_path):
    net, arch = trained_like(dict(cell=FEEDBACK_LOOP, timing="zero-delay"))
    graph = to_nir(net, arch)
    graph.metadata = {}  # another tool's graph: no hwnas metadata at all
    loaded = load(graph, dt_s=1e-3)
    assert sum(c.backward for c in loaded.connections) == 2  # one feedback edge in each of the two cells
    x = torch.bernoulli(torch.full((4, 3, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(1))
    for name, codes in run(net, x).codes.items():
        assert torch.equal(codes, run(loaded, x).codes[name]), name
    with pytest.raises(NirError, match="no hwnas.dt_s metadata"):
        load(graph)


def broken(tmp_path, mutate):
    net, arch = trained_like(dict(cell=CHAIN, timing="pipelined"))
    path = tmp_path / "model.nir"
    export(net, path, arch)
    with h5py.File(path, "r+") as handle:
        mutate(handle["node"])
    return path


@pytest.mark.parametrize("make,message", [
    (lambda p: (p / "x.nir").write_bytes(b"this is not HDF5"), "cannot read"),
    (lambda p: (p / "x.nir").write_bytes(open(broken(p, lambda n: None), "rb").read()[:3000]), "cannot read"),
])
def test_unreadable_files(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(NirError, match=message) as info:
        load(tmp_path / "x.nir")
    assert "\n" not in str(info.value)


def test_dangling_edge_unknown_node_and_shape_mismatch(tmp_path):
    net, arch = trained_like(dict(cell=CHAIN, timing="pipelined"))
    graph = to_nir(net, arch)
    graph.edges.append(("stem", "ghost"))
    with pytest.raises(NirError, match="dangling edge stem -> ghost: no node 'ghost'"):
        load(graph)
    graph = to_nir(net, arch)
    graph.nodes["delay"] = nir.Delay(delay=np.ones(3))
    with pytest.raises(NirError, match="unsupported NIR node 'delay' of type Delay"):
        load(graph)
    graph = to_nir(net, arch)
    linear_name = next(n for n, node in graph.nodes.items() if type(node).__name__ == "Linear")
    graph.nodes[linear_name] = nir.Linear(weight=np.ones((10, 7), dtype=np.float32))
    with pytest.raises(NirError, match="shape mismatch"):
        load(graph)


def test_export_command_and_corrupt_file_via_cli(tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "no trained model" in capsys.readouterr().err


def test_write_is_atomic(tmp_path):
    net, arch = trained_like(dict(cell=CHAIN, timing="pipelined"))
    write(tmp_path / "model.nir", to_nir(net, arch))
    assert [p.name for p in tmp_path.iterdir()] == ["model.nir"]


def test_estimate_reads_a_nir_graph(tmp_path, capsys):
    net, arch = trained_like(dict(cell=FEEDBACK, timing="pipelined"))
    export(net, tmp_path / "m.nir", arch)
    assert main(["estimate", str(tmp_path / "m.nir"), "--target", "loihi", "--samples", "8"]) == 0
    printed = capsys.readouterr().out
    assert "weights as stored in the graph" in printed and "cell1.n3" in printed and "feasible:" in printed
    assert main(["estimate", str(tmp_path / "m.nir"), "--target", "software"]) == 2
