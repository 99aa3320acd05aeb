"""What the simulator's CPU fast paths (:mod:`hwnas.sim.fused`'s kernels, :mod:`hwnas.sim.layout`'s channels_last)
share: a per-thread switch that turns one off within a block, and the test that turns both off while a graph is
traced (ONNX export records torch's operations in the standard layout)."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch


class ThreadSwitch:
    """A flag that is set within a ``with switch.setting():`` block, in this thread only."""

    def __init__(self) -> None:
        self._local = threading.local()

    def __bool__(self) -> bool:
        return getattr(self._local, "set", False)

    @contextmanager
    def setting(self):
        """Set the flag within the block (nested blocks restore what they found)."""
        previous = bool(self)
        self._local.set = True
        try:
            yield
        finally:
            self._local.set = previous


def tracing() -> bool:
    """True while torch traces a graph (``torch.jit.trace``, ONNX export)."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
