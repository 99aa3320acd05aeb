"""Compression (LitE-SNN's pruning, mixed precision and timestep search): the decoding of masks, bits and T, the
cost terms on hand-computed numbers, bit-weighted synaptic operations, and `hwnas compress` end to end: a
compressed run exports and computes in Lava's fixed point what the integer twin and the trained network compute."""

import json

import pytest
import torch
from conftest import CHAIN, SMALL_SEARCH, small_arch

from hwnas.arch.builder import build_network
from hwnas.cli import main
from hwnas.commands.run import _compressed_rows
from hwnas.compression.compconv import CompressedWeight, attach, detach_decoded
from hwnas.compression.costs import bit_synops, connection_events, model_size_bits
from hwnas.compression.timesteps import TimestepChoice
from hwnas.run_folder import RunFolder
from hwnas.sim.activity import ActivityStats, LayerActivity
from hwnas.sim.quantize import WeightFormat, fake_quantize_weight
from hwnas.sim.seeding import build_seeded

SMALL = SMALL_SEARCH


def test_masks_and_bits_decode_as_chosen():
    weight = torch.tensor([0.1, -0.5, 0.02, 0.8, -0.04])
    compressed = CompressedWeight(weight, (2, 4, 8))
    assert compressed.decoded_bits() == 8  # untrained: tied logits keep the most bits
    assert compressed.decoded_mask(weight).tolist() == [True] * 5  # threshold 0: nothing pruned
    with torch.no_grad():
        compressed.threshold.fill_(0.05 / float(compressed.scale))  # t = 0.05
        compressed.bit_logits.copy_(torch.tensor([0.0, 2.0, 1.0]))
    assert compressed.decoded_mask(weight).tolist() == [True, True, False, True, False]
    assert compressed.decoded_bits() == 4
    with torch.no_grad():
        compressed.bit_logits.copy_(torch.tensor([50.0, 0.0, 50.0]))
    assert compressed.decoded_bits() == 8  # a tie goes to the larger precision
    with torch.no_grad():
        compressed.bit_logits.copy_(torch.tensor([0.0, 100.0, 0.0]))
    expected = fake_quantize_weight(weight * torch.tensor([1.0, 1, 0, 1, 0]), WeightFormat(4))
    assert torch.allclose(compressed(weight), expected)
    assert float(compressed.expected_bits()) == pytest.approx(4.0)
    # the mask's gradient reaches the threshold: raising it prunes, so the kept count falls
    kept = compressed.mask(weight).sum()
    kept.backward()
    assert float(kept) == 3.0 and float(compressed.threshold.grad) < 0


def test_pruned_weights_are_zero_and_bits_are_the_decoded_ones_after_detaching():
    arch = small_arch(CHAIN)
    net = build_seeded(lambda: build_network(arch), 0, "compress")
    net.eval()
    net.fold_batchnorm()
    attached = attach(net, (2, 4, 8))
    key = next(iter(attached))
    original = attached[key].scale
    with torch.no_grad():
        attached[key].threshold.fill_(1.0)  # prune below one standard deviation
        attached[key].bit_logits.copy_(torch.tensor([3.0, 0.0, 0.0]))
    weight_before = net.synapses[key].weight_module().parametrizations.weight.original.detach().clone()
    bits, masks = detach_decoded(net, attached)
    weight = net.synapses[key].weight_module().weight
    assert bits[key] == 2 and all(b == 8 for k, b in bits.items() if k != key)
    assert torch.equal(masks[key], weight_before.abs() > original)
    assert torch.equal(weight[~masks[key]], torch.zeros(int((~masks[key]).sum())))
    assert torch.equal(weight[masks[key]], weight_before[masks[key]])
    assert not hasattr(net.synapses[key].weight_module(), "parametrizations")


def test_timesteps_decode_to_one_t():
    choice = TimestepChoice(range(1, 5))
    assert choice.decoded() == 4  # untrained: the trained T
    with torch.no_grad():
        choice.logits.copy_(torch.tensor([0.1, 0.3, 0.3, 0.2]))
    assert choice.decoded() == 3  # a tie goes to the larger T
    with torch.no_grad():
        choice.logits.copy_(torch.tensor([2.0, 0.3, 0.3, 0.2]))
    assert choice.decoded() == 1 and float(choice.probabilities().sum()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="increasing"):
        TimestepChoice([3, 2])


def test_cost_terms_on_hand_computed_numbers():
    # model size: 10 weights x 2 bits + 4 x 8 = 52 bits
    assert float(model_size_bits({"a": torch.tensor(10.0), "b": torch.tensor(4.0)},
                                 {"a": torch.tensor(2.0), "b": torch.tensor(8.0)})) == 52.0
    # Bit-SynOps: 100 events x half kept x 2 bits + 50 x all x 8 = 100 + 400
    assert float(bit_synops({"a": 100.0, "b": 50.0}, {"a": torch.tensor(0.5), "b": torch.tensor(1.0)},
                            {"a": torch.tensor(2.0), "b": torch.tensor(8.0)})) == 500.0
    # a connection's dense events: its source's spikes per sample x its mean fan-out before pruning
    arch = small_arch(CHAIN)
    net = build_network(arch)
    key = next(c.module_key for c in net.active_connections() if c.src == "stem")
    layers = {"stem": LayerActivity("stem", 256, [6.0, 4.0], [0.0, 0.0], [0.0, 0.0])}
    events = connection_events(net, ActivityStats(2, 2, layers), {key: 36.0})
    assert events == {key: pytest.approx(10.0 / 2 * 36.0)}


def test_synaptic_operations_weighted_by_bits_are_counted_per_connection():
    arch = small_arch(CHAIN)
    net = build_seeded(lambda: build_network(arch), 0, "compress")
    net.eval()
    x = torch.bernoulli(torch.full((4, 3, 1, 8, 8), 0.4), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = net(x, record=True)
        keys = [c.module_key for c in net.active_connections()]
        with net.synops_weighted_by({key: 3.0 for key in keys}):
            tripled = net(x)
        one = keys[0]  # the input -> stem convolution: its source (the input) is never silent
        with net.synops_weighted_by({one: 5.0}):
            weighted = net(x)
    total = plain.activity.totals_per_sample()["synops"]
    assert tripled.activity.totals_per_sample()["synops"] == pytest.approx(3 * total)
    conn = next(c for c in net.active_connections() if c.module_key == one)
    counts = plain.codes[conn.src].sum((0, 1)) if conn.src != "input" else (x != 0).sum((0, 1)).flatten().double()
    own = float(counts.double() @ net.synapses[one].fanout(net.shape_of(conn.src)).flatten().double()) / 3
    assert weighted.activity.totals_per_sample()["synops"] == pytest.approx(total + 4 * own)
    assert own > 0


def test_an_untrained_compression_changes_nothing(trained_run, tmp_path):
    import hwnas

    result = hwnas.compress(trained_run, out=tmp_path / "same", epochs=0, qat_epochs=0)
    before, after = result.report["before"], result.report["after"]
    assert result.report["timesteps"] == 4 and {layer["bits"] for layer in result.report["layers"].values()} == {8}
    for figure in ("accuracy", "model_bits", "bit_synops_per_sample", "synops_per_sample", "energy_j", "cores"):
        assert after[figure] == pytest.approx(before[figure]), figure
    # weighted connections count 8 bits per operation, identity and pooling connections once
    assert before["synops_per_sample"] < before["bit_synops_per_sample"] <= 8 * before["synops_per_sample"]


def test_the_same_seed_compresses_to_the_same_network(trained_run, tmp_path):
    import hwnas

    first = hwnas.compress(trained_run, out=tmp_path / "a", epochs=1, qat_epochs=1, bits=(2, 4, 8))
    again = hwnas.compress(trained_run, out=tmp_path / "b", epochs=1, qat_epochs=1, bits=(2, 4, 8))
    for part in ("before", "after", "layers", "timesteps", "timestep_probabilities", "val_accuracy"):
        assert first.report[part] == again.report[part], part
    one = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["state_dict"]
    two = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(one[key], two[key]) for key in one)


def test_compress_cli_writes_a_run_that_lava_computes_as_the_twin(trained_run, tmp_path, capsys):
    out = trained_run / "compressed"  # the default folder, where hwnas run --compress looks
    code = main(["compress", str(trained_run), "--epochs", "1", "--qat-epochs", "1", "--bits", "2,4,8",
                 "--synops-weight", "2", "--size-weight", "2", "--quiet"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "model bits" in text and "bit-weighted synops/sample" in text and "cores on loihi2" in text
    report = json.loads((out / "compress.json").read_text())
    assert report["candidate_bits"] == [2, 4, 8] and 1 <= report["timesteps"] <= 4
    assert {layer["bits"] for layer in report["layers"].values()} <= {2, 4, 8}
    assert report["after"]["model_bits"] < report["before"]["model_bits"]
    assert json.loads((out / "architecture.json").read_text())["timesteps"] == report["timesteps"]
    assert json.loads((out / "train.json").read_text())["layer_weight_bits"] == \
        {key: layer["bits"] for key, layer in report["layers"].items()}
    # the masks' pruned weights stayed zero through the fine-tuning, and the model loads with each connection's bits
    from hwnas.training import load_model

    net, _, checkpoint = load_model(out / "model.pt")
    for key, mask in checkpoint["masks"].items():
        weight = net.synapses[key].weight_module().weight
        assert torch.equal(weight[~mask], torch.zeros(int((~mask).sum())))
        assert net.synapses[key].deployed_format(None).bits == report["layers"][key]["bits"]
    pytest.importorskip("lava", reason="Lava is installed by hwnas' lava extra (Python 3.10)")
    assert main(["export", str(out), "--format", "nir"]) == 0
    capsys.readouterr()
    assert main(["validate", str(out), "--samples", "6", "--skip", "lava_float,norse"]) == 0
    text = capsys.readouterr().out
    assert "hwnas_int/lava_fixed   IDENTICAL" in text and "trained/lava_fixed     IDENTICAL" in text
    rows = dict(_compressed_rows(RunFolder(trained_run)))  # hwnas run --compress's summary
    assert rows["compressed: trained = Lava fixed"] == "identical"
    assert rows["compressed: test accuracy"].startswith(f"{100 * report['after']['accuracy']:.2f}% (T ")


@pytest.mark.parametrize("options,message", [
    (["--bits", "1,4"], "mixed-sign weights need 2 bits at least"),
    (["--target", "software"], "target 'software' lists no weight_bit_choices"),
    (["--bits", "4,9"], "--bits 9: target 'loihi2' stores weights in 1, 2, 3, 4, 5, 6, 7, 8 bits"),
    (["--min-timesteps", "9"], "--min-timesteps (9) exceeds the largest T, 4"),
])
def test_compress_refuses_bad_options_in_one_line(trained_run, tmp_path, capsys, options, message):
    assert main(["compress", str(trained_run), *options, "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_compress_refuses_a_float_trained_network_and_its_own_folder(tmp_path, capsys):
    run = tmp_path / "float"
    assert main(["search", *SMALL, "--out", str(run)]) == 0
    assert main(["train", str(run), "--epochs", "1", "--no-quantize", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compress", str(run), "--quiet"]) == 2
    assert "trained with float weights" in capsys.readouterr().err
    assert main(["compress", str(run), "--out", str(run), "--quiet"]) == 2
    assert "--out must be another folder" in capsys.readouterr().err
