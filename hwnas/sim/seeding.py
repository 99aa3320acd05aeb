"""Reproducible construction: a network's initial weights depend on the run seed and a key naming the
candidate, never on the order in which candidates are built; and the device every stage computes on."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager

import torch


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
    """CUDA when present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
