"""A Lava process that records what reaches its input port into a memory-mapped file, one row per time step.

Reading a Lava ``Var`` back (``RingBuffer.data.get()``) moves one element per message, about 20 us each: a
raster of a few million spikes would take minutes. This recorder writes each step straight into a file that
the calling process maps after the run, so recording costs no messages at all.
"""

from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol


class Recorder(AbstractProcess):
    """Writes its input (summed over connected ports) at step t into row t - 1 of ``path`` (steps, size)."""

    def __init__(self, *, shape: tuple[int, ...], path: str, steps: int, dtype: str) -> None:
        super().__init__(shape=shape, path=path, steps=steps, dtype=dtype)
        self.a_in = InPort(shape=shape)


@implements(proc=Recorder, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt", "fixed_pt")
class PyRecorderModel(PyLoihiProcessModel):
    """Records float or integer input; the file exists (zeros) before the run starts."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        shape = proc_params["shape"]
        self.store = np.memmap(proc_params["path"], dtype=proc_params["dtype"], mode="r+",
                               shape=(proc_params["steps"], int(np.prod(shape))))

    def run_spk(self) -> None:
        self.store[self.time_step - 1] = self.a_in.recv().reshape(-1)
