"""Reproducible construction: a network's initial weights depend on the run seed and a key naming the
candidate, never on the order in which candidates are built; and the device every stage computes on."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

import torch

from ..errors import OptionError
from ..limits import check_device


def candidate_seed(seed: int, key: str) -> int:
    """Seed of a candidate's initial weights: depends on the run seed and the candidate only, not on order."""
    digest = hashlib.sha256(f"{seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def build_seeded(builder, seed: int, key: str):
    """Call ``builder()`` with torch's RNG seeded for this candidate, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(candidate_seed(seed, key))
        return builder()


def pick_device() -> torch.device:
    """CUDA when present, else the CPU (``--device auto``)."""
    return resolve_device("auto")


def resolve_device(option: str = "auto") -> torch.device:
    """The device a ``--device`` option names on this machine: ``auto`` is the first CUDA device when there is
    one, else the CPU; ``cuda``/``cuda:N`` that this machine lacks is a one-line :class:`OptionError`. On CUDA,
    kernels are made deterministic and TF32 is switched off, so that the same seed gives the same result and
    float32 means float32 as on the CPU (spike thresholds are sensitive to the last bits of a membrane)."""
    check_device(option)
    if option == "cpu" or (option == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise OptionError(f"--device {option}: this machine has no CUDA device that torch "
                          f"{torch.__version__} can use (use --device cpu or auto)")
    device = torch.device("cuda" if option == "auto" else option)
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise OptionError(f"--device {option}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                          f"numbered from 0")
    _deterministic_cuda()
    return torch.device("cuda", index)


def _deterministic_cuda() -> None:
    """Deterministic cuDNN/cuBLAS kernels and no TF32, once per process, before the first CUDA computation."""
    # cuBLAS needs a fixed workspace to be deterministic; it reads the variable when it starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.use_deterministic_algorithms(True, warn_only=True)


@contextmanager
def computing_threads(threads: int):
    """Compute with ``threads`` intra-op threads inside the block (restoring the previous count after): results
    depend on the thread count, so every step of a run computes with the count the run records."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
