"""How much memory a network of an architecture needs, known before it is built: parameters and neurons counted
on torch's meta device (nothing allocated), and the estimate of a scoring or training step."""

from __future__ import annotations

import torch

from ..limits import FLOAT_BYTES, check_memory
from .builder import build_network

# Values one neuron keeps per time step while training with BPTT (synaptic input, batch-norm output, current,
# voltage, spike, surrogate gradient, and their gradients in part); scoring keeps no graph.
TRAINING_VALUES_PER_NEURON_STEP = 8
SCORING_VALUES_PER_NEURON_STEP = 3
# Optimiser state per parameter: the weight, its gradient and Adam's two moments.
TRAINING_VALUES_PER_PARAMETER = 4


def network_size(arch) -> tuple[int, int]:
    """(parameters, neurons) of ``arch``'s network, counted on torch's meta device: nothing is allocated."""
    with torch.device("meta"):
        net = build_network(arch)
    parameters = sum(p.numel() for p in net.parameters())
    neurons = sum(pop.neurons for pop in net.populations.values())
    return int(parameters), int(neurons)


def run_bytes(parameters: int, neurons: int, input_size: int, timesteps: int, batch: int, training: bool) -> float:
    """Estimated bytes of one scoring (``training`` False) or training step of a network of this size."""
    per_step = (TRAINING_VALUES_PER_NEURON_STEP if training else SCORING_VALUES_PER_NEURON_STEP) * neurons
    per_parameter = TRAINING_VALUES_PER_PARAMETER if training else 1
    return FLOAT_BYTES * (parameters * per_parameter + timesteps * batch * (per_step + input_size))


def check_network_memory(arch, batch: int, training: bool, what: str, remedy: str, extra_bytes: float = 0) -> None:
    """Refuse (one line, before building anything) a network whose scoring or training step (plus
    ``extra_bytes`` held beside it) would not fit."""
    parameters, neurons = network_size(arch)
    input_size = 1
    for dim in arch.input_shape:
        input_size *= int(dim)
    needed = run_bytes(parameters, neurons, input_size, arch.timesteps, batch, training) + extra_bytes
    check_memory(needed, what, remedy)
