"""The fused CPU kernels of the neuron step (hwnas.sim.fused) compute what torch's operations compute, bit for bit:
spikes, states and gradients of both arithmetics, and a whole network's training step."""

import pytest
import torch

from hwnas.arch.builder import build_network
from hwnas.arch.genotype import Architecture, parse_cell_key
from hwnas.sim import fused
from hwnas.sim.layout import standard_layout
from hwnas.sim.neuron import LIFState, NeuronParams, count_active, lif_step, loihi_lif_step
from hwnas.sim.quantize import WeightFormat
from hwnas.sim.seeding import build_seeded

PARAMS = [NeuronParams(), NeuronParams(du=0.5, dv=0.2, theta=0.7), NeuronParams(du=1.0, dv=0.3, bias=0.1),
          NeuronParams(du=0.9, dv=1.0, theta=0.5, surrogate_slope=2.0)]


def _run_steps(step, params, currents, dtype):
    """Steps of ``step`` over ``currents``; the spikes, the last state, and the gradients of a loss that reads the
    spikes and the membrane (so both of the step's outputs carry gradient)."""
    shape = currents[0].shape
    state = LIFState(torch.zeros(shape, dtype=dtype), torch.zeros(shape, dtype=dtype))
    weights = torch.arange(currents[0].numel()).reshape(shape).float().sin()
    total, spikes = 0.0, []
    for current in currents:
        s, state = step(current, state, params)
        spikes.append(s)
        total = total + (s * weights).sum() + (state.v.float() * 1e-3).sum()
    grads = torch.autograd.grad(total, currents) if total.requires_grad else None
    return torch.stack(spikes), state, grads


def _fused_and_plain(step, params, currents, dtype):
    with fused.plain_operations():
        plain = _run_steps(step, params, currents, dtype)
    return _run_steps(step, params, currents, dtype), plain


def _assert_same(fused_result, plain_result):
    (s0, state0, grads0), (s1, state1, grads1) = fused_result, plain_result
    assert torch.equal(s0, s1) and torch.equal(state0.u, state1.u) and torch.equal(state0.v, state1.v)
    assert (grads0 is None) == (grads1 is None)
    if grads0 is not None:
        assert all(torch.equal(a, b) for a, b in zip(grads0, grads1))
        assert any(float(g.abs().sum()) > 0 for g in grads0)
    assert 0 < float(s0.sum()) < s0.numel()


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("grad", [True, False])
def test_float_step_fused_equals_torchs_operations(params, grad):
    g = torch.Generator().manual_seed(1)
    currents = [(torch.randn(4, 3, 5, 5, generator=g) * 0.8).requires_grad_(grad) for _ in range(6)]
    _assert_same(*_fused_and_plain(lif_step, params, currents, torch.float32))


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("scale", [1.0, 3000.0])  # 3000: the membrane saturates, the current wraps without gradient
@pytest.mark.parametrize("grid", [True, False])  # False: graded input, its current off the chip's 1/64 grid
def test_loihi_step_fused_equals_torchs_operations(params, grad, scale, grid):
    g = torch.Generator().manual_seed(2)
    currents = [torch.randn(4, 3, 5, 5, generator=g) * scale for _ in range(6)]
    currents = [((c * 64).round() / 64 if grid else c).requires_grad_(grad) for c in currents]
    _assert_same(*_fused_and_plain(loihi_lif_step, params, currents, torch.float64))


@pytest.mark.parametrize("standard", [True, False])  # False: the CPU's channels_last layout (hwnas.sim.layout)
def test_a_training_step_of_a_network_is_the_same_fused_and_plain(standard):
    arch = Architecture(cell=parse_cell_key("0-1:conv3x3 0-2:conv3x3 0-3:skip 1-2:skip 1-3:zero 2-3:conv3x3"),
                        input_shape=(1, 8, 8), num_classes=10, width=8, timesteps=4)
    g = torch.Generator().manual_seed(3)
    inputs = (torch.rand(4, 16, 1, 8, 8, generator=g) < 0.3).float()
    labels = torch.randint(0, 10, (16,), generator=g)
    results = []
    for arithmetic in ("float", "loihi"):
        for plain in (False, True):
            net = build_seeded(lambda: build_network(arch), 0, arch.key)
            if arithmetic == "loihi":
                net.eval()
                net.fold_batchnorm()
                net.set_arithmetic("loihi", WeightFormat(bits=8), True)
            net.train()
            with fused.plain_operations() if plain else torch.enable_grad(), \
                    standard_layout() if standard else torch.enable_grad():
                out = net(inputs)
                loss = torch.nn.functional.cross_entropy(out.logits, labels)
                grads = torch.autograd.grad(loss, [p for p in net.parameters() if p.requires_grad])
            results.append((out.logits.detach(), out.activity.to_dict(), grads))
    for (logits0, spikes0, grads0), (logits1, spikes1, grads1) in (results[0:2], results[2:4]):
        assert torch.equal(logits0, logits1) and spikes0 == spikes1
        assert sum(sum(layer["spikes"]) for layer in spikes0["layers"] if layer["kind"] == "neurons") > 0
        if standard:
            assert all(torch.equal(a, b) for a, b in zip(grads0, grads1))
        else:  # the gradients reach batch-norm and the convolutions in other layouts: the same up to rounding
            assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(grads0, grads1))


def test_an_infinite_membrane_resets_as_torch_computes_it():
    v = torch.tensor([[float("inf"), float("-inf"), float("nan"), 2.0, 0.5, -0.0]])
    with fused.plain_operations():
        plain = lif_step(v, LIFState(torch.zeros_like(v), torch.zeros_like(v)), NeuronParams(dv=1.0))
    spikes, state = lif_step(v, LIFState(torch.zeros_like(v), torch.zeros_like(v)), NeuronParams(dv=1.0))
    assert torch.equal(spikes, plain[0]) and torch.allclose(state.v, plain[1].v, equal_nan=True)
    assert torch.isnan(state.v[0, 0]) and bool(state.v[0, 1] == float("-inf"))
    assert int(state.active) == int(count_active(plain[0], plain[1], NeuronParams(dv=1.0)))  # NaN counts, -0.0 not


def test_the_fused_kernels_leave_gpus_tracing_and_other_dtypes_to_torch():
    x = torch.zeros(3)
    assert fused.applies(x) and fused.applies(x.double())
    assert not fused.applies(x.half())
    with fused.plain_operations():
        assert not fused.applies(x)
    assert fused.applies(x)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(16, 8, 28, 28), (3, 5, 7, 3)])  # 7 x 3: positions beyond the kernel's groups of 4
def test_channel_sums_are_float64_sums_of_exact_squares(shape, channels_last):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4)) * 3 + 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    total, squares = fused.channel_sums(x)
    exact = x.double()
    assert torch.allclose(total, exact.sum((0, 2, 3)), rtol=1e-13, atol=1e-10)
    assert torch.allclose(squares, (exact * exact).sum((0, 2, 3)), rtol=1e-13)
    assert total.dtype == squares.dtype == torch.float64 and total.shape == (shape[1],)


@pytest.mark.parametrize("du", [1.0, 0.5])
def test_the_neuron_kernels_walk_channels_last_tensors_and_count_the_active_neurons(du):
    g = torch.Generator().manual_seed(5)
    params = NeuronParams(du=du, dv=0.75)
    for step, dtype in ((lif_step, torch.float32), (loihi_lif_step, torch.float64)):
        currents = [torch.randn(4, 3, 5, 6, generator=g).contiguous(memory_format=torch.channels_last)
                    for _ in range(3)]
        currents = [(c * 64).round() / 64 for c in currents]
        rest = torch.zeros(4, 3, 5, 6, dtype=dtype).contiguous(memory_format=torch.channels_last)
        fused_state = plain_state = LIFState(rest, rest)  # as SpikingNetwork starts them on the CPU
        for current in currents:
            spikes, fused_state = step(current, fused_state, params)
            with fused.plain_operations():
                plain_spikes, plain_state = step(current, plain_state, params)
            assert spikes.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(spikes, plain_spikes) and torch.equal(fused_state.v, plain_state.v)
            counted = fused_state.active
            assert (counted is None) == (du != 1.0 and step is lif_step)
            if counted is not None:
                assert int(counted) == int(count_active(plain_spikes, plain_state, params))
