"""Predicted versus measured: the same samples through hwnas' simulator, its bit-exact integer twin, Lava
(fixed and float) and Norse, compared layer by layer, and the energy of the spikes measured in Lava.

Backends (all on the trained, exported network):

* ``hwnas``: hwnas' simulator in the chip's pipelined timing with the network's (quantised) float weights,
  in float64 so that sums of quantised weights are exact;
* ``hwnas_int``: :func:`hwnas.sim.integer.simulate_fixed`, Loihi's integer arithmetic;
* ``lava_fixed`` / ``lava_float``: :func:`hwnas.backends.lava.run_lava`;
* ``norse``: Norse runs its executor's step order, not the chip's, so it is compared with hwnas' simulator in
  that order (``hwnas_norse_order``);
* ``trained``: the trained network itself, when the caller passes it; after quantisation-aware training it
  computes in Loihi's arithmetic and must equal ``hwnas_int`` and ``lava_fixed`` spike for spike.

Every backend runs through the registry of :mod:`hwnas.backends.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..errors import OptionError
from ..sim.activity import ActivityStats, LayerActivity
from ..sim.graph import INPUT
from ..sim.integer import Rasters, simulate_fixed
from ..sim.network import SpikingNetwork
from .registry import Deployment, run_backend
from .compare import accuracy, layer_rows

PAIRS = (  # (reference, backend, what the pair checks)
    ("hwnas", "lava_float", "exact"),
    ("hwnas_int", "lava_fixed", "exact"),
    ("hwnas", "lava_fixed", "quantisation"),
)
NORSE_PAIR = ("hwnas_norse_order", "norse")  # same steps; float32 parameterised differently (hwnas.backends.norse)


# the backends' order in tables and plots
BACKEND_COLUMNS = ("trained", "hwnas", "hwnas_int", "lava_fixed", "lava_float", "hwnas_norse_order", "norse",
                   "hwnas_xylo", "xylosim")


@dataclass
class Validation:
    """Per backend: spikes per sample per layer and accuracy; per pair: per-layer agreement; energy."""

    samples: int
    steps: int
    window: int
    layers: list[str]
    feedback_only: list[str] = field(default_factory=list)  # layers whose every input is a feedback connection
    output: str = ""  # the output population
    spikes: dict[str, dict[str, float]] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    pairs: dict[str, dict] = field(default_factory=dict)
    energy: dict = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"samples": self.samples, "steps": self.steps, "window": self.window, "layers": self.layers,
                "feedback_only": self.feedback_only, "spikes_per_sample": self.spikes, "accuracy": self.accuracy, "pairs": self.pairs,
                "energy": self.energy, "seconds": self.seconds}


def compare_rasters(reference: Rasters, other: Rasters, layers: list[str]) -> dict[str, dict]:
    """Per layer agreement of two backends' rasters (see :func:`hwnas.backends.compare.layer_rows`)."""
    return layer_rows(reference.as_codes(), other.as_codes(), layers)


def activity_from(rasters: Rasters, net: SpikingNetwork, inputs: torch.Tensor,
                  active_updates: dict[str, np.ndarray]) -> ActivityStats:
    """Activity statistics of measured rasters: spikes and synaptic ops per layer and step from the spikes,
    neuron updates from ``active_updates`` (a backend that cannot observe its state borrows its twin's)."""
    fanout = {name: f.flatten().double().cpu().numpy() for name, f in net.fanout_maps().items()}
    samples = inputs.shape[1]
    window = next(iter(rasters.spikes.values())).shape[1]
    layers = {}
    present = (inputs != 0).reshape(inputs.shape[0], samples, -1).sum(1).double().numpy()
    padded = np.zeros((window, present.shape[1]))
    padded[: present.shape[0]] = present
    layers[INPUT] = LayerActivity(INPUT, present.shape[1], padded.sum(1).tolist(), [0.0] * window,
                                  (padded @ fanout[INPUT]).tolist(), "input")
    for name, raster in rasters.spikes.items():
        per_step = raster.sum(0).astype(float)  # (steps, neurons)
        layers[name] = LayerActivity(name, raster.shape[2], per_step.sum(1).tolist(),
                                     list(map(float, active_updates[name])), (per_step @ fanout[name]).tolist())
    return ActivityStats(samples, window, layers)


def validate(graph, inputs: torch.Tensor, labels: torch.Tensor | None, dt_s: float, target=None,
             backends: tuple[str, ...] = ("hwnas_int", "lava_fixed", "lava_float", "norse"),
             progress: Callable[[str], None] | None = None, search_estimate: dict | None = None,
             trained: SpikingNetwork | None = None) -> Validation:
    """Run every backend on ``inputs`` (T, B, ...), compare them and, with a hardware ``target``, estimate the
    energy per inference from hwnas' prediction and from the spikes measured in Lava fixed-point. With the
    ``trained`` network the graph was exported from, it runs too and is compared with Lava fixed-point (or, without
    Lava, with the integer twin)."""
    import time

    say = progress or (lambda message: None)
    deployment = Deployment(graph, dt_s, trained)
    deployment.check_inputs(inputs)
    if trained is not None and set(trained.populations) != set(deployment.network("pipelined").populations):
        raise OptionError("the trained network's populations are not the graph's: export it again")
    backends = tuple(b for b in backends if b not in ("trained", "hwnas_norse_order"))  # run when they apply
    net, lowered = deployment.network("pipelined"), deployment.lowered
    # network order: by the step input first reaches a layer (a layer fed only by feedback after its source)
    arrival = net.arrival_steps()
    layers = sorted(net.order, key=lambda name: arrival[name])
    steps, samples = inputs.shape[:2]
    result = Validation(samples, steps, steps + lowered.latency_steps, layers, feedback_only(net), net.output)
    rasters: dict[str, Rasters] = {}
    wanted = (["trained"] if trained is not None else []) + ["hwnas", *backends] + \
        (["hwnas_norse_order"] if "norse" in backends else [])
    for backend in wanted:
        timer = time.perf_counter()
        rasters[backend] = run_backend(backend, deployment, inputs, say)
        result.seconds[backend] = time.perf_counter() - timer
    if "norse" in rasters:  # listed first, as the Norse comparison always was
        result.pairs["norse"] = {"reference": "hwnas in Norse's step order",
                                 "layers": compare_rasters(rasters[NORSE_PAIR[0]], rasters["norse"], layers)}
    norse_first = [n for n in NORSE_PAIR[::-1] if n in rasters] + [n for n in rasters if n not in NORSE_PAIR]
    for name in norse_first:
        measured = rasters[name]
        result.spikes[name] = {layer: float(measured.spikes[layer].sum()) / samples for layer in layers}
        value = accuracy(measured.output_current, labels)
        if value is not None:
            result.accuracy[name] = value
    pairs = list(PAIRS)
    if trained is not None:  # the trained network against what the chip computes
        chip = "lava_fixed" if "lava_fixed" in rasters else "hwnas_int"
        pairs.insert(0, ("trained", chip, "exact" if trained.arithmetic == "loihi" else "quantisation"))
    for reference, backend, check in pairs:
        if reference in rasters and backend in rasters:
            rows = compare_rasters(rasters[reference], rasters[backend], layers)
            result.pairs[f"{reference}/{backend}"] = {"reference": reference, "backend": backend, "check": check,
                                                      "identical": all(r["identical"] for r in rows.values()),
                                                      "layers": rows}
    if target is not None and target.is_hardware and "lava_fixed" in rasters:
        result.energy = _energy(net, lowered, inputs, rasters, target, search_estimate)
    return result


def feedback_only(net: SpikingNetwork) -> list[str]:
    """Populations whose every incoming connection is a feedback (backward) one: they fire only once the
    populations feeding them back have, so each simulator's step order shows most there."""
    return [name for name in net.order
            if (incoming := [c for c in net.active_connections() if c.dst == name]) and all(c.backward for c in incoming)]


def _energy(net: SpikingNetwork, lowered, inputs: torch.Tensor, rasters: dict[str, Rasters], target,
            search_estimate: dict | None) -> dict:
    from ..hw_models.energy import estimate_energy
    from ..hw_models.mapping import map_network

    mapping = map_network(net, target)
    predicted = estimate_energy(activity_from(rasters["hwnas"], net, inputs, rasters["hwnas"].active_updates),
                                mapping, target)
    twin = rasters.get("hwnas_int") or simulate_fixed(lowered, inputs.numpy())
    measured = estimate_energy(activity_from(rasters["lava_fixed"], net, inputs, twin.active_updates), mapping,
                               target)
    energy = {
        "target": target.name,
        "predicted_j": predicted.energy_j,
        "measured_lava_fixed_j": measured.energy_j,
        "prediction_error": (predicted.energy_j - measured.energy_j) / measured.energy_j if measured.energy_j else 0.0,
        "neuron_updates_from": "hwnas_int (Lava exposes no per-step neuron state without probes)",
        "predicted": predicted.to_dict(),
        "measured": measured.to_dict(),
    }
    if search_estimate:
        search_j = float(search_estimate.get("totals", {}).get("energy_j", 0.0))
        energy["search_predicted_j"] = search_j
        energy["search_prediction_error"] = (search_j - measured.energy_j) / measured.energy_j if search_j else None
    return energy


def plot_validation(result, path) -> None:
    """validation.png: spikes per sample per layer and backend (log axis, layers in network order, * fed only by
    feedback), the relative count error of each compared pair per layer, and the accuracies and energy."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..io_utils import write_bytes_atomic

    layers = [layer + ("*" if layer in result.feedback_only else "") for layer in result.layers]
    x = np.arange(len(layers))
    columns = [b for b in BACKEND_COLUMNS if b in result.spikes]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(9, len(layers) * 1.1), 8), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    width = 0.8 / max(len(columns), 1)
    for i, column in enumerate(columns):
        values = [max(result.spikes[column].get(layer, 0.0), 1e-3) for layer in result.layers]
        label = "hwnas in Norse's order" if column == "hwnas_norse_order" else column
        top.bar(x - 0.4 + (i + 0.5) * width, values, width, label=label, hatch="//" if column == "norse" else None)
    top.set_yscale("log")
    top.set_ylabel("spikes per sample (log)")
    top.legend(fontsize=8, ncol=4)
    accuracy = [f"{name} {100 * value:.2f}%" for name, value in result.accuracy.items()]
    lines = [", ".join(accuracy[i:i + 4]) for i in range(0, len(accuracy), 4)] or ["no labels"]
    fig.suptitle(f"{result.samples} test samples x {result.steps} steps (+{result.window - result.steps} pipeline "
                 "steps); accuracy:\n" + "\n".join(lines), fontsize=9)
    pairs = list(result.pairs.items())
    width = 0.8 / max(len(pairs), 1)
    for i, (key, pair) in enumerate(pairs):
        label = ("norse vs hwnas (Norse's order)" if key == "norse" else key.replace("/", " vs ")) + \
            (" (identical)" if pair.get("identical") else "")
        errors = [100 * pair["layers"][layer]["relative_error"] for layer in result.layers]
        bottom.bar(x - 0.4 + (i + 0.5) * width, errors, width, label=label)
    bottom.set_yscale("symlog", linthresh=0.1)
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("count error vs reference, % (symlog)")
    bottom.legend(fontsize=8)
    bottom.set_xticks(x, layers, rotation=30, ha="right")
    if result.energy:
        e = result.energy
        measured_on = {"xylosim": "XyloSim", "hwnas_xylo": "the Xylo twin"}.get(e.get("measured_on"),
                                                                                  "Lava fixed-point")
        bottom.set_xlabel(f"energy per inference on {e['target']}: predicted {1e6 * e['predicted_j']:.3f} uJ, measured "
                          f"in {measured_on} {1e6 * e.get('measured_j', e.get('measured_lava_fixed_j', 0.0)):.3f} uJ "
                          f"({100 * e['prediction_error']:+.2f}%)" + ("; * fed only by feedback" if result.feedback_only
                                                                      else ""), fontsize=9)
    elif result.feedback_only:
        bottom.set_xlabel("* fed only by feedback", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
