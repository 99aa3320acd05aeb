"""Shared fixtures: small architectures and a fast search configuration."""

from __future__ import annotations

import pytest
import torch

from hwnas.arch.genotype import Architecture


def make_cell(spec: str):
    """Cell from a compact text, e.g. '0-1:conv3x3 0-2:zero ...' (the canonical key format)."""
    from hwnas.arch.genotype import parse_cell_key

    return parse_cell_key(spec)


CHAIN = "0-1:conv3x3 0-2:zero 0-3:zero 1-2:conv3x3 1-3:zero 2-3:conv3x3"
FEEDBACK = "0-1:conv3x3 0-2:skip 0-3:zero 1-2:conv3x3 1-3:conv3x3< 2-3:conv3x3"  # node 3 feeds node 1 back


@pytest.fixture(autouse=True)
def _deterministic_threads():
    torch.manual_seed(0)
    yield


def small_arch(cell: str = CHAIN, **overrides) -> Architecture:
    """An 8x8 single-channel architecture with 4 channels, for fast tests."""
    values = dict(cell=make_cell(cell), input_shape=(1, 8, 8), num_classes=10, width=4, timesteps=4,
                  timing="pipelined")
    values.update(overrides)
    return Architecture(**values)


FAST_SEARCH = dict(timesteps=4, width=4, batch_size=16, repeats=1, refine=0)  # score-only: no trainings
