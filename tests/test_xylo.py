"""hwnas' integer twin of a Xylo core (hwnas.sim.xylo) against hand-computed steps, and against SynSense's own
bit-accurate simulator (rockpool's XyloSim, the optional ``xylo`` extra: those tests skip without it)."""

import numpy as np
import pytest

from hwnas.errors import LoweringError
from hwnas.sim.xylo import XyloCore, hidden_order, simulate_xylo

RECORDED = ("hidden_spikes", "output_spikes", "vmem", "isyn", "vmem_out", "isyn_out")


def _one_neuron(**overrides):
    """One input, one hidden neuron, one output neuron."""
    spec = dict(weights_in=[[[10]]], weights_rec=[[[0]]], weights_out=[[20]], dash_mem=[1], dash_syn=[1],
                dash_syn_2=[0], threshold=[12], bias=[0], dash_mem_out=[15], dash_syn_out=[15], threshold_out=[15],
                bias_out=[0])
    spec.update(overrides)
    return XyloCore.from_specification(spec)


def test_one_neuron_computed_by_hand():
    # step 0: i = 10 - (10 >> 1) = 5; v = 0 - 0 + 5 = 5. step 1: i = 5 + 10 = 15 -> 15 - 7 = 8;
    # v = 5 - (5 >> 1) + 8 = 11. step 2: i = 8 + 10 = 18 -> 9; v = 11 - 5 + 9 = 15 >= 12: one spike, v = 3.
    # step 3 (no input): i = 9 - 4 = 5; v = 3 - 1 + 5 = 7. The output receives the hidden spike of step 2 at step 3:
    # i_out = 20 - (20 >> 15 = 0, so 1) = 19, v_out = 19 >= 15: it spikes, v_out = 4.
    record = simulate_xylo(_one_neuron(), np.array([[1], [1], [1], [0]]), record_states=True)
    assert record.isyn[0, :, 0, 0].tolist() == [5, 8, 9, 5]
    assert record.vmem[0, :, 0].tolist() == [5, 11, 3, 7]
    assert record.hidden_spikes[0, :, 0].tolist() == [0, 0, 1, 0]
    assert record.output_spikes[0, :, 0].tolist() == [0, 0, 0, 1]
    assert record.vmem_out[0, :, 0].tolist() == [0, 0, 0, 4]


def test_a_neuron_spikes_once_per_threshold_up_to_31_times_and_states_saturate_at_16_bits():
    # input weight 127 << 8 = 32,512 per spike, 15 spikes (the chip's cap for an input): the current saturates at
    # 32,767, the membrane too, and threshold 1,000 allows 31 spikes (the cap) leaving 32,767 - 31,000
    core = _one_neuron(weights_in=[[[127]]], weight_shift_in=8, dash_syn=[15], threshold=[1000])
    record = simulate_xylo(core, np.array([[40]]), record_states=True)
    assert record.isyn[0, 0, 0, 0] == 32767 - 1  # the decay of a positive state is at least 1
    assert record.hidden_spikes[0, 0, 0] == 31
    assert record.vmem[0, 0, 0] == 32766 - 31 * 1000


def test_each_sample_starts_from_rest():
    core = _one_neuron()
    x = np.array([[1], [1], [1], [0]])
    both = simulate_xylo(core, np.stack([x, x]), record_states=True)
    assert (both.vmem[0] == both.vmem[1]).all() and (both.hidden_spikes[0] == both.hidden_spikes[1]).all()


@pytest.mark.parametrize("change, message", [
    ({"weights_in": [[[128]]]}, "weights_in: values 128..128 outside the chip's -128..127"),
    ({"threshold": [1.5]}, "threshold: expected integers"),
    ({"dash_mem": [16]}, "dash_mem: values 16..16 outside the chip's 0..15"),
    ({"weight_shift_rec": 9}, "weight_shift_rec 9: expected an integer in 0..8"),
    ({"bias": [0, 0]}, "bias: 2 values for 1 neurons"),
    ({"aliases": [[3]]}, "aliases: expected 1 lists of hidden neuron indices"),
])
def test_a_specification_outside_the_chip_is_refused_in_one_line(change, message):
    with pytest.raises(LoweringError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _one_neuron(**change)


def test_input_of_the_wrong_shape_or_negative_counts_is_refused():
    with pytest.raises(LoweringError, match=r"expected \(samples, steps, 1 channels\)"):
        simulate_xylo(_one_neuron(), np.zeros((1, 4, 3)))
    with pytest.raises(LoweringError, match="non-negative whole spike counts"):
        simulate_xylo(_one_neuron(), -np.ones((1, 4, 1)))


def _random_specification(rng, hidden, outputs, synapses, weight_max):
    """A core whose parameters span the chip's ranges: shifts up to 8 (states saturate), thresholds from 0
    (31 spikes a step), aliases, biases, output weights on the last hidden neurons only."""
    return dict(
        weights_in=rng.integers(-weight_max, weight_max + 1, (16, hidden, synapses)),
        weights_rec=rng.integers(-weight_max, weight_max + 1, (hidden, hidden, synapses))
        * (rng.random((hidden, hidden, synapses)) < rng.random()),
        weights_out=rng.integers(-weight_max, weight_max + 1, (int(rng.integers(1, hidden + 1)), outputs)),
        dash_mem=rng.integers(0, 16, hidden), dash_syn=rng.integers(0, 16, hidden),
        dash_syn_2=rng.integers(0, 16, hidden), threshold=rng.integers(0, int(rng.choice([50, 2000, 32767])), hidden),
        bias=rng.integers(-300, 300, hidden) * (rng.random() < 0.5), dash_mem_out=rng.integers(0, 16, outputs),
        dash_syn_out=rng.integers(0, 16, outputs), threshold_out=rng.integers(0, 2000, outputs),
        bias_out=rng.integers(-300, 300, outputs) * (rng.random() < 0.5),
        weight_shift_in=int(rng.integers(0, 9)), weight_shift_rec=int(rng.integers(0, 9)),
        weight_shift_out=int(rng.integers(0, 9)),
        aliases=[[int(a)] if rng.random() < 0.2 else [] for a in rng.integers(0, hidden, hidden)])


def test_the_twin_computes_what_xylosim_computes_state_for_state():
    pytest.importorskip("xylosim")
    from hwnas.backends.xylo import run_xylosim

    rng = np.random.default_rng(7)
    saturated = 0
    for trial in range(24):
        hidden, outputs = int(rng.integers(2, 40)), int(rng.integers(1, 9))
        core = XyloCore.from_specification(_random_specification(
            rng, hidden, outputs, synapses=int(rng.integers(1, 3)), weight_max=int(rng.choice([5, 40, 127]))))
        counts = rng.integers(0, 20, (3, 30, 16)) * (rng.random((3, 30, 16)) < rng.random())
        twin, vendor = simulate_xylo(core, counts, record_states=True), run_xylosim(core, counts)
        for name in RECORDED:
            assert np.array_equal(getattr(twin, name), getattr(vendor, name)), (trial, name)
        saturated += int((np.abs(twin.vmem) >= 32767).any())
    assert saturated >= 3  # the comparison covered saturating states


def test_a_nir_graph_mapped_by_rockpool_runs_the_same_in_the_twin_and_xylosim():
    pytest.importorskip("xylosim")
    import nir

    from hwnas.backends.xylo import map_nir, run_xylosim

    rng = np.random.default_rng(3)
    dt, tau_syn, tau_mem = 1e-3, 4e-3, 8e-3

    def cuba(n):  # rockpool reads dt as tau_mem / (1 + r)
        return nir.CubaLIF(tau_syn=np.full(n, tau_syn), tau_mem=np.full(n, tau_mem), r=np.full(n, tau_mem / dt - 1),
                           v_leak=np.zeros(n), v_threshold=np.ones(n), w_in=np.ones(n))

    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([16])), "fc1": nir.Linear(rng.normal(0, 0.5, (24, 16))), "lif1": cuba(24),
               "fc2": nir.Linear(rng.normal(0, 0.5, (3, 24))), "lif2": cuba(3), "output": nir.Output(np.array([3]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")])
    core, placement = map_nir(graph)
    assert placement["lif1"].tolist() == list(range(24)) and placement["lif2"].tolist() == [0, 1, 2]
    assert (core.inputs, core.hidden, core.outputs) == (16, 24, 3)
    assert (core.dash_mem == 3).all() and (core.dash_syn[:, 0] == 2).all()  # log2(tau / dt), rounded
    counts = (rng.random((4, 25, 16)) < 0.3).astype(int)
    twin, vendor = simulate_xylo(core, counts, record_states=True), run_xylosim(core, counts)
    assert twin.hidden_spikes.sum() > 0 and twin.output_spikes.sum() > 0
    for name in RECORDED:
        assert np.array_equal(getattr(twin, name), getattr(vendor, name)), name


# ----- hwnas' dense networks in the xylo arithmetic --------------------------------------------------------------




def _dense_network(cell="0-1:linear 0-2:zero 0-3:linear 1-2:linear 1-3:zero 2-3:linear", width=12, seed=0):
    import torch

    from hwnas.arch.builder import build_network
    from hwnas.arch.dense import DenseArchitecture
    from hwnas.arch.genotype import parse_cell_key

    arch = DenseArchitecture(parse_cell_key(cell), input_channels=16, num_classes=4, width=width, timesteps=10)
    torch.manual_seed(seed)
    net = build_network(arch)
    for synapse in net.synapses.values():
        torch.nn.init.normal_(synapse.weight_module().weight, 0.0, 0.4)
    return arch, net


def _counts(steps, samples=3, seed=1):
    import torch

    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, (steps, samples, 16)) * (rng.random((steps, samples, 16)) < 0.4)
    return torch.from_numpy(counts).float()[..., None, None]  # frames: (steps, samples, 16 channels, 1, 1)


def _trained_rasters(net, counts):
    """The network's spikes in the core's layout: hidden (samples, steps, neurons) in update order, output."""
    out = net(counts, record=True)
    hidden = hidden_order(net)
    codes = {name: out.codes[name].numpy().transpose(1, 0, 2) for name in net.populations}
    return np.concatenate([codes[n] for n in hidden], axis=2), codes[net.output], out


def _padded(counts, steps):
    padded = np.zeros((counts.shape[1], steps, counts.shape[2]), np.int64)
    padded[:, :counts.shape[0]] = counts[..., 0, 0].numpy().transpose(1, 0, 2)
    return padded


@pytest.mark.parametrize("cell", ["0-1:linear 0-2:zero 0-3:linear 1-2:linear 1-3:zero 2-3:linear",
                                  "0-1:linear 0-2:zero 0-3:zero 1-2:linear 1-3:linear< 2-3:linear"])
def test_a_dense_network_in_the_xylo_arithmetic_computes_what_its_core_computes(cell):
    from hwnas.sim.xylo import lower_xylo

    arch, net = _dense_network(cell)
    net.set_arithmetic("xylo")
    hidden, output, out = _trained_rasters(net, _counts(arch.timesteps))
    assert net.latency() == 4  # input -> stem within the step, then a step per link: stem, n1, n2, n3 -> output
    core = lower_xylo(net)
    assert core.hidden == arch.hidden_neurons and core.outputs == 4
    # each connection group's largest weight is 127 (rockpool's global_quantize then scales by exactly 1)
    assert max(np.abs(core.weights_in).max(), np.abs(core.weights_rec).max()) == 127
    assert np.abs(core.weights_out).max() == 127
    twin = simulate_xylo(core, _padded(_counts(arch.timesteps), hidden.shape[1]))
    assert hidden.sum() > 0 and hidden.max() > 1  # several spikes a step: Xylo's multi-spike neurons
    assert np.array_equal(hidden, twin.hidden_spikes) and np.array_equal(output, twin.output_spikes)


def test_the_xylo_arithmetic_trains_every_weight():
    import torch

    _, net = _dense_network()
    net.set_arithmetic("xylo")
    net.train()
    net(_counts(10)).logits.sum().backward()
    for key, synapse in net.synapses.items():
        grad = synapse.weight_module().weight.grad
        assert grad is not None and float(grad.abs().sum()) > 0, key
    assert all(torch.isfinite(s.weight_module().weight.grad).all() for s in net.synapses.values())


def test_a_decay_that_is_not_a_bit_shift_is_refused():
    from hwnas.arch.dense import DenseArchitecture
    from hwnas.arch.builder import build_network
    from hwnas.arch.genotype import parse_cell_key
    from hwnas.errors import ArchitectureError
    from hwnas.sim.neuron import NeuronParams

    arch = DenseArchitecture(parse_cell_key("0-1:zero 0-2:zero 0-3:linear 1-2:zero 1-3:zero 2-3:zero"), 16, 4, 8, 5,
                             neuron=NeuronParams(du=0.3, dv=0.25))
    with pytest.raises(ArchitectureError, match="neuron.du 0.3 is not 2\\^-d for a whole d in 1..15"):
        build_network(arch).set_arithmetic("xylo")


def test_rockpool_maps_hwnas_xylo_export_onto_the_same_core_and_xylosim_computes_the_trained_spikes():
    pytest.importorskip("xylosim")
    from hwnas.backends.xylo import map_nir, run_xylosim
    from hwnas.formats.xylo import to_xylo_nir
    from hwnas.sim.xylo import lower_xylo

    arch, net = _dense_network()  # fan-in into node 3 (0-3 and 2-3)
    net.set_arithmetic("xylo")
    hidden, output, _ = _trained_rasters(net, _counts(arch.timesteps))
    core, (mapped, placement) = lower_xylo(net), map_nir(to_xylo_nir(net))
    # rockpool places the populations in an order of its own: hwnas' neuron i is its neuron order[i]
    order = np.concatenate([placement["lif_" + name.replace(".", "_")] for name in hidden_order(net)])
    assert sorted(order.tolist()) == list(range(core.hidden))
    assert np.array_equal(core.weights_in, mapped.weights_in[:, order])
    assert np.array_equal(core.weights_rec, mapped.weights_rec[order][:, order])
    assert np.array_equal(core.weights_out, mapped.weights_out[order])
    for name in ("dash_mem", "dash_syn", "threshold", "bias"):
        assert np.array_equal(getattr(core, name), getattr(mapped, name)[order]), name
    for name in ("dash_mem_out", "dash_syn_out", "threshold_out", "bias_out"):
        assert np.array_equal(getattr(core, name), getattr(mapped, name)), name
    vendor = run_xylosim(mapped, _padded(_counts(arch.timesteps), hidden.shape[1]))
    assert np.array_equal(hidden, vendor.hidden_spikes[:, :, order]) and np.array_equal(output, vendor.output_spikes)


def test_xylo_imu_maps_with_its_own_rockpool_package_onto_the_same_core():
    pytest.importorskip("xylosim")
    from hwnas.backends.xylo import map_nir, same_core
    from hwnas.formats.xylo import to_xylo_nir
    from hwnas.hw_models import load_target
    from hwnas.sim.xylo import lower_xylo

    target = load_target("xylo-imu")
    assert (target.rockpool_module, target.dense.hidden_neurons) == ("syns63300", 496)
    _, net = _dense_network()
    net.set_arithmetic("xylo")
    mapped, placement = map_nir(to_xylo_nir(net), target)
    assert same_core(lower_xylo(net), mapped, placement, net)


def test_the_twin_and_the_training_round_weights_and_clip_inputs_alike():
    import torch

    from hwnas.sim.xylo import lower_xylo

    arch, net = _dense_network(width=4)
    with torch.no_grad():
        stem = net.synapses["input->stem"].weight_module().weight
        stem.zero_()
        stem[0, 0], stem[1, 0] = 0.9, 0.024803148  # times 127 / 0.9: 3.5 in float32, 3.49999995 in float64
    net.set_arithmetic("xylo")
    assert lower_xylo(net).weights_in[0, 1, 0] == 4  # as the training's float32 rounds it
    counts = _counts(arch.timesteps) * 13  # up to 39 spikes a step: the chip's input takes 15
    hidden, output, _ = _trained_rasters(net, counts)
    twin = simulate_xylo(lower_xylo(net), _padded(counts, hidden.shape[1]))
    assert hidden.sum() > 0 and np.array_equal(hidden, twin.hidden_spikes)


def test_a_dense_cell_without_a_neighbour_mutates_to_none():
    from hwnas.arch.genotype import parse_cell_key
    from hwnas.nas.space import SearchSpace

    lone = parse_cell_key("0-1:zero 0-2:zero 0-3:linear 1-2:zero 1-3:zero 2-3:zero")
    assert SearchSpace(dense=True).mutate(lone, np.random.default_rng(0)) is None
    mutated = SearchSpace(dense=True).mutate(parse_cell_key("0-1:linear 0-2:zero 0-3:zero 1-2:zero 1-3:linear "
                                                            "2-3:zero"), np.random.default_rng(0))
    assert mutated is not None


def test_without_the_xylo_extra_the_backend_says_how_to_install_it(monkeypatch):
    import sys

    from hwnas.backends.xylo import XyloUnavailable, rockpool_xylo

    monkeypatch.setitem(sys.modules, "xylosim", None)  # as if hwnas[xylo] were not installed
    with pytest.raises(XyloUnavailable, match=r"needs rockpool and xylosim: pip install 'hwnas\[xylo\]'"):
        rockpool_xylo()
