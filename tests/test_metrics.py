"""NeuroBench's metrics: hwnas' own counts against the ``neurobench`` package's metrics, run by NeuroBench's own
``Benchmark`` on the same network and data."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import FEEDBACK, small_arch
from hwnas.arch.builder import build_network
from hwnas.metrics import input_is_binary, neurobench_metrics, neurobench_model
from hwnas.sim.quantize import WeightFormat



def _deployed(arch, seed=1):
    torch.manual_seed(seed)
    net = build_network(arch)
    net.eval()
    net.fold_batchnorm()
    net.set_weight_format(WeightFormat(bits=8))
    return net


def _benchmark(net, inputs, labels):
    pytest.importorskip("neurobench")
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
    from neurobench.metrics.workload import ActivationSparsity, ClassificationAccuracy, SynapticOperations

    loader = DataLoader(TensorDataset(inputs, labels), batch_size=5)
    metrics = [[Footprint, ConnectionSparsity, ParameterCount],
               [SynapticOperations, ActivationSparsity, ClassificationAccuracy]]
    return Benchmark(neurobench_model(net), loader, [], [], metrics).run(quiet=True)


@pytest.mark.parametrize("timing", ["zero-delay", "pipelined"])
@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_hwnas_metrics_equal_neurobench_on_a_network_of_convolutions_and_a_linear_layer(timing, encoding):
    arch = small_arch(stages=1, timing=timing)  # stem, a chain of convolutions, the classifier: Conv and Linear only
    net = _deployed(arch)
    g = torch.Generator().manual_seed(0)
    images = torch.rand((12, 1, 1, 8, 8), generator=g).expand(12, arch.timesteps, 1, 8, 8)
    inputs = torch.bernoulli(images, generator=g) if encoding == "rate" else images.contiguous()  # (B, T, ...)
    labels = torch.randint(0, 10, (12,), generator=g)
    with torch.no_grad():
        out = net(inputs.transpose(0, 1))
    mine = neurobench_metrics(net, out.activity, input_is_binary(inputs))
    theirs = _benchmark(net, inputs, labels)

    assert mine["connection_sparsity"] > 0  # 8-bit rounding zeroes some weights: counted as no synapse
    assert mine["footprint"] == theirs["Footprint"] and mine["parameter_count"] == theirs["ParameterCount"]
    assert round(mine["connection_sparsity"], 4) == theirs["ConnectionSparsity"]  # NeuroBench rounds to 4 places
    assert mine["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], abs=1e-12)
    ops = mine["synaptic_operations"]
    assert ops["effective_acs"] == pytest.approx(theirs["SynapticOperations"]["Effective_ACs"], rel=1e-12)
    assert ops["effective_macs"] == pytest.approx(theirs["SynapticOperations"]["Effective_MACs"], rel=1e-12)
    assert (ops["effective_macs"] > 0) == (encoding == "direct")  # an analog image costs multiply-accumulates
    assert ops["effective_acs"] + ops["effective_macs"] == pytest.approx(out.activity.totals_per_sample()["synops"])
    predictions = out.logits.argmax(1)
    assert theirs["ClassificationAccuracy"] == pytest.approx(float((predictions == labels).float().mean()))


def test_skip_connections_are_synapses_for_hwnas_but_not_for_neurobench():
    arch = small_arch(FEEDBACK, stages=1, timing="zero-delay")  # a skip edge 0-2 and a feedback convolution
    net = _deployed(arch)
    inputs = torch.bernoulli(torch.full((12, arch.timesteps, 1, 8, 8), 0.6), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = net(inputs.transpose(0, 1))
    mine = neurobench_metrics(net, out.activity, True)["synaptic_operations"]["effective_acs"]
    theirs = _benchmark(net, inputs, torch.zeros(12, dtype=torch.long))["SynapticOperations"]["Effective_ACs"]
    skip = next(conn for conn in net.connections if conn.tag == "skip")
    codes = net(inputs.transpose(0, 1), record=True).codes[skip.src]
    assert float(codes.sum()) > 0
    # the skip edge is one synapse per neuron: each spike of its source is one more operation on the chip
    assert mine - theirs == pytest.approx(float(codes.sum()) / inputs.shape[0], rel=1e-9)


def test_metrics_of_a_silent_network_and_binary_input_detection():
    arch = small_arch(stages=1)
    net = _deployed(arch)
    silent = torch.zeros((arch.timesteps, 3, 1, 8, 8))
    with torch.no_grad():
        out = net(silent)
    metrics = neurobench_metrics(net, out.activity, input_is_binary(silent))
    assert metrics["synaptic_operations"] == {"effective_acs": 0.0, "effective_macs": 0.0}
    totals = out.activity.totals_per_sample()
    steps = arch.timesteps + net.latency_steps
    assert metrics["activation_sparsity"] == pytest.approx(1.0 - totals["spikes"] / (totals["neurons"] * steps))
    assert input_is_binary(torch.tensor([0.0, 1.0])) and not input_is_binary(torch.tensor([0.0, 0.5]))
    assert not input_is_binary(torch.tensor([0, 2], dtype=torch.uint8))  # an event frame holding two events


def test_counts_follow_the_weights_and_the_deployed_network():
    arch = small_arch(stages=1, timing="zero-delay")
    torch.manual_seed(2)
    float_net = build_network(arch)
    float_net.eval()
    x = torch.bernoulli(torch.full((arch.timesteps, 8, 1, 8, 8), 0.6), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        activity = float_net(x).activity
    deployed = _deployed(arch, seed=2)
    # batch-norm unfolded: footprint and parameters are those of the folded network NeuroBench would measure
    unfolded, folded = neurobench_metrics(float_net, activity, True), neurobench_metrics(deployed, activity, True)
    assert unfolded["footprint"] == folded["footprint"] and unfolded["parameter_count"] == folded["parameter_count"]
    # weights that change to zero stop being synapses once the weights are loaded again
    with torch.no_grad():
        before = deployed(x).activity.totals_per_sample()["synops"]
        state = {k: (torch.zeros_like(v) if k.endswith("weight") and v.dim() == 4 else v)
                 for k, v in deployed.state_dict().items()}
        deployed.load_state_dict(state)
        after = deployed(x).activity.totals_per_sample()["synops"]
    fresh = _deployed(arch, seed=2)
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert after == fresh(x).activity.totals_per_sample()["synops"] < before  # not the zeroed weights' old fan-out
