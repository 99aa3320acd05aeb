"""Activity statistics: the counters every simulator and backend produce, per population and timestep.

Counts are totals over the samples that were run (``samples``); ``per_sample()`` divides by it. A neuron update
is *active* when the neuron's membrane potential (or, with current decay, its synaptic current) is non-zero
during the step, *inactive* otherwise (Loihi charges the two differently). Synaptic operations count each spike
times the non-zero fan-out of its neuron (NeuroBench's "effective synaptic operations"), at the layer whose
spikes cause them. The ``input`` layer (kind ``input``) counts the non-zero input values and the synaptic
operations they cause; it has no neuron updates and does not count as neurons.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class LayerActivity:
    """Counters of one population, one entry per simulated step, summed over samples."""

    name: str
    neurons: int
    spikes: list[float]
    active_updates: list[float]
    synops: list[float]
    kind: str = "neurons"

    @property
    def steps(self) -> int:
        return len(self.spikes)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "neurons": self.neurons, "spikes": self.spikes,
                "active_updates": self.active_updates, "synops": self.synops}

    @classmethod
    def from_dict(cls, data: dict) -> "LayerActivity":
        return cls(data["name"], int(data["neurons"]), list(data["spikes"]), list(data["active_updates"]),
                   list(data["synops"]), data.get("kind", "neurons"))


@dataclass
class ActivityStats:
    """Per-population counters of a run over ``samples`` inputs and ``steps`` timesteps."""

    samples: int
    steps: int
    layers: dict[str, LayerActivity] = field(default_factory=dict)

    def merge(self, other: "ActivityStats") -> "ActivityStats":
        """Counters of both runs added (same network and step count), as a new object."""
        if self.steps != other.steps or list(self.layers) != list(other.layers):
            raise ValueError("cannot merge activity of different networks or step counts")
        layers = {}
        for name, mine in self.layers.items():
            theirs = other.layers[name]
            layers[name] = LayerActivity(
                name, mine.neurons,
                [a + b for a, b in zip(mine.spikes, theirs.spikes)],
                [a + b for a, b in zip(mine.active_updates, theirs.active_updates)],
                [a + b for a, b in zip(mine.synops, theirs.synops)],
                mine.kind,
            )
        return ActivityStats(self.samples + other.samples, self.steps, layers)

    def per_sample(self) -> dict[str, dict]:
        """Per population: neurons, spikes, active and inactive updates, synaptic ops, each per sample."""
        n = max(self.samples, 1)
        table = {}
        for name, layer in self.layers.items():
            active = sum(layer.active_updates) / n
            updates = layer.neurons * self.steps if layer.kind == "neurons" else 0
            table[name] = {
                "kind": layer.kind,
                "neurons": layer.neurons,
                "spikes": sum(layer.spikes) / n,
                "active_updates": active,
                "inactive_updates": updates - active,
                "synops": sum(layer.synops) / n,
                "firing_rate": sum(layer.spikes) / n / max(layer.neurons * self.steps, 1),
            }
        return table

    def totals_per_sample(self) -> dict[str, float]:
        """Whole-network spikes, synaptic ops (input's included) and neurons per sample."""
        table = self.per_sample()
        layers = [row for row in table.values() if row["kind"] == "neurons"]
        spikes = sum(row["spikes"] for row in layers)
        neurons = sum(row["neurons"] for row in layers)
        return {
            "neurons": neurons,
            "spikes": spikes,
            "synops": sum(row["synops"] for row in table.values()),
            "active_updates": sum(row["active_updates"] for row in layers),
            "firing_rate": spikes / max(neurons * self.steps, 1),
        }

    def to_dict(self) -> dict:
        return {"samples": self.samples, "steps": self.steps,
                "layers": [layer.to_dict() for layer in self.layers.values()]}

    @classmethod
    def from_dict(cls, data: dict) -> "ActivityStats":
        layers = [LayerActivity.from_dict(item) for item in data["layers"]]
        return cls(int(data["samples"]), int(data["steps"]), {layer.name: layer for layer in layers})
