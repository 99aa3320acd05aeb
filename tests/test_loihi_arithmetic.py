"""Training in Loihi's arithmetic: a network in ``loihi`` arithmetic computes what hwnas' integer twin (and so
Lava's fixed-point models) computes, spike for spike; its steps match hand computations; gradients flow; the
exported thresholds leave no membrane value of the chip's grid on the threshold."""

import numpy as np
import pytest
import torch
from conftest import CHAIN, FEEDBACK, small_arch

from hwnas.arch.builder import build_network
from hwnas.backends.registry import Deployment, hwnas_rasters, run_backend
from hwnas.errors import NirError
from hwnas.formats.nir import load, recorded_weight_format, to_nir
from hwnas.sim.integer import simulate_fixed
from hwnas.sim.lowering import lower
from hwnas.sim.network import chip_current
from hwnas.sim.neuron import LIFState, NeuronParams, loihi_lif_step
from hwnas.sim.ops import ConvBN
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded

DEFAULT_WINNER = "0-1:zero 0-2:skip 0-3:conv3x3 1-2:conv3x3 1-3:skip< 2-3:conv3x3<"


def quantised(cell, downsample="maxpool", scale=1.0, bits=8, mean=0.02, **skeleton):
    """A folded network quantised to ``bits``, with batch-norm statistics that keep its layers firing (a running
    ``mean`` other than 0 gives every convolution a bias)."""
    arch = small_arch(cell, width=6, downsample=downsample, **skeleton)
    net = build_seeded(lambda: build_network(arch), 0, "loihi")
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.bn.running_var.fill_(0.05 / scale)
            module.bn.running_mean.fill_(mean)
    net.eval()
    net.fold_batchnorm()
    net.set_weight_format(WeightFormat(bits))
    return net, arch


def spikes(seed=1, samples=8, steps=5):
    return torch.bernoulli(torch.full((steps, samples, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell,downsample,bits,skeleton", [
    (FEEDBACK, "maxpool", 8, {}), (CHAIN, "avgpool", 8, {}), (DEFAULT_WINNER, "maxpool", 8, {}),
    (FEEDBACK, "conv", 6, {"stages": 2, "widths": (6, 12), "head_pool": 2, "scale": 4.0}),
    (CHAIN, "maxpool", 8, {"stem_pool": 2}),  # a stride-2 stem: the input average-pooled into its convolution
    # a slow synaptic current (du < 1: the current decays and is truncated too; connection biases have no Loihi
    # equivalent there, so none)
    (FEEDBACK, "maxpool", 8, {"neuron": NeuronParams(du=0.5, dv=0.2, theta=0.7), "mean": 0.0, "scale": 2.0}),
])
def test_loihi_arithmetic_equals_the_integer_twin(cell, downsample, bits, skeleton):
    net, _ = quantised(cell, downsample, bits=bits, **skeleton)
    assert "neuron" not in skeleton or net.populations["stem"].params.du == 0.5
    x = spikes()
    twin = simulate_fixed(lower(net, WeightFormat(bits)), x.numpy())
    floating = hwnas_rasters(net, x, dtype=torch.float32)
    net.set_arithmetic("loihi", WeightFormat(bits))
    ours = hwnas_rasters(net, x, dtype=torch.float32)  # float32, as training computes
    for name in net.populations:
        assert np.array_equal(ours.spikes[name], twin.spikes[name]), name
    np.testing.assert_array_equal(ours.output_current, twin.output_current)
    busy = [name for name in net.populations if twin.spikes[name].sum() > 0]
    assert len(busy) >= len(net.populations) - 2  # not vacuous: every layer but the deepest and the output fires
    if cell != CHAIN:  # the float arithmetic differs somewhere: the twin is not the float simulator again
        assert any(not np.array_equal(floating.spikes[n], twin.spikes[n]) for n in busy)


def test_a_loihi_step_truncates_as_the_chip_does():
    # dv = 0.3: the chip keeps 4096 - round(0.3 * 4096) = 2867 / 4096 of v; the input 33/64 is 2112 state units
    params = NeuronParams(du=1.0, dv=0.3, theta=1.0)
    state = LIFState(torch.zeros(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    trace = []
    for _ in range(3):
        s, state = loihi_lif_step(torch.tensor([33 / 64]), state, params)
        trace.append((float(s), float(state.v)))
    # 2112; trunc(2112 * 2867 / 4096) + 2112 = 1478 + 2112; trunc(3590 * 2867 / 4096) + 2112 = 4624 > 4096: spike
    assert trace == [(0.0, 2112.0), (0.0, 3590.0), (1.0, 0.0)]
    # a slow current (du = 0.5: keep 2048 / 4096) is truncated too, towards zero for negative values
    params = NeuronParams(du=0.5, dv=1.0, theta=1.0)
    state = LIFState(torch.tensor([-4097.0], dtype=torch.float64), torch.zeros(1, dtype=torch.float64))
    _, state = loihi_lif_step(torch.zeros(1), state, params)
    assert float(state.u) == -2048.0  # trunc(-2048.5)


def test_a_connection_current_is_shifted_as_the_chip_shifts():
    # summed mantissas 3 and -3 shifted right by one: 1 and -2 (an arithmetic shift rounds towards minus infinity)
    current = torch.tensor([3 / 128, -3 / 128])
    assert chip_current(current, -1, None).tolist() == [1 / 64, -2 / 64]
    bias = torch.tensor([0.25, 0.25])
    assert chip_current(current + bias, -1, bias).tolist() == [1 / 64 + 0.25, -2 / 64 + 0.25]
    assert chip_current(torch.tensor([12 / 64]), 2, None).tolist() == [12 / 64]  # mantissas 3, shifted left: exact


def test_gradients_flow_through_the_loihi_arithmetic():
    net, _ = quantised(FEEDBACK)
    net.set_arithmetic("loihi")
    net.train()
    logits = net(spikes(samples=4)).logits
    torch.nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(int((g != 0).sum()) for g in grads) > 100


def test_exported_thresholds_sit_between_grid_values():
    net, arch = quantised(FEEDBACK)
    float_graph = to_nir(net, arch)
    net.set_arithmetic("loihi")
    graph = to_nir(net, arch)
    assert float(np.unique(float_graph.nodes["stem"].v_threshold)[0]) == 1.0
    assert np.all(graph.nodes["stem"].v_threshold == np.float32(1 + 2 ** -13))  # (64 * 64 + 0.5) / 4096
    loaded = load(graph, timing="pipelined")
    assert lower(loaded).populations["stem"].fixed()["vth"] == 64  # the chip's threshold is unchanged
    x = spikes(2)
    ours = hwnas_rasters(net, x, dtype=torch.float32)
    twin = simulate_fixed(lower(loaded), x.numpy())
    assert all(np.array_equal(ours.spikes[n], twin.spikes[n]) for n in net.populations)


def test_the_recorded_weight_format_is_the_one_deployed():
    # trained with 6-bit weights: the export records it, and the chip's lowering of the file uses it
    net, arch = quantised(FEEDBACK, bits=6)
    net.set_arithmetic("loihi", WeightFormat(6))
    graph = to_nir(net, arch)
    deployment = Deployment(graph, 1e-3, net)
    assert recorded_weight_format(graph) == WeightFormat(6) and deployment.lowered.weight_format.bits == 6
    x = spikes(3)
    twin = run_backend("hwnas_int", deployment, x)
    trained = run_backend("trained", deployment, x)
    assert all(np.array_equal(trained.spikes[n], twin.spikes[n]) for n in net.populations)
    graph.metadata["hwnas.weight_bits"] = 40
    with pytest.raises(NirError, match="hwnas.weight_bits must be a whole number of bits in 2..16, got 40"):
        recorded_weight_format(graph)


def test_graded_input_keeps_its_float_current():
    net, _ = quantised(CHAIN, mean=0.0)  # no bias: a population rests until the input reaches it
    net.set_arithmetic("loihi", spiking_input=False)  # direct-encoded images: no chip receives them
    x = torch.rand(4, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert "input->stem" not in net.chip_terms(x) and len(net.chip_terms(x)) == len(net.active_connections()) - 1
    with torch.no_grad():
        stem = net.synapses["input->stem"]
        expected = stem(x[0])
        ours = net(x, record=True)
    # pipelined: step 0 of the input reaches the stem at step 1, from rest, so v = its float current there
    spikes = torch.sign(torch.relu(expected - 1.0)).reshape(3, -1)
    assert torch.equal(ours.codes["stem"][1], spikes) and 0 < int(spikes.sum()) < spikes.numel()


def test_other_tools_layers_in_loihi_arithmetic_equal_the_integer_twin():
    """A sinabs-style graph (strided convolution, sum pooling before the next weights, Affine) reads as trainable
    layers whose Loihi arithmetic is the chip's, spike for spike."""
    from conftest import per_step_cnn

    from hwnas.sim.ops import PooledLayer

    net = load(per_step_cnn(), dt_s=1.0, timing="pipelined")
    kinds = [type(synapse).__name__ for synapse in net.synapses.values()]
    assert kinds.count("PooledLayer") == 3 and all(p.requires_grad for p in net.parameters())
    fmt = WeightFormat(8)
    net.set_weight_format(fmt)
    net.set_arithmetic("loihi", fmt)
    x = (torch.rand(6, 5, 2, 18, 18, generator=torch.Generator().manual_seed(3)) < 0.15).float()
    ours = hwnas_rasters(net, x, dtype=torch.float32)
    twin = simulate_fixed(lower(net, fmt), x.numpy())
    for name in net.populations:
        assert np.array_equal(ours.spikes[name], twin.spikes[name]), name
        assert twin.spikes[name].sum() > 0, name  # not vacuous
    assert any(isinstance(s, PooledLayer) and s.pools for s in net.synapses.values())


def test_ops_that_keep_float_weights_are_refused():
    import nir

    # pooling after the weights: each synapse of the composed matrix sums several weights, which the chip stores
    # rounded once
    weight = np.random.default_rng(0).normal(0, 0.3, (2, 1, 3, 3)).astype(np.float32)
    graph = nir.NIRGraph(nodes={
        "input": nir.Input(input_type={"input": np.array([1, 8, 8])}),
        "conv": nir.Conv2d(input_shape=(8, 8), weight=weight, stride=1, padding=1, dilation=1, groups=1,
                           bias=np.zeros(2, np.float32)),
        "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        "lif": nir.LIF(tau=np.full((2, 4, 4), 4e-3), r=np.full((2, 4, 4), 4.0), v_leak=np.zeros((2, 4, 4)),
                       v_threshold=np.ones((2, 4, 4)), v_reset=np.zeros((2, 4, 4))),
        "output": nir.Output(output_type={"output": np.array([2, 4, 4])})},
        edges=[("input", "conv"), ("conv", "pool"), ("pool", "lif"), ("lif", "output")])
    loaded = load(graph, dt_s=1e-3)
    with pytest.raises(ValueError, match="Loihi arithmetic needs ops that compute the chip's sums"):
        loaded.set_arithmetic("loihi")


def _loihi_step_by_autograd(current, state, params):
    """loihi_lif_step's training path written with plain autograd operations (the reference of its own backward)."""
    from hwnas.sim.neuron import DECAY_UNITY, STATE_LIMIT, STATE_SHIFT, STATE_UNIT, spike

    fixed = params.fixed_point()
    keep_u, keep_v = DECAY_UNITY - fixed["du"] - 1, DECAY_UNITY - fixed["dv"]
    drive = current.double() * STATE_UNIT

    def truncate(x):
        return x - torch.fmod(x.detach(), 1.0)

    u = drive if keep_u == 0 else truncate(state.u * (keep_u / DECAY_UNITY)) + drive
    v = truncate(state.v * (keep_v / DECAY_UNITY)) + u + fixed["bias"] * (1 << STATE_SHIFT)
    v = v.clamp(-STATE_LIMIT + 1, STATE_LIMIT - 1)
    s = spike((v - fixed["vth"] * (1 << STATE_SHIFT)) / STATE_UNIT, params.surrogate_slope)
    return s.to(current.dtype), LIFState(u, v * (1.0 - s))


@pytest.mark.parametrize("params", [NeuronParams(), NeuronParams(du=0.5, dv=0.2, theta=0.7),
                                    NeuronParams(du=1.0, dv=0.3, theta=1.0, bias=0.1)])
@pytest.mark.parametrize("scale", [1.0, 3000.0])  # 3000: the membrane saturates at 2^23 - 1
def test_the_written_out_loihi_step_has_autograds_values_and_gradients(params, scale):
    g = torch.Generator().manual_seed(0)
    currents = [((torch.randn(4, 3, 5, 5, generator=g) * scale * 64).round() / 64).requires_grad_(True)
                for _ in range(6)]
    weights = torch.arange(4 * 3 * 5 * 5).reshape(4, 3, 5, 5).float().sin()
    results = []
    for step in (_loihi_step_by_autograd, loihi_lif_step):
        state = LIFState(torch.zeros(4, 3, 5, 5, dtype=torch.float64), torch.zeros(4, 3, 5, 5, dtype=torch.float64))
        total, spikes = 0.0, []
        for current in currents:
            s, state = step(current, state, params)
            spikes.append(s)
            total = total + (s * weights).sum() + (state.v.float() * 1e-3).sum()
        results.append((torch.stack(spikes), state, torch.autograd.grad(total, currents)))
    (s0, state0, grads0), (s1, state1, grads1) = results
    assert torch.equal(s0, s1) and torch.equal(state0.u, state1.u) and torch.equal(state0.v, state1.v)
    assert all(torch.equal(a, b) for a, b in zip(grads0, grads1))
    assert 0 < float(s0.sum()) < s0.numel() and any(float(g.abs().sum()) > 0 for g in grads0)
