import onnx
import pytest
import torch
from conftest import FEEDBACK, small_arch

from hwnas.arch.builder import build_network
from hwnas.cli import main
from hwnas.formats.onnx import export_onnx, run_onnx
from hwnas.sim.ops import ConvBN, FlattenLinear
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded


@pytest.mark.parametrize("timing,downsample,arithmetic", [("pipelined", "maxpool", "float"),
                                                          ("zero-delay", "avgpool", "float"),
                                                          # zero-delay: no pipeline steps, a shorter unrolled graph
                                                          ("zero-delay", "maxpool", "loihi")])
def test_onnx_output_spikes_equal_hwnas(tmp_path, timing, downsample, arithmetic):
    arch = small_arch(FEEDBACK, width=8, timing=timing, downsample=downsample)
    net = build_seeded(lambda: build_network(arch), 0, "onnx")
    for module in net.modules():
        if isinstance(module, ConvBN):
            module.bn.running_var.fill_(0.05)
    with torch.no_grad():  # an untrained classifier is too weak to make the output layer fire
        next(m for m in net.modules() if isinstance(m, FlattenLinear)).linear.weight.mul_(20.0)
    net.eval()
    net.fold_batchnorm()
    net.set_weight_format(WeightFormat(8))
    net.set_arithmetic(arithmetic)  # loihi: the fixed-point arithmetic of quantisation-aware training
    path = tmp_path / "model.onnx"
    export_onnx(net, path, arch.timesteps)
    onnx.checker.check_model(onnx.load(path))
    x = torch.bernoulli(torch.full((arch.timesteps, 5, 1, 8, 8), 0.5), generator=torch.Generator().manual_seed(4))
    counts, logits = run_onnx(path, x)
    with torch.no_grad():
        expected = net(x)
    assert counts.shape == (5, 10)
    assert torch.equal(counts, expected.output_spikes)
    assert torch.allclose(logits, expected.logits, atol=1e-4)
    assert float(expected.output_spikes.sum()) > 0  # the comparison is not between two silent outputs


def test_export_command_onnx(tmp_path, capsys):
    from hwnas.nas.runner import SearchConfig, run_search
    from hwnas.training import TrainConfig, train_run

    run_search(SearchConfig(strategy="random", candidates=1, timesteps=4, width=8, batch_size=16, repeats=1, refine=0),
               tmp_path)
    train_run(tmp_path, TrainConfig(epochs=1, qat_epochs=0))
    assert main(["export", str(tmp_path), "--format", "onnx"]) == 0
    assert "reference evaluator matches" in capsys.readouterr().out
    assert main(["export", str(tmp_path), "--format", "nir"]) == 0
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.nir").is_file()
