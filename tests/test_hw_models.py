import math
import re

import pytest
import torch
from conftest import CHAIN, FEEDBACK, small_arch

from hwnas.arch.builder import build_network
from hwnas.errors import TargetError
from hwnas.hw_models import load_target
from hwnas.hw_models.energy import estimate_energy
from hwnas.hw_models.fitness import fitness
from hwnas.hw_models.mapping import block_mask, dense_reach, map_network
from hwnas.hw_models.targets import builtin_target_text, builtin_targets
from hwnas.sim.graph import Connection, Population
from hwnas.sim.network import SpikingNetwork
from hwnas.sim.neuron import NeuronParams
from hwnas.sim.ops import FlattenLinear, Identity
from hwnas.sim.quantize import WeightFormat, deployed_weight

TINY_TARGET = """
[target]
name = "tiny"
description = "hand-computable"
timing = "zero-delay"
weight_bits = 8
[chip]
chips = 1
cores_per_chip = 4
cores_per_tile = 1
mesh_tiles_x = 4
mesh_tiles_y = 1
[core]
neurons = 2
fanin_axons = 100
fanout_axons = 100
synapse_memory_bits = 1000
synapse_bits = 1
[energy]
synop_j = 1
update_active_j = 10
update_inactive_j = 100
spike_in_tile_j = 1000
hop_ew_j = 10000
hop_ns_j = 0
[time]
synop_s = 1
update_active_s = 10
update_inactive_s = 100
spike_in_tile_s = 1000
hop_ew_s = 10000
hop_ns_s = 0
step_sync_s = 5
"""


def write_target(tmp_path, text, name="chip.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_builtin_targets_carry_cited_figures():
    assert {"loihi", "loihi2", "software"} <= set(builtin_targets())
    loihi = load_target("loihi")
    assert loihi.chip.cores == 128 and loihi.core.neurons == 1024 and loihi.core.fanin_axons == 4096
    assert loihi.core.synapse_memory_bits == 1048576
    assert loihi.energy.synop_j == pytest.approx(23.6e-12) and loihi.energy.update_inactive_j == pytest.approx(52e-12)
    assert loihi.time.synop_s == pytest.approx(3.5e-9)
    assert load_target("loihi2").core.neurons == 8192
    assert "Davies et al." in builtin_target_text("loihi") and "proxy" in builtin_target_text("loihi2")
    assert not load_target("software").is_hardware


@pytest.mark.parametrize("edit,message", [
    (lambda t: t.replace("synop_j = 1\n", ""), "missing field 'energy.synop_j'"),
    (lambda t: t.replace("synop_j = 1", "synop_jj = 1"), "unknown field 'energy.synop_jj'"),
    (lambda t: t.replace("hop_ew_j = 10000", "hop_ew_j = -3"), "field 'energy.hop_ew_j' must be a finite non-negative number"),
    (lambda t: t.replace('neurons = 2', 'neurons = "two"'), "field 'core.neurons' must be a positive integer"),
    (lambda t: t.replace("[time]", "[timing]"), "unknown table '[timing]'"),
    (lambda t: t.split("[time]")[0], "missing table '[time]'"),
    (lambda t: t.replace('timing = "zero-delay"', 'timing = "async"'), "field 'target.timing' must be one of"),
    (lambda t: t.replace("[chip]", "[chip"), "not valid TOML"),
])
def test_target_file_errors_name_the_field(tmp_path, edit, message):
    path = write_target(tmp_path, edit(TINY_TARGET))
    with pytest.raises(TargetError, match=re.escape(message)) as info:
        load_target(path)
    assert "\n" not in str(info.value)


def tiny_network():
    """input (1,2,2) -> identity -> 'a' (1,2,2) -> dense 4->2 (all weights 1) -> 'out' (2); memory-less neurons."""
    params = NeuronParams(du=1.0, dv=1.0, theta=0.5)
    dense = FlattenLinear(4, 2)
    with torch.no_grad():
        dense.linear.weight.fill_(1.0)
    populations = [Population("a", (1, 2, 2), params), Population("out", (2,), params)]
    connections = [(Connection("input", "a"), Identity()), (Connection("a", "out"), dense)]
    return SpikingNetwork((1, 2, 2), populations, connections, "out", "zero-delay")


def test_energy_and_latency_of_a_hand_computed_network(tmp_path):
    target = load_target(write_target(tmp_path, TINY_TARGET))
    net = tiny_network()
    x = torch.zeros(2, 1, 1, 2, 2)
    x[0] = 1.0  # all four inputs spike at step 0, none at step 1
    with torch.no_grad():
        out = net(x)
    mapping = map_network(net, target)
    assert [(b.start, b.stop, b.core) for b in mapping.blocks["a"]] == [(0, 2, 0), (2, 4, 1)]
    assert [(b.start, b.stop, b.core) for b in mapping.blocks["out"]] == [(0, 2, 2)]
    assert mapping.feasible
    # each 'a' neuron sends one message to core 2 (x = 2): from core 0 two hops, from core 1 one hop
    assert mapping.routes["a"].messages_per_spike == 1.0
    assert mapping.routes["a"].energy_per_spike_j == pytest.approx((2 * 21000 + 2 * 11000) / 4)
    estimate = estimate_energy(out.activity, mapping, target)
    by_layer = {layer.layer: layer for layer in estimate.layers}
    assert by_layer["input"].synops == 4 and by_layer["a"].synops == 8 and by_layer["out"].synops == 0
    assert by_layer["a"].active_updates == 4 and by_layer["a"].inactive_updates == 4
    assert by_layer["out"].active_updates == 2 and by_layer["out"].inactive_updates == 2
    # synops 12 x 1 J; updates (4 + 2) x 10 J active and (4 + 2) x 100 J inactive; routing 4 spikes x 16,000 J
    assert estimate.energy_j == pytest.approx(12 + 60 + 600 + 64000)
    assert by_layer["a"].energy_j == pytest.approx(8 + 40 + 400 + 64000)
    # step 0: each 'a' core does half of (4 x 10 active + 4 synops arriving + 4 spikes x 16,000 s) = 32,022 s;
    # step 1: half of 4 x 100 inactive = 200 s (the output core also 200 s); each step + 5 s synchronisation
    assert estimate.max_step_time_s == pytest.approx(32027)
    assert estimate.step_time_s == pytest.approx((32027 + 205) / 2)
    assert estimate.cores == 3


def test_populations_are_split_to_respect_each_core_limit(tmp_path):
    text = load_tiny_like(neurons=300, fanin=1000, memory=200000, bits=8)
    target = load_target(write_target(tmp_path, text))
    net = build_network(small_arch(FEEDBACK, width=16))
    mapping = map_network(net, target)
    assert mapping.feasible, [str(v) for v in mapping.violations]
    for layer, blocks in mapping.blocks.items():
        total = net.populations[layer].neurons
        assert blocks[0].start == 0 and blocks[-1].stop == total
        assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    for core in mapping.cores:
        assert core.neurons <= 300 and core.axons_in <= 1000 and core.synapse_bits <= 200000
        assert core.axons_out <= 1000
    # synapse bits of all blocks = every synapse once x 8 bits
    total_synapses = sum(float(net.synapses[c.module_key].fanin(
        net.input_shape if c.src == "input" else net.populations[c.src].shape).sum()) for c in net.active_connections())
    assert sum(b.synapse_bits for bs in mapping.blocks.values() for b in bs) == pytest.approx(total_synapses * 8)
    assert len(mapping.blocks["cell1.n1"]) > 1


def test_block_input_axons_match_brute_force(tmp_path):
    target = load_target(write_target(tmp_path, load_tiny_like(neurons=100, fanin=10000, memory=10 ** 7, bits=8)))
    net = build_network(small_arch(CHAIN, width=4))  # cell1.n1 hears the stem only
    with torch.no_grad():
        net.synapses["stem->cell1_n1:conv3x3"].conv.weight[:, 1] = 0.0  # input channel 1 unused
    mapping = map_network(net, target)
    block = mapping.blocks["cell1.n1"][0]
    weight = net.synapses["stem->cell1_n1:conv3x3"].conv.weight
    mask = block_mask((4, 8, 8), block.start, block.stop)
    sources = set()
    for o, y, x in mask.nonzero().tolist():
        for c in range(4):
            for ky in range(3):
                for kx in range(3):
                    sy, sx = y + ky - 1, x + kx - 1
                    if 0 <= sy < 8 and 0 <= sx < 8 and weight[o, c, ky, kx] != 0:
                        sources.add((c, sy, sx))
    assert block.axons_in == len(sources)
    assert all(c != 1 for c, _, _ in sources)


@pytest.mark.parametrize("shape,src_channels,kernels", [((4, 8, 8), 4, [3]), ((3, 5, 9), 2, [3, 5]),
                                                         ((2, 7, 4), 2, [3, -1]), ((5, 3, 3), 1, [5])])
def test_closed_form_input_axons_equal_the_masks_count(shape, src_channels, kernels):
    convs = [torch.nn.Conv2d(src_channels, shape[0], k, padding=k // 2) for k in kernels if k > 0]
    g = torch.Generator().manual_seed(5)
    neurons = math.prod(shape)
    blocks = [(0, neurons), (0, 1), (neurons - 1, neurons)]
    blocks += [tuple(sorted(torch.randint(0, neurons + 1, (2,), generator=g).tolist())) for _ in range(60)]
    for start, stop in blocks:
        if stop <= start:
            continue
        mask = block_mask(shape, start, stop)[None]
        hit = torch.zeros((src_channels, *shape[1:]), dtype=torch.bool)
        for conv in convs:  # the transposed dense kernel spreads every destination over all source channels
            ones = torch.ones((shape[0], src_channels, *conv.kernel_size))
            hit |= torch.nn.functional.conv_transpose2d(mask, ones, padding=conv.padding)[0] > 0
        kinds = [k // 2 if k > 0 else -1 for k in kernels]
        assert dense_reach(kinds, shape, (src_channels, *shape[1:]), start, stop) == int(hit.sum()), (start, stop)
    assert dense_reach([-1], shape, shape, 3, 10) == 7
    assert dense_reach([1, None], shape, shape, 0, 4) is None


def test_oversized_network_names_the_rules_it_breaks():
    net = build_network(small_arch(CHAIN, width=512))
    mapping = map_network(net, load_target("loihi2"))
    messages = [str(v) for v in mapping.violations]
    assert "fanin: layer cell1.n1 needs 4608 input axons for a single neuron, target loihi2 allows 4096 per core" in messages
    assert any(m.startswith("cores: network needs more than 128 cores") and "(1 chip)" in m for m in messages)
    assert not mapping.feasible


def test_fanout_limit_is_repaired_by_recutting():
    dense_cell = "0-1:conv3x3 0-2:conv3x3 0-3:conv3x3 1-2:conv3x3 1-3:conv3x3 2-3:conv3x3"
    net = build_network(small_arch(dense_cell, width=16))
    target = load_target("loihi2")
    once = map_network(net, target, attempts=1)  # packed densely, the stem's core needs too many output axons
    assert [v.rule for v in once.violations] == ["fanout"]
    assert "needs 5120 output axons, target loihi2 allows 4096 per core" in str(once.violations[0])
    repaired = map_network(net, target)
    assert repaired.feasible and len(repaired.cores) > len(once.cores)
    assert all(core.axons_out <= target.core.fanout_axons for core in repaired.cores)


def test_fitness_penalises_each_doubling_of_energy():
    assert fitness(-50.0, 1e-6, 4.0) == pytest.approx(-50.0)
    assert fitness(-50.0, 4e-6, 4.0) == pytest.approx(-58.0)
    assert fitness(-50.0, 4e-6, 0.0) == -50.0
    assert fitness(-math.inf, 1e-6, 4.0) == -math.inf


def load_tiny_like(neurons, fanin, memory, bits):
    text = TINY_TARGET
    text = text.replace("cores_per_chip = 4", "cores_per_chip = 128").replace("mesh_tiles_x = 4", "mesh_tiles_x = 16")
    text = text.replace("mesh_tiles_y = 1", "mesh_tiles_y = 8").replace("neurons = 2", f"neurons = {neurons}")
    text = text.replace("fanin_axons = 100", f"fanin_axons = {fanin}").replace("fanout_axons = 100", f"fanout_axons = {fanin}")
    text = text.replace("synapse_memory_bits = 1000", f"synapse_memory_bits = {memory}")
    return text.replace("synapse_bits = 1", f"synapse_bits = {bits}")


def test_the_mapper_stores_each_connection_in_its_own_bits(tmp_path):
    # compression: each weighted connection in its own precision; a synapse takes the target's synapse bits less
    # the weight bits it does not use (9-bit synapses for 8-bit weights: a b-bit weight takes b + 1), pruned
    # (zero) weights take none, and the smaller memory needs fewer cores
    text = load_tiny_like(neurons=300, fanin=1000, memory=60000, bits=9)
    target = load_target(write_target(tmp_path, text))
    net = build_network(small_arch(FEEDBACK, width=16))
    net.eval()
    net.fold_batchnorm()
    dense = map_network(net, target)
    assert dense.complete
    weighted = [key for key, synapse in net.synapses.items() if synapse.weight_module() is not None]
    own = {key: WeightFormat(2 + index % 3) for index, key in enumerate(weighted)}
    net.set_layer_weight_formats(own)
    with torch.no_grad():  # prune a quarter of one connection's weights
        weight = net.synapses[weighted[0]].conv.weight
        weight.view(-1)[: weight.numel() // 4] = 0.0
    net.weights_changed()
    compressed = map_network(net, target)
    expected = 0.0
    for conn in net.active_connections():
        synapse = net.synapses[conn.module_key]
        count = float(synapse.fanin(net.input_shape if conn.src == "input" else net.populations[conn.src].shape).sum())
        expected += count * ((own[conn.module_key].bits + 1) if conn.module_key in own else 9)
    assert sum(b.synapse_bits for bs in compressed.blocks.values() for b in bs) == pytest.approx(expected)
    assert sum(b.synapse_bits for bs in compressed.blocks.values() for b in bs) < \
        sum(b.synapse_bits for bs in dense.blocks.values() for b in bs) / 2
    assert len(compressed.cores) < len(dense.cores)
    # a target storing each convolution's kernel once per core stores a pruned tap nowhere and the rest in its bits
    shared = load_target(write_target(tmp_path, text.replace("synapse_bits = 9", "synapse_bits = 9\nshared_conv_weights = true"),
                                      "shared.toml"))
    conv = net.synapses[weighted[0]]
    deployed = deployed_weight(conv.conv.weight, conv.deployed_format(None))
    assert conv.kernel_weights() == int((deployed != 0).sum()) <= conv.conv.weight.numel() - weight.numel() // 4
    assert sum(b.synapse_bits for bs in map_network(net, shared).blocks.values() for b in bs) < \
        sum(b.synapse_bits for bs in dense.blocks.values() for b in bs)


def test_a_block_cut_from_a_hint_ends_where_bisection_ends():
    from hwnas.hw_models.mapping import _Memo, _Placement

    arch = small_arch(FEEDBACK, input_shape=(2, 34, 34), width=16)
    net = build_network(arch)
    placement = _Placement(net, load_target("loihi2"), {}, _Memo())
    ends = 0
    for layer in net.order:
        total = net.populations[layer].neurons
        for start in range(0, total, max(1, total // 7)):
            plain = placement.fitting_block(layer, start)
            for hint in (1, 2, 50, 300, plain[0] - start - 1, plain[0] - start, plain[0] - start + 1, total):
                assert placement.fitting_block(layer, start, hint) == plain
            ends += plain[0] < placement.longest_block(layer, start)  # the fan-in axons cut it
    assert ends > 0
