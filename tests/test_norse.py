import nir
import numpy as np
import pytest
import torch
from conftest import CHAIN, small_arch

from hwnas.arch.builder import build_network
from hwnas.cli import main
from hwnas.backends.compare import compare
from hwnas.backends.registry import Deployment, hwnas_rasters, run_backend
from hwnas.backends.norse import NorseError, norse_executor, norse_step_plan
from hwnas.backends.validate import feedback_only
from hwnas.formats.nir import export, load, to_nir
from hwnas.sim.ops import ConvBN
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded


def active_network(cell, mean=0.0, **overrides):
    """A folded network whose batch-norm statistics keep every layer firing (as after training); a non-zero
    running ``mean`` gives every convolution a bias."""
    arch = small_arch(cell, width=8, timing="zero-delay", **overrides)
    net = build_seeded(lambda: build_network(arch), 0, "norse")
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.bn.running_var.fill_(0.05)
            module.bn.running_mean.fill_(mean)
    net.eval()
    net.fold_batchnorm()
    return net, arch


def inputs(seed=0):
    return torch.bernoulli(torch.full((6, 12, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell,downsample", [(CHAIN, "maxpool"), (CHAIN, "avgpool")])
def test_norse_matches_hwnas_on_forward_graphs(cell, downsample):
    net, arch = active_network(cell, downsample=downsample)
    result = compare(to_nir(net, arch), inputs(), torch.zeros(12, dtype=torch.long), 1e-3, "norse")
    assert set(result.layers) == set(net.populations)
    for name, row in result.layers.items():
        if name != "output":
            assert row["hwnas_spikes"] > 0, name
        assert row["identical_share"] > 0.99, (name, row)
        assert row["relative_error"] < 0.02, (name, row)


FEEDBACK_ONLY = "0-1:zero 0-2:skip 0-3:conv3x3 1-2:conv3x3 1-3:skip< 2-3:conv3x3"  # node 1 fed by 3's skip only


def test_norse_is_compared_in_its_own_step_order():
    # nirtorch's executor reaches node 1 only through node 3's feedback skip, so it runs node 1 after node 3 and
    # delivers that feedback within the step (hwnas' zero-delay timing, like the chip, delivers it a step later),
    # and runs the convolution 1 -> 2 before node 1 (a step late), delivering nothing at the first step, not even
    # its bias. The reference follows Norse's order; with thresholds exported between grid values (a network
    # fine-tuned in Loihi's arithmetic) no membrane ties with a threshold (the skip of weight 1 put them exactly
    # on it): every layer agrees spike for spike.
    net, arch = active_network(FEEDBACK_ONLY, mean=-0.03)
    net.set_arithmetic("loihi")
    graph = to_nir(net, arch)
    loaded = load(graph)
    assert feedback_only(loaded) == ["cell1.n1", "cell2.n1"]
    norse_order, zero_delay = norse_step_plan(graph, loaded), loaded.plan("zero-delay")
    delays = lambda plan: {c.module_key: late for name in plan.order for c, late in plan.incoming[name]}  # noqa: E731
    differ = {key for key, late in delays(norse_order).items() if late != delays(zero_delay)[key]}
    assert {key.split(":")[0] for key in differ} == {"cell1_n3->cell1_n1", "cell1_n1->cell1_n2", "stem->cell1_n3",
                                                    "cell2_n3->cell2_n1", "cell2_n1->cell2_n2", "down->cell2_n3"}
    assert norse_order.silent_first_step
    result = compare(graph, inputs(1), None, 1e-3, "norse")
    assert all(row["identical"] for row in result.layers.values()), result.layers
    assert result.layers["cell1.n1"]["hwnas_spikes"] > 0
    # in hwnas' zero-delay timing the feedback-only node differs from Norse (the reason for Norse's order)
    late = hwnas_rasters(loaded, inputs(1), "zero-delay", torch.float32)
    norse = run_backend("norse", Deployment(graph, 1e-3), inputs(1))
    assert (late.spikes["cell1.n1"] != norse.spikes["cell1.n1"]).sum() > 100


def test_float_thresholds_tie_where_loihi_thresholds_do_not():
    # the same cell with thresholds at exactly 1 (a float-trained export): the skip of weight 1 puts membranes on
    # the threshold, and float32 rounding (Norse's dt / tau and r) decides them differently
    net, arch = active_network(FEEDBACK_ONLY)
    net.set_weight_format(WeightFormat())
    result = compare(to_nir(net, arch), inputs(1), None, 1e-3, "norse")
    assert result.layers["cell1.n1"]["relative_error"] > 0.1


def test_every_node_must_become_a_norse_module():
    net, arch = active_network(CHAIN)
    graph = to_nir(net, arch)
    graph.nodes["delay"] = nir.Delay(delay=np.ones(1))
    graph.edges.append(("stem", "delay"))
    with pytest.raises(NorseError, match="node 'delay' \\(Delay\\) has no Norse module"):
        norse_executor(graph, 1e-3)


def test_deploy_command_prints_the_comparison(tmp_path, capsys):
    net, arch = active_network(CHAIN)
    export(net, tmp_path / "m.nir", arch)
    assert main(["deploy", str(tmp_path / "m.nir"), "--backend", "norse", "--samples", "20",
                 "--save", str(tmp_path / "c.json")]) == 0
    printed = capsys.readouterr().out
    assert "hwnas" in printed and "norse" in printed and "identical" in printed and "accuracy:" in printed
    assert (tmp_path / "c.json").is_file()
    np.save(tmp_path / "x.npy", np.zeros((3, 2, 1, 8, 8), dtype=np.float32))
    assert main(["deploy", str(tmp_path / "m.nir"), "--backend", "norse", "--input", str(tmp_path / "x.npy")]) == 0
    np.save(tmp_path / "bad.npy", np.zeros((3, 2, 1, 5, 5), dtype=np.float32))
    assert main(["deploy", str(tmp_path / "m.nir"), "--backend", "norse", "--input", str(tmp_path / "bad.npy")]) == 2
    assert "the graph expects [1, 8, 8]" in capsys.readouterr().err
    (tmp_path / "junk.nir").write_bytes(b"junk")
    assert main(["deploy", str(tmp_path / "junk.nir")]) == 2
