"""Running the same samples through hwnas' simulator and another backend, layer by layer."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..data.splits import DatasetSplits, encode_batch
from ..errors import OptionError
from ..export.nir import READOUT, load


@dataclass
class Comparison:
    """Per layer spikes per sample in hwnas and the backend, and how many spike values coincide."""

    backend: str
    samples: int
    steps: int
    layers: dict[str, dict] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    output_spikes: np.ndarray | None = None  # the backend's, (samples, steps, classes)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "samples": self.samples, "steps": self.steps, "layers": self.layers,
                "accuracy": self.accuracy}


def inputs_from(splits: DatasetSplits | None, samples: int, timesteps: int, encoding: str, seed: int,
                array: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Network input (T, B, ...) from the test split (with labels) or from a given array (time first)."""
    if array is not None:
        if array.ndim < 3:
            raise OptionError(f"--input must be an array (time, batch, ...), got shape {list(array.shape)}")
        return torch.as_tensor(array, dtype=torch.float32), None
    x, y = splits.split("test")
    x, y = x[:samples], y[:samples]
    generator = torch.Generator().manual_seed(seed)
    return encode_batch(x, splits.kind, timesteps, encoding, generator), y


def rate_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of per-neuron spike counts of two rasters (steps, samples, neurons); 1 when both are
    silent."""
    rate_a, rate_b = a.sum((0, 1)).double(), b.sum((0, 1)).double()
    norm = float(rate_a.norm() * rate_b.norm())
    if norm == 0:
        return float(float(rate_a.sum()) == float(rate_b.sum()))
    return float(rate_a @ rate_b) / norm


def compare_with_norse(graph, inputs: torch.Tensor, labels: torch.Tensor | None, dt_s: float) -> Comparison:
    """hwnas (zero-delay, as Norse runs) versus Norse on the same inputs."""
    from .norse import run_norse

    net = load(graph, dt_s=dt_s, timing="zero-delay")
    if tuple(inputs.shape[2:]) != net.input_shape:
        raise OptionError(f"inputs have shape {list(inputs.shape[2:])} per step, the graph expects {list(net.input_shape)}")
    with torch.no_grad():
        ours = net(inputs, record=True)
    readout_source = next(src for src, dst in graph.edges if dst == READOUT) if READOUT in graph.nodes else net.output
    feeding = [src for src, dst in graph.edges if dst == readout_source]
    theirs = run_norse(graph, inputs, dt_s, list(net.populations), feeding[0] if len(feeding) == 1 else readout_source)
    batch = inputs.shape[1]
    result = Comparison("norse", batch, inputs.shape[0])
    result.output_spikes = theirs["codes"][net.output].numpy().transpose(1, 0, 2)
    result.layers = layer_rows(ours.codes, theirs["codes"], net.order)
    if labels is not None:
        result.accuracy = {"hwnas": float((ours.logits.argmax(1) == labels).float().mean()),
                           "backend": float((theirs["logits"].argmax(1) == labels).float().mean())}
    return result


def compare_with_lava(graph, inputs: torch.Tensor, labels: torch.Tensor | None, dt_s: float,
                      mode: str = "fixed") -> Comparison:
    """hwnas versus Lava on the same inputs, both in pipelined timing: fixed-point Lava against hwnas'
    bit-exact integer twin, float Lava against hwnas' simulator (float64)."""
    from .fixed_point import simulate_fixed
    from .lava import run_lava
    from .lowering import lower
    from .validate import accuracy, hwnas_rasters

    net = load(graph, dt_s=dt_s, timing="pipelined")
    if tuple(inputs.shape[2:]) != net.input_shape:
        raise OptionError(f"inputs have shape {list(inputs.shape[2:])} per step, the graph expects {list(net.input_shape)}")
    lowered = lower(net)
    ours = simulate_fixed(lowered, inputs.numpy()) if mode == "fixed" else hwnas_rasters(net, inputs)
    theirs = run_lava(lowered, inputs.numpy(), mode)
    result = Comparison(f"lava-{mode}", inputs.shape[1], inputs.shape[0] + lowered.latency_steps)
    result.output_spikes = theirs.spikes[net.output]
    result.layers = layer_rows(ours.as_codes(), theirs.as_codes(), net.order)
    if labels is not None:
        result.accuracy = {"hwnas": accuracy(ours.output_current, labels),
                           "backend": accuracy(theirs.output_current, labels)}
    return result


def layer_rows(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], layers: list[str]) -> dict[str, dict]:
    """Per layer, from rasters (steps, samples, neurons): spikes per sample in both, relative difference of the
    counts, share of identical spike values, cosine similarity of per-neuron rates, share of coincident spikes,
    and whether the rasters are identical."""
    rows = {}
    for name in layers:
        a, b = ours[name], theirs[name]
        batch = a.shape[1]
        rows[name] = {
            "hwnas_spikes": float(a.sum()) / batch,
            "backend_spikes": float(b.sum()) / batch,
            "relative_error": float(abs(b.sum() - a.sum()) / max(float(a.sum()), 1.0)),
            "identical_share": float((a == b).float().mean()),
            "rate_cosine": rate_cosine(a, b),
            "coincident_share": coincident_share(a, b),
            "identical": bool(torch.equal(a, b)),
        }
    return rows


def coincident_share(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spikes present in both rasters over spikes present in either (1 when both are silent)."""
    a, b = a != 0, b != 0
    either = int((a | b).sum())
    return float(int((a & b).sum()) / either) if either else 1.0
