"""Design rules: one named function per rule. A violation raises :class:`ConstraintError`, whose one-line
message names the rule, the layer, the measured value and the limit, e.g.
``cores: network needs 161 cores, target loihi2 has 128 (1 chip)``.
"""

from __future__ import annotations

from ..errors import HwnasError


class ConstraintError(HwnasError):
    """A network breaks one of a target's design rules."""

    def __init__(self, rule: str, layer: str | None, value: float, limit: float, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.layer = layer
        self.value = value
        self.limit = limit


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value)}"


def check_neuron_fanin(layer: str, axons: int, limit: int, target: str) -> None:
    """Rule ``fanin``: a single neuron's input axons must fit one core's fan-in axons."""
    if axons > limit:
        raise ConstraintError("fanin", layer, axons, limit,
                              f"fanin: layer {layer} needs {axons} input axons for a single neuron, "
                              f"target {target} allows {limit} per core")


def check_neuron_synapses(layer: str, bits: int, limit: int, target: str) -> None:
    """Rule ``synapse-memory``: a single neuron's synapses must fit one core's synaptic memory."""
    if bits > limit:
        raise ConstraintError("synapse-memory", layer, bits, limit,
                              f"synapse-memory: layer {layer} needs {bits} synapse bits for a single neuron, "
                              f"target {target} has {limit} per core")


def check_core_fanout(layer: str, core: int, axons: int, limit: int, target: str) -> None:
    """Rule ``fanout``: the output axons a core's neurons need (one per destination core) must fit."""
    if axons > limit:
        raise ConstraintError("fanout", layer, axons, limit,
                              f"fanout: core {core} (layer {layer}) needs {axons} output axons, "
                              f"target {target} allows {limit} per core")


def check_total_cores(cores: int, limit: int, chips: int, target: str) -> None:
    """Rule ``cores``: the mapped network must fit the target's cores."""
    if cores > limit:
        raise ConstraintError("cores", None, cores, limit,
                              f"cores: network needs {cores} cores, target {target} has {limit} ({chips} chip"
                              f"{'s' if chips != 1 else ''})")


def check_core_budget(cores: int, budget: int) -> None:
    """Rule ``max-cores``: the user's core budget (``--max-cores``)."""
    if cores > budget:
        raise ConstraintError("max-cores", None, cores, budget,
                              f"max-cores: network needs {cores} cores, the budget is {budget}")


def check_energy_budget(energy_j: float, budget_j: float) -> None:
    """Rule ``max-energy``: the user's energy budget per inference (``--max-energy``)."""
    if energy_j > budget_j:
        raise ConstraintError("max-energy", None, energy_j, budget_j,
                              f"max-energy: network needs {energy_j:.4g} J per inference, the budget is {budget_j:.4g} J")
