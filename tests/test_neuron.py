import pytest
import torch

from hwnas.errors import ArchitectureError
from hwnas.sim.neuron import LIFState, NeuronParams, initial_state, lif_step


def run(params, currents):
    x = torch.tensor(currents, dtype=torch.float32).reshape(len(currents), 1, 1)
    state = initial_state(x[0])
    spikes, us, vs = [], [], []
    for t in range(len(currents)):
        s, state = lif_step(x[t], state, params)
        spikes.append(float(s))
        us.append(float(state.u))
        vs.append(float(state.v))
    return spikes, us, vs


def test_cuba_lif_hand_computed():
    params = NeuronParams(du=0.5, dv=0.25, theta=1.0)
    spikes, us, vs = run(params, [0.6, 0.0, 0.0, 0.4])
    # u: 0.6, 0.3, 0.15, 0.475 ; v: 0.6, 0.75, 0.7125 -> spike? 0.7125 < 1 ; then 0.534375 + 0.475 = 1.009375 -> spike
    assert us == pytest.approx([0.6, 0.3, 0.15, 0.475])
    assert spikes == [0.0, 0.0, 0.0, 1.0]
    assert vs[:3] == pytest.approx([0.6, 0.75, 0.7125])
    assert vs[3] == 0.0  # hard reset


def test_threshold_is_strict_and_current_free_lif():
    params = NeuronParams(du=1.0, dv=0.75, theta=1.0)
    spikes, us, vs = run(params, [1.0, 0.8, 0.8])
    # v: 1.0 (not > 1, no spike), 0.25 + 0.8 = 1.05 -> spike, reset, then 0.8
    assert spikes == [0.0, 1.0, 0.0]
    assert us == pytest.approx([1.0, 0.8, 0.8])  # du = 1: the current has no memory
    assert vs == pytest.approx([1.0, 0.0, 0.8])


def test_surrogate_gradient_flows_and_matches_forward():
    params = NeuronParams(du=1.0, dv=0.5, theta=1.0, surrogate_slope=5.0)
    v_in = torch.tensor([[0.9, 1.2]], requires_grad=True)
    s, _ = lif_step(v_in, LIFState(torch.zeros(1, 2), torch.zeros(1, 2)), params)
    assert s.tolist() == [[0.0, 1.0]]
    s.sum().backward()
    expected = [1 / (1 + 5 * 0.1) ** 2, 1 / (1 + 5 * 0.2) ** 2]
    assert v_in.grad[0].tolist() == pytest.approx(expected, rel=1e-5)
    with torch.no_grad():
        s_fast, _ = lif_step(v_in, LIFState(torch.zeros(1, 2), torch.zeros(1, 2)), params)
    assert torch.equal(s_fast, s.detach())


@pytest.mark.parametrize("field,value", [("du", 1.5), ("dv", -0.1), ("theta", 0.0)])
def test_invalid_parameters_are_named(field, value):
    with pytest.raises(ArchitectureError, match=field):
        NeuronParams(**{field: value})
