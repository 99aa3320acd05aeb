"""How much memory a network of an architecture needs, known before it is built: parameters and neurons counted
on torch's meta device (nothing allocated), and the estimate of a scoring or training step."""

from __future__ import annotations

import torch

from ..limits import FLOAT_BYTES, check_memory
from .builder import build_network

# Values (float32 each) one neuron keeps per simulated step (input steps plus the pipeline's latency) and sample.
# Training with BPTT keeps synaptic input, batch-norm output, current, voltage, spike, surrogate gradient and their
# gradients in part: measured 33-38 bytes in float (2026-12-06: a width-8 MNIST cell and a width-32 chain at
# 34x34x2), and 100-121 bytes in Loihi's arithmetic (QAT: float64 state, the chip's rounding of every current).
# Scoring keeps no graph.
TRAINING_VALUES_PER_NEURON_STEP = 10
QAT_VALUES_PER_NEURON_STEP = 28
SCORING_VALUES_PER_NEURON_STEP = 3
# Optimiser state per parameter: the weight, its gradient and Adam's two moments.
TRAINING_VALUES_PER_PARAMETER = 4


def network_size(arch) -> tuple[int, int, int]:
    """(parameters, neurons, latency steps) of ``arch``'s network, counted on torch's meta device: nothing is
    allocated."""
    with torch.device("meta"):
        return built_network_size(build_network(arch))


def built_network_size(net) -> tuple[int, int, int]:
    """(parameters, neurons, latency steps) of a network already built (another tool's graph, read)."""
    parameters = sum(p.numel() for p in net.parameters())
    neurons = sum(pop.neurons for pop in net.populations.values())
    return int(parameters), int(neurons), int(net.latency_steps)


def run_bytes(parameters: int, neurons: int, input_size: int, steps: int, batch: int, training: bool,
              arithmetic: str = "float") -> float:
    """Estimated bytes of one scoring (``training`` False) or training step (in ``arithmetic``: ``float``, or
    ``loihi`` for quantisation-aware training) of a network of this size simulated for ``steps``."""
    if not training:
        values = SCORING_VALUES_PER_NEURON_STEP
    else:
        values = QAT_VALUES_PER_NEURON_STEP if arithmetic == "loihi" else TRAINING_VALUES_PER_NEURON_STEP
    per_parameter = TRAINING_VALUES_PER_PARAMETER if training else 1
    return FLOAT_BYTES * (parameters * per_parameter + steps * batch * (values * neurons + input_size))


def check_network_memory(arch, batch: int, training: bool, what: str, remedy: str, extra_bytes: float = 0,
                         arithmetic: str = "float", net=None) -> None:
    """Refuse (one line, before building anything) a network whose scoring or training step in ``arithmetic``
    (plus ``extra_bytes`` held beside it) would not fit; ``net``: the network, when it is built already (an
    imported graph has no architecture to build it from)."""
    parameters, neurons, latency = network_size(arch) if net is None else built_network_size(net)
    input_size = 1
    for dim in arch.input_shape:
        input_size *= int(dim)
    needed = run_bytes(parameters, neurons, input_size, arch.timesteps + latency, batch, training, arithmetic)
    check_memory(needed + extra_bytes, what, remedy)
