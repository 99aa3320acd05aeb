"""Bounds on what a user may ask for: seeds, and memory estimated before anything large is allocated.

Every estimate here is an upper-end guess of what a step holds at once (float32 tensors); a request whose
estimate exceeds the memory this machine has available is refused in one line naming the option that drives it,
before any of it is allocated. Importable without torch (the command line's argument types use it).
"""

from __future__ import annotations

import os

from .errors import OptionError

MAX_SEED = 2 ** 32 - 1  # numpy's legacy generators and most tools take seeds in 0..2^32-1
# Threads torch computes with unless a run says otherwise. Results depend on the thread count (a float sum split
# over more threads adds in another order: 1 and 4 threads train different models even without oneDNN), so a run
# fixes and records it instead of taking the machine's; one thread costs about 8 % of a digits search's time
# against two on a 2-core machine (220 s vs 203 s) and gives the same result on every machine with the same CPU.
DEFAULT_THREADS = 1
MAX_THREADS = 1024
FLOAT_BYTES = 4
# Values one neuron keeps per time step while training with BPTT (synaptic input, batch-norm output, current,
# voltage, spike, surrogate gradient, and their gradients in part); scoring keeps no graph.
TRAINING_VALUES_PER_NEURON_STEP = 8
SCORING_VALUES_PER_NEURON_STEP = 3
# Optimiser state per parameter: the weight, its gradient and Adam's two moments.
TRAINING_VALUES_PER_PARAMETER = 4


def check_seed(seed, what: str = "--seed") -> int:
    """``seed`` as an int in 0..2^32-1, else a one-line :class:`OptionError`."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise OptionError(f"{what} must be an integer in 0..{MAX_SEED} (2^32 - 1), got {seed!r}")
    return seed


def check_threads(threads, what: str = "--threads") -> int:
    """``threads`` as an int in 1..1024, else a one-line :class:`OptionError`."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise OptionError(f"{what} must be an integer in 1..{MAX_THREADS}, got {threads!r}")
    return threads


def available_memory_bytes() -> int:
    """Memory this process may still take: the kernel's MemAvailable, else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40  # unknown: do not refuse


def _gigabytes(count: float) -> str:
    return f"{count / 2 ** 30:.3g} GiB"


def check_memory(needed_bytes: float, what: str, remedy: str) -> None:
    """Refuse (one line) a step whose estimated memory exceeds what this machine has available."""
    available = available_memory_bytes()
    if needed_bytes > available:
        raise OptionError(f"{what} would need about {_gigabytes(needed_bytes)} of memory, this machine has "
                          f"{_gigabytes(available)} available: {remedy}")


# Bytes one neuron takes per step and per sample in a backend run: its recorded spikes and the float64 state and
# codes the simulators keep while recording.
SIMULATION_BYTES_PER_NEURON_STEP = 16
INPUT_BYTES_PER_VALUE = 8  # inputs are handed to the simulators as float64


def check_simulation_memory(neurons: int, input_size: int, samples: int, steps: int, runs: int, what: str,
                            remedy: str) -> None:
    """Refuse (one line, before the inputs are encoded) ``runs`` recorded simulations of ``samples`` x ``steps``
    that would not fit in memory."""
    needed = samples * steps * (input_size * INPUT_BYTES_PER_VALUE + neurons * SIMULATION_BYTES_PER_NEURON_STEP * runs)
    check_memory(needed, what, remedy)


def network_size(arch) -> tuple[int, int]:
    """(parameters, neurons) of ``arch``'s network, counted on torch's meta device: nothing is allocated."""
    import torch

    from .arch.builder import build_network

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
