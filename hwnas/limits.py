"""Bounds on what a user may ask for: seeds, and memory estimated before anything large is allocated.

A request whose estimated memory (an upper-end guess of what a step holds at once) exceeds what this machine has
available is refused in one line naming the option that drives it, before any of it is allocated; networks are
sized in :mod:`hwnas.arch.footprint`. Importable without torch (the command line's argument types use it).
"""

from __future__ import annotations

import os
import re

from .errors import OptionError

MAX_SEED = 2 ** 32 - 1  # numpy's legacy generators and most tools take seeds in 0..2^32-1
# Threads torch computes with unless a run says otherwise. Results depend on the thread count (a float sum split
# over more threads adds in another order: 1 and 4 threads train different models even without oneDNN), so a run
# fixes and records it instead of taking the machine's; one thread costs about 8 % of a digits search's time
# against two on a 2-core machine (220 s vs 203 s) and gives the same result on every machine with the same CPU.
DEFAULT_THREADS = 1
MAX_THREADS = 1024
FLOAT_BYTES = 4
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


def check_fraction(value, what: str) -> float:
    """``value`` as a float share in (0, 1], else a one-line :class:`OptionError`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise OptionError(f"{what} must be a share in (0, 1], got {value!r}")
    return float(value)


DEVICES = "auto, cpu, cuda or cuda:N"


def check_device(device, what: str = "--device") -> str:
    """``device`` as one of auto, cpu, cuda, cuda:N (whether this machine has it is checked where it is used, by
    :func:`hwnas.sim.seeding.resolve_device`), else a one-line :class:`OptionError`."""
    if not isinstance(device, str) or not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,3})?", device):
        raise OptionError(f"{what} must be {DEVICES}, got {device!r}")
    return device


def check_run_options(seed, threads, device) -> None:
    """The ``--seed``, ``--threads`` and ``--device`` of a step that may leave them to its run (None), checked."""
    if seed is not None:
        check_seed(seed)
    if threads is not None:
        check_threads(threads)
    if device is not None:
        check_device(device)


def recorded_device(config: dict) -> str:
    """The device option a run's recorded configuration computes with (``auto`` for runs from before it was
    recorded)."""
    return check_device(config.get("device", "auto"), "the run's recorded device")


def recorded_threads(config: dict) -> int:
    """The thread count a run's recorded configuration (``report.json`` ``config``) computes with; the default for
    runs from before it was recorded."""
    return check_threads(config.get("threads", DEFAULT_THREADS), "the run's recorded threads")


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
