"""Batch-norm for step-by-step training (hwnas.sim.batchnorm): pooled running statistics, a training forward that
equals evaluation, batch renormalisation's gradient, and plain nn.BatchNorm2d until switched on."""

import copy

import torch

from conftest import FEEDBACK, small_arch

from hwnas.arch.builder import build_network
from hwnas.data import load_dataset
from hwnas.data.splits import encode_batch
from hwnas.sim.batchnorm import StepBatchNorm2d
from hwnas.sim.seeding import build_seeded
from hwnas.training import train_epochs, training_subset


def steps(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn((6, 3, 5, 5), generator=generator) * 2 + 1, torch.zeros((6, 3, 5, 5)),
            torch.rand((6, 3, 5, 5), generator=generator)]


def committed(xs):
    bn = StepBatchNorm2d(3)
    bn.pool_steps()
    for x in xs:
        bn(x)
    bn.commit()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, 1.5, -2.0]))
        bn.bias.copy_(torch.tensor([0.1, -0.3, 0.7]))
    return bn


def test_running_statistics_pool_every_step_of_a_pass():
    xs = steps()
    bn = committed(xs)
    pooled = torch.cat([x.transpose(0, 1).reshape(3, -1) for x in xs], dim=1)
    assert torch.allclose(bn.running_mean, pooled.mean(1), atol=1e-6)
    assert torch.allclose(bn.running_var, pooled.var(1), atol=1e-5)  # unbiased, as nn.BatchNorm2d keeps it
    assert int(bn.num_batches_tracked) == 1
    bn(xs[0] + 10)
    bn.commit()  # later passes: momentum 0.1 per pass, not per step
    assert torch.allclose(bn.running_mean, 0.9 * pooled.mean(1) + 0.1 * (xs[0] + 10).mean((0, 2, 3)), atol=1e-5)


def test_a_pass_that_did_not_finish_is_forgotten():
    xs = steps()
    bn = committed(xs)
    before = bn.running_mean.clone()
    bn(xs[0] * 100)
    bn.start_pass()
    bn.commit()
    assert torch.equal(bn.running_mean, before) and int(bn.num_batches_tracked) == 1


def test_training_forward_equals_evaluation_and_gradient_is_batch_renormalisation():
    xs = steps()
    bn = committed(xs)
    x = xs[2].clone().requires_grad_()
    weights = torch.randn((6, 3, 5, 5), generator=torch.Generator().manual_seed(1))
    trained = bn(x)
    (trained * weights).sum().backward()
    bn.eval()
    assert torch.allclose(trained, bn(xs[2]), atol=1e-5)
    # the reference: Ioffe's batch renormalisation, r and d held constant, autograd through the batch statistics
    reference = copy.deepcopy(bn)
    x_ref = xs[2].clone().requires_grad_()
    var, mean = torch.var_mean(x_ref, dim=(0, 2, 3), unbiased=False)
    std, running_std = torch.sqrt(var + bn.eps), torch.sqrt(reference.running_var + bn.eps)
    r, d = (std / running_std).detach(), ((mean - reference.running_mean) / running_std).detach()
    shape = (1, -1, 1, 1)
    normalised = (x_ref - mean.reshape(shape)) / std.reshape(shape) * r.reshape(shape) + d.reshape(shape)
    ((normalised * reference.weight.reshape(shape) + reference.bias.reshape(shape)) * weights).sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-5)
    assert torch.allclose(bn.weight.grad, reference.weight.grad, atol=1e-4)
    assert torch.allclose(bn.bias.grad, reference.bias.grad, atol=1e-5)


def test_until_switched_on_it_is_plain_batchnorm():
    xs = steps()
    step, plain = StepBatchNorm2d(3), torch.nn.BatchNorm2d(3)
    for x in xs:
        assert torch.equal(step(x), plain(x))
    assert torch.equal(step.running_var, plain.running_var) and not step.renormalising


def test_trained_network_computes_the_same_in_training_and_evaluation():
    """What the float phase trains is what its validation measures and what folding keeps: with plain
    batch-norm the training-mode logits of a trained network differed from its evaluation's (issue 30)."""
    arch = small_arch(FEEDBACK)
    small_splits = training_subset(load_dataset("digits"), 0.4, 0)
    net = build_seeded(lambda: build_network(arch), 0, arch.key)
    train_epochs(net, arch, small_splits, 2, 2e-3, 32, 0)
    x, _ = small_splits.split("val")
    batch = encode_batch(x[:40], small_splits.kind, arch.timesteps, arch.encoding,
                         torch.Generator().manual_seed(3))
    net.eval()
    with torch.no_grad():
        evaluation = net(batch, record=True)
        folded = copy.deepcopy(net)
        folded.fold_batchnorm()
        deployed = folded(batch).logits
        net.train()  # this pass normalises by the statistics evaluation used, then commits its own
        training = net(batch, record=True)
    # spike for spike (with plain batch-norm the two modes gave the same arg-max for 13% of 200 such samples)
    assert all(torch.equal(training.codes[name], evaluation.codes[name]) for name in evaluation.codes)
    assert torch.allclose(training.logits, evaluation.logits, atol=1e-5)
    assert torch.allclose(deployed, evaluation.logits, atol=1e-4)
    # no hidden layer trivially silent (the readout is the output layer's current, which rarely spikes)
    assert all(float(codes.sum()) > 0 for name, codes in evaluation.codes.items() if name != net.output)
