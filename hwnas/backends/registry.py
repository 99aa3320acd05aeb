"""Every way hwnas runs an exported network, behind one registry; every backend returns one recording type,
:class:`~hwnas.sim.integer.Rasters` (spikes per population (samples, steps, neurons), the output population's
summed input current, active neuron updates where the backend can observe them).

=================  =========================================================================  ============
backend            what runs                                                                  timing
=================  =========================================================================  ============
trained            the trained network itself (``model.pt``), in the arithmetic it trained    pipelined
                   in (Loihi's fixed point after quantisation-aware training), float32
hwnas              hwnas' simulator of the exported graph, (quantised) float weights, float64  pipelined
hwnas_int          hwnas' bit-exact integer twin of Loihi's fixed-point arithmetic             pipelined
lava_fixed         Lava's Loihi 2 simulator, bit-accurate fixed-point models                   pipelined
lava_float         Lava's floating-point models                                               pipelined
hwnas_norse_order  hwnas' simulator in float32 with each connection delayed as Norse's        Norse's
                   executor delays it (:func:`hwnas.backends.norse.norse_step_plan`)
norse              Norse through nirtorch                                                     Norse's
=================  =========================================================================  ============
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import OptionError
from ..formats.nir import READOUT, load, recorded_weight_format
from ..sim.graph import INPUT
from ..sim.integer import Rasters, simulate_fixed
from ..sim.lowering import LoweredNetwork, lower
from ..sim.network import SpikingNetwork

Progress = Callable[[str], None]


@dataclass
class Deployment:
    """A NIR graph to run, with the networks built from it on first use (one per timing) and its lowering."""

    graph: object
    dt_s: float
    trained: SpikingNetwork | None = None  # the network the graph was exported from, where known
    _nets: dict = field(default_factory=dict)
    _lowered: LoweredNetwork | None = None

    def network(self, timing: str) -> SpikingNetwork:
        """hwnas' simulator of the graph in ``timing``."""
        if timing not in self._nets:
            self._nets[timing] = load(self.graph, dt_s=self.dt_s, timing=timing)
        return self._nets[timing]

    @property
    def lowered(self) -> LoweredNetwork:
        """The graph in Loihi's terms (what the integer twin and Lava run)."""
        if self._lowered is None:
            self._lowered = lower(self.network("pipelined"), recorded_weight_format(self.graph))
        return self._lowered

    def check_inputs(self, inputs: torch.Tensor) -> None:
        """One-line error unless ``inputs`` (T, B, ...) has the graph's input shape per step."""
        net = next(iter(self._nets.values()), None) or self.network("pipelined")
        expected = net.input_shape
        if tuple(inputs.shape[2:]) != expected:
            raise OptionError(f"inputs have shape {list(inputs.shape[2:])} per step, the graph expects {list(expected)}")


def hwnas_rasters(net: SpikingNetwork, inputs: torch.Tensor, timing: str = "pipelined",
                  dtype: torch.dtype = torch.float64, plan=None) -> Rasters:
    """hwnas' simulator on ``inputs`` in ``timing`` (or by a step ``plan``), computed in ``dtype`` (float64: sums
    of quantised weights are exact; ``net`` is left in its own dtype): spikes (samples, steps, neurons) and
    summed output current."""
    own = next(net.parameters(), torch.empty(0)).dtype  # a graph without weights (pooling only) has no parameters
    try:
        with torch.no_grad():
            result = net.to(dtype)(inputs.to(dtype), record=True, timing=timing, plan=plan)
    finally:
        net.to(own)
    spikes = {name: codes.numpy().transpose(1, 0, 2).astype(bool) for name, codes in result.codes.items()}
    active = {name: np.array(layer.active_updates) for name, layer in result.activity.layers.items() if name != INPUT}
    return Rasters(spikes, result.logits.numpy() * inputs.shape[0], active)


def _trained(deployment: Deployment, inputs: torch.Tensor, say: Progress) -> Rasters:
    if deployment.trained is None:
        raise OptionError("the trained network is not known here (validate a run folder with its model.pt)")
    return hwnas_rasters(deployment.trained, inputs, "pipelined", torch.float32)


def _hwnas(deployment: Deployment, inputs: torch.Tensor, say: Progress) -> Rasters:
    return hwnas_rasters(deployment.network("pipelined"), inputs)


def _hwnas_norse_order(deployment: Deployment, inputs: torch.Tensor, say: Progress) -> Rasters:
    from .norse import norse_step_plan

    net = deployment.network("zero-delay")
    return hwnas_rasters(net, inputs.float(), dtype=torch.float32, plan=norse_step_plan(deployment.graph, net))


def _hwnas_int(deployment: Deployment, inputs: torch.Tensor, say: Progress) -> Rasters:
    return simulate_fixed(deployment.lowered, inputs.numpy())


def _lava(mode: str):
    def run(deployment: Deployment, inputs: torch.Tensor, say: Progress) -> Rasters:
        from .lava import run_lava

        samples = inputs.shape[1]
        say(f"running {samples} samples in Lava ({mode}) ...")
        return run_lava(deployment.lowered, inputs.numpy(), mode,
                        progress=lambda done, total: say(f"  lava {mode}: {done}/{total} samples"))
    return run


def _norse(deployment: Deployment, inputs: torch.Tensor, say: Progress) -> Rasters:
    from .norse import run_norse

    graph, net = deployment.graph, deployment.network("zero-delay")
    readout_source = next(src for src, dst in graph.edges if dst == READOUT) if READOUT in graph.nodes else net.output
    feeding = [src for src, dst in graph.edges if dst == readout_source]
    result = run_norse(graph, inputs.float(), deployment.dt_s, list(net.populations),
                       feeding[0] if len(feeding) == 1 else readout_source)
    spikes = {name: codes.numpy().transpose(1, 0, 2).astype(bool) for name, codes in result["codes"].items()}
    return Rasters(spikes, result["logits"].numpy().reshape(inputs.shape[1], -1) * inputs.shape[0], None)


@dataclass(frozen=True)
class Backend:
    """A registered backend: how it runs, the timing it computes, and its reference in hwnas."""

    name: str
    run: Callable[[Deployment, torch.Tensor, Progress], Rasters]
    timing: str
    reference: str  # the hwnas backend it must equal (or is compared with)


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("trained", _trained, "pipelined", "hwnas_int"),
    Backend("hwnas", _hwnas, "pipelined", "hwnas"),
    Backend("hwnas_int", _hwnas_int, "pipelined", "hwnas_int"),
    Backend("lava_fixed", _lava("fixed"), "pipelined", "hwnas_int"),
    Backend("lava_float", _lava("float"), "pipelined", "hwnas"),
    Backend("hwnas_norse_order", _hwnas_norse_order, "zero-delay", "hwnas_norse_order"),
    Backend("norse", _norse, "zero-delay", "hwnas_norse_order"),
)}


def run_backend(name: str, deployment: Deployment, inputs: torch.Tensor, progress: Progress | None = None) -> Rasters:
    """Run ``inputs`` (T, B, ...) through the registered backend ``name``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name} (known: {', '.join(BACKENDS)})")
    deployment.check_inputs(inputs)
    return BACKENDS[name].run(deployment, inputs, progress or (lambda message: None))
