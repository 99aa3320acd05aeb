"""Energy and latency per inference from activity statistics and a core mapping (docs/ARCHITECTURE.md):

    E = N_synop E_synop + N_upd,active E_active + N_upd,inactive E_inactive + sum over spike messages of
        (E_spike_in_tile + hops_EW E_hop_EW + hops_NS E_hop_NS)

with every coefficient taken from the target file. Synaptic operations are charged to the layer whose spikes
cause them. Latency of a step is the slowest core's work plus the barrier synchronisation; a core's work is its
share (by neurons) of each of its layers' neuron updates, of the synaptic operations arriving at those layers,
and of the spike messages they send. Spikes are assumed spread evenly over a layer's neurons.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..sim.activity import ActivityStats
from .mapping import Mapping
from .rules import check_energy_budget
from .targets import Target


@dataclass
class LayerEstimate:
    """Per-inference figures of one layer."""

    layer: str
    neurons: int
    cores: int
    spikes: float
    synops: float
    active_updates: float
    inactive_updates: float
    synop_energy_j: float
    update_energy_j: float
    route_energy_j: float

    @property
    def energy_j(self) -> float:
        return self.synop_energy_j + self.update_energy_j + self.route_energy_j

    def to_dict(self) -> dict:
        return {**asdict(self), "energy_j": self.energy_j}


@dataclass
class Estimate:
    """Energy and latency per inference on a target."""

    target: str
    samples: int
    steps: int
    layers: list[LayerEstimate]
    cores: int | None
    step_time_s: float          # mean over steps of the slowest core's time plus synchronisation
    max_step_time_s: float

    @property
    def energy_j(self) -> float:
        return sum(layer.energy_j for layer in self.layers)

    @property
    def inference_time_s(self) -> float:
        return self.step_time_s * self.steps

    def totals(self) -> dict:
        """Energy split by kind, latency, cores."""
        return {
            "energy_j": self.energy_j,
            "synop_energy_j": sum(l.synop_energy_j for l in self.layers),
            "update_energy_j": sum(l.update_energy_j for l in self.layers),
            "route_energy_j": sum(l.route_energy_j for l in self.layers),
            "spikes": sum(l.spikes for l in self.layers if l.layer != "input"),
            "synops": sum(l.synops for l in self.layers),
            "cores": self.cores,
            "steps": self.steps,
            "step_time_s": self.step_time_s,
            "max_step_time_s": self.max_step_time_s,
            "inference_time_s": self.inference_time_s,
        }

    def check_budget(self, max_energy_j: float | None) -> None:
        """Raise rule ``max-energy`` when the energy per inference exceeds the budget."""
        if max_energy_j is not None:
            check_energy_budget(self.energy_j, max_energy_j)

    def to_dict(self) -> dict:
        return {"target": self.target, "samples": self.samples, "totals": self.totals(),
                "layers": [layer.to_dict() for layer in self.layers]}


def estimate_energy(activity: ActivityStats, mapping: Mapping, target: Target) -> Estimate:
    """Energy per inference (per layer and total) and latency per step of ``activity`` run on ``mapping``."""
    energy, timing = target.energy, target.time
    n = max(activity.samples, 1)
    table = activity.per_sample()
    layers = []
    for name, row in table.items():
        route = mapping.routes.get(name)
        layers.append(LayerEstimate(
            layer=name, neurons=row["neurons"] if row["kind"] == "neurons" else 0,
            cores=len(mapping.cores_of(name)), spikes=row["spikes"], synops=row["synops"],
            active_updates=row["active_updates"], inactive_updates=row["inactive_updates"],
            synop_energy_j=row["synops"] * energy.synop_j,
            update_energy_j=row["active_updates"] * energy.update_active_j
            + row["inactive_updates"] * energy.update_inactive_j,
            route_energy_j=row["spikes"] * route.energy_per_spike_j if route else 0.0,
        ))

    step_times = []
    if mapping.complete and mapping.cores:
        for t in range(activity.steps):
            arriving: dict[str, float] = {}
            for source, shares in mapping.synop_shares.items():
                synops = activity.layers[source].synops[t] / n if source in activity.layers else 0.0
                for destination, share in shares.items():
                    arriving[destination] = arriving.get(destination, 0.0) + synops * share
            busy = [0.0] * len(mapping.cores)
            for layer, blocks in mapping.blocks.items():
                counters = activity.layers[layer]
                neurons = counters.neurons
                active = counters.active_updates[t] / n
                work = (active * timing.update_active_s + (neurons - active) * timing.update_inactive_s
                        + arriving.get(layer, 0.0) * timing.synop_s
                        + counters.spikes[t] / n * mapping.routes[layer].time_per_spike_s)
                for block in blocks:
                    busy[block.core] += work * block.neurons / neurons
            step_times.append(max(busy) + timing.step_sync_s)
    mean_step = sum(step_times) / len(step_times) if step_times else 0.0
    return Estimate(target.name, activity.samples, activity.steps, layers,
                    len(mapping.cores) if mapping.complete else None, mean_step, max(step_times, default=0.0))
